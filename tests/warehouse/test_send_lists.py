"""Send lists (send_list_messages, fct_message_exclusions) honour consent, budget, quiet hours and failover.

The raw fixture tables of raw_fixtures.py get a few more people, each built to exercise one rule, then
`dbt build` (models, data tests, unit tests, the singular send-list checks) runs twice on each warehouse:
before activation ever ran (no ledger table: the ledger staging model must read an empty relation), and
after a ledger with sent messages appeared (already sent, daily and weekly caps).

Everything is computed at AS_OF = 2026-11-22 00:00 UTC (a Sunday) with the default vars: quiet hours
21:00-08:00 local, at most 1 message per lead per local day and 3 per ISO week, a 24 h WhatsApp window.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

try:
    from tests.warehouse.raw_fixtures import (
        AS_OF,
        CONTACT_COLUMNS,
        DLT_COLUMNS,
        EVENT_COLUMNS,
        LOAD_ID,
        create_raw_tables,
    )
except ImportError:  # tests/ collected without package __init__ files
    from raw_fixtures import AS_OF, CONTACT_COLUMNS, DLT_COLUMNS, EVENT_COLUMNS, LOAD_ID, create_raw_tables

from activation.delivery import LEDGER_DDL, LEDGER_SCHEMA

REPO = Path(__file__).resolve().parents[2]
DBT_PROJECT = REPO / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def lead(email: str | None = None, phone: str | None = None) -> str:
    return md5(f"email:{email}") if email else md5(f"phone:{phone}")


def message_key(
    lead_id: str, product: str, step: str, key_channel: str = "email", window: str = "once"
) -> str:
    workflow = f"{product}_nurture"
    return md5("|".join([lead_id, product, workflow, step, key_channel, window]))


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# fmt: off
# id, email, first, last, phone, mobile, e164, country, hs_timezone, title, stage, optout, company,
# created, modified, archived
EXTRA_CONTACTS = [
    # Gus: HubSpot time zone spelling; MQL on atlas (priority 1) and beacon (priority 2) the same day
    ("g1", "gus@example.com", "Gus", "Weber", None, None, "+4915112345601", "DE", "europe_slash_berlin",
     None, "lead", False, None, "2026-10-01 09:00", "2026-10-01 09:00", False),
    # Hal: unsubscribed from email, opted in on WhatsApp and wrote there 4 h before as_of
    ("h1", "hal@example.com", "Hal", "Moss", None, None, "+447700900111", "GB", "Europe/London",
     None, "lead", False, None, "2026-10-01 09:00", "2026-10-01 09:00", False),
    # Ivy: spam report; WhatsApp START then STOP
    ("i1", "ivy@example.com", "Ivy", "Lane", None, None, "+447700900222", "GB", None,
     None, "lead", False, None, "2026-10-01 09:00", "2026-10-01 09:00", False),
    # Jon: hard bounce; a phone without any WhatsApp opt-in
    ("j1", "jon@example.com", "Jon", "Reed", None, None, "+447700900444", "GB", None,
     None, "lead", False, None, "2026-10-01 09:00", "2026-10-01 09:00", False),
    # Kim: do_not_contact recorded through the Lead Tracker API
    ("k1", "kim@example.com", "Kim", "Park", None, None, None, "GB", None,
     None, "lead", False, None, "2026-10-01 09:00", "2026-10-01 09:00", False),
    # Lou: the ledger already holds the welcome as sent (second build)
    ("l1", "lou@example.com", "Lou", "Hart", None, None, None, "GB", None,
     None, "lead", False, None, "2026-10-01 09:00", "2026-10-01 09:00", False),
    # Mia: time zone from the country (JP); a message sent earlier the same Tokyo day (second build)
    ("m1", "mia@example.com", "Mia", "Sato", None, None, None, "JP", None,
     None, "lead", False, None, "2026-10-01 09:00", "2026-10-01 09:00", False),
    # Ned: no email; WhatsApp opt-in three days ago, nothing written since: template only
    ("n1", None, "Ned", "Ford", None, None, "+447700900333", "GB", None,
     None, "lead", False, None, "2026-10-01 09:00", "2026-10-01 09:00", False),
    # Oli: the example row of seeds/manual_suppressions.csv
    ("o1", "do-not-contact@example.invalid", "Oli", "Grey", None, None, None, "GB", None,
     None, "lead", False, None, "2026-10-01 09:00", "2026-10-01 09:00", False),
    # Pia: three messages sent earlier this ISO week (second build)
    ("p1", "pia@example.com", "Pia", "Vos", None, None, None, "GB", "Europe/London",
     None, "lead", False, None, "2026-10-01 09:00", "2026-10-01 09:00", False),
]
# fmt: on

_D = "2026-11-21 "


def _mql_events(prefix: str, product: str, email: str | None = None, phone: str | None = None) -> list[tuple]:
    """atlas: 25 + 15 + 10 = 50 >= 40; beacon: 30 + 15 = 45 >= 30 (decayed a day, still above)."""
    kinds = ["demo_requested", "trial_started", "pricing_page_viewed"]
    return [
        (
            f"{prefix}-{i}",
            "product_events",
            kind,
            _D + f"1{i}:00",
            product,
            email,
            phone,
            None,
            "product",
            "{}",
        )
        for i, kind in enumerate(kinds)
    ]


def _event(event_id, stream, event_type, at, email=None, phone=None, user=None, properties="{}"):
    return (event_id, stream, event_type, at, None, email, phone, user, stream, properties)


# fmt: off
EXTRA_EVENTS = [
    *_mql_events("gus-a", "atlas", email="gus@example.com"),
    *_mql_events("gus-b", "beacon", email="gus@example.com"),
    # a soft bounce (blocked) does not stop email
    _event("sg-gus", "sendgrid", "email_bounce", _D + "09:00", email="gus@example.com",
           properties='{"event": "bounce", "type": "blocked", "email": "gus@example.com"}'),
    *_mql_events("hal", "atlas", email="hal@example.com"),
    _event("sg-hal", "sendgrid", "email_unsubscribe", _D + "09:00", email="Hal@Example.com",
           properties='{"event": "unsubscribe", "email": "hal@example.com", "sg_message_id": "m-hal"}'),
    _event("wa-hal-1", "whatsapp", "whatsapp_opt_in", "2026-11-20 09:00", phone="+447700900111",
           properties='{"id": "wamid.h1", "type": "text", "text": {"body": "START"}}'),
    _event("wa-hal-2", "whatsapp", "whatsapp_inbound", _D + "20:00", phone="+447700900111",
           properties='{"id": "wamid.h2", "type": "text", "text": {"body": "tell me more"}}'),
    _event("chat-hal", "chatbot", "chatbot_inbound", _D + "19:00", email="hal@example.com", user="chat-hal",
           properties='{"message_id": "c-1", "conversation_id": "conv-1", "text": "hi"}'),
    *_mql_events("ivy", "atlas", email="ivy@example.com"),
    _event("sg-ivy", "sendgrid", "email_spamreport", _D + "09:00", email="ivy@example.com",
           properties='{"event": "spamreport", "email": "ivy@example.com"}'),
    _event("wa-ivy-1", "whatsapp", "whatsapp_opt_in", "2026-11-19 09:00", phone="+447700900222",
           properties='{"id": "wamid.i1", "type": "text", "text": {"body": "START"}}'),
    _event("wa-ivy-2", "whatsapp", "whatsapp_opt_out", "2026-11-20 09:00", phone="+447700900222",
           properties='{"id": "wamid.i2", "type": "text", "text": {"body": "STOP"}}'),
    *_mql_events("jon", "beacon", email="jon@example.com"),
    _event("sg-jon", "sendgrid", "email_bounce", _D + "09:00", email="jon@example.com",
           properties='{"event": "bounce", "type": "bounce", "email": "jon@example.com"}'),
    *_mql_events("kim", "atlas", email="kim@example.com"),
    _event("dnc-kim", "manual", "do_not_contact", _D + "09:00", email="kim@example.com",
           properties=f'{{"lead_id": "{lead("kim@example.com")}", "reason": "asked on the phone"}}'),
    *_mql_events("lou", "atlas", email="lou@example.com"),
    *_mql_events("mia", "atlas", email="mia@example.com"),
    *_mql_events("ned", "atlas", phone="+44 7700 900333"),
    _event("wa-ned", "whatsapp", "whatsapp_opt_in", "2026-11-19 09:00", phone="+447700900333",
           properties='{"id": "wamid.n1", "type": "text", "text": {"body": "START"}}'),
    *_mql_events("oli", "atlas", email="do-not-contact@example.invalid"),
    *_mql_events("pia", "atlas", email="pia@example.com"),
]

LEDGER_SENT = [
    # (idempotency_key, lead_id, product, step, updated_at)
    (message_key(lead("lou@example.com"), "atlas", "mql_welcome"), lead("lou@example.com"), "atlas",
     "mql_welcome", "2026-11-21 12:00"),
    # 08:00 on 2026-11-22 in Tokyo: the same local day as Mia's message, due at 09:00 Tokyo
    ("mia-earlier", lead("mia@example.com"), "beacon", "mql_welcome", "2026-11-21 23:00"),
    ("pia-mon", lead("pia@example.com"), "beacon", "x", "2026-11-17 10:00"),
    ("pia-tue", lead("pia@example.com"), "beacon", "y", "2026-11-18 10:00"),
    ("pia-wed", lead("pia@example.com"), "beacon", "z", "2026-11-19 10:00"),
]
# fmt: on


# --- warehouse plumbing --------------------------------------------------------------------------


def _connect(target: str, location: str) -> Any:
    if target == "duckdb":
        import duckdb

        return duckdb.connect(location)
    import psycopg2

    return psycopg2.connect(location)


def _insert(conn: Any, target: str, table: str, columns: list[tuple[str, str]], rows: list[tuple]) -> None:
    mark = "?" if target == "duckdb" else "%s"
    names = ", ".join(name for name, _ in columns)
    conn.cursor().executemany(
        f"insert into {table} ({names}) values ({', '.join([mark] * len(columns))})", rows
    )


def create_send_list_raw_tables(target: str, location: str) -> None:
    """The lead-model fixtures plus the send-list people above."""
    create_raw_tables(location)
    contacts = [(*r[:13], _ts(r[13]), _ts(r[14]), r[15], LOAD_ID, f"extra-{r[0]}") for r in EXTRA_CONTACTS]
    events = [(*e[:3], _ts(e[3]), *e[4:], f"{e[1]}/extra.jsonl", i + 1) for i, e in enumerate(EXTRA_EVENTS)]
    conn = _connect(target, location)
    try:
        _insert(conn, target, "raw_crm.contacts", CONTACT_COLUMNS + DLT_COLUMNS, contacts)
        _insert(conn, target, "raw_events.events", EVENT_COLUMNS, events)
        conn.commit()
    finally:
        conn.close()


def create_ledger(target: str, location: str) -> None:
    """The ledger as activation/delivery.py creates it, with sent messages in it."""
    conn = _connect(target, location)
    try:
        cur = conn.cursor()
        cur.execute(f"create schema if not exists {LEDGER_SCHEMA}")
        cur.execute(LEDGER_DDL)
        columns = [
            (name, "")
            for name in (
                "idempotency_key",
                "send_list",
                "lead_id",
                "product_id",
                "workflow",
                "step",
                "channel",
                "status",
                "attempts",
                "created_at",
                "updated_at",
            )
        ]
        rows = [
            (
                key,
                "send_list_messages",
                lead_id,
                product,
                f"{product}_nurture",
                step,
                "email",
                "sent",
                1,
                _ts(at),
                _ts(at),
            )
            for key, lead_id, product, step, at in LEDGER_SENT
        ]
        _insert(conn, target, f"{LEDGER_SCHEMA}.delivery_ledger", columns, rows)
        conn.commit()
    finally:
        conn.close()


def _dbt_env(target: str, location: str, work: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DBT_PROFILES_DIR": str(DBT_PROJECT),
        "LEADFLOW_DBT_TARGET": target,
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
    }
    if target == "duckdb":
        env["LEADFLOW_DUCKDB_PATH"] = location
    else:
        url = urlparse(location)
        env.update(
            LEADFLOW_PG_HOST=url.hostname or "localhost",
            LEADFLOW_PG_PORT=str(url.port or 5432),
            LEADFLOW_PG_USER=url.username or "postgres",
            LEADFLOW_PG_PASSWORD=url.password or "",
            LEADFLOW_PG_DATABASE=url.path.lstrip("/"),
        )
    return env


# Only the send lists, what they are built from and the tests all of whose inputs that builds
# ("buildable"): other marts that read the same staging models stay out of this test's way.
SEND_LISTS = ("+send_list_messages", "+fct_message_exclusions")
# after the ledger appears: what reads it, up to the send lists
LEDGER_TO_SEND_LISTS = (
    "stg_activation__delivery_ledger+,+send_list_messages",
    "stg_activation__delivery_ledger+,+fct_message_exclusions",
)


def _dbt_build(env: dict[str, str], select: tuple[str, ...]) -> None:
    args = [
        str(DBT),
        "build",
        "--vars",
        f"{{as_of: '{AS_OF}', analytics_holdout_share: 0}}",
        "--indirect-selection",
        "buildable",
    ]
    args += ["--select", *select]
    started = time.monotonic()
    result = subprocess.run(args, cwd=DBT_PROJECT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    print(f"dbt build {' '.join(select)}: {time.monotonic() - started:.1f}s")


def _rows(target: str, location: str, sql: str) -> list[dict[str, Any]]:
    conn = _connect(target, location)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()


def _send_list(target: str, location: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows = _rows(target, location, "select * from analytics.send_list_messages")
    return {(row["lead_id"], row["product_id"]): row for row in rows}


def _exclusions(target: str, location: str) -> dict[tuple[str, str, str | None], tuple[str, str]]:
    rows = _rows(target, location, "select * from analytics.fct_message_exclusions")
    return {(r["lead_id"], r["product_id"], r["channel"]): (r["reason"], r["exclusion_scope"]) for r in rows}


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


# --- the test ------------------------------------------------------------------------------------

GUS, HAL, IVY, JON = (
    lead(e) for e in ("gus@example.com", "hal@example.com", "ivy@example.com", "jon@example.com")
)
KIM, LOU, MIA, PIA = (
    lead(e) for e in ("kim@example.com", "lou@example.com", "mia@example.com", "pia@example.com")
)
NED = lead(phone="+447700900333")
OLI = lead("do-not-contact@example.invalid")


@pytest.mark.parametrize("target", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_send_lists_apply_consent_budget_quiet_hours_and_failover(target, request, tmp_path):
    location = (
        str(tmp_path / "warehouse.duckdb") if target == "duckdb" else request.getfixturevalue("postgres_url")
    )
    create_send_list_raw_tables(target, location)
    env = _dbt_env(target, location, tmp_path)

    # 1. first build: activation never ran, there is no ledger table
    _dbt_build(env, SEND_LISTS)
    assert (
        _rows(target, location, "select count(*) as n from analytics.stg_activation__delivery_ledger")[0]["n"]
        == 0
    )
    sends = _send_list(target, location)
    excluded = _exclusions(target, location)

    # budget: Gus is an MQL on both products the same day; atlas (priority 1) wins, beacon waits
    assert sends[(GUS, "atlas")]["channel"] == "email"
    assert (GUS, "beacon") not in sends
    assert excluded[(GUS, "beacon", "email")] == ("daily_cap", "message")
    # quiet hours: 01:00 in Berlin (HubSpot's europe_slash_berlin) waits for 08:00 Berlin = 07:00 UTC
    assert sends[(GUS, "atlas")]["time_zone"] == "Europe/Berlin"
    assert _utc(sends[(GUS, "atlas")]["due_at"]) == datetime(2026, 11, 22, 7, tzinfo=UTC)
    # a soft bounce does not block email; a phone without opt-in is skipped, with its reason
    assert excluded[(GUS, "atlas", "whatsapp")] == ("whatsapp_no_opt_in", "channel")

    # failover: Hal unsubscribed from email, so WhatsApp first (free-form text: he wrote 12 h before
    # 08:00 London), then the chatbot; the key stays on the product's first channel (email)
    hal = sends[(HAL, "atlas")]
    assert (hal["channel"], hal["recipient"], hal["message_type"]) == (
        "whatsapp",
        "+447700900111",
        "whatsapp_text",
    )
    assert (hal["fallback_channels"], hal["fallback_recipients"], hal["fallback_message_types"]) == (
        "chatbot",
        "chat-hal",
        "chatbot_text",
    )
    assert hal["idempotency_key"] == message_key(HAL, "atlas", "mql_welcome", key_channel="email")
    assert _utc(hal["due_at"]) == datetime(2026, 11, 22, 8, tzinfo=UTC)
    assert excluded[(HAL, "atlas", "email")] == ("unsubscribed", "channel")

    # WhatsApp template outside the 24 h window (Ned opted in 3 days ago and wrote nothing since)
    ned = sends[(NED, "atlas")]
    assert (ned["channel"], ned["message_type"], ned["fallback_channels"]) == (
        "whatsapp",
        "whatsapp_template",
        "",
    )

    # consent: nobody suppressed is on the list, and each says why
    for person in (IVY, JON, KIM, OLI):
        assert not [key for key in sends if key[0] == person]
    assert excluded[(IVY, "atlas", "email")] == ("spam_report", "message")
    assert excluded[(IVY, "atlas", "whatsapp")] == ("whatsapp_opt_out", "message")
    assert excluded[(IVY, "atlas", "chatbot")] == ("no_address", "message")
    assert excluded[(JON, "beacon", "email")] == ("hard_bounce", "message")
    assert excluded[(JON, "beacon", "whatsapp")] == ("whatsapp_no_opt_in", "message")
    assert excluded[(KIM, "atlas", "email")] == ("manual_suppression", "message")
    assert excluded[(OLI, "atlas", "email")] == ("manual_suppression", "message")

    # the lead-model fixtures: CRM opt-outs stay out, Dan (Chicago, 18:00 local) is due right away
    dan = lead("dan@example.com")
    assert excluded[(lead("carol@example.com"), "beacon", "email")] == ("crm_opt_out", "message")
    assert _utc(sends[(dan, "beacon")]["due_at"]) == datetime(2026, 11, 22, tzinfo=UTC)

    # before the ledger, Lou, Mia and Pia are simply due
    assert {(LOU, "atlas"), (MIA, "atlas"), (PIA, "atlas")} <= set(sends)
    first_keys = {key: row["idempotency_key"] for key, row in sends.items()}

    # 2. activation ran: the ledger exists and holds sent messages
    create_ledger(target, location)
    _dbt_build(env, LEDGER_TO_SEND_LISTS)
    sends = _send_list(target, location)
    excluded = _exclusions(target, location)
    assert excluded[(LOU, "atlas", "email")] == ("already_sent", "message")
    assert excluded[(MIA, "atlas", "email")] == ("daily_cap", "message")  # 08:00 Tokyo the same day
    assert excluded[(PIA, "atlas", "email")] == ("weekly_cap", "message")  # 3 sent Mon-Wed
    assert {(LOU, "atlas"), (MIA, "atlas"), (PIA, "atlas")}.isdisjoint(sends)
    # everyone else keeps the same message and key
    assert {key: row["idempotency_key"] for key, row in sends.items()} == {
        key: value
        for key, value in first_keys.items()
        if key not in {(LOU, "atlas"), (MIA, "atlas"), (PIA, "atlas")}
    }
