"""dbt: a full refresh, then incremental builds after 0.1 %, 1 % and 10 % new events.

The command is the one `leadflow transform` runs (orchestration/definitions.py, `dbt_models`): `dbt build`
(seeds, every model, data and unit tests) or `dbt build --full-refresh`, with the project's profile and
the warehouse's `Settings.warehouse.dbt_env()`. Two differences, both for reproducibility: `as_of` is
pinned to the workload's anchor (`--vars`), so decay and inactivity do not drift with the wall clock
between runs, and dbt writes its target and logs under the benchmark's work dir, not dbt_project/.
A `dbt parse` (untimed) first warms dbt's partial parsing for every build, as `leadflow` does.

New events land the way they do in production: new landing files next to the loaded ones, then the
`leadflow_events` pipeline (timed and reported, not part of the dbt figure), then `dbt build`. Each
incremental size starts from the same fully refreshed warehouse (a file copy for DuckDB, a
`CREATE DATABASE … TEMPLATE` for PostgreSQL), so 0.1 %, 1 % and 10 % are each measured against the base.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.workload import ANCHOR

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DBT = str(Path(sys.executable).parent / "dbt")


def dbt_environment(warehouse_url: str, work: Path) -> dict[str, str]:
    """The environment `leadflow` gives dbt (profiles.yml variables), with target/logs under `work`."""
    from orchestration.settings import parse_warehouse_url

    warehouse = parse_warehouse_url(warehouse_url, work)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADFLOW_", "DBT_"))}
    env.update(warehouse.dbt_env())
    env.update(
        DBT_TARGET_PATH=str(work / "target"),
        DBT_LOG_PATH=str(work / "logs"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DBT_USE_COLORS="false",
        DO_NOT_TRACK="1",
        PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    )
    return env


def dbt(args: list[str], warehouse_url: str, work: str) -> dict[str, Any]:
    """Run one dbt command (in a measured child); return node counts and the slowest nodes."""
    from orchestration.settings import parse_warehouse_url

    work_path = Path(work)
    target = parse_warehouse_url(warehouse_url, work_path).dbt_target
    command = [
        DBT,
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target",
        target,
    ]
    if args[0] in ("build", "parse"):
        # the parse too: dbt keeps its partial-parse cache only while vars stay the same, and a full parse
        # (~35 s of the project's) inside the timed full refresh would flatter the incremental ratio
        command += ["--vars", json.dumps({"as_of": ANCHOR.isoformat().replace("+00:00", "Z")})]
    result = subprocess.run(
        command, env=dbt_environment(warehouse_url, work_path), capture_output=True, text=True, cwd=REPO_ROOT
    )
    log = work_path / "logs" / f"dbt-{args[0]}.out"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(
            f"dbt {' '.join(args)} failed (exit {result.returncode}):\n{result.stdout[-4000:]}"
        )
    return summarize_run_results(work_path / "target" / "run_results.json")


def summarize_run_results(path: Path, top: int = 5) -> dict[str, Any]:
    """Counts per node type and the `top` slowest nodes with their seconds."""
    if not path.exists():
        return {}
    results = json.loads(path.read_text()).get("results", [])
    kinds: dict[str, int] = {}
    kind_seconds: dict[str, float] = {}
    timed = []
    for row in results:
        kind = row["unique_id"].split(".", 1)[0]
        seconds = float(row.get("execution_time") or 0.0)
        kinds[kind] = kinds.get(kind, 0) + 1
        kind_seconds[kind] = round(kind_seconds.get(kind, 0.0) + seconds, 2)
        timed.append((round(seconds, 2), row["unique_id"].split(".")[-1]))
    timed.sort(reverse=True)
    return {
        "nodes": kinds,
        "seconds_by_kind": kind_seconds,
        "node_seconds": round(sum(t for t, _ in timed), 2),
        "slowest": [{"node": n, "seconds": t} for t, n in timed[:top]],
    }


# ------------------------------------------------------------------------------------- orchestration


def run_dbt(ctx, kind: str) -> None:
    """dbt.<kind>.full_refresh, then per new-event share: dbt.<kind>.ingest_<pct>, dbt.<kind>.incremental_<pct>."""
    import shutil

    from bench.harness import step
    from bench.ingest_bench import ingest
    from bench.warehouses import create_database, drop_database, duckdb_url, link_tree, reset_dir
    from bench.workload import DELTA_PERCENTS, _pct_tag

    workload = ctx.workload
    raw_url, raw_home = ctx.raw[kind]
    work = reset_dir(ctx.work / f"dbt-{kind}")
    server = ctx.postgres_server_url
    if kind == "duckdb":
        base = work / "warehouse.duckdb"
        shutil.copyfile(raw_url.removeprefix("duckdb:///"), base)
        url = duckdb_url(base)
    else:
        url = create_database(server, "bench_dbt", template=raw_url)
    home = work / "home"
    shutil.copytree(raw_home / "dlt", home / "dlt")

    parse = dbt(["parse"], url, str(work))  # untimed: warms partial parsing for every build below
    ctx.details.setdefault("dbt_nodes", parse)
    events = workload.counts["events"]
    full, summary, _ = step(
        ctx, f"dbt.{kind}.full_refresh", dbt, ["build", "--full-refresh", *ctx.dbt_args], url, str(work),
        repeats=ctx.heavy_repeats, rows=events,
    )  # fmt: skip
    _describe(full, summary)

    # the fully refreshed state every incremental build starts from
    built_dlt = work / "built-dlt"
    shutil.copytree(home / "dlt", built_dlt)
    if kind == "duckdb":
        built = work / "built.duckdb"
        shutil.copyfile(base, built)
    else:
        built_url = create_database(server, "bench_built", template=url)
        drop_database(server, url)
    current = {"url": url}

    for percent in DELTA_PERCENTS:
        tag = _pct_tag(percent)

        def restore(_: int, tag=tag, percent=percent) -> tuple:
            if kind == "duckdb":
                shutil.copyfile(built, base)
            else:
                drop_database(server, current["url"])
                current["url"] = create_database(server, "bench_dbt", template=built_url)
            shutil.rmtree(home / "dlt")
            shutil.copytree(built_dlt, home / "dlt")
            landing = reset_dir(home / "landing")
            link_tree(workload.landing_dir, landing)
            link_tree(workload.delta_dir(percent), landing)
            return (current["url"], str(home), workload.crm_url, str(landing), ("events",))

        new = workload.counts[f"delta_{tag}"]
        ingests, builds = [], []
        for index in range(ctx.heavy_repeats):
            # one repeat = restore, land the new events (measured), build (measured)
            from bench.measure import measure

            ingests.append(measure(ingest, *restore(index)))
            builds.append(measure(dbt, ["build", *ctx.dbt_args], current["url"], str(work)))
        _record(ctx, f"dbt.{kind}.ingest_{tag}", ingests, new)
        measurement = _record(ctx, f"dbt.{kind}.incremental_{tag}", builds, new)
        _describe(measurement, builds[-1].value)
    if kind == "postgres":
        drop_database(server, current["url"])
        drop_database(server, built_url)


def _record(ctx, name: str, runs: list, rows: int):
    from bench.measure import Measurement

    return ctx.add(
        Measurement(
            step=name,
            runs=[r.seconds for r in runs],
            peak_rss_bytes=max(r.peak_rss_bytes for r in runs),
            rows=rows,
        )
    )


def _describe(measurement, summary: dict[str, Any]) -> None:
    if not summary:
        return
    slowest = ", ".join(f"{s['node']} {s['seconds']:.1f} s" for s in summary.get("slowest", []))
    by_kind = ", ".join(
        f"{summary['nodes'][kind]} {kind}s {seconds:.0f} s"
        for kind, seconds in summary.get("seconds_by_kind", {}).items()
    )
    measurement.notes.append(f"node time: {by_kind}; slowest nodes: {slowest}")
