"""Wall time and peak memory of one benchmark step.

A step runs in a forked child process so its memory is its own: the parent samples the resident set of
the child's whole process tree (dbt, dlt workers, servers it starts) every 20 ms with psutil and keeps
the peak. The child sends its return value back through a pipe; an exception in the child is re-raised
in the parent with the child's traceback text.

A step made of stages that must share one process (a dlt pipeline's extract, normalize and load) calls
`lap(name)` in the child at the end of each stage: the parent then records that stage's seconds and
peak tree RSS since the previous lap (`Measured.laps`), on the same 20 ms samples.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

SAMPLE_SECONDS = 0.02


@dataclass
class Lap:
    """One stage of a measured step: from the previous lap (or the fork) to the child's `lap(name)`."""

    name: str
    seconds: float
    peak_rss_bytes: int


@dataclass
class Measured:
    """One run of one step."""

    seconds: float
    peak_rss_bytes: int
    value: Any = None
    laps: list[Lap] = field(default_factory=list)


@dataclass
class Measurement:
    """A step measured `len(runs)` times: the median is what tables and ratios use."""

    step: str
    runs: list[float]
    peak_rss_bytes: int
    rows: int | None = None
    bytes: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": self.seconds}


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


_lap_connection = None


def lap(name: str) -> None:
    """In a measured step: end the stage `name` here (no-op outside `measure`)."""
    if _lap_connection is not None:
        _lap_connection.send(("lap", name))


def _child(connection, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    global _lap_connection
    _lap_connection = connection
    try:
        connection.send(("ok", fn(*args, **kwargs)))
    except BaseException as error:  # noqa: BLE001 - everything goes back to the parent
        connection.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
    finally:
        connection.close()


def measure(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Measured:
    """Run fn(*args, **kwargs) in a forked child; return its wall time, peak tree RSS and return value.

    The return value must be picklable. Time is measured from the fork to the child's answer, so it
    includes nothing the parent does before or after.
    """
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    started = time.perf_counter()
    child = context.Process(target=_child, args=(send, fn, args, kwargs), daemon=False)
    child.start()
    send.close()
    watched = psutil.Process(child.pid)
    peak = 0
    answer = None
    laps: list[Lap] = []
    lap_started, lap_peak = started, 0
    while answer is None:
        rss = _tree_rss(watched)
        peak, lap_peak = max(peak, rss), max(lap_peak, rss)
        if receive.poll(SAMPLE_SECONDS):
            try:
                message = receive.recv()
            except EOFError:
                message = ("error", f"step process exited with code {child.exitcode} without an answer")
            if message[0] == "lap":
                now, rss = time.perf_counter(), _tree_rss(watched)
                laps.append(Lap(message[1], now - lap_started, max(lap_peak, rss)))
                peak, lap_started, lap_peak = max(peak, rss), now, rss
                continue
            answer = message
        elif not child.is_alive() and not receive.poll(0):
            child.join()
            answer = ("error", f"step process exited with code {child.exitcode} without an answer")
    seconds = time.perf_counter() - started
    child.join()
    status, value = answer
    if status == "error":
        raise RuntimeError(f"benchmark step failed in its process:\n{value}")
    return Measured(seconds=seconds, peak_rss_bytes=peak, value=value, laps=laps)


def repeat(
    step: str, fn: Callable[..., Any], *args: Any, repeats: int = 3, **kwargs: Any
) -> tuple[Measurement, Any]:
    """Measure fn `repeats` times; return the Measurement (median seconds, max peak RSS) and the last value."""
    runs, peak, value = [], 0, None
    for _ in range(repeats):
        measured = measure(fn, *args, **kwargs)
        runs.append(measured.seconds)
        peak = max(peak, measured.peak_rss_bytes)
        value = measured.value
    return Measurement(step=step, runs=runs, peak_rss_bytes=peak), value
