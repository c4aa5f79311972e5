"""Ratios, machine facts and the results files: `bench/results/<size>.json` and `<size>.md`."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.measure import Measurement

MIB = 1024 * 1024
GIB = 1024 * MIB
REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "duckdb",
    "dbt-core",
    "dbt-duckdb",
    "dbt-postgres",
    "dlt",
    "dagster",
    "pyarrow",
    "psycopg2-binary",
)


# ------------------------------------------------------------------------------------------ ratios


def ratio(value: float | None, target: str, note: str = "") -> dict[str, Any]:
    """A ratio entry in the shape the activation and freshness benchmarks return too."""
    op, _, number = target.partition(" ")
    limit = float(number.split()[0])
    holds = None if value is None else (value <= limit if op == "<=" else value >= limit)
    return {
        "value": None if value is None else round(value, 3),
        "target": target,
        "holds": holds,
        "note": note,
    }


def _seconds(measurements: dict[str, Measurement], step: str) -> float | None:
    found = measurements.get(step)
    return found.seconds if found else None


def _stage_shares(measurements: dict[str, Measurement], prefix: str, total: float) -> str:
    stages = [
        (m.step.removeprefix(prefix + "."), m.seconds)
        for m in measurements.values()
        if m.step.startswith(prefix + ".") and not m.step.endswith(".total") and "whatif" not in m.step
    ]
    stages.sort(key=lambda item: -item[1])
    return ", ".join(f"{name} {sec:.1f} s ({sec / total:.0%})" for name, sec in stages[:4])


def _is_leadflow_step(step: str) -> bool:
    """leadflow's own work: not the benchmark's set-up, a floor, drt or a what-if variant."""
    if step.startswith(("workload.", "floor.")):
        return False
    return not any(part in step for part in ("whatif", "raw_floor", ".drt"))


def compute_ratios(measured: list[Measurement]) -> dict[str, dict[str, Any]]:
    """The issue's ratios that come from this harness (activation and freshness bring their own)."""
    by_step = {m.step: m for m in measured}
    ratios: dict[str, dict[str, Any]] = {}
    for kind, label, floor in (
        ("postgres", "PostgreSQL", "floor.postgres.copy"),
        ("duckdb", "DuckDB", "floor.duckdb.read_csv"),
    ):
        ingest, copy = _seconds(by_step, f"ingest.{kind}.total"), _seconds(by_step, floor)
        if ingest is not None and copy:
            note = (
                f"{ingest:.1f} s ÷ {copy:.1f} s; stages: {_stage_shares(by_step, f'ingest.{kind}', ingest)}"
            )
            ratios[f"dlt ingest ÷ COPY floor, {label}"] = ratio(ingest / copy, "<= 1.5", note)
    for kind, label in (("duckdb", "DuckDB"), ("postgres", "PostgreSQL")):
        full = _seconds(by_step, f"dbt.{kind}.full_refresh")
        incremental = _seconds(by_step, f"dbt.{kind}.incremental_1pct")
        if full and incremental is not None:
            note = f"{incremental:.1f} s ÷ {full:.1f} s (dbt build, as_of pinned)"
            ratios[f"incremental build after 1% new events ÷ full refresh, {label}"] = ratio(
                incremental / full, "<= 0.10", note
            )
    run = _seconds(by_step, "run.duckdb.leadflow_run")
    load, aggregate = _seconds(by_step, "floor.duckdb.read_csv"), _seconds(by_step, "floor.duckdb.aggregate")
    if run is not None and load and aggregate:
        note = f"{run:.1f} s ÷ ({load:.1f} s + {aggregate:.1f} s)"
        ratios["whole leadflow run ÷ (load floor + aggregate floor), DuckDB"] = ratio(
            run / (load + aggregate), "<= 3", note
        )
    # leadflow's own steps: not the benchmark's set-up, the floors or the what-if variants
    pipeline_steps = [
        m for m in measured if not m.step.startswith(("workload.", "floor.")) and "whatif" not in m.step
    ]
    if pipeline_steps:
        worst = max(pipeline_steps, key=lambda m: m.peak_rss_bytes)
        over = [m.step for m in pipeline_steps if m.peak_rss_bytes > GIB]
        note = f"largest: {worst.step} {worst.peak_rss_bytes / MIB:.0f} MiB"
        if over:
            note += f"; over 1 GiB: {', '.join(over)}"
        ratios["peak RSS of any step, GiB"] = ratio(worst.peak_rss_bytes / GIB, "<= 1", note)
    return ratios


# ------------------------------------------------------------------------------------------ machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_facts(postgres: dict[str, str] | None = None) -> dict[str, Any]:
    import psutil

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gib": round(psutil.virtual_memory().total / GIB, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": versions,
        "postgresql": postgres or {},
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(dirty and dirty != "unknown"),
        "load_average_1m_5m_15m": [round(x, 2) for x in os.getloadavg()],
    }


# ------------------------------------------------------------------------------------------ files


def _row(m: Measurement) -> dict[str, Any]:
    data = m.as_dict()
    data["peak_rss_mib"] = round(m.peak_rss_bytes / MIB, 1)
    data["rows_per_second"] = round(m.rows / m.seconds, 1) if m.rows and m.seconds else None
    return data


def write_results(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write <size>.json and <size>.md (each through a .tmp file, then renamed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    size = result["size"]
    measurements: list[Measurement] = result.pop("measurement_objects")
    result["measurements"] = [_row(m) for m in measurements]
    json_path, md_path = out_dir / f"{size}.json", out_dir / f"{size}.md"
    for path, text in ((json_path, json.dumps(result, indent=2) + "\n"), (md_path, render_markdown(result))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return json_path, md_path


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def render_markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    workload = result["workload"]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    pg = machine.get("postgresql") or {}
    pg_text = (
        f"PostgreSQL {pg.get('version')} (fsync={pg.get('fsync')}, synchronous_commit={pg.get('synchronous_commit')}, "
        f"shared_buffers={pg.get('shared_buffers')})"
        if pg
        else "PostgreSQL not used"
    )
    lines = [
        f"# leadflow benchmark — size {result['size']}",
        "",
        f"{workload['leads']:,} leads, {workload['events']:,} events (seed {result['seed']}, "
        f"{workload['counts'].get('landing_files')} landing files, anchor {workload['anchor']}). "
        f"Started {result['started_at']}, wall time {result['wall_seconds'] / 60:.1f} min.",
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpu']}, {machine['logical_cores']} logical cores, {machine['ram_gib']} GiB RAM",
        f"- OS: {machine['os']}; Python {machine['python']}",
        f"- {packages}",
        f"- {pg_text}",
        f"- git {machine['git_commit'][:12]}{' (working tree modified)' if machine['git_dirty'] else ''}",
        f"- load average at start {result.get('load_average_start')}, at end {machine['load_average_1m_5m_15m']} "
        "(other jobs share the machine: compare ratios within this run, not seconds across runs)",
        f"- repeats: cheap steps {result['settings']['repeats']}, heavy steps {result['settings']['heavy_repeats']}",
        "",
        "## Steps",
        "",
        "| step | n | median s | rows | rows/s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in result["measurements"]:
        rows = f"{m['rows']:,}" if m.get("rows") is not None else "—"
        lines.append(
            f"| {m['step']} | {len(m['runs'])} | {_fmt(m['seconds'])} | {rows} | "
            f"{_fmt(m['rows_per_second'], 0)} | {m['peak_rss_mib']:.0f} |"
        )
    lines += ["", "## Ratios", "", "| ratio | value | target | holds |", "|---|---:|---|---|"]
    for name, entry in result["ratios"].items():
        holds = {True: "yes", False: "**no**", None: "—"}[entry.get("holds")]
        lines.append(f"| {name} | {_fmt(entry.get('value'), 3)} | {entry['target']} | {holds} |")
    ratio_notes = [f"- {name}: {e['note']}" for name, e in result["ratios"].items() if e.get("note")]
    step_notes = [f"- {m['step']}: {note}" for m in result["measurements"] for note in m.get("notes", [])]
    if ratio_notes or step_notes or result.get("notes"):
        lines += ["", "## Notes", ""] + ratio_notes + step_notes + [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(lines) + "\n"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
