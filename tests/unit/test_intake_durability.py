"""The warehouse can be down or locked while events arrive: everything lands, then loads exactly once."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dlt
import duckdb
import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from ingestion.events import landing_events_source
from ingestion.intake import IntakeConfig, create_app

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _dead_postgres_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/leadflow"  # nothing listens there


def _sign(private: ec.EllipticCurvePrivateKey, body: bytes) -> dict:
    ts = str(int(time.time()))
    signature = private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": ts,
        "Content-Type": "application/json",
    }


def load_landing(home: Path) -> duckdb.DuckDBPyConnection:
    """Load the landing zone with the real loader into a fresh DuckDB file; return a read-only connection."""
    db = home / f"loaded-{uuid.uuid4().hex[:6]}.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name=f"intake_{uuid.uuid4().hex[:8]}",
        destination=dlt.destinations.duckdb(str(db)),
        dataset_name="raw_events",
        pipelines_dir=str(home / "pipelines"),
    )
    pipeline.run(landing_events_source(str(home / "landing")))
    return duckdb.connect(str(db), read_only=True)


def _client(home: Path, warehouse_url: str, public_key: str | None = None) -> TestClient:
    config = IntakeConfig(
        home=home, warehouse_url=warehouse_url, sendgrid_public_key=public_key, intake_token=TOKEN
    )
    return TestClient(create_app(config))


def test_warehouse_down_1000_events_all_land_then_load_exactly_once(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    client = _client(tmp_path, _dead_postgres_url(), public)

    health = client.get("/health")
    assert health.status_code == 503 and not health.json()["warehouse"]["ok"]
    assert health.json()["landing"]["ok"]
    lead = client.get("/leads/abc", headers=AUTH)
    assert lead.status_code == 503 and "warehouse unavailable" in lead.json()["detail"]

    accepted = 0
    for batch in range(5):  # 500 SendGrid events, signed
        events = [
            {
                "email": f"p{batch}-{i}@example.com",
                "timestamp": 1764147600 + i,
                "event": "open",
                "sg_event_id": f"sg{batch}-{i}",
                "sg_message_id": f"msg{batch}-{i}",
            }
            for i in range(100)
        ]
        body = json.dumps(events).encode()
        response = client.post("/webhooks/sendgrid", content=body, headers=_sign(private, body))
        assert response.status_code == 200, response.text
        accepted += response.json()["accepted"]
    for batch in range(5):  # 500 product events
        events = [
            {
                "event_id": f"pe-{batch}-{i}",
                "event_type": "login",
                "occurred_at": "2026-11-20T09:15:00Z",
                "product_id": "atlas",
                "user_id": f"u{i}",
            }
            for i in range(100)
        ]
        response = client.post("/events", json={"events": events}, headers=AUTH)
        assert response.status_code == 200, response.text
        accepted += response.json()["accepted"]
    assert accepted == 1000

    # A later load (warehouse back) sees every event exactly once, nothing quarantined.
    with load_landing(tmp_path) as con:
        total, distinct = con.execute(
            "select count(*), count(distinct event_id) from raw_events.events"
        ).fetchone()
        assert (total, distinct) == (1000, 1000)
        assert con.execute("select count(*) from raw_events.quarantine").fetchone()[0] == 0
        by_stream = dict(con.execute("select stream, count(*) from raw_events.events group by 1").fetchall())
        assert by_stream == {"sendgrid": 500, "product_events": 500}


def test_locked_duckdb_does_not_block_intake(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    # Another process holds the write lock, like a running pipeline step.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys, time; c = duckdb.connect({str(warehouse)!r}); print('locked', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        client = _client(tmp_path, f"duckdb:///{warehouse}")
        started = time.monotonic()
        health = client.get("/health")
        assert time.monotonic() - started < 5  # health does not wait out the lock
        assert health.status_code == 200 and "busy" in health.json()["warehouse"]["detail"]
        events = [
            {"event_id": f"e{i}", "event_type": "login", "occurred_at": "2026-11-20T09:15:00", "user_id": "u"}
            for i in range(1000)
        ]
        response = client.post("/events", json={"events": events}, headers=AUTH)
        assert response.status_code == 200 and response.json()["accepted"] == 1000
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with load_landing(tmp_path) as con:
        assert con.execute("select count(distinct event_id), count(*) from raw_events.events").fetchone() == (
            1000,
            1000,
        )


def test_health_reports_last_run_and_landing(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    client = _client(tmp_path, f"duckdb:///{warehouse}")
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["last_run"]["finished_at"] is None
    (tmp_path / "last_run.json").write_text(
        json.dumps({"finished_at": "2026-11-26T03:00:00+00:00", "status": "success"})
    )
    last = client.get("/health").json()["last_run"]
    assert last["status"] == "success" and last["age_seconds"] >= 0
    (tmp_path / "last_run.json").write_text("{oops")
    assert "unreadable" in client.get("/health").json()["last_run"]["detail"]
    missing = _client(tmp_path / "other", f"duckdb:///{tmp_path / 'nope' / 'w.duckdb'}").get("/health")
    assert missing.status_code == 503


def test_landing_is_written_atomically(tmp_path: Path) -> None:
    client = _client(tmp_path, _dead_postgres_url())
    client.post(
        "/events",
        json={"events": [{"event_id": "a", "event_type": "login", "occurred_at": "2026-11-20T09:15:00Z"}]},
        headers=AUTH,
    )
    files = list((tmp_path / "landing").rglob("*"))
    assert not [f for f in files if f.name.endswith(".tmp")]
    [landing] = [f for f in files if f.suffix == ".jsonl"]
    assert orjson.loads(landing.read_bytes().splitlines()[0])["event_id"] == "a"


pytestmark = pytest.mark.timeout(300)
