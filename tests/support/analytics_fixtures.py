"""A small warehouse for the analytics marts: the lead-model raw fixtures plus a few journeys that end in
closed-won deals, a delivery ledger and n8n delivery results, and the dbt build of the analytics marts.

Journeys added to tests/warehouse/raw_fixtures.py (all times UTC, AS_OF = 2026-11-22):
- Quinn (atlas): login 11-01 09:00, demo 11-05 09:00, welcome email sent 11-06 09:00 (delivered, opened,
  clicked), deal `dq` closed won 11-15 09:00 (amount 1000): three touches.
- Rae (beacon): demo 11-02 10:00, WhatsApp message sent 11-08 10:00 (delivered, replied), deal `dr`
  closed won 11-18 10:00 (amount 500): two touches.
- Sam (atlas): login 11-03 08:00, an email that failed 11-07; no deal.
- Ana's deal d1 (raw_fixtures) closed 11-10, before any of her events: a conversion without touches.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.warehouse.raw_fixtures import (
    AS_OF,
    CONTACT_COLUMNS,
    DEAL_COLUMNS,
    DEAL_CONTACT_COLUMNS,
    DLT_COLUMNS,
    EVENT_COLUMNS,
    LOAD_ID,
    create_raw_tables,
)

REPO = Path(__file__).resolve().parents[2]
DBT_PROJECT = REPO / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")
ANALYTICS_MARTS = [
    "fct_conversions",
    "fct_conversion_funnel",
    "fct_time_to_conversion",
    "fct_conversion_attribution",
    "fct_message_performance",
    "fct_holdout_lift",
]


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def lead_of(email: str) -> str:
    return md5(f"email:{email}")


QUINN, RAE, SAM = lead_of("quinn@example.com"), lead_of("rae@example.com"), lead_of("sam@example.com")
KEY_QUINN, KEY_RAE, KEY_SAM = md5("k-quinn"), md5("k-rae"), md5("k-sam")

# fmt: off
EXTRA_CONTACTS = [
    ("q1", "quinn@example.com", "Quinn", "Hale", None, None, None, "GB", "Europe/London", None, "lead",
     False, None, "2026-10-20 09:00", "2026-10-20 09:00", False),
    ("r1", "rae@example.com", "Rae", "Cole", None, None, "+447700900555", "GB", "Europe/London", None,
     "lead", False, None, "2026-10-20 09:00", "2026-10-20 09:00", False),
    ("s1", "sam@example.com", "Sam", "Bell", None, None, None, "GB", "Europe/London", None, "lead",
     False, None, "2026-10-20 09:00", "2026-10-20 09:00", False),
]
# id, name, amount, stage, pipeline, close, created, modified, product, archived, contact ids
EXTRA_DEALS = [
    ("dq", "Quinn - Atlas", 1000.0, "closedwon", "default", "2026-11-15 09:00", "2026-11-10 09:00",
     "2026-11-15 09:00", "atlas", False, ["q1"]),
    ("dr", "Rae - Beacon", 500.0, "closedwon", "default", "2026-11-18 10:00", "2026-11-12 10:00",
     "2026-11-18 10:00", "beacon", False, ["r1"]),
]


def _event(event_id, event_type, at, product, email=None, stream="product_events", properties="{}"):
    return (event_id, stream, event_type, at, product, email, None, None, stream, properties)


def _delivery(event_id, event_type, at, product, key, lead_id, channel):
    properties = json.dumps({"idempotency_key": key, "lead_id": lead_id, "channel": channel})
    return (event_id, "delivery", event_type, at, product, None, None, None, "n8n", properties)


EXTRA_EVENTS = [
    _event("q-1", "login", "2026-11-01 09:00", "atlas", "quinn@example.com"),
    _event("q-2", "demo_requested", "2026-11-05 09:00", "atlas", "quinn@example.com"),
    _event("r-1", "demo_requested", "2026-11-02 10:00", "beacon", "rae@example.com"),
    _event("s-1", "login", "2026-11-03 08:00", "atlas", "sam@example.com"),
    _delivery("dq-1", "sent", "2026-11-06 09:00", "atlas", KEY_QUINN, QUINN, "email"),
    _delivery("dq-2", "delivered", "2026-11-06 09:01", "atlas", KEY_QUINN, QUINN, "email"),
    _delivery("dq-3", "opened", "2026-11-06 10:00", "atlas", KEY_QUINN, QUINN, "email"),
    _delivery("dq-4", "clicked", "2026-11-06 10:05", "atlas", KEY_QUINN, QUINN, "email"),
    _delivery("dr-1", "sent", "2026-11-08 10:00", "beacon", KEY_RAE, RAE, "whatsapp"),
    _delivery("dr-2", "delivered", "2026-11-08 10:01", "beacon", KEY_RAE, RAE, "whatsapp"),
    _delivery("dr-3", "replied", "2026-11-08 12:00", "beacon", KEY_RAE, RAE, "whatsapp"),
    _delivery("ds-1", "failed", "2026-11-07 08:00", "atlas", KEY_SAM, SAM, "email"),
]
# key, lead, product, step, channel, status, at
LEDGER = [
    (KEY_QUINN, QUINN, "atlas", "mql_welcome", "email", "sent", "2026-11-06 09:00"),
    (KEY_RAE, RAE, "beacon", "mql_welcome", "whatsapp", "sent", "2026-11-08 10:00"),
    (KEY_SAM, SAM, "atlas", "mql_welcome", "email", "failed", "2026-11-07 08:00"),
]
# fmt: on


def connect(kind: str, location: str) -> Any:
    if kind == "duckdb":
        import duckdb

        return duckdb.connect(location)
    import psycopg2

    return psycopg2.connect(location)


def insert(conn: Any, kind: str, table: str, names: list[str], rows: list[tuple]) -> None:
    if not rows:
        return
    mark = "?" if kind == "duckdb" else "%s"
    conn.cursor().executemany(
        f"insert into {table} ({', '.join(names)}) values ({', '.join([mark] * len(names))})", rows
    )


def create_ledger(conn: Any, kind: str, rows: list[tuple]) -> None:
    from activation.delivery import LEDGER_DDL, LEDGER_SCHEMA

    cur = conn.cursor()
    cur.execute(f"create schema if not exists {LEDGER_SCHEMA}")
    cur.execute(LEDGER_DDL)
    names = ["idempotency_key", "send_list", "lead_id", "product_id", "workflow", "step", "channel"]
    names += ["channel_used", "status", "attempts", "created_at", "updated_at"]
    insert(
        conn,
        kind,
        f"{LEDGER_SCHEMA}.delivery_ledger",
        names,
        [
            (
                key,
                "send_list_messages",
                lead,
                product,
                f"{product}_nurture",
                step,
                channel,
                channel,
                status,
                1,
                ts(at),
                ts(at),
            )
            for key, lead, product, step, channel, status, at in rows
        ],
    )


def create_analytics_raw_tables(kind: str, location: str) -> None:
    """raw_fixtures' tables plus the journeys above and the ledger."""
    create_raw_tables(location)
    conn = connect(kind, location)
    try:
        contacts = [(*r[:13], ts(r[13]), ts(r[14]), r[15], LOAD_ID, f"extra-{r[0]}") for r in EXTRA_CONTACTS]
        insert(conn, kind, "raw_crm.contacts", [n for n, _ in CONTACT_COLUMNS + DLT_COLUMNS], contacts)
        deals, links = [], []
        for *fields, contact_ids in EXTRA_DEALS:
            dlt_id = f"deal-{fields[0]}"
            deals.append(
                (
                    *fields[:5],
                    ts(fields[5]),
                    ts(fields[6]),
                    ts(fields[7]),
                    fields[8],
                    fields[9],
                    LOAD_ID,
                    dlt_id,
                )
            )
            links += [(c, dlt_id, i, dlt_id, LOAD_ID, f"{dlt_id}-{i}") for i, c in enumerate(contact_ids)]
        insert(conn, kind, "raw_crm.deals", [n for n, _ in DEAL_COLUMNS + DLT_COLUMNS], deals)
        insert(
            conn,
            kind,
            "raw_crm.deals__contact_ids",
            [n for n, _ in DEAL_CONTACT_COLUMNS + DLT_COLUMNS],
            links,
        )
        events = [
            (*e[:3], ts(e[3]), *e[4:], f"{e[1]}/analytics.jsonl", i + 1) for i, e in enumerate(EXTRA_EVENTS)
        ]
        insert(conn, kind, "raw_events.events", [n for n, _ in EVENT_COLUMNS], events)
        create_ledger(conn, kind, LEDGER)
        conn.commit()
    finally:
        conn.close()


def warehouse_url(kind: str, location: str) -> str:
    return f"duckdb:///{location}" if kind == "duckdb" else location


def dbt_env(kind: str, location: str, work: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DBT_PROFILES_DIR": str(DBT_PROJECT),
        "LEADFLOW_DBT_TARGET": kind,
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
        "DO_NOT_TRACK": "1",
    }
    if kind == "duckdb":
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


def build_analytics(kind: str, location: str, work: Path, as_of: str = AS_OF, test: bool = True) -> float:
    """Build the analytics marts and what they need (no upstream tests), then the analytics tests.

    Two invocations keep the build small: `build` of the upstream graph without tests, then `test` of the
    analytics models (data tests, unit tests and the singular assert_* checks that read them).
    """
    env = dbt_env(kind, location, work)
    started = time.monotonic()
    vars_ = f"{{as_of: '{as_of}'}}"
    steps = [
        [
            "build",
            "--select",
            "+path:models/marts/analytics",
            "+int_holdout_assignments",
            "--exclude-resource-type",
            "test",
            "unit_test",
        ],
    ]
    if test:
        steps.append(
            ["test", "--select", "path:models/marts/analytics", "path:models/intermediate/analytics"]
        )
    for step in steps:
        result = subprocess.run(
            [str(DBT), *step, "--vars", vars_], cwd=DBT_PROJECT, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout[-10000:] + result.stderr[-2000:]
    return time.monotonic() - started


def read_table(kind: str, location: str, table: str, order_by: str = "") -> list[dict[str, Any]]:
    conn = connect(kind, location)
    try:
        cur = conn.cursor()
        cur.execute(f"select * from analytics.{table}" + (f" order by {order_by}" if order_by else ""))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()
