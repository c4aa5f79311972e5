"""The whole `leadflow run` on DuckDB, as a user runs it, on the workload.

`leadflow run` in a subprocess (the console script next to this interpreter) with a fresh `LEADFLOW_HOME`,
`LEADFLOW_CRM=sql` and `CRM_DATABASE_URL` pointing at the workload's SQL CRM, the workload's landing files in
`$LEADFLOW_HOME/landing/product_events/`, no n8n (batches go to the file outbox). Everything `leadflow run`
does is in the figure: dbt parse and seed validation, the Dagster run (dlt CRM and landing ingest, `dbt
build`, one delivery asset per workflow, the report and mart exports) and the summary. `as_of` is the
wall clock here, as in production.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
LEADFLOW = str(Path(sys.executable).parent / "leadflow")


def leadflow_environment(home: Path, warehouse_url: str, crm_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEADFLOW_", "N8N_", "HUBSPOT_", "DAGSTER_", "DBT_", "CRM_DATABASE_URL"))
    }
    env.update(
        LEADFLOW_HOME=str(home),
        LEADFLOW_WAREHOUSE_URL=warehouse_url,
        LEADFLOW_CRM="sql",
        CRM_DATABASE_URL=crm_url,
    )
    return env


def leadflow_run(home: str, warehouse_url: str, crm_url: str) -> dict[str, Any]:
    """Run `leadflow run` (in a measured child); return the summary's figures."""
    home_path = Path(home)
    result = subprocess.run(
        [LEADFLOW, "run"],
        env=leadflow_environment(home_path, warehouse_url, crm_url),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    (home_path / "leadflow-run.log").write_text(result.stdout + "\n--- stderr\n" + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(
            f"leadflow run failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return summary_figures(result.stdout)


def summary_figures(stdout: str) -> dict[str, str]:
    if "leadflow summary" not in stdout:
        return {}
    lines = stdout.split("leadflow summary", 1)[1].splitlines()
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines if ":" in line)}


def step_seconds(home: Path) -> dict[str, float]:
    """Seconds per Dagster step (STEP_START → STEP_SUCCESS/FAILURE) from the run's event log in DAGSTER_HOME.

    The console logger prints no step timings, but the local instance keeps every event in one SQLite
    file per run (`history/runs/<run id>.db`). `(dagster run)` is the whole run; the rest of `leadflow run`'s
    wall time is imports, `dbt parse`, seed validation and the summary.
    """
    import sqlite3
    from datetime import datetime

    found: dict[str, float] = {}
    for db in sorted((home / "dagster" / "history" / "runs").glob("*.db")):
        if db.name == "index.db":
            continue
        connection = sqlite3.connect(db)
        try:
            rows = connection.execute(
                "select dagster_event_type, step_key, timestamp from event_logs where dagster_event_type in "
                "('STEP_START', 'STEP_SUCCESS', 'STEP_FAILURE', 'PIPELINE_START', 'PIPELINE_SUCCESS', 'PIPELINE_FAILURE') "
                "order by id"
            ).fetchall()
        finally:
            connection.close()
        started: dict[str, datetime] = {}
        for kind, key, stamp in rows:
            moment = datetime.fromisoformat(stamp)
            name = key or "(dagster run)"
            if kind in ("STEP_START", "PIPELINE_START"):  # Dagster stores run events under the old name
                started[name] = moment
            elif name in started:
                found[name] = round((moment - started[name]).total_seconds(), 2)
    return found


# ------------------------------------------------------------------------------------- orchestration


def run_leadflow(ctx) -> None:
    """run.duckdb.leadflow_run: the whole pipeline on a fresh home and warehouse per repeat."""
    from bench.harness import step
    from bench.warehouses import duckdb_url, link_tree, reset_dir

    workload = ctx.workload
    work = ctx.work / "leadflow-run"

    def fresh(_: int) -> tuple:
        home = reset_dir(work / "home")
        link_tree(workload.landing_dir, home / "landing")
        return (str(home), duckdb_url(home / "warehouse.duckdb"), workload.crm_url)

    measurement, figures, _ = step(
        ctx,
        "run.duckdb.leadflow_run",
        leadflow_run,
        repeats=ctx.heavy_repeats,
        rows=workload.raw_rows,
        prepare=fresh,
    )
    ctx.built_home = work / "home"
    steps = step_seconds(work / "home")
    if steps:
        slowest = sorted(steps.items(), key=lambda item: -item[1])[:6]
        measurement.notes.append(
            "Dagster steps: " + ", ".join(f"{name} {sec:.1f} s" for name, sec in slowest)
        )
    if figures:
        keep = ("leads", "events", "send list (send_list_messages)", "this run")
        measurement.notes.append("; ".join(f"{k}: {v}" for k, v in figures.items() if k in keep))
    ctx.details["leadflow_run_summary"] = figures
