"""`python -m bench --size XS|S|M|L [--repeats N] [--only group,...] [--out bench/results]` (see bench/README.md)."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import signal
import sys
import time
import traceback
from contextlib import ExitStack
from dataclasses import fields
from pathlib import Path
from typing import Any

from bench.measure import Measurement
from bench.workload import DEFAULT_SEED, SIZES

GROUPS = ("floors", "ingest", "dbt", "run", "activation", "freshness")
#: groups run only when named in --only
OPTIONAL_GROUPS = ("whatif",)
REPO_ROOT = Path(__file__).resolve().parent.parent
#: heavy steps (dlt ingest, dbt builds, leadflow run) per size: M must fit 30 minutes on 2 cores
HEAVY_REPEATS = {"XS": 1, "S": 1, "M": 1, "L": 1}
DEFAULT_WAREHOUSES = {"XS": "duckdb,postgres", "S": "duckdb,postgres", "M": "duckdb,postgres", "L": "duckdb"}
#: dbt on PostgreSQL costs minutes per build at M; measured at S (and XS) unless asked for
DEFAULT_DBT_WAREHOUSES = {"XS": "duckdb,postgres", "S": "duckdb,postgres", "M": "duckdb", "L": "duckdb"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--size", choices=list(SIZES), default="S", help="workload size (default S)")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"workload seed (default {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each cheap step: floors, activation, freshness (default 3)",
    )
    parser.add_argument(
        "--heavy-repeats",
        type=int,
        default=None,
        help="runs of each heavy step: ingest, dbt builds, leadflow run (default 1)",
    )
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma-separated step groups (default all: {','.join(GROUPS)}; also {','.join(OPTIONAL_GROUPS)})",
    )
    parser.add_argument("--warehouses", default=None, help="floors and ingest: duckdb,postgres (L: duckdb)")
    parser.add_argument(
        "--dbt-warehouses", default=None, help="dbt builds (default XS, S: duckdb,postgres; M, L: duckdb)"
    )
    parser.add_argument(
        "--dbt-args",
        default="",
        help="extra arguments for every timed dbt build, e.g. a --select for the smoke test "
        "(changes what is built: such figures are not comparable)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results", help="results folder")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(os.environ.get("LEADFLOW_BENCH_DIR") or Path.home() / ".cache" / "leadflow" / "bench"),
        help="cached workloads and scratch warehouses (default $LEADFLOW_BENCH_DIR or ~/.cache/leadflow/bench)",
    )
    args = parser.parse_args(argv)
    args.only = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = set(args.only) - set(GROUPS) - set(OPTIONAL_GROUPS)
    if unknown:
        parser.error(
            f"unknown step groups {sorted(unknown)}; choose from {', '.join(GROUPS + OPTIONAL_GROUPS)}"
        )
    args.heavy_repeats = args.heavy_repeats or HEAVY_REPEATS[args.size]
    args.warehouses = tuple((args.warehouses or DEFAULT_WAREHOUSES[args.size]).split(","))
    args.dbt_warehouses = tuple((args.dbt_warehouses or DEFAULT_DBT_WAREHOUSES[args.size]).split(","))
    return args


def _quiet_environment() -> None:
    """No usage pings from dlt or dbt (the machine reaches package registries only)."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


def _workload(args: argparse.Namespace, measurements: list[Measurement]):
    from bench.measure import measure
    from bench.workload import ensure_workload, load_workload

    cached = load_workload(args.size, args.seed, args.work_dir)
    if cached is not None:
        print(f"workload {args.size} (seed {args.seed}) from cache: {cached.root}", flush=True)
        return cached, True
    print(f"generating workload {args.size} (seed {args.seed}) …", flush=True)
    measured = measure(ensure_workload, args.size, args.seed, args.work_dir)
    workload = measured.value
    measurements.append(
        Measurement(
            step="workload.generate",
            runs=[measured.seconds],
            peak_rss_bytes=measured.peak_rss_bytes,
            rows=workload.counts["landing_lines"] + workload.raw_rows - workload.counts["events"],
            notes=["benchmark set-up (not a pipeline step): CRM database, landing files, floor files"],
        )
    )
    return workload, False


def _as_measurement(data: dict[str, Any]) -> Measurement:
    names = {f.name for f in fields(Measurement)}
    return Measurement(**{k: v for k, v in data.items() if k in names})


def _external(ctx, module: str, function: str) -> dict[str, Any] | None:
    """Run a colleague's benchmark (bench.activation_bench / bench.freshness_bench) if it is importable."""
    try:
        runner = getattr(importlib.import_module(f"bench.{module}"), function)
    except (ImportError, AttributeError) as error:
        ctx.notes.append(
            f"bench.{module}.{function} not available ({error}); its ratios are not in this table"
        )
        return None
    # the work dir root, so they find the cached workload (bench.workload.ensure_workload) and make their folders
    if module == "freshness_bench" and ctx.built_home is not None:
        return runner(ctx.size, ctx.work_root, ctx.repeats, built_home=ctx.built_home)
    return runner(ctx.size, ctx.work_root, ctx.repeats)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _quiet_environment()
    # a plain SIGTERM (timeout, CI cancel) would skip the `finally` that stops the PostgreSQL server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from bench.harness import Context, banner
    from bench.report import compute_ratios, machine_facts, now, write_results

    started_at, started = now(), time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    measurements: list[Measurement] = []
    workload, cached = _workload(args, measurements)
    ctx = Context(
        size=args.size,
        seed=args.seed,
        workload=workload,
        work=args.work_dir / "runs" / args.size,
        work_root=args.work_dir,
        repeats=args.repeats,
        heavy_repeats=args.heavy_repeats,
        warehouses=args.warehouses,
        dbt_warehouses=args.dbt_warehouses,
        dbt_args=tuple(shlex.split(args.dbt_args)),
        measurements=measurements,
    )
    if ctx.dbt_args:
        ctx.notes.append(f"dbt builds ran with extra arguments {args.dbt_args!r}: not the whole project")
    if cached:
        ctx.notes.append(f"workload read from the cache ({workload.root}); generation not timed in this run")
    ctx.work.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    external_ratios: dict[str, dict[str, Any]] = {}
    postgres_facts: dict[str, str] = {}
    needs_postgres = any(g in args.only for g in ("floors", "ingest")) and "postgres" in args.warehouses
    needs_postgres |= "dbt" in args.only and "postgres" in args.dbt_warehouses

    def write(complete: bool = False) -> tuple[dict[str, Any], tuple[Path, Path]]:
        """The results so far, written after every group: a stopped run keeps what it measured."""
        ratios = compute_ratios(ctx.measurements)
        ratios.update(external_ratios)
        partial = [] if complete else ["partial results: the run was still going (or was stopped) here"]
        result = {
            "size": args.size,
            "seed": args.seed,
            "started_at": started_at,
            "finished_at": now(),
            "complete": complete,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "load_average_start": load_start,
            "settings": {
                "repeats": args.repeats,
                "heavy_repeats": args.heavy_repeats,
                "groups": args.only,
                "warehouses": list(args.warehouses),
                "dbt_warehouses": list(args.dbt_warehouses),
                "dbt_args": args.dbt_args,
                "work_dir": str(args.work_dir),
            },
            "workload": workload.as_dict() | {"anchor": _anchor()},
            "machine": machine_facts(postgres_facts),
            "ratios": ratios,
            "notes": ctx.notes + [f"FAILED {f}" for f in failures] + partial,
            "failures": failures,
            "details": ctx.details,
            "measurement_objects": list(ctx.measurements),
        }
        return result, write_results(result, args.out)

    def run_group(name: str, fn, *fn_args) -> None:
        begun = banner(name)
        try:
            fn(*fn_args)
        except Exception as error:  # noqa: BLE001 - one failed group must not lose the others' figures
            # the note keeps the first lines; the whole error is on stderr and in the step's logs
            failures.append(
                f"{name}: {type(error).__name__}: {' | '.join(str(error).splitlines()[:3])[:600]}"
            )
            traceback.print_exc()
        print(f"   ({name}: {time.perf_counter() - begun:.0f} s)", flush=True)
        write()

    with ExitStack() as stack:
        if needs_postgres:
            from bench.warehouses import postgres_facts as facts_of
            from bench.warehouses import postgres_server

            ctx.postgres_server_url = stack.enter_context(postgres_server())
            postgres_facts = facts_of(ctx.postgres_server_url)
        from bench.dbt_bench import run_dbt
        from bench.floors import run_floors
        from bench.ingest_bench import run_ingest, run_whatif
        from bench.run_bench import run_leadflow

        if "floors" in args.only:
            run_group("floors", run_floors, ctx)
        if "ingest" in args.only:
            run_group("dlt ingest", run_ingest, ctx)
        if "whatif" in args.only and "duckdb" in args.warehouses:
            run_group("what-if: CRM pipeline with parquet loader files (DuckDB)", run_whatif, ctx)
        if "dbt" in args.only:
            for kind in args.dbt_warehouses:
                if kind not in ctx.raw:
                    # dbt needs raw tables: ingest once, unrecorded
                    saved = ctx.warehouses
                    ctx.warehouses = (kind,)
                    run_group(f"raw tables for dbt ({kind}, not recorded)", run_ingest, ctx, False)
                    ctx.warehouses = saved
                if kind in ctx.raw:
                    run_group(f"dbt ({kind})", run_dbt, ctx, kind)
        if "run" in args.only:
            run_group("leadflow run (DuckDB)", run_leadflow, ctx)
        for group, module, function in (
            ("activation", "activation_bench", "run_activation"),
            ("freshness", "freshness_bench", "run_freshness"),
        ):
            if group not in args.only:
                continue
            holder: dict[str, Any] = {}
            run_group(group, lambda m=module, f=function, h=holder: h.update(out=_external(ctx, m, f)))
            out = holder.get("out")
            if out:
                for data in out.get("measurements", []):
                    ctx.add(_as_measurement(data))
                external_ratios.update(out.get("ratios", {}))
                ctx.notes.extend(out.get("notes", []))
                write()

    result, (json_path, md_path) = write(complete=True)
    print(f"\nwrote {json_path} and {md_path} ({result['wall_seconds'] / 60:.1f} min)")
    print(md_path.read_text())
    return 1 if failures else 0


def _anchor() -> str:
    from bench.workload import ANCHOR

    return ANCHOR.isoformat()


if __name__ == "__main__":
    sys.exit(main())
