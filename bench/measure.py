"""Wall time and peak memory of one benchmark step.

A step runs in a forked child process so its memory is its own: the parent samples the resident set of
the child's whole process tree (dbt, dlt workers, servers it starts) every 20 ms with psutil and keeps
the peak. The child sends its return value back through a pipe; an exception in the child is re-raised
in the parent with the child's traceback text.
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
class Measured:
    """One run of one step."""

    seconds: float
    peak_rss_bytes: int
    value: Any = None


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


def _child(connection, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
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
    while answer is None:
        peak = max(peak, _tree_rss(watched))
        if receive.poll(SAMPLE_SECONDS):
            try:
                answer = receive.recv()
            except EOFError:
                answer = ("error", f"step process exited with code {child.exitcode} without an answer")
        elif not child.is_alive() and not receive.poll(0):
            child.join()
            answer = ("error", f"step process exited with code {child.exitcode} without an answer")
    seconds = time.perf_counter() - started
    child.join()
    status, value = answer
    if status == "error":
        raise RuntimeError(f"benchmark step failed in its process:\n{value}")
    return Measured(seconds=seconds, peak_rss_bytes=peak, value=value)


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
