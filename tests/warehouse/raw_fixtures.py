"""Raw dlt-shaped tables for exercising the dbt project without running ingestion.

`create_raw_tables(target)` (re)creates `raw_crm.{contacts,companies,deals,deals__contact_ids}` and
`raw_events.{events,quarantine}` in the exact shape ARCHITECTURE.md fixes (dlt column names and types;
the CRM tables carry `_dlt_load_id` / `_dlt_id` / `_dlt_parent_id` like dlt's row path, the events
tables none, like the Arrow path ingestion/events takes), filled with a few deliberately messy rows:
duplicate CRM contacts by email (one opted out), two people sharing a phone, blank emails,
archived records, a stale duplicate version of a contact, product events with only a user id or a
phone, events for an unknown product, non-product streams and repeated logins past the daily cap.

`EXPECTED` records what the dbt models must make of these rows; tests/warehouse/test_dbt_models.py
asserts it on DuckDB and PostgreSQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

LOAD_ID = "1764000000.000001"

CONTACT_COLUMNS = [
    ("id", "text"),
    ("email", "text"),
    ("firstname", "text"),
    ("lastname", "text"),
    ("phone", "text"),
    ("mobilephone", "text"),
    ("phone_e164", "text"),
    ("country", "text"),
    ("hs_timezone", "text"),
    ("jobtitle", "text"),
    ("lifecyclestage", "text"),
    ("hs_email_optout", "boolean"),
    ("associatedcompanyid", "text"),
    ("createdate", "timestamp with time zone"),
    ("lastmodifieddate", "timestamp with time zone"),
    ("archived", "boolean"),
]
COMPANY_COLUMNS = [
    ("id", "text"),
    ("name", "text"),
    ("domain", "text"),
    ("industry", "text"),
    ("numberofemployees", "bigint"),
    ("country", "text"),
    ("createdate", "timestamp with time zone"),
    ("hs_lastmodifieddate", "timestamp with time zone"),
    ("archived", "boolean"),
]
DEAL_COLUMNS = [
    ("id", "text"),
    ("dealname", "text"),
    ("amount", "double precision"),
    ("dealstage", "text"),
    ("pipeline", "text"),
    ("closedate", "timestamp with time zone"),
    ("createdate", "timestamp with time zone"),
    ("hs_lastmodifieddate", "timestamp with time zone"),
    ("leadflow_product", "text"),
    ("archived", "boolean"),
]
DEAL_CONTACT_COLUMNS = [
    ("value", "text"),
    ("_dlt_parent_id", "text"),
    ("_dlt_list_idx", "bigint"),
    ("_dlt_root_id", "text"),
]
EVENT_COLUMNS = [
    ("event_id", "text"),
    ("stream", "text"),
    ("event_type", "text"),
    ("occurred_at", "timestamp with time zone"),
    ("product_id", "text"),
    ("email", "text"),
    ("phone", "text"),
    ("user_id", "text"),
    ("source", "text"),
    ("properties", "text"),
    ("landing_file", "text"),
    ("line_number", "bigint"),
]
QUARANTINE_COLUMNS = [
    ("landing_file", "text"),
    ("line_number", "bigint"),
    ("stream", "text"),
    ("raw_line", "text"),
    ("reason", "text"),
    ("quarantined_at", "timestamp with time zone"),
]
DLT_COLUMNS = [("_dlt_load_id", "text"), ("_dlt_id", "text")]


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


# fmt: off
# id, email, first, last, phone, mobile, e164, country, tz, title, stage, optout, company,
# created, modified, archived
CONTACTS = [
    ("c1", " Ana@Example.com ", "Ana", "Silva", "+44 20 7946 0000", None, "+442079460000", "GB",
     "Europe/London", "CTO", "lead", False, "co1", "2026-10-01 09:00", "2026-11-01 09:00", False),
    # stale version of c1 left by a re-sync: staging keeps the latest per id
    ("c1", "old-ana@example.com", "Anna", "Silva", None, None, None, "GB",
     "Europe/London", "CTO", "lead", True, "co1", "2026-10-01 09:00", "2026-10-02 09:00", False),
    # same person as c1 by normalized email, entered twice in the CRM
    ("c2", "ana@example.com", "Ana", "Silva-Costa", None, "+44 7700 900123", None, "GB",
     "Europe/London", None, "subscriber", False, None, "2026-09-15 12:00", "2026-09-15 12:00", False),
    # Bob twice; one record opted out, so the merged person is opted out
    ("c3", "bob@example.com", "Bob", "Jones", None, None, None, "US",
     "America/New_York", None, "lead", False, "co2", "2026-10-05 10:00", "2026-10-05 10:00", False),
    ("c4", " BOB@EXAMPLE.COM", "Robert", "Jones", None, None, None, "US",
     "America/New_York", None, "lead", True, "co2", "2026-10-06 10:00", "2026-10-07 10:00", False),
    # blank email, usable phone: a phone lead
    ("c5", "   ", "Pat", None, "(555) 123-0000", None, "+15551230000", "US",
     None, None, "lead", None, None, "2026-10-08 10:00", "2026-10-08 10:00", False),
    # no email, no phone: a CRM-only lead
    ("c6", None, "Nameless", None, "n/a", None, None, None,
     None, None, None, False, None, "2026-10-09 10:00", "2026-10-09 10:00", False),
    # archived: dropped
    ("c7", "gone@example.com", "Gone", "Away", None, None, None, "DE",
     None, None, "lead", False, None, "2026-10-10 10:00", "2026-10-11 10:00", True),
    # Carol and Dan share an office phone; Carol opted out, Dan did not (consent never crosses people)
    ("c8", "carol@example.com", "Carol", "King", "+1 555 000 0001", None, "+15550000001", "US",
     None, None, "lead", True, "co2", "2026-10-12 10:00", "2026-10-12 10:00", False),
    ("c9", "Dan@Example.com", "Dan", "Brown", "+1 555 000 0001", None, "+15550000001", "US",
     "America/Chicago", None, "lead", False, "co2", "2026-10-13 10:00", "2026-10-13 10:00", False),
]

COMPANIES = [
    ("co1", "Example Ltd", " Example.com ", "SOFTWARE", 120, "GB", "2026-09-01 00:00", "2026-10-01 00:00",
     False),
    ("co2", "Acme Inc", "acme.test", "MANUFACTURING", None, "US", "2026-09-02 00:00", "2026-10-02 00:00",
     False),
    ("co3", "Old Corp", "old.test", None, 5, "DE", "2026-09-03 00:00", "2026-10-03 00:00", True),
]

# id, name, amount, stage, pipeline, close, created, modified, product, archived, contact ids
DEALS = [
    ("d1", "Example - Atlas", 12000.5, "closedwon", "default", "2026-11-10 00:00", "2026-10-15 00:00",
     "2026-11-10 00:00", "atlas", False, ["c1", "c2"]),
    ("d2", "Acme - Beacon", 5000.0, "closedlost", "default", "2026-11-11 00:00", "2026-10-16 00:00",
     "2026-11-11 00:00", "beacon", False, ["c9"]),
    ("d3", "Acme - Atlas", None, "appointmentscheduled", "default", None, "2026-10-17 00:00",
     "2026-10-17 00:00", " Atlas ", False, ["c3", "c3"]),
    ("d4", "Archived deal", 1.0, "closedwon", "default", None, "2026-10-18 00:00",
     "2026-10-18 00:00", "atlas", True, ["c1"]),
]

_E = "2026-11-20 "


def _event(event_id, event_type, at, product, email=None, phone=None, user=None, stream="product_events",
           properties='{"plan": "trial"}'):
    return (event_id, stream, event_type, at, product, email, phone, user, stream, properties)


EVENTS = [
    # Ana (user u-1) on atlas: 2+5+10+15 = 32 < 40, + demo 25 = 57: reaches MQL at e5
    _event("e1", "login", _E + "09:00", "atlas", email="ANA@example.com ", user="u-1"),
    _event("e2", "feature_used", _E + "09:05", "atlas", user="u-1", properties='{"feature": "reports"}'),
    _event("e3", "pricing_page_viewed", _E + "09:10", "atlas", email="ana@example.com", user="u-1"),
    _event("e4", "trial_started", _E + "09:15", "atlas", user="u-1"),
    _event("e5", "demo_requested", _E + "09:20", "ATLAS", user="u-1"),
    # non-repeatable: a second trial start scores nothing
    _event("e6", "trial_started", _E + "09:25", "atlas", user="u-1"),
    # Bob is an MQL on atlas but opted out: never on the send list
    _event("e7", "demo_requested", _E + "10:00", "atlas", email="bob@example.com"),
    _event("e8", "trial_started", _E + "10:05", "atlas", email="Bob@Example.com"),
    # Dan on beacon: 30 + 15 = 45 >= 30
    _event("e9", "demo_requested", _E + "11:00", "beacon", email="dan@example.com"),
    _event("e10", "trial_started", _E + "11:05", "beacon", email="dan@example.com"),
    # Carol (opted out) on beacon: MQL but excluded
    _event("e11", "demo_requested", _E + "11:10", "beacon", email="carol@example.com"),
    # phone-only event: the same person as CRM contact c5
    _event("e12", "login", _E + "12:00", "beacon", phone="+1 (555) 123-0000"),
    # user-only product user never seen with an address: a user lead
    _event("e13", "login", _E + "12:05", "atlas", user="u-9"),
    # logins past atlas' daily cap of 3: only the first three score
    _event("e14", "login", _E + "13:00", "atlas", user="u-9"),
    _event("e15", "login", _E + "13:01", "atlas", user="u-9"),
    _event("e16", "login", _E + "13:02", "atlas", user="u-9"),
    # next UTC day: scores again
    _event("e17", "login", "2026-11-21 00:30", "atlas", user="u-9"),
    # an event type without a scoring rule: kept, 0 points
    _event("e18", "webinar_attended", _E + "14:00", "atlas", user="u-9"),
    # unknown product and missing product: kept in fct_engagement_events, not scored per product
    _event("e19", "login", _E + "14:05", "zeta", user="u-9"),
    _event("e20", "login", _E + "14:06", None, user="u-9"),
    # no identity at all: dropped
    _event("e21", "login", _E + "14:10", "atlas", email="  "),
    # national-format phone: not E.164, no identity
    _event("e22", "login", _E + "14:15", "atlas", phone="020 7946 0000"),
    # another stream: not a product event
    _event("e23", "delivered", _E + "15:00", "atlas", email="ana@example.com", stream="sendgrid"),
    # Eve: product-only person with an email; 25 + 15 = 40 on atlas -> MQL, on the send list
    _event("e24", "demo_requested", _E + "16:00", "atlas", email="eve@example.com", properties=None),
    _event("e25", "trial_started", _E + "16:01", "atlas", email="eve@example.com"),
    # 25 + 15 decayed by a minute is 39.9991 < 40: a login takes Eve over the MQL threshold
    _event("e26", "login", _E + "16:02", "atlas", email="eve@example.com"),
    # u-9 used atlas once in September: engaged, dormant 30 days later, re-engaged on 2026-11-20
    _event("e27", "login", "2026-09-01 08:00", "atlas", user="u-9"),
    # cross-product rule: a beacon demo request also counts for atlas (atlas lists beacon as a source)
    # (e9, e11 above); a beacon login does not
    # manual lead from the Lead Tracker API, moved to sql on atlas by a manual override
    _event("m1", "lead_upserted", _E + "17:00", None, email="Fay@Example.com", stream="manual",
           properties='{"first_name": "Fay", "lead_id": "' + md5("email:fay@example.com") + '"}'),
    _event("m2", "stage_override", _E + "17:05", "atlas", email="fay@example.com", stream="manual",
           properties='{"to_stage": "sql", "product_id": "atlas", "reason": "call", "lead_id": "'
           + md5("email:fay@example.com") + '"}'),
    # an override naming a stage no rule leads to from Dan's atlas stage: recorded nowhere
    _event("m3", "stage_override", _E + "17:10", "atlas", email="dan@example.com", stream="manual",
           properties='{"to_stage": "customer", "product_id": "atlas"}'),
    # Dan disqualified on atlas through the API (stamped lead id, no address)
    _event("m4", "stage_override", _E + "17:15", "atlas", stream="manual",
           properties='{"to_stage": "disqualified", "product_id": "atlas", "lead_id": "'
           + md5("email:dan@example.com") + '"}'),
]

QUARANTINE = [
    ("product_events/2026-11-20.jsonl", 7, "product_events", "{not json", "invalid JSON", "2026-11-20 10:00"),
]
# fmt: on


# Every expectation holds at this instant (dbt var `as_of`): scores decay with it.
AS_OF = "2026-11-22T00:00:00Z"

EXPECTED = {
    # (lead_key, product_id) pairs on send_list_nurture
    # Ana is an atlas customer (deal d1 won) and gets no welcome; Fay was moved to sql by hand
    "send_list": {
        ("email:dan@example.com", "beacon"),
        ("email:eve@example.com", "atlas"),
        ("email:fay@example.com", "atlas"),
    },
    "opted_out": {"email:bob@example.com", "email:carol@example.com"},
    "lead_keys": {
        "email:ana@example.com",
        "email:bob@example.com",
        "email:carol@example.com",
        "email:dan@example.com",
        "email:eve@example.com",
        "phone:+15551230000",
        "crm:c6",
        "user:u-9",
        "email:fay@example.com",
    },
    # score at AS_OF (decayed engagement + fit), to 2 decimals
    "scores": {
        ("email:ana@example.com", "atlas"): 77.62,
        ("email:bob@example.com", "atlas"): 36.99,
        ("email:carol@example.com", "atlas"): 4.63,
        ("email:carol@example.com", "beacon"): 43.52,
        ("email:dan@example.com", "atlas"): 4.63,
        ("email:dan@example.com", "beacon"): 57.77,
        ("email:eve@example.com", "atlas"): 39.32,
        ("phone:+15551230000", "beacon"): 5.95,
        ("user:u-9", "atlas"): 7.52,
    },
    # current stage per (lead_key, product) at AS_OF
    "stages": {
        ("email:ana@example.com", "atlas"): "customer",
        ("email:bob@example.com", "atlas"): "opportunity",
        ("email:carol@example.com", "atlas"): "engaged",
        ("email:carol@example.com", "beacon"): "mql",
        ("email:dan@example.com", "atlas"): "disqualified",
        ("email:dan@example.com", "beacon"): "mql",
        ("email:eve@example.com", "atlas"): "mql",
        ("email:fay@example.com", "atlas"): "sql",
        ("phone:+15551230000", "beacon"): "engaged",
        ("user:u-9", "atlas"): "engaged",
    },
    # u-9's atlas trail: the September login, 30 days of silence, the November return
    "u9_atlas_trail": [
        (None, "new", "initial"),
        ("new", "engaged", "new_to_engaged"),
        ("engaged", "dormant", "engaged_to_dormant"),
        ("dormant", "engaged", "dormant_to_engaged"),
    ],
}


# A later batch for the incremental checks: a new event, a late one (before events already built),
# an account that changes its email (u-1's events move from Ana to a new lead), a new override,
# and an event at exactly the end of a daily-cap day.
LATER_EVENTS = [
    _event("n1", "pricing_page_viewed", "2026-11-23 10:00", "beacon", email="dan@example.com"),
    _event("n2", "login", "2026-11-19 23:59", "beacon", email="dan@example.com"),
    _event("n3", "login", "2026-11-24 08:00", "atlas", email="ana.new@example.com", user="u-1"),
    _event(
        "n4",
        "stage_override",
        "2026-11-24 09:00",
        "beacon",
        email="carol@example.com",
        stream="manual",
        properties='{"to_stage": "sql", "product_id": "beacon"}',
    ),
    _event("n5", "login", "2026-11-20 13:00", "atlas", user="u-9"),
]


def add_raw_events(target: Any, events: Sequence[tuple[Any, ...]], landing_file: str = "later.jsonl") -> None:
    """Append event rows (shaped like EVENTS) to raw_events.events, as a later loader run would.

    Args:
        target: a DuckDB file path or a `postgresql://` URL.
        events: rows built with `_event`.
        landing_file: landing file name recorded on the rows.
    """
    rows = [(*e[:3], _ts(e[3]), *e[4:], f"{e[1]}/{landing_file}", i + 1) for i, e in enumerate(events)]
    names = ", ".join(n for n, _ in EVENT_COLUMNS)
    if target.startswith(("postgresql://", "postgres://")):
        import psycopg2

        conn = psycopg2.connect(target)
        marks = ", ".join(["%s"] * len(EVENT_COLUMNS))
    else:
        import duckdb

        conn = duckdb.connect(target.removeprefix("duckdb:///"))
        marks = ", ".join(["?"] * len(EVENT_COLUMNS))
    try:
        conn.cursor().executemany(f"insert into raw_events.events ({names}) values ({marks})", rows)
        conn.commit()
    finally:
        conn.close()


def _rows_with_dlt(table: str, rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return [(*row, LOAD_ID, f"{table}-{i}") for i, row in enumerate(rows)]


def _table_rows() -> dict[tuple[str, str], tuple[list[tuple[str, str]], list[tuple[Any, ...]]]]:
    contacts = [(*r[:13], _ts(r[13]), _ts(r[14]), r[15]) for r in CONTACTS]
    companies = [(*r[:6], _ts(r[6]), _ts(r[7]), r[8]) for r in COMPANIES]
    deals, deal_contacts = [], []
    for row in DEALS:
        *fields, contact_ids = row
        deal_dlt_id = f"deal-{fields[0]}"
        deals.append(
            (
                *fields[:5],
                _ts(fields[5]),
                _ts(fields[6]),
                _ts(fields[7]),
                fields[8],
                fields[9],
                LOAD_ID,
                deal_dlt_id,
            )
        )
        for idx, contact_id in enumerate(contact_ids):
            deal_contacts.append(
                (contact_id, deal_dlt_id, idx, deal_dlt_id, LOAD_ID, f"{deal_dlt_id}-contact-{idx}")
            )
    events = [(*e[:3], _ts(e[3]), *e[4:], f"{e[1]}/2026-11-20.jsonl", i + 1) for i, e in enumerate(EVENTS)]
    quarantine = [(*q[:5], _ts(q[5])) for q in QUARANTINE]
    return {
        ("raw_crm", "contacts"): (CONTACT_COLUMNS + DLT_COLUMNS, _rows_with_dlt("contacts", contacts)),
        ("raw_crm", "companies"): (COMPANY_COLUMNS + DLT_COLUMNS, _rows_with_dlt("companies", companies)),
        ("raw_crm", "deals"): (DEAL_COLUMNS + DLT_COLUMNS, deals),
        ("raw_crm", "deals__contact_ids"): (DEAL_CONTACT_COLUMNS + DLT_COLUMNS, deal_contacts),
        ("raw_events", "events"): (EVENT_COLUMNS, events),
        ("raw_events", "quarantine"): (QUARANTINE_COLUMNS, quarantine),
    }


def create_raw_tables(target: Any) -> None:
    """(Re)create the raw dlt tables with the fixture rows.

    Args:
        target: a DuckDB connection, a psycopg2 connection, a DuckDB file path, or a URL
            (`duckdb:///path` or `postgresql://user@host:port/db`).
    """
    if isinstance(target, str):
        if target.startswith(("postgresql://", "postgres://")):
            import psycopg2

            conn = psycopg2.connect(target)
            try:
                create_raw_tables(conn)
            finally:
                conn.close()
            return
        import duckdb

        path = target.removeprefix("duckdb:///")
        conn = duckdb.connect(path)
        try:
            create_raw_tables(conn)
        finally:
            conn.close()
        return

    is_duckdb = "duckdb" in type(target).__module__
    placeholder = "?" if is_duckdb else "%s"
    cur = target.cursor()
    for schema in ("raw_crm", "raw_events"):
        cur.execute(f"create schema if not exists {schema}")
    for (schema, table), (columns, rows) in _table_rows().items():
        # cascade: on PostgreSQL the dbt views built on an earlier copy depend on these tables
        cur.execute(f"drop table if exists {schema}.{table}" + ("" if is_duckdb else " cascade"))
        cur.execute(f"create table {schema}.{table} ({', '.join(f'{n} {t}' for n, t in columns)})")
        if rows:
            names = ", ".join(n for n, _ in columns)
            marks = ", ".join([placeholder] * len(columns))
            cur.executemany(f"insert into {schema}.{table} ({names}) values ({marks})", rows)
    target.commit()
