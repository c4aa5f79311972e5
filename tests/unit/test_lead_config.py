"""`leadflow products validate|list`: every seed problem is named with its file, line and fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestration.lead_config import SEEDS_DIR, load_products, main, validate_seeds

SEED_FILES = ("products.csv", "event_types.csv", "scoring_rules.csv", "fit_rules.csv", "stage_rules.csv")


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    for name in SEED_FILES:
        shutil.copy(SEEDS_DIR / name, tmp_path / name)
    return tmp_path


def _edit(path: Path, old: str, new: str) -> int:
    """Replace the first line containing `old`; returns that line's 1-based number."""
    lines = path.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if old in line)
    lines[number] = lines[number].replace(old, new, 1)
    path.write_text("\n".join(lines) + "\n")
    return number + 1


def _append(path: Path, row: str) -> int:
    text = path.read_text()
    path.write_text(text.rstrip("\n") + "\n" + row + "\n")
    return len(text.rstrip("\n").splitlines()) + 1


def test_the_project_seeds_are_valid() -> None:
    assert [str(issue) for issue in validate_seeds(SEEDS_DIR)] == []
    assert load_products(SEEDS_DIR)


def test_unknown_event_type_names_file_line_and_choices(seeds: Path) -> None:
    rules = seeds / "scoring_rules.csv"
    first_rule = rules.read_text().splitlines()[1].split(",")
    line = _edit(rules, f",{first_rule[3]},", ",logn,")
    [issue] = validate_seeds(seeds)
    assert (issue.line, issue.row) == (line, line - 1)
    text = str(issue)
    assert text.startswith(f"{seeds}/scoring_rules.csv line {line}")
    assert "event_type 'logn' is not in event_types.csv" in text and "add it to event_types.csv" in text


def test_each_kind_of_mistake_is_reported(seeds: Path) -> None:
    products = (seeds / "products.csv").read_text().splitlines()
    header, first = products[0].split(","), products[1].split(",")
    row = dict(zip(header, first, strict=True))
    bad_product = {
        **row,
        "mql_threshold": row["sql_threshold"],
        "decay_half_life_days": "0",
        "channels": "email|sms",
        "is_active": "maybe",
        "product_id": "zeta",
        "nurture_workflow": "zeta_nurture",
        "cross_product_sources": "",
    }
    _append(seeds / "products.csv", ",".join(bad_product[c] for c in header))
    rules = (seeds / "scoring_rules.csv").read_text().splitlines()
    _append(seeds / "scoring_rules.csv", rules[1])  # duplicate rule and rule_id
    rule_header = rules[0].split(",")
    rule = dict(zip(rule_header, rules[1].split(","), strict=True))
    cross = {**rule, "rule_id": "cross_x", "product_id": "zeta", "event_product_id": rule["product_id"]}
    _append(seeds / "scoring_rules.csv", ",".join(cross[c] for c in rule_header))
    unknown = {
        **rule,
        "rule_id": "unknown_product",
        "product_id": "nope",
        "event_product_id": "nope",
        "daily_cap": "0",
        "is_repeatable": "sometimes",
        "points": "lots",
    }
    _append(seeds / "scoring_rules.csv", ",".join(unknown[c] for c in rule_header))
    _append(seeds / "stage_rules.csv", "weird,mql,vip,promoted,1")
    _append(seeds / "fit_rules.csv", "f_age,zeta,age,equals,3,1")

    text = "\n".join(str(issue) for issue in validate_seeds(seeds))
    for expected in (
        "is_active 'maybe' is not a boolean",
        "channel 'sms' is not a channel",
        "thresholds out of order",
        "decay_half_life_days 0 must be > 0",
        "duplicate rule_id",
        "duplicate rule for product_id / event_product_id / event_type",
        "cross-product rule: 'zeta' counts",
        "product_id 'nope' is not in products.csv",
        "event_product_id 'nope' is not in products.csv",
        "is_repeatable 'sometimes' is not a boolean",
        "points 'lots' is not a number",
        "daily_cap 0 must be > 0",
        "to_stage 'vip' is not a stage",
        "trigger 'promoted' is not a trigger",
        "attribute 'age' is not a fit attribute",
    ):
        assert expected in text, f"missing {expected!r} in:\n{text}"


def test_missing_seed_file_is_a_clear_error(seeds: Path) -> None:
    (seeds / "stage_rules.csv").unlink()
    [issue] = validate_seeds(seeds)
    assert "stage_rules.csv: file not found" in str(issue) and "rule_id,from_stage,to_stage" in str(issue)


def test_cli_validate_and_list(seeds: Path, capsys) -> None:
    assert main(["products", "validate", "--seeds-dir", str(seeds)]) == 0
    assert capsys.readouterr().out.startswith("OK: ")
    assert main(["products", "list", "--seeds-dir", str(seeds)]) == 0
    table = capsys.readouterr().out
    for product in load_products(seeds):
        assert product.product_id in table and product.nurture_workflow in table
    _edit(seeds / "products.csv", "email", "fax")
    assert main(["products", "validate", "--seeds-dir", str(seeds)]) == 2
    assert "channel 'fax' is not a channel" in capsys.readouterr().err
