"""A lead who unsubscribes between two activation runs gets nothing more on email, ever.

The send-list fixtures of test_send_lists.py get two more people, Uma and Vic, each an MQL on atlas and
beacon the same day: the contact budget (1 message per local day) sends atlas on Sunday and holds beacon
for the next day. Run 1 (as_of Sunday 00:00 UTC) builds the send lists and delivers to a file outbox at
noon: both welcomes on atlas go out by email. Then Uma clicks SendGrid's unsubscribe link; the event lands
in raw_events.events as the intake lands it (`ingestion.intake.providers.sendgrid_events`). Run 2 (as_of
Monday 09:00 UTC, a new local day and ISO week) rebuilds and delivers again: Vic gets his beacon welcome,
Uma gets nothing on email (not on send_list_messages, fct_message_exclusions says `unsubscribed`, nothing
in the outbox or the ledger for her after the unsubscribe).

Seeds and models only (no data tests) keep this under ~2.5 minutes: test_send_lists.py runs the data tests
on the same models.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

try:
    from tests.warehouse.raw_fixtures import CONTACT_COLUMNS, DLT_COLUMNS, EVENT_COLUMNS, LOAD_ID
    from tests.warehouse.test_send_lists import (
        DBT,
        DBT_PROJECT,
        SEND_LISTS,
        _connect,
        _dbt_env,
        _insert,
        _mql_events,
        _rows,
        _ts,
        create_send_list_raw_tables,
        lead,
        message_key,
    )
except ImportError:  # tests/ collected without package __init__ files
    from raw_fixtures import CONTACT_COLUMNS, DLT_COLUMNS, EVENT_COLUMNS, LOAD_ID
    from test_send_lists import (
        DBT,
        DBT_PROJECT,
        SEND_LISTS,
        _connect,
        _dbt_env,
        _insert,
        _mql_events,
        _rows,
        _ts,
        create_send_list_raw_tables,
        lead,
        message_key,
    )

from activation.delivery import LEDGER_TABLE, deliver_send_list
from activation.transports import OutboxTransport
from ingestion.intake.providers import sendgrid_events

SEND_LIST = "send_list_messages"
FROM_EMAIL = "hello@leadflow.example"

UMA_EMAIL, VIC_EMAIL = "uma@example.com", "vic@example.com"
UMA, VIC = lead(UMA_EMAIL), lead(VIC_EMAIL)

# Sunday 2026-11-22 (the fixtures' AS_OF); Monday 09:00 UTC (= 09:00 London)
AS_OF_1, AS_OF_2 = "2026-11-22T00:00:00Z", "2026-11-23T09:00:00Z"
NOW_1 = datetime(2026, 11, 22, 12, tzinfo=UTC)  # after the 08:00 London due_at, before 21:00 quiet hours
UNSUBSCRIBED_AT = datetime(2026, 11, 22, 15, tzinfo=UTC)  # after run 1 delivered, before run 2
NOW_2 = datetime(2026, 11, 23, 10, tzinfo=UTC)

# fmt: off
PEOPLE = [
    (pid, email, first, "Test", None, None, None, "GB", "Europe/London", None, "lead", False, None,
     "2026-10-01 09:00", "2026-10-01 09:00", False)
    for pid, email, first in (("u1", UMA_EMAIL, "Uma"), ("v1", VIC_EMAIL, "Vic"))
]
# fmt: on
EVENTS = [
    *_mql_events("uma-a", "atlas", email=UMA_EMAIL),
    *_mql_events("uma-b", "beacon", email=UMA_EMAIL),
    *_mql_events("vic-a", "atlas", email=VIC_EMAIL),
    *_mql_events("vic-b", "beacon", email=VIC_EMAIL),
]


def _add_people(target: str, location: str) -> None:
    contacts = [(*r[:13], _ts(r[13]), _ts(r[14]), r[15], LOAD_ID, f"unsub-{r[0]}") for r in PEOPLE]
    events = [(*e[:3], _ts(e[3]), *e[4:], f"{e[1]}/unsub.jsonl", i + 1) for i, e in enumerate(EVENTS)]
    conn = _connect(target, location)
    try:
        _insert(conn, target, "raw_crm.contacts", CONTACT_COLUMNS + DLT_COLUMNS, contacts)
        _insert(conn, target, "raw_events.events", EVENT_COLUMNS, events)
        conn.commit()
    finally:
        conn.close()


def _land_unsubscribe(target: str, location: str, email: str, at: datetime) -> None:
    """The SendGrid Event Webhook `unsubscribe`, parsed by the intake and landed as a raw event row."""
    item = {
        "event": "unsubscribe",
        "email": email,
        "timestamp": int(at.timestamp()),
        "sg_message_id": "m-uma-welcome.filter0001",
        "sg_event_id": "ev-uma-unsub",
    }
    candidates, rejected = sendgrid_events([item])
    assert not rejected and len(candidates) == 1
    event = candidates[0].event
    assert event["event_type"] == "email_unsubscribe"
    occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    row = (
        event["event_id"],
        "sendgrid",
        event["event_type"],
        occurred,
        event.get("product_id"),
        event.get("email"),
        None,
        None,
        event["source"],
        json.dumps(event["properties"]),
        "sendgrid/2026-11-22.jsonl",
        1,
    )
    conn = _connect(target, location)
    try:
        _insert(conn, target, "raw_events.events", EVENT_COLUMNS, [row])
        conn.commit()
    finally:
        conn.close()


def _dbt_run(env: dict[str, str], as_of: str) -> None:
    args = [str(DBT), "build", "--resource-type", "seed", "--resource-type", "model"]
    args += ["--vars", f"{{as_of: '{as_of}', analytics_holdout_share: 0}}"]
    args += ["--select", *SEND_LISTS]
    started = time.monotonic()
    result = subprocess.run(args, cwd=DBT_PROJECT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    print(f"dbt build (seeds, models) as_of {as_of}: {time.monotonic() - started:.1f}s")


def _outbox_messages(outbox: Path) -> list[dict[str, Any]]:
    messages = []
    for path in sorted((outbox / SEND_LIST).glob("*.json")):
        messages.extend(json.loads(path.read_text())["messages"])
    return messages


def _recipients(message: dict[str, Any]) -> str:
    """Every address a handed-over message names (the payload shape varies by channel)."""
    return json.dumps(message).lower()


def _send_rows(target: str, location: str) -> list[dict[str, Any]]:
    return _rows(target, location, f"select * from analytics.{SEND_LIST}")


def _exclusions(target: str, location: str, lead_id: str) -> dict[tuple[str, str | None], str]:
    rows = _rows(
        target,
        location,
        f"select product_id, channel, reason from analytics.fct_message_exclusions where lead_id = '{lead_id}'",
    )
    return {(r["product_id"], r["channel"]): r["reason"] for r in rows}


@pytest.mark.parametrize("target", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_unsubscribe_between_runs_stops_email(target, request, tmp_path):
    if target == "duckdb":
        path = str(tmp_path / "warehouse.duckdb")
        location, url = path, f"duckdb:///{path}"
    else:
        location = url = request.getfixturevalue("postgres_url")
    create_send_list_raw_tables(target, location)
    _add_people(target, location)
    env = _dbt_env(target, location, tmp_path)
    outbox = tmp_path / "outbox"
    transport = OutboxTransport(outbox)

    # run 1: atlas welcomes by email; beacon held by the daily cap
    _dbt_run(env, AS_OF_1)
    sends = {(r["lead_id"], r["product_id"]): r for r in _send_rows(target, location)}
    for person, email in ((UMA, UMA_EMAIL), (VIC, VIC_EMAIL)):
        row = sends[(person, "atlas")]
        assert (row["channel"], row["recipient"]) == ("email", email)
        assert (person, "beacon") not in sends
        assert _exclusions(target, location, person)[("beacon", "email")] == "daily_cap"
    summary = deliver_send_list(url, SEND_LIST, transport, from_email=FROM_EMAIL, now=NOW_1)
    assert summary.sent >= 2 and summary.failed == 0 and summary.quarantined == 0, summary
    first = _outbox_messages(outbox)
    first_keys = {m["idempotency_key"] for m in first}
    assert message_key(UMA, "atlas", "mql_welcome") in first_keys
    assert message_key(VIC, "atlas", "mql_welcome") in first_keys
    ledger = _rows(target, location, f"select idempotency_key, status from {LEDGER_TABLE}")
    assert {r["idempotency_key"]: r["status"] for r in ledger}[
        message_key(UMA, "atlas", "mql_welcome")
    ] == "sent"

    # Uma unsubscribes from the welcome she got
    _land_unsubscribe(target, location, UMA_EMAIL, UNSUBSCRIBED_AT)

    # run 2, the next day: Vic's beacon welcome is due; Uma gets nothing on email
    _dbt_run(env, AS_OF_2)
    rows = _send_rows(target, location)
    assert not [r for r in rows if r["lead_id"] == UMA and r["channel"] == "email"], rows
    assert not [r for r in rows if (r["recipient"] or "").lower() == UMA_EMAIL]
    assert _exclusions(target, location, UMA)[("beacon", "email")] == "unsubscribed"
    vic = {(r["product_id"], r["channel"]): r for r in rows if r["lead_id"] == VIC}
    assert set(vic) == {("beacon", "email")}, vic
    assert vic[("beacon", "email")]["recipient"] == VIC_EMAIL
    assert vic[("beacon", "email")]["idempotency_key"] == message_key(VIC, "beacon", "mql_welcome")

    summary = deliver_send_list(url, SEND_LIST, transport, from_email=FROM_EMAIL, now=NOW_2)
    assert summary.failed == 0 and summary.quarantined == 0, summary
    second = [m for m in _outbox_messages(outbox) if m["idempotency_key"] not in first_keys]
    assert message_key(VIC, "beacon", "mql_welcome") in {m["idempotency_key"] for m in second}
    assert not [m for m in second if UMA_EMAIL in _recipients(m)], second
    # the ledger holds Uma's welcome from before she unsubscribed and nothing else
    uma_ledger = _rows(
        target, location, f"select idempotency_key from {LEDGER_TABLE} where lead_id = '{UMA}'"
    )
    assert [r["idempotency_key"] for r in uma_ledger] == [message_key(UMA, "atlas", "mql_welcome")]
