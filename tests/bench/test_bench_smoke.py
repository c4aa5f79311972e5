"""`python -m bench` at the smoke size, as CI's check that the harness works (no timing assertions).

A reduced S: the XS workload (1k leads, 20k events: a tenth of S), one run of each step, against the
suite's PostgreSQL server. Floors and dlt ingest run on DuckDB and PostgreSQL; the dbt steps (full
refresh, then new events landed and an incremental build at 0.1 %, 1 %, 10 %) run on DuckDB with a
reduced selection (`+fct_engagement_events`, models and seeds only): a whole `dbt build` is ~540 nodes,
about 1.5 minutes each even at XS, and the step runs four of them. `leadflow run` (one more whole build)
is left to tests/e2e/test_pipeline.py and `make bench-s`; the activation and freshness benchmarks are not
run here. The JSON must hold every step and ratio of this configuration, with numeric values.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.postgres

PERCENTS = ("0p1pct", "1pct", "10pct")
STAGES = [f"{p}.{s}" for p in ("crm", "events") for s in ("extract", "normalize", "load")]
EXPECTED_STEPS = [
    "floor.duckdb.read_csv",
    "floor.duckdb.read_parquet",
    "floor.duckdb.aggregate",
    "floor.postgres.copy",
    "floor.postgres.aggregate",
    *(f"ingest.{kind}.{stage}" for kind in ("duckdb", "postgres") for stage in ("setup", *STAGES, "total")),
    "dbt.duckdb.full_refresh",
    *(f"dbt.duckdb.{what}_{p}" for p in PERCENTS for what in ("ingest", "incremental")),
]
EXPECTED_RATIOS = [
    "dlt ingest ÷ COPY floor, PostgreSQL",
    "dlt ingest ÷ COPY floor, DuckDB",
    "incremental build after 1% new events ÷ full refresh, DuckDB",
    "peak RSS of any step, GiB",
]


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_bench_writes_every_step_and_ratio(tmp_path: Path, postgres_server_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADFLOW_", "DBT_", "DAGSTER_"))}
    env["LEADFLOW_BENCH_POSTGRES_URL"] = postgres_server_url
    out = tmp_path / "results"
    command = [
        sys.executable,
        "-m",
        "bench",
        "--size",
        "XS",
        "--repeats",
        "1",
        "--heavy-repeats",
        "1",
        "--only",
        "floors,ingest,dbt",
        "--warehouses",
        "duckdb,postgres",
        "--dbt-warehouses",
        "duckdb",
        "--dbt-args",
        "--select +fct_engagement_events --exclude-resource-type test unit_test",
        "--work-dir",
        str(tmp_path / "work"),
        "--out",
        str(out),
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"

    data = json.loads((out / "XS.json").read_text())
    assert data["failures"] == []
    steps = {m["step"]: m for m in data["measurements"]}
    missing = [name for name in EXPECTED_STEPS if name not in steps]
    assert not missing, f"steps missing from XS.json: {missing}"
    for name in EXPECTED_STEPS:
        measurement = steps[name]
        assert len(measurement["runs"]) == 1, name
        assert _number(measurement["seconds"]) and measurement["seconds"] > 0, name
        assert _number(measurement["peak_rss_mib"]) and measurement["peak_rss_mib"] > 0, name
    assert steps["ingest.duckdb.total"]["rows"] == steps["ingest.postgres.total"]["rows"] > 0
    for name in EXPECTED_RATIOS:
        assert name in data["ratios"], f"ratio missing from XS.json: {name}"
        entry = data["ratios"][name]
        assert _number(entry["value"]) and entry["value"] > 0, (name, entry)
        assert isinstance(entry["holds"], bool), (name, entry)
    facts = data["machine"]
    assert facts["logical_cores"] and facts["postgresql"]["version"] and facts["packages"]["dlt"]
    markdown = (out / "XS.md").read_text()
    assert "| step | n | median s | rows | rows/s | peak RSS MiB |" in markdown
    assert all(name in markdown for name in EXPECTED_RATIOS)
