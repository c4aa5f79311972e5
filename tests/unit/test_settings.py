"""Settings: defaults, parsing, and errors that name the setting and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.settings import DEFAULT_DUCKDB_MEMORY_LIMIT, Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_embedded_warehouse_and_demo_crm(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.home == tmp_path / ".leadflow"
    assert settings.warehouse.kind == "duckdb"
    assert settings.warehouse.duckdb_path == tmp_path / ".leadflow" / "warehouse.duckdb"
    assert settings.crm == "demo"
    assert settings.n8n_webhook_url is None
    assert settings.delivery_concurrency == 1
    assert settings.warehouse.dbt_env() == {
        "LEADFLOW_DBT_TARGET": "duckdb",
        "LEADFLOW_DUCKDB_PATH": str(tmp_path / ".leadflow" / "warehouse.duckdb"),
        "LEADFLOW_DUCKDB_MEMORY_LIMIT": DEFAULT_DUCKDB_MEMORY_LIMIT,
    }
    limited = Settings.from_env({"LEADFLOW_DUCKDB_MEMORY_LIMIT": "2GB"})
    assert limited.warehouse.dbt_env()["LEADFLOW_DUCKDB_MEMORY_LIMIT"] == "2GB"


def test_postgres_url_is_parsed_for_dbt_and_redacted_for_printing():
    settings = Settings.from_env(
        {
            "LEADFLOW_HOME": "/tmp/lf",
            "LEADFLOW_WAREHOUSE_URL": "postgresql://ana:s%40cret@db.local:6543/marketing",
        }
    )
    warehouse = settings.warehouse
    assert (warehouse.kind, warehouse.host, warehouse.port, warehouse.user, warehouse.database) == (
        "postgres",
        "db.local",
        6543,
        "ana",
        "marketing",
    )
    assert warehouse.password == "s@cret"
    assert "s@cret" not in warehouse.redacted_url() and "s%40cret" not in warehouse.redacted_url()
    assert "s@cret" not in repr(settings)
    assert warehouse.dbt_env()["LEADFLOW_PG_PASSWORD"] == "s@cret"


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({"LEADFLOW_WAREHOUSE_URL": "mysql://x/y"}, ["LEADFLOW_WAREHOUSE_URL", "postgresql://"]),
        ({"LEADFLOW_WAREHOUSE_URL": "postgresql://:5432/"}, ["LEADFLOW_WAREHOUSE_URL", "host"]),
        ({"LEADFLOW_CRM": "salesforce"}, ["LEADFLOW_CRM", "demo"]),
        ({"LEADFLOW_DUCKDB_MEMORY_LIMIT": "lots"}, ["LEADFLOW_DUCKDB_MEMORY_LIMIT", "512MB"]),
        ({"LEADFLOW_CRM": "hubspot"}, ["HUBSPOT_ACCESS_TOKEN"]),
        ({"LEADFLOW_CRM": "sql"}, ["CRM_DATABASE_URL"]),
        ({"N8N_WEBHOOK_URL": "localhost:5678"}, ["N8N_WEBHOOK_URL", "http"]),
        ({"N8N_WEBHOOK_URL": "http://localhost:5678/webhook/x"}, ["N8N_WEBHOOK_TOKEN"]),
        ({"LEADFLOW_DELIVERY_CONCURRENCY": "many"}, ["LEADFLOW_DELIVERY_CONCURRENCY", "1 to 16"]),
        ({"LEADFLOW_DELIVERY_CONCURRENCY": "0"}, ["LEADFLOW_DELIVERY_CONCURRENCY", "1 to 16"]),
        ({"LEADFLOW_DELIVERY_CONCURRENCY": "64"}, ["LEADFLOW_DELIVERY_CONCURRENCY", "1 to 16"]),
        (
            {"HUBSPOT_BASE_URL": "api.hubapi.com", "LEADFLOW_CRM": "hubspot", "HUBSPOT_ACCESS_TOKEN": "t"},
            ["HUBSPOT_BASE_URL"],
        ),
    ],
)
def test_wrong_settings_fail_early_naming_the_setting(environ, names):
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"LEADFLOW_HOME": "/tmp/lf", **environ})
    for name in names:
        assert name in str(error.value)


def test_cli_reports_a_bad_setting_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "run"],
        env={"LEADFLOW_HOME": str(tmp_path), "LEADFLOW_CRM": "nope", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert "LEADFLOW_CRM" in result.stderr and "Traceback" not in result.stderr


def test_help_explains_every_subcommand():
    from orchestration.cli import build_parser

    parser = build_parser()
    top = parser.format_help()
    subcommands = ["run", "ingest", "transform", "activate", "demo-crm", "serve", "n8n", "ui"]
    for name in subcommands:
        assert name in top
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    for name in subcommands:
        text = actions[0].choices[name].format_help()
        assert len(text.splitlines()) >= 3, name
