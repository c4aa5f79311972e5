"""The dbt lead model builds and behaves the same on DuckDB and PostgreSQL.

Each warehouse gets the raw dlt-shaped fixture tables (raw_fixtures.py), then `dbt build` (seeds, models,
data tests, unit tests) at `as_of` = raw_fixtures.AS_OF must pass, and the marts must say what
raw_fixtures.EXPECTED says. Then a later batch of events lands and an incremental build must give exactly
the marts a `--full-refresh` gives at the same as_of.

PostgreSQL: the session server from tests/conftest.py (`postgres_server_url`); a fresh database per
module isolates the fixed schemas (raw_crm, raw_events, analytics).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

try:
    from tests.warehouse.raw_fixtures import AS_OF, EXPECTED, LATER_EVENTS, add_raw_events, create_raw_tables
except ImportError:  # tests/ collected without package __init__ files (pytest's prepend import mode)
    from raw_fixtures import AS_OF, EXPECTED, LATER_EVENTS, add_raw_events, create_raw_tables

REPO = Path(__file__).resolve().parents[2]
DBT_PROJECT = REPO / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")
# after the later batch: past the 30-day inactivity time of the 2026-11-20 events
LATER_AS_OF = "2026-12-25T00:00:00Z"


def _vars(as_of: str) -> list[str]:
    return ["--vars", json.dumps({"as_of": as_of})]


@pytest.fixture(scope="module")
def postgres_database_url(postgres_server_url: str) -> Iterator[str]:
    import psycopg2

    name = f"leadflow_dbt_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(postgres_server_url)
    admin.autocommit = True
    admin.cursor().execute(f"create database {name}")
    try:
        yield urlparse(postgres_server_url)._replace(path=f"/{name}").geturl()
    finally:
        admin.cursor().execute(f"drop database if exists {name} with (force)")
        admin.close()


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


def _dbt(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(DBT), *args], cwd=DBT_PROJECT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return result


def _query(target: str, location: str, sql: str) -> list[tuple]:
    if target == "duckdb":
        import duckdb

        with duckdb.connect(location, read_only=True) as conn:
            return conn.execute(sql).fetchall()
    import psycopg2

    conn = psycopg2.connect(location)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def built_warehouse(request, tmp_path_factory) -> tuple[str, str, dict[str, str]]:
    """(target, location, dbt env) of a warehouse with the fixture raw tables and a passing `dbt build`."""
    work = tmp_path_factory.mktemp(f"dbt-{request.param}")
    if request.param == "duckdb":
        location = str(work / "warehouse.duckdb")
    else:
        location = request.getfixturevalue("postgres_database_url")
    create_raw_tables(location)
    env = _dbt_env(request.param, location, work)
    started = time.monotonic()
    result = _dbt(["build", *_vars(AS_OF)], env)
    assert "ERROR=0" in result.stdout
    print(f"dbt build on {request.param}: {time.monotonic() - started:.1f}s")
    return request.param, location, env


def _send_list(target: str, location: str) -> list[tuple]:
    return _query(
        target,
        location,
        """
        select leads.lead_key, send_list.*
        from analytics.send_list_nurture as send_list
        inner join analytics.dim_leads as leads on send_list.lead_id = leads.lead_id
        order by send_list.idempotency_key
    """,
    )


def test_send_list_has_exactly_the_consenting_mqls(built_warehouse):
    target, location, _ = built_warehouse
    rows = _send_list(target, location)
    assert {(row[0], row[3]) for row in rows} == EXPECTED["send_list"]
    for (
        lead_key,
        key,
        lead_id,
        product_id,
        product_name,
        workflow,
        step,
        channel,
        recipient,
        template,
        *_,
    ) in rows:
        assert product_name == {"atlas": "Atlas Analytics", "beacon": "Beacon Messaging"}[product_id]
        assert lead_id == hashlib.md5(lead_key.encode()).hexdigest()
        assert (
            key
            == hashlib.md5(
                "|".join([lead_id, product_id, workflow, step, channel, "once"]).encode()
            ).hexdigest()
        )
        assert (step, channel, template) == ("mql_welcome", "email", "mql_welcome")
        assert recipient == lead_key.removeprefix("email:")


def test_leads_merge_duplicates_and_keep_consent_per_person(built_warehouse):
    target, location, _ = built_warehouse
    leads = dict(_query(target, location, "select lead_key, email_opt_out from analytics.dim_leads"))
    assert set(leads) == EXPECTED["lead_keys"]
    assert {key for key, opted_out in leads.items() if opted_out} == EXPECTED["opted_out"]
    (count,) = _query(
        target,
        location,
        "select crm_contact_count from analytics.dim_leads where lead_key = 'email:ana@example.com'",
    )[0]
    assert count == 2


def test_scores_follow_the_seeded_rules(built_warehouse):
    target, location, _ = built_warehouse
    scores = _query(
        target,
        location,
        """
        select leads.lead_key, scores.product_id, scores.score
        from analytics.fct_lead_scores as scores
        inner join analytics.dim_leads as leads on scores.lead_id = leads.lead_id
    """,
    )
    assert {(key, product): round(score, 2) for key, product, score in scores} == EXPECTED["scores"]


def test_stages_follow_the_stage_rules(built_warehouse):
    target, location, _ = built_warehouse
    stages = _query(
        target,
        location,
        """
        select leads.lead_key, stages.product_id, stages.stage
        from analytics.fct_lead_stages as stages
        inner join analytics.dim_leads as leads on stages.lead_id = leads.lead_id
    """,
    )
    assert {(key, product): stage for key, product, stage in stages} == EXPECTED["stages"]
    trail = _query(
        target,
        location,
        """
        select transitions.from_stage, transitions.to_stage, transitions.rule_id
        from analytics.fct_lead_stage_transitions as transitions
        inner join analytics.dim_leads as leads on transitions.lead_id = leads.lead_id
        where leads.lead_key = 'user:u-9' and transitions.product_id = 'atlas'
        order by transitions.transition_seq
    """,
    )
    assert trail == EXPECTED["u9_atlas_trail"]
    routing = _query(
        target,
        location,
        "select workflow, workflow_step, is_in_nurture from analytics.fct_lead_workflow_routing "
        "where product_id = 'beacon' and workflow_step = 'mql'",
    )
    assert routing and all(row == ("beacon_nurture", "mql", True) for row in routing)


def test_merges_are_visible(built_warehouse):
    target, location, _ = built_warehouse
    rows = _query(
        target,
        location,
        "select identity_key, merge_reason, merged_identity_keys from analytics.int_lead_identities "
        "where lead_key = 'email:ana@example.com' order by identity_key",
    )
    assert [row[0] for row in rows] == ["crm_contact:c1", "crm_contact:c2", "product_user:u-1"]
    assert {row[1] for row in rows} == {"same normalized email ana@example.com"}
    assert {row[2] for row in rows} == {"crm_contact:c1, crm_contact:c2, product_user:u-1"}


def test_send_list_is_stable_across_rebuilds(built_warehouse):
    target, location, env = built_warehouse
    before = _send_list(target, location)
    _dbt(["run", *_vars(AS_OF)], env)
    assert _send_list(target, location) == before


# every mart the lead model produces, with the columns that must agree (bookkeeping columns aside)
MARTS = {
    "fct_engagement_events": "event_id, product_id, lead_id, rule_id, occurred_at, occurrence_number, "
    "daily_occurrence_number, scoring_outcome, points",
    "fct_lead_score_history": "lead_id, product_id, event_id, occurred_at, points, engagement_score, "
    "fit_score, score, is_mql, is_sql",
    "fct_lead_scores": "lead_id, product_id, engagement_score, fit_score, score, "
    "is_mql, is_sql, mql_reached_at, sql_reached_at, event_count, scored_event_count, last_event_at",
    "fct_lead_stage_transitions": "lead_id, product_id, transition_seq, from_stage, to_stage, transitioned_at, "
    "rule_id, trigger, score, triggering_event_id, rules_version",
    "fct_lead_stages": "lead_id, product_id, stage, entered_at, transition_count",
    "fct_lead_workflow_routing": "lead_id, product_id, workflow, workflow_step, is_in_nurture",
    "send_list_nurture": "idempotency_key, lead_id, product_id, product_name, stage, score, due_at",
}


def _rounded(row: tuple) -> tuple:
    # scores are doubles: equal to 1e-9 is equal (LEAD_MODEL.md allows 1e-6)
    return tuple(round(value, 9) if isinstance(value, float) else value for value in row)


def _marts(target: str, location: str) -> dict[str, list[tuple]]:
    return {
        name: sorted(
            (_rounded(row) for row in _query(target, location, f"select {columns} from analytics.{name}")),
            key=lambda row: tuple("" if value is None else str(value) for value in row),
        )
        for name, columns in MARTS.items()
    }


def test_incremental_build_equals_full_refresh(built_warehouse):
    """Runs last: it lands a later batch in this module's warehouse."""
    target, location, env = built_warehouse
    before = _marts(target, location)
    add_raw_events(location, LATER_EVENTS)
    _dbt(["run", *_vars(LATER_AS_OF)], env)
    incremental = _marts(target, location)
    _dbt(["run", "--full-refresh", *_vars(LATER_AS_OF)], env)
    full = _marts(target, location)
    for name in MARTS:
        assert incremental[name] == full[name], name
    # the batch did change things: u-1 left Ana for a new lead, inactivity passed, Carol moved by hand
    assert incremental != before
    stages = dict(
        _query(
            target,
            location,
            "select leads.lead_key || '/' || stages.product_id, stages.stage from analytics.fct_lead_stages "
            "as stages inner join analytics.dim_leads as leads on stages.lead_id = leads.lead_id",
        )
    )
    # Carol: moved to sql by hand on 2026-11-24, dormant 30 days after her last beacon event
    assert stages["email:carol@example.com/beacon"] == "dormant"
    (override_rows,) = _query(
        target,
        location,
        "select count(*) from analytics.fct_lead_stage_transitions where rule_id = 'override_mql_to_sql' "
        "and triggering_event_id = 'n4'",
    )
    assert override_rows == (1,)
    assert stages["email:ana.new@example.com/atlas"] == "dormant"
    assert stages["user:u-9/atlas"] == "dormant"
    # and a second incremental build with nothing new changes nothing
    _dbt(["run", *_vars(LATER_AS_OF)], env)
    assert _marts(target, location) == full
