"""Analytics marts on DuckDB and PostgreSQL: hand-checked numbers, holdout draws, exports that round-trip.

The warehouse is tests/support/analytics_fixtures.py (the lead-model raw fixtures plus three journeys, a
ledger and n8n delivery results), built once per warehouse with `as_of` pinned; the build runs the
analytics data tests, unit tests and the singular assert_* checks. The same numbers are expected on both
warehouses (percentiles through the percentile_cont dispatch macro).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from orchestration import reporting
from tests.support.analytics_fixtures import (
    ANALYTICS_MARTS,
    KEY_QUINN,
    KEY_RAE,
    build_analytics,
    create_analytics_raw_tables,
    read_table,
    warehouse_url,
)

HOLDOUT_SHARE = 0.1  # dbt_project.yml analytics_holdout_share (read below, not assumed)
Z95 = 1.959963984540054


def _var(name: str) -> float:
    from orchestration.lead_config import read_dbt_var

    return float(read_dbt_var(name))


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def built(request, tmp_path_factory):
    work = tmp_path_factory.mktemp(f"analytics-{request.param}")
    if request.param == "duckdb":
        location = str(work / "warehouse.duckdb")
    else:
        from tests.conftest import create_database

        location = create_database(request.getfixturevalue("postgres_server_url"), prefix="analytics")
    create_analytics_raw_tables(request.param, location)
    seconds = build_analytics(request.param, location, work)
    print(f"analytics build on {request.param}: {seconds:.1f}s")
    return request.param, location


def test_conversions_reconcile_and_time_to_conversion(built):
    kind, location = built
    conversions = read_table(kind, location, "fct_conversions", "conversion_id")
    assert {r["conversion_id"] for r in conversions} == {"d1", "dq", "dr"}  # the three closed-won deals
    by_deal = {r["conversion_id"]: r for r in conversions}
    assert by_deal["dq"]["days_from_first_touch"] == pytest.approx(14.0)  # login 11-01 09:00 → 11-15 09:00
    assert by_deal["dq"]["first_touch_channel"] == "product"
    assert by_deal["dq"]["days_from_mql"] is None  # 2 + 25 points never reached atlas' 40
    assert by_deal["dr"]["days_from_first_touch"] == pytest.approx(16.0)
    assert by_deal["dr"]["days_from_mql"] == pytest.approx(16.0)  # the 30-point demo made Rae an MQL
    assert by_deal["d1"]["days_from_first_touch"] is None  # Ana's events all came after her deal closed

    ttc = {
        (r["product_id"], r["channel"], r["measured_from"]): r
        for r in read_table(kind, location, "fct_time_to_conversion")
    }
    assert ttc[("atlas", "all", "first_touch")]["median_days"] == pytest.approx(14.0)
    assert ttc[("beacon", "product", "mql")]["p90_days"] == pytest.approx(16.0)
    assert ("atlas", "all", "mql") not in ttc


def test_attribution_weights_match_the_models(built):
    kind, location = built
    rows = read_table(kind, location, "fct_conversion_attribution")
    weights: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        weights.setdefault((row["conversion_id"], row["attribution_model"]), {})[row["touch_id"]] = float(
            row["attribution_weight"]
        )
    for (_, _model), touch_weights in weights.items():
        assert sum(touch_weights.values()) == pytest.approx(1.0, abs=1e-9)

    half_life = _var("analytics_time_decay_half_life_days")
    # Quinn's deal: login 14 days, demo 10 days, email 9 days before the close
    dq = ["event:q-1", "event:q-2", f"message:{KEY_QUINN}"]
    decay = [0.5 ** (d / half_life) for d in (14, 10, 9)]
    expected = {
        "first_touch": [1, 0, 0],
        "last_touch": [0, 0, 1],
        "linear": [1 / 3] * 3,
        "time_decay": [d / sum(decay) for d in decay],
        "position_based": [0.4, 0.2, 0.4],
    }
    for model, values in expected.items():
        got = weights[("dq", model)]
        assert [got[t] for t in dq] == pytest.approx(values, abs=1e-9), model
    # Rae: two touches, position-based splits 50/50
    assert weights[("dr", "position_based")] == pytest.approx(
        {"event:r-1": 0.5, f"message:{KEY_RAE}": 0.5}, abs=1e-9
    )
    assert weights[("d1", "linear")] == {"none": 1.0}  # a conversion without touches


def test_message_performance(built):
    kind, location = built
    rows = {(r["product_id"], r["channel"]): r for r in read_table(kind, location, "fct_message_performance")}
    email = rows[("atlas", "email")]
    assert (email["template"], email["sent"], email["delivered"], email["opened"], email["clicked"]) == (
        "mql_welcome",
        1,
        1,
        1,
        1,
    )
    assert (email["failed"], email["converted"]) == (1, 1)  # Sam's failed email; Quinn converted 9 days later
    whatsapp = rows[("beacon", "whatsapp")]
    assert (whatsapp["sent"], whatsapp["delivered"], whatsapp["opened"], whatsapp["replied"]) == (1, 1, 0, 1)
    assert whatsapp["converted"] == 1


def test_holdout_draws_are_the_documented_hash_and_lift_matches_the_formula(built):
    kind, location = built
    share = _var("analytics_holdout_share")
    assignments = read_table(kind, location, "int_holdout_assignments")
    assert assignments
    for row in assignments:
        draw = int(hashlib.md5(f"{row['lead_id']}|{row['workflow']}".encode()).hexdigest()[:8], 16) / 2**32
        assert float(row["holdout_draw"]) == pytest.approx(draw, abs=1e-12)
        assert row["is_holdout"] == (draw < share)
    converted = {(r["lead_id"], r["product_id"]) for r in read_table(kind, location, "fct_conversions")}
    for lift in read_table(kind, location, "fct_holdout_lift"):
        group = [a for a in assignments if a["workflow"] == lift["workflow"]]
        treated = [a for a in group if not a["is_holdout"]]
        held = [a for a in group if a["is_holdout"]]
        conv_t = sum((a["lead_id"], a["product_id"]) in converted for a in treated)
        conv_h = sum((a["lead_id"], a["product_id"]) in converted for a in held)
        assert (lift["treated_leads"], lift["treated_conversions"]) == (len(treated), conv_t)
        assert (lift["holdout_leads"], lift["holdout_conversions"]) == (len(held), conv_h)
        if not treated or not held:
            assert lift["lift"] is None
            continue
        p_t, p_h = conv_t / len(treated), conv_h / len(held)
        se = math.sqrt(p_t * (1 - p_t) / len(treated) + p_h * (1 - p_h) / len(held))
        assert lift["lift"] == pytest.approx(p_t - p_h)
        assert lift["lift_ci_low"] == pytest.approx(p_t - p_h - Z95 * se)
        assert lift["lift_ci_high"] == pytest.approx(p_t - p_h + Z95 * se)


def test_funnel_never_increases_and_counts_converted_leads(built):
    kind, location = built
    rows = read_table(
        kind, location, "fct_conversion_funnel", "product_id, channel, cohort_week, stage_order"
    )
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(
            (row["product_id"], row["workflow"], row["channel"], row["cohort_week"]), []
        ).append(row)
    for group in groups.values():
        counts = [r["leads"] for r in sorted(group, key=lambda r: r["stage_order"])]
        assert counts == sorted(counts, reverse=True)
        assert len(counts) == 6
    customers = sum(r["leads"] for r in rows if r["funnel_stage"] == "customer")
    assert customers >= 2  # Quinn (atlas) and Rae (beacon) at least; Ana is an atlas customer by stage too


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_exports_round_trip(built, tmp_path: Path, fmt: str):
    kind, location = built
    url = warehouse_url(kind, location)
    paths = reporting.export_marts(url, tmp_path, fmt)
    assert sorted(p.name for p in paths) == sorted(f"{m}.{fmt}" for m in ANALYTICS_MARTS)
    assert set(ANALYTICS_MARTS) == set(reporting.ANALYTICS_MARTS)
    for path in paths:
        mart = path.stem
        with reporting.connect(url, read_only=True) as db:
            columns, rows = reporting.read_mart(db, mart)
        back = list(reporting.iter_export_rows(path))
        assert len(back) == len(rows), mart
        if fmt == "csv":
            assert list(back[0].keys()) == columns if back else True
            expected = [{c: reporting._csv_text(r[c]) for c in columns} for r in rows]
            assert back == expected, mart
            # numbers parse back to the same values
            for original, read in zip(rows, back, strict=True):
                for column in columns:
                    value = reporting.plain(original[column])
                    if isinstance(value, float):
                        assert float(read[column]) == value
        else:
            assert back == [{c: reporting.export_cell(r[c]) for c in columns} for r in rows], mart
            assert json.loads(path.read_text()) == back


def test_report_and_metrics_share_numbers(built, tmp_path: Path):
    kind, location = built
    url = warehouse_url(kind, location)
    result = reporting.build_report(url, tmp_path / "report.html")
    page = result.path.read_text()
    for chart in reporting.CHART_IDS:
        assert f'id="chart-{chart}"' in page
    assert "<script" not in page and "src=" not in page  # self-contained: no scripts, no fetched resources
    assert result.figures["conversions"] == 3
    metadata = reporting.report_metadata(result)
    assert metadata["charts"] == 5 and metadata["conversions"] == 3
    json.dumps(metadata)  # Dagster-ready plain values
