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


def test_landing_sensor_starts_the_landing_job_only_for_files_not_loaded_yet(tmp_path, monkeypatch):
    """A file the events pipeline loaded (e.g. by `leadflow run`) starts nothing; a new one does."""
    from dagster import RunRequest, SkipReason, build_sensor_context

    from ingestion.events import landing_events_source, write_landing_file
    from orchestration import definitions
    from orchestration.settings import Settings

    local = Settings.from_env({"LEADFLOW_HOME": str(tmp_path / "home")})
    monkeypatch.setattr(definitions, "settings", local)
    pipeline = definitions.make_pipeline("leadflow_events", "raw_events", local)
    monkeypatch.setattr(definitions, "events_pipeline", pipeline)
    sensor = definitions.landing_zone_sensor
    assert sensor.job_name == "leadflow_landing"
    landing_job = definitions.defs.resolve_job_def("leadflow_landing")
    selected = {key.to_user_string() for key in landing_job.asset_layer.selected_asset_keys}
    assert "dlt_events_events" in selected and "send_list_messages" in selected
    assert "dlt_crm_contacts" not in selected and "analytics/report" not in selected
    assert {
        "dim_leads",
        "fct_message_exclusions",
        "int_lead_consents_evaluated",
    } <= selected  # what delivery reads
    assert not selected & {
        "fct_conversion_funnel",
        "fct_conversions",
        "fct_holdout_lift",
    }  # analytics: hourly
    assert landing_job.run_config == {"ops": {"dbt_models": {"config": {"unit_tests": False}}}}
    checks = {key.name for key in landing_job.asset_layer.asset_graph.asset_check_keys}
    assert "send_list_has_no_suppressed_leads" in checks  # blocking: it still gates delivery
    assert not any(name.startswith(("unique_", "not_null_")) for name in checks)  # dbt tests: hourly

    event = {"event_id": "e1", "event_type": "login", "occurred_at": "2026-11-20T09:15:00Z"}
    write_landing_file(local.landing_dir, "product_events", "a", [{**event, "lead_email": "a@x.example"}])
    first = sensor(build_sensor_context(cursor=None))
    assert isinstance(first, RunRequest) and first.tags["leadflow/unloaded_files"] == "1"

    pipeline.run(landing_events_source(landing_dir=str(local.landing_dir)))
    after_load = sensor(build_sensor_context(cursor=None))  # a restarted daemon: no cursor
    assert isinstance(after_load, SkipReason) and "loaded already" in after_load.skip_message

    write_landing_file(local.landing_dir, "product_events", "b", [{**event, "event_id": "e2"}])
    context = build_sensor_context(cursor=None)
    second = sensor(context)
    assert isinstance(second, RunRequest) and second.tags["leadflow/unloaded_files"] == "1"
    assert isinstance(sensor(build_sensor_context(cursor=context.cursor)), SkipReason)


def test_dbt_resource_skips_only_start_up_work_leadflow_does_not_use():
    """The dbt resource's version is the installed dbt-core's (what `dbt --version` says) and it builds no adapter.

    Both are dagster-dbt hooks LeadflowDbtCliResource overrides; if dagster-dbt renames them, this fails.
    """
    import subprocess

    from dagster_dbt import DbtCliResource

    from orchestration.definitions import defs

    assert {"_cli_version", "_initialize_dbt_core_adapter"} <= set(vars(DbtCliResource))
    resource = defs.resources["dbt"]
    dbt_executable = resource.dbt_executable
    reported = subprocess.run(
        [dbt_executable, "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert f"installed: {resource._cli_version}" in reported
    assert resource._initialize_dbt_core_adapter(["build"]) is None


def test_dagster_instance_queues_one_run_at_a_time_and_keeps_a_users_own_file(tmp_path, monkeypatch):
    """leadflow writes (and updates) its own dagster.yaml; a file without its header line is the user's."""
    from dagster import DagsterInstance

    from orchestration.cli import DAGSTER_YAML, _prepare_environment
    from orchestration.settings import Settings

    dagster_home = tmp_path / "dagster"
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    for name in (
        "DBT_LOG_PATH",
        "DO_NOT_TRACK",
        "DBT_SEND_ANONYMOUS_USAGE_STATS",
        "RUNTIME__DLTHUB_TELEMETRY",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env({"LEADFLOW_HOME": str(tmp_path / "home")})
    _prepare_environment(settings)
    instance_yaml = dagster_home / "dagster.yaml"
    assert instance_yaml.read_text() == DAGSTER_YAML
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        queue = instance.run_coordinator.get_run_queue_config()
        assert queue.max_concurrent_runs == 1 and instance.run_coordinator.dequeue_interval_seconds == 1

    instance_yaml.write_text("# Written by leadflow: an older version\ntelemetry:\n  enabled: false\n")
    _prepare_environment(settings)
    assert instance_yaml.read_text() == DAGSTER_YAML
    own = "telemetry:\n  enabled: true\n"
    instance_yaml.write_text(own)
    _prepare_environment(settings)
    assert instance_yaml.read_text() == own


def test_dbt_run_directories_are_pruned_to_the_newest_few(tmp_path):
    """dagster-dbt leaves one target directory per dbt command; the dbt asset keeps the newest ones only."""
    import os

    from orchestration.definitions import prune_dbt_run_dirs

    for age in range(14):
        run_dir = tmp_path / f"dbt_models-run{age:02d}-abc"
        run_dir.mkdir()
        (run_dir / "manifest.json").write_text("{}")
        os.utime(run_dir, (1_000_000 - age, 1_000_000 - age))
    (tmp_path / "manifest.json").write_text("{}")  # the project's own artifacts stay
    removed = prune_dbt_run_dirs(tmp_path, keep=10)
    assert sorted(p.name for p in removed) == [f"dbt_models-run{age:02d}-abc" for age in range(10, 14)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        *(f"dbt_models-run{age:02d}-abc" for age in range(10)),
        "manifest.json",
    ]
