"""The whole pipeline as a user runs it: `leadflow run` in a subprocess, on DuckDB and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from activation.warehouse import connect
from tests.support.webhook_sink import WebhookSink

REPO = Path(__file__).resolve().parents[2]
LEADFLOW = str(Path(sys.executable).parent / "leadflow")

pytestmark = pytest.mark.e2e


def run_leadflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("LEADFLOW_", "N8N_", "HUBSPOT_", "DAGSTER_"))
    }
    base.update(env)
    result = subprocess.run(
        [LEADFLOW, *args], env=base, capture_output=True, text=True, cwd=REPO, timeout=900
    )
    assert result.returncode == 0, (
        f"leadflow {' '.join(args)} failed:\n{result.stdout[-5000:]}\n{result.stderr[-8000:]}"
    )
    return result


def summary_figures(stdout: str) -> dict[str, str]:
    lines = stdout.split("leadflow summary", 1)[1].splitlines()
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines if ":" in line)}


def check_warehouse(url: str) -> None:
    with connect(url, read_only=True) as wh:
        leads = wh.scalar("select count(*) from analytics.dim_leads")
        distinct = wh.scalar("select count(distinct lead_id) from analytics.dim_leads")
        assert leads == distinct and leads > 0
        # duplicates merged: one lead per normalized email
        dup_emails = wh.scalar(
            "select count(*) from (select email from analytics.dim_leads where email is not null "
            "group by email having count(*) > 1) d"
        )
        assert dup_emails == 0
        crm_emails = wh.scalar(
            "select count(distinct lower(trim(email))) from raw_crm.contacts "
            "where email is not null and trim(email) <> '' and not archived"
        )
        crm_rows = wh.scalar(
            "select count(*) from raw_crm.contacts where email is not null and trim(email) <> '' and not archived"
        )
        assert crm_rows > crm_emails, "the demo CRM holds case-variant duplicates that must be merged"
        in_crm = wh.scalar("select count(*) from analytics.dim_leads where email is not null and is_in_crm")
        assert in_crm == crm_emails
        product_only = wh.scalar("select count(*) from analytics.dim_leads where not is_in_crm")
        assert product_only > 0, "product users not in the CRM are leads too"


def outbox_keys(outbox: Path) -> list[str]:
    return [
        m["idempotency_key"]
        for b in sorted(outbox.glob("*.json"))
        for m in json.loads(b.read_text())["messages"]
    ]


def handed_over(stdout: str) -> tuple[int, int]:
    """(handed over this run, due later) from the summary line."""
    line = next(line for line in stdout.splitlines() if "this run:" in line)
    numbers = [int(token) for token in line.replace(",", " ").split() if token.isdigit()]
    return numbers[0], numbers[-1]


def test_make_run_on_duckdb_twice_hands_over_nothing_new(tmp_path):
    env = {"LEADFLOW_HOME": str(tmp_path / "home")}
    first = run_leadflow(env, "run")
    figures = summary_figures(first.stdout)
    assert int(figures["leads"]) > 0 and int(figures["events"]) > 0
    outbox = tmp_path / "home" / "outbox" / "send_list_messages"
    keys = outbox_keys(outbox)
    assert keys, "the outbox holds the payloads"
    sent, due_later = handed_over(first.stdout)
    assert sent == len(keys) == len(set(keys))
    assert sent + due_later <= int(figures["send list (send_list_messages)"])
    assert "report:" in first.stdout and Path(first.stdout.split("report:")[1].split()[0]).exists()
    check_warehouse(f"duckdb:///{tmp_path / 'home' / 'warehouse.duckdb'}")

    second = run_leadflow(env, "run")
    sent_again, _ = handed_over(second.stdout)
    all_keys = outbox_keys(outbox)
    assert len(all_keys) == len(set(all_keys)), "no idempotency key is ever handed over twice"
    # only messages that were waiting for their quiet-hours window in run 1 may go now
    assert sent_again <= due_later


@pytest.mark.postgres
def test_run_on_postgres_delivers_to_the_webhook(tmp_path, postgres_url):
    with WebhookSink(token="e2e-token") as sink:
        env = {
            "LEADFLOW_HOME": str(tmp_path / "home"),
            "LEADFLOW_WAREHOUSE_URL": postgres_url,
            "N8N_WEBHOOK_URL": sink.url,
            "N8N_WEBHOOK_TOKEN": "e2e-token",
        }
        first = run_leadflow(env, "run")
        keys = sink.accepted_keys()
        sent, due_later = handed_over(first.stdout)
        assert len(keys) == len(set(keys)) == sent > 0
        assert not (tmp_path / "home" / "outbox").exists()
        check_warehouse(postgres_url)
        # a second run on PostgreSQL adds nothing the DuckDB test and the ledger tests on PostgreSQL
        # (tests/unit/test_activation_delivery.py) do not already show; one run keeps the suite within budget
