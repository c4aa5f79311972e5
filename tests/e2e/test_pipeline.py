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
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LEADFLOW_", "N8N_", "HUBSPOT_", "DAGSTER_"))}
    base.update(env)
    result = subprocess.run([LEADFLOW, *args], env=base, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert result.returncode == 0, f"leadflow {' '.join(args)} failed:\n{result.stdout[-5000:]}\n{result.stderr[-8000:]}"
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


def test_make_run_on_duckdb_twice_hands_over_nothing_new(tmp_path):
    env = {"LEADFLOW_HOME": str(tmp_path / "home")}
    first = run_leadflow(env, "run")
    figures = summary_figures(first.stdout)
    assert int(figures["leads"]) > 0 and int(figures["events"]) > 0
    outbox = tmp_path / "home" / "outbox" / "send_list_nurture"
    batches = sorted(outbox.glob("*.json"))
    assert batches, "the outbox holds the payloads"
    sent = sum(len(json.loads(b.read_text())["messages"]) for b in batches)
    assert sent == int(figures["send list (send_list_nurture)"]) > 0
    assert f"this run: {sent} messages handed over" in first.stdout
    check_warehouse(f"duckdb:///{tmp_path / 'home' / 'warehouse.duckdb'}")

    second = run_leadflow(env, "run")
    assert "this run: 0 messages handed over" in second.stdout
    assert sorted(outbox.glob("*.json")) == batches


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
        figures = summary_figures(first.stdout)
        keys = sink.accepted_keys()
        assert len(keys) == len(set(keys)) == int(figures["send list (send_list_nurture)"]) > 0
        assert not (tmp_path / "home" / "outbox").exists()
        check_warehouse(postgres_url)
        second = run_leadflow(env, "run")
        assert "this run: 0 messages handed over" in second.stdout
        assert len(sink.accepted_keys()) == len(keys)
