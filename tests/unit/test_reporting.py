"""orchestration/reporting.py without a warehouse: the page with no data yet, CLI registration, metadata."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from orchestration import reporting

EMPTY = {
    "summary": {"conversions": 0, "converted_amount": 0.0, "leads_in_funnel": 0, "messages_sent": 0},
    "funnel": [],
    "cohort_trend": [],
    "time_to_conversion": [],
    "conversion_durations": [],
    "attribution": [],
    "message_performance": [],
    "holdout": [],
}


def test_empty_marts_still_render_every_chart_offline():
    page = reporting.render_report(EMPTY, datetime(2026, 11, 26, tzinfo=UTC))
    for chart in reporting.CHART_IDS:
        assert f'id="chart-{chart}"' in page
    assert page.count("<svg") == len(reporting.CHART_IDS)
    assert "<script" not in page and "src=" not in page and "<link" not in page


def test_cli_commands_register_report_and_export():
    parser = argparse.ArgumentParser(prog="leadflow")
    reporting.add_cli_commands(parser.add_subparsers(dest="command", required=True))
    report = parser.parse_args(["report", "--out", "x.html"])
    assert report.func is reporting.cmd_report and report.out == "x.html"
    export = parser.parse_args(["export", "--format", "json", "--out", "dir"])
    assert export.func is reporting.cmd_export and (export.format, export.out) == ("json", "dir")


def test_report_metadata_is_plain_json():
    result = reporting.ReportResult(
        Path("/tmp/r.html"),
        datetime(2026, 11, 26, tzinfo=UTC),
        reporting.CHART_IDS,
        {"conversions": 3, "holdout_lift": {"w": {"lift": 0.1, "ci_low": -0.1, "ci_high": 0.3}}},
        123,
    )
    metadata = reporting.report_metadata(result)
    assert metadata["charts"] == 5 and metadata["conversions"] == 3 and metadata["path"] == "/tmp/r.html"
    json.dumps(metadata)
