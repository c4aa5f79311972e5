"""`leadflow scoring preview`: candidate rules build into leadflow_preview and the MQL/SQL changes are listed.

Needs profiles.yml to take its schema from LEADFLOW_DBT_SCHEMA (default analytics); skipped until it does.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from orchestration import lead_config
from tests.property import test_lead_model_properties as props

pytestmark = pytest.mark.skipif(
    "LEADFLOW_DBT_SCHEMA" not in (props.DBT_PROJECT / "profiles.yml").read_text(),
    reason="dbt_project/profiles.yml does not read LEADFLOW_DBT_SCHEMA yet",
)


def test_preview_lists_who_gains_and_loses(tmp_path: Path, monkeypatch, capsys) -> None:
    config = props._config()
    location = str(tmp_path / "warehouse.duckdb")
    url = props.warehouse_url("duckdb", location)
    props.create_raw_tables(url)
    tables: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for n, example in enumerate(props.collect_examples(config, 30)):
        for key, rows in props.raw_rows(
            props.materialize(config, example, f"ex{n:03d}-base", "base")
        ).items():
            tables[key].extend(rows)
    props.insert_raw(url, tables)
    env = props.dbt_env("duckdb", location, tmp_path)
    props.run_dbt(
        [
            "build",
            "--select",
            "+fct_lead_scores",
            "+dim_leads",
            "--exclude-resource-type",
            "test",
            "unit_test",
        ],
        env,
        tmp_path,
    )

    # every positive rule worth double: nobody loses MQL, and whoever was below MQL with points may gain it
    source = lead_config.SEEDS_DIR / "scoring_rules.csv"
    lines = source.read_text().splitlines()
    header = lines[0].split(",")
    points = header.index("points")
    doubled = [lines[0]]
    for line in lines[1:]:
        values = line.split(",")
        if float(values[points]) > 0:  # negative rules stay as they are, so no score can fall
            values[points] = str(
                2 * float(values[points]) if "." in values[points] else 2 * int(values[points])
            )
        doubled.append(",".join(values))
    candidate = tmp_path / "candidate.csv"
    candidate.write_text("\n".join(doubled) + "\n")

    monkeypatch.setenv("LEADFLOW_WAREHOUSE_URL", url)
    monkeypatch.setenv("LEADFLOW_HOME", str(tmp_path / "home"))
    assert lead_config.main(["scoring", "preview", "--rules", str(candidate), "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert f"at as_of {props.AS_OF.isoformat()}" in out  # taken from analytics.fct_lead_scores.as_of
    for product in config.products:
        assert f"  {product}: gain MQL " in out
        assert ", lose MQL 0," in out.split(f"  {product}: ")[1].splitlines()[0]
    assert "gain_mql" in out

    with lead_config_connect(url) as warehouse:
        rules = warehouse.scalar(f"select count(*) from {lead_config.PREVIEW_SCHEMA}.scoring_rules")
        analytics = warehouse.scalar("select count(*) from analytics.fct_lead_scores")
        preview = warehouse.scalar(f"select count(*) from {lead_config.PREVIEW_SCHEMA}.fct_lead_scores")
    assert rules == len(lines) - 1 and preview == analytics


def lead_config_connect(url: str):
    from activation.warehouse import connect

    return connect(url, read_only=True)
