"""Lead Tracker endpoints on DuckDB and PostgreSQL, against tables shaped like the dbt marts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from activation.warehouse import connect
from ingestion.events import parse_event_line
from ingestion.intake import IntakeConfig, create_app

TOKEN = "lead-tracker-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ANA = hashlib.md5(b"email:ana@example.com").hexdigest()
BEN = hashlib.md5(b"phone:+447700900123").hexdigest()

DIM_LEADS = """create table analytics.dim_leads (
    lead_id text, lead_key text, lead_key_type text, email text, first_name text, last_name text,
    phone_e164 text, country text, time_zone text, job_title text, lifecycle_stage text, company_id text,
    crm_contact_count integer, is_in_crm boolean, is_product_user boolean, identity_count integer,
    first_seen_at timestamptz, last_product_activity_at timestamptz, email_opt_out boolean)"""
FCT_LEAD_SCORES = """create table analytics.fct_lead_scores (
    lead_id text, product_id text, engagement_score integer, fit_score integer, score integer,
    score_cap integer,
    mql_threshold integer, sql_threshold integer, is_mql boolean, is_sql boolean, mql_reached_at timestamptz,
    sql_reached_at timestamptz, event_count integer, scored_event_count integer, first_event_at timestamptz,
    last_event_at timestamptz)"""
FCT_LEAD_STAGES = """create table analytics.fct_lead_stages (
    lead_id text, product_id text, stage text, entered_at timestamptz)"""
FCT_TRANSITIONS = """create table analytics.fct_lead_stage_transitions (
    lead_id text, product_id text, from_stage text, to_stage text, transitioned_at timestamptz,
    reason text)"""


def _build_marts(url: str, with_stages: bool) -> None:
    with connect(url) as db:
        db.execute("create schema if not exists analytics")
        db.execute(DIM_LEADS)
        db.execute(FCT_LEAD_SCORES)
        db.execute(
            "insert into analytics.dim_leads values (?, 'email:ana@example.com', 'email', "
            "'ana@example.com', 'Ana', "
            "'Silva', '+442079460000', 'GB', 'Europe/London', 'CTO', 'lead', 'c1', 1, true, true, 2, "
            "'2026-11-01 10:00:00+00', '2026-11-20 09:15:00+00', false)",
            [ANA],
        )
        db.execute(
            "insert into analytics.dim_leads (lead_id, lead_key, lead_key_type, phone_e164, "
            "crm_contact_count, "
            "is_in_crm, is_product_user, identity_count, email_opt_out) "
            "values (?, 'phone:+447700900123', 'phone', '+447700900123', 0, false, true, 1, false)",
            [BEN],
        )
        db.execute(
            "insert into analytics.fct_lead_scores values "
            "(?, 'atlas', 45, 10, 55, 100, 40, 80, true, false, '2026-11-20 09:15:00+00', null, 7, 5, "
            "'2026-11-18 09:00:00+00', '2026-11-20 09:15:00+00'), "
            "(?, 'zeta', 90, 0, 90, 100, 40, 80, true, true, "
            "'2026-11-19 09:00:00+00', '2026-11-20 09:00:00+00', "
            "9, 9, '2026-11-18 09:00:00+00', '2026-11-20 09:00:00+00')",
            [ANA, ANA],
        )
        if with_stages:
            db.execute(FCT_LEAD_STAGES)
            db.execute(FCT_TRANSITIONS)
            db.execute(
                "insert into analytics.fct_lead_stages values "
                "(?, 'atlas', 'opportunity', '2026-11-21 08:00:00+00')",
                [ANA],
            )
            db.execute(
                "insert into analytics.fct_lead_stage_transitions values "
                "(?, 'atlas', 'mql', 'opportunity', '2026-11-21 08:00:00+00', 'stage_override'), "
                "(?, 'atlas', 'lead', 'mql', '2026-11-20 09:15:00+00', 'score')",
                [ANA, ANA],
            )


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    return request.getfixturevalue("postgres_url")


def _client(home: Path, url: str) -> TestClient:
    return TestClient(create_app(IntakeConfig(home=home, warehouse_url=url, intake_token=TOKEN)))


def _manual_lines(home: Path) -> list[dict]:
    return [
        orjson.loads(line)
        for path in sorted((home / "landing" / "manual").glob("*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


def test_profile_scores_and_stages_degrade_without_stage_marts(tmp_path: Path, warehouse_url: str) -> None:
    _build_marts(warehouse_url, with_stages=False)
    client = _client(tmp_path, warehouse_url)

    lead = client.get(f"/leads/{ANA}", headers=AUTH)
    assert lead.status_code == 200, lead.text
    body = lead.json()
    assert (body["email"], body["first_name"], body["country"], body["email_opt_out"]) == (
        "ana@example.com",
        "Ana",
        "GB",
        False,
    )
    assert [(p["product_id"], p["stage"], p["score"]) for p in body["products"]] == [
        ("atlas", "mql", 55),
        ("zeta", "sql", 90),
    ]
    assert body["products"][0]["mql_reached_at"].startswith("2026-11-20T09:15:00")

    score = client.get(f"/leads/{ANA}/score", headers=AUTH).json()
    assert score["lead_id"] == ANA and [s["score"] for s in score["scores"]] == [55, 90]
    assert client.get(f"/leads/{ANA}/stages", headers=AUTH).json() == {"lead_id": ANA, "transitions": []}

    ben = client.get(f"/leads/{BEN}", headers=AUTH).json()
    assert ben["products"] == [] and ben["phone_e164"] == "+447700900123"

    for path in ("/leads/nope", "/leads/nope/score", "/leads/nope/stages"):
        missing = client.get(path, headers=AUTH)
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    assert client.get(f"/leads/{ANA}").status_code == 401


def test_stage_marts_are_used_when_built(tmp_path: Path, warehouse_url: str) -> None:
    _build_marts(warehouse_url, with_stages=True)
    client = _client(tmp_path, warehouse_url)
    products = client.get(f"/leads/{ANA}", headers=AUTH).json()["products"]
    assert [(p["product_id"], p["stage"]) for p in products] == [("atlas", "opportunity"), ("zeta", "sql")]
    transitions = client.get(f"/leads/{ANA}/stages", headers=AUTH).json()["transitions"]
    assert [(t["from_stage"], t["to_stage"], t["reason"]) for t in transitions] == [
        ("lead", "mql", "score"),
        ("mql", "opportunity", "stage_override"),
    ]


def test_unbuilt_warehouse_is_503_not_500(tmp_path: Path, warehouse_url: str) -> None:
    with connect(warehouse_url) as db:  # reachable, but the pipeline never ran
        db.execute("select 1")
    response = _client(tmp_path, warehouse_url).get(f"/leads/{ANA}", headers=AUTH)
    assert response.status_code == 503 and "dim_leads" in response.json()["detail"]


def test_writes_land_as_manual_events(tmp_path: Path, warehouse_url: str) -> None:
    _build_marts(warehouse_url, with_stages=False)
    client = _client(tmp_path, warehouse_url)

    override = client.post(
        f"/leads/{ANA}/stage",
        json={"to_stage": "sql", "reason": "call booked", "product_id": "atlas"},
        headers=AUTH,
    )
    assert override.status_code == 202, override.text
    events = client.post(
        f"/leads/{ANA}/events",
        json={"events": [{"event_type": "demo_booked", "product_id": "atlas", "event_id": "crm-note-1"}]},
        headers=AUTH,
    )
    assert events.status_code == 202 and events.json()["event_ids"] == ["crm-note-1"]
    again = client.post(
        f"/leads/{ANA}/events",
        json={"events": [{"event_type": "demo_booked", "event_id": "crm-note-1"}]},
        headers=AUTH,
    )
    assert again.json()["duplicates"] == 1

    created = client.post(
        "/leads",
        json={"email": "  Carla@Example.com ", "first_name": "Carla", "product_id": "atlas"},
        headers=AUTH,
    )
    assert created.status_code == 202
    assert created.json()["lead_id"] == hashlib.md5(b"email:carla@example.com").hexdigest()
    by_phone = client.post("/leads", json={"phone": "+44 7700 900123"}, headers=AUTH)
    assert by_phone.json()["lead_id"] == BEN
    assert client.post("/leads", json={"first_name": "Nobody"}, headers=AUTH).status_code == 422
    updated = client.put(f"/leads/{ANA}", json={"last_name": "Silva-Jones"}, headers=AUTH)
    assert updated.status_code == 202

    assert (
        client.post(
            "/leads/unknown/stage",
            json={"to_stage": "sql", "reason": "x", "product_id": "atlas"},
            headers=AUTH,
        ).status_code
        == 404
    )
    assert client.put("/leads/unknown", json={"last_name": "X"}, headers=AUTH).status_code == 404

    lines = _manual_lines(tmp_path)
    assert [line["event_type"] for line in lines] == [
        "stage_override",
        "demo_booked",
        "lead_upserted",
        "lead_upserted",
        "lead_upserted",
    ]
    for line in lines:
        assert parse_event_line(orjson.dumps(line), "manual").source == "manual"
    stage = lines[0]
    assert stage["properties"] == {
        "to_stage": "sql",
        "reason": "call booked",
        "product_id": "atlas",
        "lead_id": ANA,
    }
    assert stage["email"] == "ana@example.com" and stage["product_id"] == "atlas"
    assert lines[-1]["email"] == "ana@example.com" and lines[-1]["properties"]["last_name"] == "Silva-Jones"
    assert lines[2]["properties"]["first_name"] == "Carla"
