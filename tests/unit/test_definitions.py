"""The Dagster definitions load, connect dlt → dbt → activation, and describe every asset."""

from __future__ import annotations

import pytest
from dagster import AssetKey


@pytest.fixture(scope="module", autouse=True)
def dbt_manifest() -> None:
    """The definitions read dbt's manifest: write it the way every `leadflow` command does first."""
    from orchestration.cli import _parse_dbt_project
    from orchestration.settings import Settings

    _parse_dbt_project(Settings.from_env())


def test_every_asset_has_a_one_line_description_and_a_group():
    from orchestration.definitions import defs

    specs = list(defs.resolve_all_asset_specs())
    assert len(specs) >= 15
    for spec in specs:
        assert spec.description and spec.description.strip(), spec.key
        assert spec.group_name in {"ingestion", "transform", "activation", "analytics"}, spec.key


def test_graph_connects_ingestion_to_dbt_to_activation():
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    delivery = AssetKey(["activation", "atlas_nurture_delivery"])
    upstream = graph.get(delivery).parent_keys
    assert AssetKey(["send_list_messages"]) in upstream
    ancestors = graph.upstream_key_iterator(delivery) if hasattr(graph, "upstream_key_iterator") else None
    seen, frontier = set(), [delivery]
    while frontier:
        key = frontier.pop()
        for parent in graph.get(key).parent_keys:
            if parent not in seen:
                seen.add(parent)
                frontier.append(parent)
    del ancestors
    for raw in ("dlt_crm_contacts", "dlt_crm_deals", "dlt_events_events"):
        assert AssetKey([raw]) in seen, f"{raw} does not feed the send list"


def test_the_ledger_and_the_report_are_described_assets():
    from orchestration.definitions import defs

    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    ledger = specs[AssetKey(["activation", "delivery_ledger"])]
    assert ledger.group_name == "activation" and "ledger" in ledger.description
    assert specs[AssetKey(["analytics", "report"])].group_name == "analytics"


def test_jobs_schedule_and_sensors_are_defined():
    from orchestration.definitions import defs

    for job in ("leadflow_pipeline", "leadflow_ingest", "leadflow_transform", "leadflow_activate"):
        assert defs.resolve_job_def(job) is not None
    assert defs.resolve_schedule_def("leadflow_pipeline_hourly").cron_schedule == "15 * * * *"
    assert defs.resolve_schedule_def("leadflow_report_daily").cron_schedule == "0 6 * * *"
    sensor_names = {s.name for s in defs.sensors}
    assert {"landing_zone_sensor", "alert_on_run_failure", "record_last_successful_run"} <= sensor_names
