"""What every benchmark step shares: the run's context and a measured, repeated step.

Every step runs through `bench.measure.measure` (a forked child, wall time, peak RSS of its process tree).
The parent stays lean on purpose: a forked child's RSS counts the parent's resident pages, so the parent
imports neither dlt nor DuckDB and holds no workload data.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import Measured, Measurement, measure
from bench.workload import Workload

MIB = 1024 * 1024


@dataclass
class Context:
    """One benchmark run: what to measure, where, and what was measured so far."""

    size: str
    seed: int
    workload: Workload
    work: Path
    work_root: Path
    repeats: int
    heavy_repeats: int
    warehouses: tuple[str, ...]
    dbt_warehouses: tuple[str, ...]
    dbt_args: tuple[str, ...] = ()
    postgres_server_url: str | None = None
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: per warehouse: (warehouse URL, LEADFLOW_HOME-like dir with the dlt pipelines) right after ingest
    raw: dict[str, tuple[str, Path]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    #: the LEADFLOW_HOME the run group's `leadflow run` built (the freshness group starts from it)
    built_home: Path | None = None

    def measurement(self, step: str) -> Measurement | None:
        return next((m for m in self.measurements if m.step == step), None)

    def add(self, measurement: Measurement) -> Measurement:
        self.measurements = [m for m in self.measurements if m.step != measurement.step] + [measurement]
        runs = ", ".join(f"{r:.2f}" for r in measurement.runs)
        rows = f", {measurement.rows} rows" if measurement.rows is not None else ""
        print(
            f"  {measurement.step}: median {measurement.seconds:.2f} s over n={len(measurement.runs)} "
            f"[{runs}]{rows}, peak {measurement.peak_rss_bytes / MIB:.0f} MiB",
            flush=True,
        )
        return measurement


def step(
    ctx: Context,
    name: str,
    fn: Callable[..., Any],
    *args: Any,
    repeats: int = 1,
    rows: int | None = None,
    prepare: Callable[[int], tuple] | None = None,
    **kwargs: Any,
) -> tuple[Measurement, Any, list[Measured]]:
    """Measure fn `repeats` times (prepare(i), untimed, gives run i's args); record and return the median."""
    runs: list[Measured] = []
    for index in range(repeats):
        call_args = prepare(index) if prepare is not None else args
        runs.append(measure(fn, *call_args, **kwargs))
    measurement = Measurement(
        step=name,
        runs=[r.seconds for r in runs],
        peak_rss_bytes=max(r.peak_rss_bytes for r in runs),
        rows=rows,
    )
    ctx.add(measurement)
    return measurement, runs[-1].value, runs


def laps_to_measurements(prefix: str, runs: list[Measured], rows: dict[str, int | None]) -> list[Measurement]:
    """One Measurement per lap name across runs (median seconds, max peak); rows by lap-name prefix."""
    names = [lap.name for lap in runs[0].laps]
    out = []
    for name in names:
        laps = [next(lap for lap in r.laps if lap.name == name) for r in runs]
        out.append(
            Measurement(
                step=f"{prefix}.{name}",
                runs=[lap.seconds for lap in laps],
                peak_rss_bytes=max(lap.peak_rss_bytes for lap in laps),
                rows=rows.get(name.split(".", 1)[0]),
            )
        )
    return out


def banner(text: str) -> float:
    print(f"\n== {text}", file=sys.stdout, flush=True)
    return time.perf_counter()
