"""Delivery feedback, end to end: send list → activation → real n8n → provider stubs → n8n's report →
the real intake API → landing → dlt → dbt `fct_delivery_reconciliation`.

n8n (fixture in conftest.py, one per module) posts its delivery results to the intake app served here by
uvicorn in a thread; everything else runs in-process on one DuckDB file. Phase 1 checks that every
handed-over key is confirmed (no gaps); phase 2 loses one delivery result on its way to the warehouse and
checks that exactly that key shows up as `handed_over_unconfirmed`.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dlt
import pytest
import uvicorn

from activation.delivery import LEDGER_TABLE, deliver_send_list
from activation.transports import WebhookTransport
from activation.warehouse import connect
from ingestion.events import landing_events_source
from ingestion.intake.app import create_app
from ingestion.intake.config import IntakeConfig
from tests.support.n8n_server import N8nServer
from tests.support.provider_stubs import ProviderStubs

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT = ROOT / "dbt_project"
INTAKE_TOKEN = "feedback-intake-token"
FROM = "nurture@leadflow.example"
UNSUBSCRIBE_GROUP = 4242
SEND_LIST = "send_list_nurture"
COLUMNS = [
    "idempotency_key",
    "lead_id",
    "product_id",
    "product_name",
    "workflow",
    "step",
    "channel",
    "recipient",
    "template",
    "first_name",
    "score",
    "stage",
    "reason",
    "due_at",
    "message_type",
    "fallback_channels",
    "fallback_recipients",
    "fallback_message_types",
]


# -- the real intake API, served in a thread ------------------------------------------------------------
class IntakeServer:
    def __init__(self, home: Path) -> None:
        self.config = IntakeConfig(
            home=home,
            warehouse_url=f"duckdb:///{home / 'intake-warehouse.duckdb'}",  # not the pipeline's warehouse
            intake_token=INTAKE_TOKEN,
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(self.config), host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, name="intake", daemon=True)

    @property
    def delivery_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events/delivery"

    @property
    def delivery_dir(self) -> Path:
        return self.config.landing_dir / "delivery"

    def start(self) -> IntakeServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "intake app did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def landed(self) -> dict[str, list[tuple[Path, dict]]]:
        """Delivery events landed so far, by idempotency key: (file, event)."""
        by_key: dict[str, list[tuple[Path, dict]]] = {}
        for path in sorted(self.delivery_dir.glob("*.jsonl")) if self.delivery_dir.exists() else []:
            for line in path.read_text().splitlines():
                if line.strip():
                    event = json.loads(line)
                    by_key.setdefault(event["properties"]["idempotency_key"], []).append((path, event))
        return by_key

    def drop_landed(self, key: str) -> None:
        """Lose the delivery result of one key before the loader sees it (a lost report)."""
        for path in {p for p, _ in self.landed()[key]}:
            lines = path.read_text().splitlines(keepends=True)
            kept = [ln for ln in lines if not (ln.strip() and _key_of(ln) == key)]
            path.write_text("".join(kept))


def _key_of(line: str) -> str:
    return json.loads(line)["properties"]["idempotency_key"]


@pytest.fixture(scope="module")
def intake(tmp_path_factory) -> Iterator[IntakeServer]:
    server = IntakeServer(tmp_path_factory.mktemp("leadflow-home")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def n8n_env(stubs: ProviderStubs, intake: IntakeServer) -> dict[str, str]:
    """conftest's n8n, reporting delivery results to the real intake app instead of the recording sink."""
    return {
        **stubs.env(),
        "LEADFLOW_DELIVERY_URL": intake.delivery_url,
        "LEADFLOW_INTAKE_TOKEN": INTAKE_TOKEN,
        "LEADFLOW_PROVIDER_MAX_ATTEMPTS": "2",
        "LEADFLOW_PROVIDER_BACKOFF_MS": "20",
        "LEADFLOW_PROVIDER_MAX_WAIT_MS": "200",
    }


# -- the pipeline steps ---------------------------------------------------------------------------------
def row(run: str, n: int, channel: str, recipient: str, **extra) -> tuple:
    values = {
        "idempotency_key": hashlib.md5(f"{run}|lead{n}|{channel}".encode()).hexdigest(),
        "lead_id": f"lead{n}-{run[:6]}",
        "product_id": "atlas",
        "product_name": "Atlas",
        "workflow": "atlas_nurture",
        "step": "mql_welcome",
        "channel": channel,
        "recipient": recipient,
        "template": "mql_welcome",
        "first_name": f"Ana{n}",
        "score": 42.0,
        "stage": "mql",
        "reason": "score >= 40",
        "due_at": None,
        "message_type": None,
        "fallback_channels": None,
        "fallback_recipients": None,
        "fallback_message_types": None,
        **extra,
    }
    return tuple(values[c] for c in COLUMNS)


def write_send_list(warehouse_url: str, rows: list[tuple]) -> None:
    with connect(warehouse_url) as wh:
        wh.execute("create schema if not exists analytics")
        wh.execute(f"drop table if exists analytics.{SEND_LIST}")
        types = {"score": "double precision", "due_at": "timestamp with time zone"}
        wh.execute(
            f"create table analytics.{SEND_LIST} ("
            + ", ".join(f"{c} {types.get(c, 'varchar')}" for c in COLUMNS)
            + ")"
        )
        wh.insert_rows(f"analytics.{SEND_LIST}", COLUMNS, rows)


def deliver_and_wait(warehouse_url: str, n8n: N8nServer, intake: IntakeServer, reported: set[str]):
    transport = WebhookTransport(n8n.webhook_url, n8n.webhook_token, backoff_seconds=0.05)
    summary = deliver_send_list(
        warehouse_url,
        SEND_LIST,
        transport,
        from_email=FROM,
        unsubscribe_group_id=UNSUBSCRIBE_GROUP,
        batch_size=3,
    )
    # n8n reports after it answered: wait for the executions, then for the landed events
    deadline = time.monotonic() + 30
    while not reported <= set(intake.landed()) and time.monotonic() < deadline:
        time.sleep(0.2)
    n8n.wait_until_idle()
    missing = reported - set(intake.landed())
    assert not missing, f"delivery results never landed for {missing}\n{n8n.log_tail()}"
    return summary


def load_landing(pipeline: dlt.Pipeline, intake: IntakeServer) -> None:
    pipeline.run(landing_events_source(landing_dir=str(intake.config.landing_dir)))


def dbt_build(duckdb_path: Path, target: Path) -> None:
    env = {
        **os.environ,
        "LEADFLOW_DBT_TARGET": "duckdb",
        "LEADFLOW_DUCKDB_PATH": str(duckdb_path),
        "DBT_LOG_PATH": str(target / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    dbt = Path(sys.executable).with_name("dbt")
    done = subprocess.run(
        [
            str(dbt),
            "build",
            "--select",
            "+fct_delivery_reconciliation",
            # only tests whose parents are all selected (a singular test on the send lists would not be)
            "--indirect-selection",
            "cautious",
            "--project-dir",
            str(DBT_PROJECT),
            "--profiles-dir",
            str(DBT_PROJECT),
            "--target-path",
            str(target),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def reconciliation(warehouse_url: str) -> dict[str, dict]:
    with connect(warehouse_url, read_only=True) as wh:
        rows = wh.query("select * from analytics.fct_delivery_reconciliation")
    return {r["idempotency_key"]: r for r in rows}


def ledger(warehouse_url: str) -> dict[str, dict]:
    with connect(warehouse_url, read_only=True) as wh:
        return {r["idempotency_key"]: r for r in wh.query(f"select * from {LEDGER_TABLE}")}


# -- the test -------------------------------------------------------------------------------------------
def test_every_handed_over_message_is_confirmed_and_a_lost_result_shows_as_a_gap(
    n8n: N8nServer, stubs: ProviderStubs, intake: IntakeServer, tmp_path: Path
):
    n8n.wait_until_idle()
    stubs.reset()
    duckdb_path = tmp_path / "warehouse.duckdb"
    warehouse_url = f"duckdb:///{duckdb_path}"
    pipeline = dlt.pipeline(
        pipeline_name="leadflow_events",
        destination=dlt.destinations.duckdb(str(duckdb_path)),
        dataset_name="raw_events",
        pipelines_dir=str(tmp_path / "dlt"),
    )
    run = uuid.uuid4().hex

    # -- phase 1: plain emails, a WhatsApp template, an email falling over to chatbot, a hopeless email ----
    emails = [row(run, n, "email", f"fb{n}-{run[:6]}@example.com") for n in range(3)]
    wa_phone = f"+4477009{int(run[:4], 16) % 100000:05d}"
    whatsapp = row(run, 3, "whatsapp", wa_phone, message_type="whatsapp_template")
    refused_email = f"fb4-{run[:6]}@example.com"
    falls_over = row(
        run,
        4,
        "email",
        refused_email,
        fallback_channels="chatbot",
        fallback_recipients=f"user-4-{run[:6]}",
        fallback_message_types="chatbot",
    )
    hopeless_email = f"fb5-{run[:6]}@example.com"
    hopeless = row(run, 5, "email", hopeless_email)
    stubs.sendgrid.fail_recipient(refused_email, 400)
    stubs.sendgrid.fail_recipient(hopeless_email, 400)
    phase1 = [*emails, whatsapp, falls_over, hopeless]
    keys1 = [r[0] for r in phase1]
    write_send_list(warehouse_url, phase1)

    summary = deliver_and_wait(warehouse_url, n8n, intake, set(keys1))
    assert (summary.sent, summary.failed) == (5, 1), summary

    # what the providers got
    sendgrid_bodies = [c.body for c in stubs.sendgrid.calls]
    assert {b["custom_args"]["idempotency_key"] for b in sendgrid_bodies} == {
        r[0] for r in [*emails, falls_over, hopeless]
    }
    assert {b["asm"]["group_id"] for b in sendgrid_bodies} == {UNSUBSCRIBE_GROUP}
    (wa_call,) = stubs.whatsapp.calls
    assert wa_call.body["type"] == "template" and wa_call.body["to"] == wa_phone.lstrip("+")
    assert wa_call.body["template"]["name"] == "mql_welcome"
    (chat_call,) = stubs.chatbot.calls
    assert chat_call.body["idempotency_key"] == falls_over[0]

    # the hopeless email (no next route) ends failed in the ledger, with n8n's reason
    book = ledger(warehouse_url)
    assert book[hopeless[0]]["status"] == "failed"
    assert "email: 400" in book[hopeless[0]]["error"], book[hopeless[0]]
    assert {book[k]["status"] for k in keys1 if k != hopeless[0]} == {"sent"}
    assert book[falls_over[0]]["channel_used"] == "chatbot"

    load_landing(pipeline, intake)
    dbt_build(duckdb_path, tmp_path / "dbt-target")
    rec = reconciliation(warehouse_url)

    assert set(rec) == set(keys1)
    gaps = {
        k: r["reconciliation_status"] for k, r in rec.items() if r["reconciliation_status"] != "confirmed"
    }
    assert gaps == {hopeless[0]: "failed"}, "every handed-over key is confirmed"
    assert rec[hopeless[0]]["ledger_status"] == "failed"
    assert rec[hopeless[0]]["last_event_type"] == "failed"
    assert rec[whatsapp[0]]["confirmed_channel"] == "whatsapp"
    assert rec[falls_over[0]]["channel_handed_over"] == "email"
    assert rec[falls_over[0]]["confirmed_channel"] == "chatbot"
    for key in keys1:
        if key != hopeless[0]:
            r = rec[key]
            assert (r["ledger_status"], r["last_event_type"]) == ("sent", "sent"), r
            assert r["handed_over_at"] is not None and r["first_confirmed_at"] is not None, r
            assert r["workflow"] == "atlas_nurture" and r["step"] == "mql_welcome"

    # -- phase 2: a new send list; one delivery result is lost between intake and the warehouse -------
    stubs.reset()
    phase2 = [row(run, n, "email", f"fb{n}-{run[:6]}@example.com") for n in range(10, 14)]
    keys2 = [r[0] for r in phase2]
    write_send_list(warehouse_url, phase2)
    summary = deliver_and_wait(warehouse_url, n8n, intake, set(keys2))
    assert (summary.sent, summary.failed) == (4, 0), summary
    lost = keys2[1]
    intake.drop_landed(lost)
    assert lost not in intake.landed()

    load_landing(pipeline, intake)
    dbt_build(duckdb_path, tmp_path / "dbt-target")
    rec = reconciliation(warehouse_url)

    assert set(rec) == set(keys1) | set(keys2)
    gaps = {
        k: r["reconciliation_status"] for k, r in rec.items() if r["reconciliation_status"] != "confirmed"
    }
    assert gaps == {hopeless[0]: "failed", lost: "handed_over_unconfirmed"}
    assert rec[lost]["ledger_status"] == "sent" and rec[lost]["handed_over_at"] is not None
    assert rec[lost]["last_event_type"] is None and rec[lost]["first_confirmed_at"] is None
