"""Concurrent clients with duplicates: every distinct event lands exactly once, and loads exactly once."""

from __future__ import annotations

import random
import socket
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dlt
import duckdb
import httpx
import orjson
import pytest
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.events import landing_events_source
from ingestion.intake import IntakeConfig, create_app

TOKEN = "concurrency-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLIENTS, EVENTS_PER_CLIENT, BATCH = 8, 500, 50


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _event(event_id: str) -> dict:
    return {
        "event_id": event_id,
        "event_type": "login",
        "occurred_at": "2026-11-20T09:15:00Z",
        "product_id": "atlas",
        "user_id": event_id,
    }


def _landed_ids(home: Path) -> Counter:
    return Counter(
        orjson.loads(line)["event_id"]
        for path in (home / "landing").glob("*/*.jsonl")
        for line in path.read_bytes().splitlines()
    )


@pytest.fixture
def server(tmp_path: Path):
    """The app under real uvicorn (threads, event loop, HTTP), like `leadflow serve`."""
    config = IntakeConfig(
        home=tmp_path, warehouse_url=f"duckdb:///{tmp_path / 'w.duckdb'}", intake_token=TOKEN
    )
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", tmp_path
    uv.should_exit = True
    thread.join(timeout=10)


def test_8_clients_x_500_events_with_10_percent_duplicates(server) -> None:
    base_url, home = server
    rng = random.Random(6)
    plans: list[list[str]] = []
    all_ids: list[str] = []
    for client in range(CLIENTS):
        fresh = [f"c{client}-e{i}" for i in range(int(EVENTS_PER_CLIENT * 0.9))]
        all_ids.extend(fresh)
        plans.append(fresh)
    for plan in plans:
        # 10%: re-sends of ids this client or another client already has (the cross-client race matters most).
        plan.extend(rng.choice(all_ids) for _ in range(EVENTS_PER_CLIENT - len(plan)))
        rng.shuffle(plan)
    distinct = set(all_ids)

    def run(plan: list[str]) -> tuple[int, int]:
        accepted = duplicates = 0
        with httpx.Client(base_url=base_url, headers=AUTH, timeout=60) as http:
            for start in range(0, len(plan), BATCH):
                response = http.post(
                    "/events", json={"events": [_event(i) for i in plan[start : start + BATCH]]}
                )
                assert response.status_code == 200, response.text
                accepted += response.json()["accepted"]
                duplicates += response.json()["duplicates"]
        return accepted, duplicates

    with ThreadPoolExecutor(CLIENTS) as pool:
        totals = list(pool.map(run, plans))
    accepted = sum(a for a, _ in totals)
    duplicates = sum(d for _, d in totals)
    assert accepted == len(distinct)
    assert accepted + duplicates == CLIENTS * EVENTS_PER_CLIENT
    landed = _landed_ids(home)
    assert set(landed) == distinct and max(landed.values()) == 1

    db = home / "loaded.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name=f"c_{uuid.uuid4().hex[:8]}",
        destination=dlt.destinations.duckdb(str(db)),
        dataset_name="raw_events",
        pipelines_dir=str(home / "pipelines"),
    )
    pipeline.run(landing_events_source(str(home / "landing")))
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("select count(*), count(distinct event_id) from raw_events.events").fetchone() == (
            len(distinct),
            len(distinct),
        )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.integers(0, 30), max_size=20), min_size=1, max_size=6))
def test_any_sequence_of_batches_lands_each_id_once(tmp_path_factory, batches: list[list[int]]) -> None:
    home = tmp_path_factory.mktemp("intake")
    client = TestClient(
        create_app(
            IntakeConfig(home=home, warehouse_url="duckdb:////nonexistent/w.duckdb", intake_token=TOKEN)
        )
    )
    accepted = duplicates = 0
    for batch in batches:
        body = client.post("/events", json={"events": [_event(f"e{i}") for i in batch]}, headers=AUTH).json()
        accepted += body["accepted"]
        duplicates += body["duplicates"]
    sent = [i for batch in batches for i in batch]
    assert accepted == len(set(sent)) and accepted + duplicates == len(sent)
    assert _landed_ids(home) == Counter({f"e{i}": 1 for i in set(sent)})
