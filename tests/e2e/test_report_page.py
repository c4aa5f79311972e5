"""The analytics report renders in a real browser: headless Chromium, offline, every chart there, no console errors.

The report is built from a real DuckDB warehouse (tests/support/analytics_fixtures.py, one dbt build of the
analytics marts), opened from disk with networking effectively off, and checked two ways:
- `--dump-dom`: the DOM after load has one <figure id="chart-…"> per chart, each with a drawn inline <svg>;
- `--enable-logging=stderr --v=0`: Chromium prints every console message as a `CONSOLE` log line; none may be
  an error. A control page with a script error and a broken image proves the detector sees errors.
Chromium comes from Debian (`apt-get install -y chromium`); the test installs it when it is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from orchestration import reporting
from tests.support.analytics_fixtures import build_analytics, create_analytics_raw_tables, warehouse_url

pytestmark = pytest.mark.e2e

# Chromium logs every console message as `[pid:tid:time:INFO:CONSOLE:line] "message", source: …` (the level
# is not in the line). The report has no scripts, so ANY console message is a failure.
_CONSOLE_MESSAGE = re.compile(r":CONSOLE[:(\]]")


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail(
            "chromium is missing and cannot be installed here: run `apt-get install -y chromium` as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium but it is not on PATH"
    return found


def _open(page: Path) -> tuple[str, str]:
    """Load a local page headless; return (DOM after load, Chromium's log)."""
    with tempfile.TemporaryDirectory(prefix="leadflow-chromium-") as profile:
        command = [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.resolve().as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, result.stderr


class _Charts(HTMLParser):
    """Per <figure id="chart-…">: how many SVG shapes and text elements it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, dict[str, int]] = {}
        self._current: str | None = None
        self._depth = 0
        self._in_text = False
        self.texts: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "figure" and (attributes.get("id") or "").startswith("chart-"):
            self._current = attributes["id"].removeprefix("chart-")
            self._depth = 0
            self.charts[self._current] = {"svg": 0, "shapes": 0, "text": 0}
            self.texts[self._current] = []
        elif self._current:
            if tag == "figure":
                self._depth += 1
            counts = self.charts[self._current]
            if tag == "svg":
                counts["svg"] += 1
            elif tag in ("path", "rect", "line", "polyline", "use"):
                counts["shapes"] += 1
            elif tag == "text":
                counts["text"] += 1
                self._in_text = True

    def handle_endtag(self, tag):
        if tag == "text":
            self._in_text = False
        if tag == "figure" and self._current:
            if self._depth == 0:
                self._current = None
            else:
                self._depth -= 1

    def handle_data(self, data):
        if self._current and self._in_text and data.strip():
            self.texts[self._current].append(data.strip())


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("report-page")
    location = str(work / "warehouse.duckdb")
    create_analytics_raw_tables("duckdb", location)
    build_analytics("duckdb", location, work, test=False)
    return reporting.build_report(warehouse_url("duckdb", location), work / "report.html").path


def test_console_error_detector_sees_errors(tmp_path: Path):
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    _, log = _open(page)
    messages = [line for line in log.splitlines() if _CONSOLE_MESSAGE.search(line)]
    assert any('"boom"' in line for line in messages), log[-3000:]
    assert any("Uncaught ReferenceError" in line for line in messages), log[-3000:]


def test_report_renders_every_chart_without_console_errors(report: Path):
    dom, log = _open(report)
    errors = [line for line in log.splitlines() if _CONSOLE_MESSAGE.search(line)]
    assert not errors, "\n".join(errors)
    parser = _Charts()
    parser.feed(dom)
    assert set(parser.charts) == set(reporting.CHART_IDS), parser.charts
    for chart, counts in parser.charts.items():
        assert counts["svg"] >= 1 and counts["shapes"] > 5 and counts["text"] > 3, (chart, counts)
    text = {chart: " ".join(words) for chart, words in parser.texts.items()}
    # real numbers and readable labels
    assert "atlas" in text["funnel"] and "beacon" in text["funnel"]
    assert "median 14.0" in text["time-to-conversion"]
    assert "linear" in text["attribution"] and "position based" in text["attribution"]
    assert "beacon_nurture" in text["holdout-lift"]
    assert "closed-won deals" in dom
    assert "<script" not in report.read_text()
