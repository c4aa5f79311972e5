"""The lead model's configuration seeds: load, validate, list, and preview a candidate scoring_rules.csv.

The seeds in `dbt_project/seeds` (products, event_types, scoring_rules, fit_rules, stage_rules; columns in
`dbt_project/LEAD_MODEL.md`) are the only place weights, thresholds and transitions exist. This module
reads them and checks them against each other; every value it reports comes from the CSVs. What is
fixed here is the model's vocabulary (stage names, triggers, channels, fit attributes and operators),
which LEAD_MODEL.md defines and the SQL implements.

Plain Python (no Dagster import), so `leadflow products validate` fails fast before any heavy import.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
SEEDS_DIR = DBT_PROJECT_DIR / "seeds"

# The model's vocabulary, as LEAD_MODEL.md defines it (names, not tuning numbers).
CHANNELS = ("email", "whatsapp", "chatbot")
DIMENSIONS = ("engagement",)
FIT_ATTRIBUTES = ("country", "job_title", "industry", "employee_count")
FIT_OPERATORS = ("equals", "contains", "at_least")
STAGES = ("new", "engaged", "mql", "sql", "opportunity", "customer", "recycled", "dormant", "disqualified")
TRIGGERS = (
    "first_engagement",
    "score_reached_mql",
    "score_reached_sql",
    "reengaged",
    "deal_created",
    "deal_closed_won",
    "deal_closed_lost",
    "inactivity",
    "manual_override",
)
_ENGAGEMENT_TRIGGERS = ("first_engagement", "reengaged", "score_reached_mql", "score_reached_sql")
PREVIEW_SCHEMA = "leadflow_preview"
_TRUE, _FALSE = ("true", "t", "yes", "y", "1"), ("false", "f", "no", "n", "0")


# --------------------------------------------------------------------------------------------- issues


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in one seed file: where it is and how to fix it."""

    file: str  # path as the user knows it, e.g. dbt_project/seeds/scoring_rules.csv
    line: int | None  # 1-based line in the file (the header is line 1)
    row: int | None  # 1-based data row
    message: str  # what is wrong, then ' — ' and the fix

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.file}: {self.message}"
        if self.row is None:
            return f"{self.file} line {self.line}: {self.message}"
        return f"{self.file} line {self.line} (row {self.row}): {self.message}"


class ConfigError(ValueError):
    """The seeds do not describe a valid lead model; `issues` lists every problem."""

    def __init__(self, issues: Sequence[ConfigIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


# ---------------------------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Product:
    product_id: str
    product_name: str
    is_active: bool
    mql_threshold: float
    sql_threshold: float
    decay_half_life_days: float
    score_cap: float
    nurture_workflow: str
    channels: tuple[str, ...]
    cross_product_sources: tuple[str, ...]
    priority: int
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class EventType:
    event_type: str
    description: str
    is_engagement: bool
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class ScoringRule:
    rule_id: str
    product_id: str
    event_product_id: str
    event_type: str
    points: float
    dimension: str
    is_repeatable: bool
    daily_cap: int | None
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class FitRule:
    rule_id: str
    product_id: str
    attribute: str
    operator: str
    value: str
    points: float
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class StageRule:
    rule_id: str
    from_stage: str
    to_stage: str
    trigger: str
    priority: int
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class LeadConfig:
    """All five seeds, parsed. Build with `load_config()` (raises ConfigError on any issue)."""

    products: dict[str, Product]
    event_types: dict[str, EventType]
    scoring_rules: list[ScoringRule]
    fit_rules: list[FitRule]
    stage_rules: list[StageRule]


# ------------------------------------------------------------------------------------------- parsing


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


class _Reader:
    """Reads one seed file row by row, collecting issues with file, line and row numbers."""

    def __init__(self, path: Path, columns: Sequence[str], issues: list[ConfigIssue]):
        self.path, self.name, self.columns, self.issues = path, _display(path), columns, issues
        self.rows: list[tuple[int, int, dict[str, str]]] = []  # (row, line, values)
        self.ok = False
        if not path.is_file():
            issues.append(
                ConfigIssue(
                    self.name,
                    None,
                    None,
                    f"file not found — create it with the header "
                    f"{','.join(columns)} (see dbt_project/LEAD_MODEL.md, Seeds)",
                )
            )
            return
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                issues.append(
                    ConfigIssue(
                        self.name, None, None, f"file is empty — write the header {','.join(columns)}"
                    )
                )
                return
            header = [h.strip() for h in header]
            missing = [c for c in columns if c not in header]
            if missing:
                issues.append(
                    ConfigIssue(
                        self.name,
                        1,
                        None,
                        f"header lacks column(s) {', '.join(missing)} — the "
                        f"header must be {','.join(columns)}",
                    )
                )
                return
            row_number = 0
            line_before = reader.line_num
            for values in reader:
                line = line_before + 1
                line_before = reader.line_num
                if not any(v.strip() for v in values):
                    continue
                row_number += 1
                if len(values) != len(header):
                    issues.append(
                        ConfigIssue(
                            self.name,
                            line,
                            row_number,
                            f"has {len(values)} fields, the header has {len(header)} — "
                            "quote values that contain commas",
                        )
                    )
                    continue
                self.rows.append(
                    (row_number, line, {h: v.strip() for h, v in zip(header, values, strict=True)})
                )
        self.ok = True

    def issue(self, row: int, line: int, message: str) -> None:
        self.issues.append(ConfigIssue(self.name, line, row, message))

    # typed field readers: return None (and record an issue) on a bad value
    def text(
        self, row: int, line: int, values: dict[str, str], column: str, required: bool = True
    ) -> str | None:
        value = values[column]
        if required and not value:
            self.issue(row, line, f"{column} is empty — fill it in")
            return None
        return value

    def boolean(self, row: int, line: int, values: dict[str, str], column: str) -> bool | None:
        value = values[column].lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        self.issue(row, line, f"{column} {values[column]!r} is not a boolean — write true or false")
        return None

    def number(
        self,
        row: int,
        line: int,
        values: dict[str, str],
        column: str,
        integer: bool = False,
        required: bool = True,
    ) -> float | int | None:
        raw = values[column]
        if not raw:
            if required:
                self.issue(row, line, f"{column} is empty — write a number")
            return None
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or (integer and not number.is_integer()):
            kind = "a whole number" if integer else "a number"
            self.issue(row, line, f"{column} {raw!r} is not {kind} — write {kind}, e.g. 3")
            return None
        return int(number) if integer or number.is_integer() else number

    def one_of(
        self, row: int, line: int, values: dict[str, str], column: str, allowed: Iterable[str], where: str
    ) -> str | None:
        value = values[column]
        allowed = list(allowed)
        if value not in allowed:
            self.issue(row, line, f"{column} {value!r} is not {where} — use one of {', '.join(allowed)}")
            return None
        return value


def _duplicates(reader: _Reader, key: Callable[[dict[str, str]], tuple], what: str) -> None:
    first_line: dict[tuple, int] = {}
    for row, line, values in reader.rows:
        k = key(values)
        if k in first_line:
            reader.issue(
                row,
                line,
                f"duplicate {what} {' / '.join(map(str, k))} (first on line {first_line[k]}) — keep one row",
            )
        else:
            first_line[k] = line


def _read_products(
    path: Path, issues: list[ConfigIssue], sources_out: dict[str, tuple[str, ...]]
) -> dict[str, Product]:
    columns = [
        "product_id",
        "product_name",
        "is_active",
        "mql_threshold",
        "sql_threshold",
        "decay_half_life_days",
        "score_cap",
        "nurture_workflow",
        "channels",
        "cross_product_sources",
        "priority",
    ]
    r = _Reader(path, columns, issues)
    _duplicates(r, lambda v: (v["product_id"],), "product_id")
    _duplicates(r, lambda v: (v["nurture_workflow"],), "nurture_workflow")
    parsed: dict[str, tuple[int, int, dict[str, Any]]] = {}
    products: dict[str, Product] = {}
    for row, line, v in r.rows:
        pid = r.text(row, line, v, "product_id")
        if pid and pid != pid.lower():
            r.issue(
                row,
                line,
                f"product_id {pid!r} must be lower-case (events and deals are matched "
                f"lower-cased) — write {pid.lower()!r}",
            )
        fields = {
            "product_name": r.text(row, line, v, "product_name"),
            "is_active": r.boolean(row, line, v, "is_active"),
            "mql_threshold": r.number(row, line, v, "mql_threshold"),
            "sql_threshold": r.number(row, line, v, "sql_threshold"),
            "decay_half_life_days": r.number(row, line, v, "decay_half_life_days"),
            "score_cap": r.number(row, line, v, "score_cap"),
            "nurture_workflow": r.text(row, line, v, "nurture_workflow"),
            "priority": r.number(row, line, v, "priority", integer=True),
        }
        channels = tuple(v["channels"].split("|")) if v["channels"] else ()
        if not channels:
            r.issue(
                row,
                line,
                f"channels is empty — list channels by preference, '|'-separated, from {', '.join(CHANNELS)}",
            )
        for channel in channels:
            if channel not in CHANNELS:
                r.issue(
                    row,
                    line,
                    f"channel {channel!r} is not a channel — use {', '.join(CHANNELS)} "
                    "('|'-separated, no spaces)",
                )
        if len(set(channels)) != len(channels):
            r.issue(row, line, f"channels {v['channels']!r} repeats a channel — list each channel once")
        mql, sql, cap = fields["mql_threshold"], fields["sql_threshold"], fields["score_cap"]
        if None not in (mql, sql, cap) and not (0 < mql < sql <= cap):
            r.issue(
                row,
                line,
                f"thresholds out of order: mql_threshold {mql}, sql_threshold {sql}, score_cap "
                f"{cap} — they must satisfy 0 < mql_threshold < sql_threshold <= score_cap",
            )
        half_life = fields["decay_half_life_days"]
        if half_life is not None and half_life <= 0:
            r.issue(
                row,
                line,
                f"decay_half_life_days {half_life} must be > 0 — write the days after which "
                "an event's points halve, e.g. 14",
            )
        sources = (
            tuple(s for s in v["cross_product_sources"].split("|") if s) if v["cross_product_sources"] else ()
        )
        parsed[pid or f"?{row}"] = (row, line, {**fields, "sources": sources})
        if pid:
            sources_out.setdefault(pid, sources)
        if pid and None not in fields.values() and channels and set(channels) <= set(CHANNELS):
            products.setdefault(
                pid,
                Product(
                    product_id=pid, channels=channels, cross_product_sources=sources, line=line, **fields
                ),
            )
    known = [p for p in parsed if not p.startswith("?")]
    for pid, (row, line, fields) in parsed.items():
        for source in fields["sources"]:
            if source == pid:
                r.issue(
                    row,
                    line,
                    f"cross_product_sources names the product itself ({pid!r}) — list only "
                    "other products (its own events always count)",
                )
            elif source not in known:
                r.issue(
                    row,
                    line,
                    f"cross_product_sources names unknown product {source!r} — use one of "
                    f"{', '.join(known)} or add it to products.csv",
                )
    return products


def _read_event_types(path: Path, issues: list[ConfigIssue]) -> dict[str, EventType]:
    r = _Reader(path, ["event_type", "description", "is_engagement"], issues)
    _duplicates(r, lambda v: (v["event_type"],), "event_type")
    out: dict[str, EventType] = {}
    for row, line, v in r.rows:
        name = r.text(row, line, v, "event_type")
        engagement = r.boolean(row, line, v, "is_engagement")
        if name and name != name.lower():
            r.issue(
                row,
                line,
                f"event_type {name!r} must be lower-case (events are matched lower-cased) — "
                f"write {name.lower()!r}",
            )
        if name and engagement is not None:
            out.setdefault(name, EventType(name, v["description"], engagement, line))
    return out


def _known(values: Iterable[str]) -> str:
    values = sorted(values)
    return ", ".join(values) if values else "(none yet)"


def _read_scoring_rules(
    path: Path,
    issues: list[ConfigIssue],
    cross_sources: dict[str, tuple[str, ...]],
    product_ids: set[str],
    event_types: dict[str, EventType],
    event_types_ok: bool,
) -> list[ScoringRule]:
    columns = [
        "rule_id",
        "product_id",
        "event_product_id",
        "event_type",
        "points",
        "dimension",
        "is_repeatable",
        "daily_cap",
    ]
    r = _Reader(path, columns, issues)
    _duplicates(r, lambda v: (v["rule_id"],), "rule_id")
    _duplicates(
        r,
        lambda v: (v["product_id"], v["event_product_id"], v["event_type"]),
        "rule for product_id / event_product_id / event_type",
    )
    out = []
    for row, line, v in r.rows:
        rule_id = r.text(row, line, v, "rule_id")
        pid = (
            r.one_of(row, line, v, "product_id", sorted(product_ids), "in products.csv")
            if v["product_id"]
            else r.text(row, line, v, "product_id")
        )
        epid = r.text(row, line, v, "event_product_id")
        if epid and epid not in product_ids:
            r.issue(
                row,
                line,
                f"event_product_id {epid!r} is not in products.csv — use one of "
                f"{_known(product_ids)} (the product itself for an ordinary rule)",
            )
            epid = None
        if pid and epid and epid != pid and epid not in cross_sources.get(pid, ()):
            r.issue(
                row,
                line,
                f"cross-product rule: {pid!r} counts {epid!r} events but {epid!r} is not in "
                f"{pid!r}'s cross_product_sources — add {epid} to cross_product_sources of {pid} in "
                f"products.csv, or set event_product_id to {pid}",
            )
        event_type = r.text(row, line, v, "event_type")
        if event_type and event_types_ok and event_type not in event_types:
            r.issue(
                row,
                line,
                f"event_type {event_type!r} is not in event_types.csv — use one of "
                f"{_known(event_types)} or add it to event_types.csv",
            )
            event_type = None
        points = r.number(row, line, v, "points")
        dimension = r.one_of(row, line, v, "dimension", DIMENSIONS, "a scoring dimension")
        repeatable = r.boolean(row, line, v, "is_repeatable")
        cap = r.number(row, line, v, "daily_cap", integer=True, required=False)
        if cap is not None and cap <= 0:
            r.issue(row, line, f"daily_cap {cap} must be > 0 — leave it empty for no daily cap")
            cap = None
            continue
        if None not in (rule_id, pid, epid, event_type, points, dimension, repeatable):
            out.append(ScoringRule(rule_id, pid, epid, event_type, points, dimension, repeatable, cap, line))
    return out


def _read_fit_rules(path: Path, issues: list[ConfigIssue], product_ids: set[str]) -> list[FitRule]:
    r = _Reader(path, ["rule_id", "product_id", "attribute", "operator", "value", "points"], issues)
    _duplicates(r, lambda v: (v["rule_id"],), "rule_id")
    _duplicates(
        r,
        lambda v: (v["product_id"], v["attribute"], v["operator"], v["value"].lower()),
        "fit rule for product_id / attribute / operator / value",
    )
    out = []
    for row, line, v in r.rows:
        rule_id = r.text(row, line, v, "rule_id")
        pid = r.one_of(row, line, v, "product_id", sorted(product_ids), "in products.csv")
        attribute = r.one_of(row, line, v, "attribute", FIT_ATTRIBUTES, "a fit attribute")
        operator = r.one_of(row, line, v, "operator", FIT_OPERATORS, "a fit operator")
        value = r.text(row, line, v, "value")
        if operator == "at_least" and value:
            r.number(row, line, v, "value")
            if attribute and attribute != "employee_count":
                r.issue(
                    row,
                    line,
                    f"operator at_least compares numbers but {attribute} is text — use equals "
                    "or contains, or attribute employee_count",
                )
        elif attribute == "employee_count" and operator and operator != "at_least":
            r.issue(row, line, f"employee_count is a number — use operator at_least, not {operator}")
        points = r.number(row, line, v, "points")
        if None not in (rule_id, pid, attribute, operator, value, points):
            out.append(FitRule(rule_id, pid, attribute, operator, value, points, line))
    return out


def _read_stage_rules(path: Path, issues: list[ConfigIssue]) -> list[StageRule]:
    r = _Reader(path, ["rule_id", "from_stage", "to_stage", "trigger", "priority"], issues)
    _duplicates(r, lambda v: (v["rule_id"],), "rule_id")
    _duplicates(
        r,
        lambda v: (v["from_stage"], v["to_stage"], v["trigger"]),
        "stage rule for from_stage / to_stage / trigger",
    )
    out = []
    for row, line, v in r.rows:
        rule_id = r.text(row, line, v, "rule_id")
        if rule_id == "initial":
            r.issue(row, line, "rule_id 'initial' is reserved for the entry into 'new' — choose another id")
        source = r.one_of(row, line, v, "from_stage", STAGES, "a stage")
        target = r.one_of(row, line, v, "to_stage", STAGES, "a stage")
        trigger = r.one_of(row, line, v, "trigger", TRIGGERS, "a trigger")
        priority = r.number(row, line, v, "priority", integer=True)
        if source and source == target:
            r.issue(row, line, f"from_stage equals to_stage ({source}) — a rule must change the stage")
        if None not in (rule_id, source, target, trigger, priority):
            out.append(StageRule(rule_id, source, target, trigger, priority, line))
    # two rules leaving a stage with one priority are ambiguous when their triggers can hold at one signal
    # (all engagement triggers hold at an engagement signal; an override names its stage)
    by_stage_priority: dict[tuple, StageRule] = {}
    name = _display(path)
    for rule in out:
        kind = "engagement" if rule.trigger in _ENGAGEMENT_TRIGGERS else rule.trigger
        key = (rule.from_stage, rule.priority, kind, rule.to_stage if kind == "manual_override" else "")
        other = by_stage_priority.setdefault(key, rule)
        if other is not rule:
            issues.append(
                ConfigIssue(
                    name,
                    rule.line,
                    None,
                    f"rules {other.rule_id} and {rule.rule_id} both "
                    f"leave {rule.from_stage} with priority {rule.priority} and can fire at the "
                    "same signal — give them different priorities",
                )
            )
    return out


def _read_all(
    seeds_dir: Path, scoring_rules_file: Path | None = None
) -> tuple[LeadConfig, list[ConfigIssue]]:
    seeds_dir = Path(seeds_dir)
    issues: list[ConfigIssue] = []
    cross_sources: dict[str, tuple[str, ...]] = {}
    products = _read_products(seeds_dir / "products.csv", issues, cross_sources)
    # rules are checked against every product id named in products.csv, even one whose row has other issues
    product_ids = set(products) | _ids_in(seeds_dir / "products.csv", "product_id")
    event_types_path = seeds_dir / "event_types.csv"
    event_types = _read_event_types(event_types_path, issues)
    event_type_names = set(event_types) | _ids_in(event_types_path, "event_type")
    scoring_rules = _read_scoring_rules(
        scoring_rules_file or seeds_dir / "scoring_rules.csv",
        issues,
        cross_sources,
        product_ids,
        {name: None for name in event_type_names},
        event_types_path.is_file(),
    )
    fit_rules = _read_fit_rules(seeds_dir / "fit_rules.csv", issues, product_ids)
    stage_rules = _read_stage_rules(seeds_dir / "stage_rules.csv", issues)
    files = list(dict.fromkeys(issue.file for issue in issues))
    issues.sort(key=lambda issue: (files.index(issue.file), issue.line or 0))
    return LeadConfig(products, event_types, scoring_rules, fit_rules, stage_rules), issues


def _ids_in(path: Path, column: str) -> set[str]:
    if not path.is_file():
        return set()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return {(row.get(column) or "").strip() for row in csv.DictReader(handle)} - {""}


def validate_seeds(
    seeds_dir: Path | str = SEEDS_DIR, scoring_rules_file: Path | str | None = None
) -> list[ConfigIssue]:
    """Every problem in the seeds (empty when they are valid).

    Args:
        seeds_dir: folder with products.csv, event_types.csv, scoring_rules.csv, fit_rules.csv, stage_rules.csv.
        scoring_rules_file: a candidate scoring_rules.csv to check instead of the one in seeds_dir.
    """
    _, issues = _read_all(Path(seeds_dir), Path(scoring_rules_file) if scoring_rules_file else None)
    return issues


def load_config(
    seeds_dir: Path | str = SEEDS_DIR, scoring_rules_file: Path | str | None = None
) -> LeadConfig:
    """All seeds, parsed; raises ConfigError listing every issue when any seed is invalid."""
    config, issues = _read_all(Path(seeds_dir), Path(scoring_rules_file) if scoring_rules_file else None)
    if issues:
        raise ConfigError(issues)
    return config


def load_products(seeds_dir: Path | str = SEEDS_DIR) -> list[Product]:
    """The validated products, in the file's order; raises ConfigError when any seed is invalid."""
    return sorted(load_config(seeds_dir).products.values(), key=lambda p: p.line)


def read_dbt_var(name: str, project_dir: Path = DBT_PROJECT_DIR) -> Any:
    """A var from dbt_project.yml (e.g. dormant_after_days), so Python reads it rather than repeating it."""
    import yaml

    project = yaml.safe_load((project_dir / "dbt_project.yml").read_text())
    variables = project.get("vars") or {}
    if name not in variables:
        raise KeyError(f"dbt_project.yml has no var {name!r}")
    return variables[name]


# ----------------------------------------------------------------------------------------------- CLI


def _fmt(number: float) -> str:
    return f"{number:g}"


def cmd_products_validate(args: argparse.Namespace) -> int:
    issues = validate_seeds(args.seeds_dir)
    if issues:
        print(f"leadflow: {len(issues)} problem(s) in {_display(Path(args.seeds_dir))}:", file=sys.stderr)
        for issue in issues:
            print(f"  {issue}", file=sys.stderr)
        return 2
    config = load_config(args.seeds_dir)
    print(
        f"OK: {len(config.products)} products, {len(config.event_types)} event types, "
        f"{len(config.scoring_rules)} scoring rules, {len(config.fit_rules)} fit rules, "
        f"{len(config.stage_rules)} stage rules in {_display(Path(args.seeds_dir))}"
    )
    return 0


def cmd_products_list(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.seeds_dir)
    except ConfigError as error:
        print(
            f"leadflow: the seeds are invalid (run `leadflow products validate`):\n{error}", file=sys.stderr
        )
        return 2
    header = [
        "product",
        "active",
        "mql/sql",
        "half-life d",
        "cap",
        "workflow",
        "channels",
        "rules",
        "fit rules",
        "cross sources",
    ]
    rows = []
    for product in sorted(config.products.values(), key=lambda p: p.line):
        rules = sum(1 for r in config.scoring_rules if r.product_id == product.product_id)
        fits = sum(1 for r in config.fit_rules if r.product_id == product.product_id)
        rows.append(
            [
                product.product_id,
                "yes" if product.is_active else "no",
                f"{_fmt(product.mql_threshold)}/{_fmt(product.sql_threshold)}",
                _fmt(product.decay_half_life_days),
                _fmt(product.score_cap),
                product.nurture_workflow,
                ",".join(product.channels),
                str(rules),
                str(fits),
                ",".join(product.cross_product_sources) or "-",
            ]
        )
    _print_table(header, rows)
    return 0


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())


def _load_preview_rules(warehouse_url: str, rules: Sequence[ScoringRule]) -> None:
    from activation.warehouse import connect

    integer_points = all(float(r.points).is_integer() for r in rules)
    columns = [
        ("rule_id", "text"),
        ("product_id", "text"),
        ("event_product_id", "text"),
        ("event_type", "text"),
        ("points", "integer" if integer_points else "double precision"),
        ("dimension", "text"),
        ("is_repeatable", "boolean"),
        ("daily_cap", "integer"),
    ]
    with connect(warehouse_url) as warehouse:
        warehouse.execute(f"create schema if not exists {PREVIEW_SCHEMA}")
        cascade = " cascade" if warehouse.kind == "postgres" else ""
        warehouse.execute(f"drop table if exists {PREVIEW_SCHEMA}.scoring_rules{cascade}")
        warehouse.execute(
            f"create table {PREVIEW_SCHEMA}.scoring_rules ({', '.join(f'{n} {t}' for n, t in columns)})"
        )
        warehouse.executemany(
            f"insert into {PREVIEW_SCHEMA}.scoring_rules values ({', '.join('?' * len(columns))})",
            [
                (
                    r.rule_id,
                    r.product_id,
                    r.event_product_id,
                    r.event_type,
                    int(r.points) if integer_points else float(r.points),
                    r.dimension,
                    r.is_repeatable,
                    r.daily_cap,
                )
                for r in rules
            ],
        )


def _has_current_scores(warehouse_url: str) -> bool:
    from activation.warehouse import connect

    with connect(warehouse_url, read_only=True) as warehouse:
        return warehouse.table_exists("analytics", "fct_lead_scores")


def _preview_as_of(warehouse_url: str, given: str | None) -> str:
    """as_of for the preview: the one given, else analytics' own as_of when it records one, else now."""
    if given:
        return given
    from activation.warehouse import connect

    with connect(warehouse_url, read_only=True) as warehouse:
        columns = {
            row["column_name"]
            for row in warehouse.query(
                "select column_name from information_schema.columns where table_schema = 'analytics' "
                "and table_name = 'fct_lead_scores'"
            )
        }
        if "as_of" in columns:
            value = warehouse.scalar("select max(as_of) from analytics.fct_lead_scores")
            if value is not None:
                return value.astimezone(UTC).isoformat() if hasattr(value, "astimezone") else str(value)
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    print(
        f"note: analytics.fct_lead_scores records no as_of; previewing at now ({now}) — decay since the last "
        "build also moves scores; pass --as-of to pin it",
        file=sys.stderr,
    )
    return now


def run_dbt(
    args: Sequence[str], env: dict[str, str], target_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the venv's dbt on dbt_project with the given environment (profiles.yml reads LEADFLOW_*)."""
    dbt = str(Path(sys.executable).with_name("dbt"))
    command = [dbt, *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    if target_path is not None:
        command += ["--target-path", str(target_path)]
    return subprocess.run(command, env=env, capture_output=True, text=True)


def cmd_scoring_preview(args: argparse.Namespace) -> int:
    from orchestration.settings import Settings, SettingsError

    rules_file = Path(args.rules)
    issues = validate_seeds(args.seeds_dir, rules_file)
    if issues:
        print(f"leadflow: {len(issues)} problem(s) with {rules_file} and the seeds:", file=sys.stderr)
        for issue in issues:
            print(f"  {issue}", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"leadflow: setting error: {error}", file=sys.stderr)
        return 2
    config = load_config(args.seeds_dir, rules_file)
    url = settings.warehouse.url
    if not _has_current_scores(url):
        print(
            "leadflow: analytics.fct_lead_scores does not exist yet, so there is nothing to compare with — "
            "run `leadflow transform` (or `leadflow run`) first",
            file=sys.stderr,
        )
        return 2
    as_of = _preview_as_of(url, args.as_of)
    _load_preview_rules(url, config.scoring_rules)
    env = {
        **os.environ,
        **settings.warehouse.dbt_env(),
        "LEADFLOW_DBT_SCHEMA": PREVIEW_SCHEMA,
        "DBT_LOG_PATH": str(settings.home / "dbt-logs"),
        "DO_NOT_TRACK": "1",
    }
    dbt_vars = {"scoring_rules_relation": f"{PREVIEW_SCHEMA}.scoring_rules", "as_of": as_of}
    with tempfile.TemporaryDirectory(prefix="leadflow-preview-") as target:
        # seeds and models upstream of fct_lead_scores, rebuilt from scratch; never the scoring_rules seed,
        # which would land on the candidate table's name in the preview schema
        command = ["build", "--full-refresh", "--select", "+fct_lead_scores", "--exclude", "scoring_rules"]
        command += ["--exclude-resource-type", "test", "unit_test", "--vars", json.dumps(dbt_vars)]
        result = run_dbt(command, env, Path(target))
    if result.returncode != 0:
        print(result.stdout[-6000:], result.stderr[-2000:], sep="\n", file=sys.stderr)
        print(f"leadflow: dbt build into {PREVIEW_SCHEMA} failed (exit {result.returncode})", file=sys.stderr)
        return 1
    changes = compare_scores(url, "analytics", PREVIEW_SCHEMA)
    print_score_changes(changes, rules_file, as_of, args.limit)
    return 0


def compare_scores(
    warehouse_url: str, current_schema: str, preview_schema: str
) -> dict[str, dict[str, list]]:
    """Per product: leads that gain or lose MQL / SQL going from current to preview scores."""
    from activation.warehouse import connect

    sql = f"""
        select
            coalesce(p.product_id, c.product_id) as product_id,
            coalesce(p.lead_id, c.lead_id) as lead_id,
            leads.email,
            coalesce(c.is_mql, false) as was_mql, coalesce(p.is_mql, false) as now_mql,
            coalesce(c.is_sql, false) as was_sql, coalesce(p.is_sql, false) as now_sql,
            c.score as old_score, p.score as new_score
        from {preview_schema}.fct_lead_scores as p
        full outer join {current_schema}.fct_lead_scores as c
            on p.lead_id = c.lead_id and p.product_id = c.product_id
        left join {current_schema}.dim_leads as leads
            on leads.lead_id = coalesce(p.lead_id, c.lead_id)
        order by 1, 2
    """
    with connect(warehouse_url, read_only=True) as warehouse:
        rows = warehouse.query(sql)
    changes: dict[str, dict[str, list]] = {}
    for row in rows:
        product = changes.setdefault(
            row["product_id"], {k: [] for k in ("gain_mql", "lose_mql", "gain_sql", "lose_sql")}
        )
        for level in ("mql", "sql"):
            was, now = row[f"was_{level}"], row[f"now_{level}"]
            if now and not was:
                product[f"gain_{level}"].append(row)
            elif was and not now:
                product[f"lose_{level}"].append(row)
    return changes


def print_score_changes(
    changes: dict[str, dict[str, list]], rules_file: Path, as_of: str, limit: int
) -> None:
    print(f"Preview of {rules_file} at as_of {as_of} (analytics → {PREVIEW_SCHEMA}):")
    if not changes:
        print("  no scored leads in either schema")
    for product_id, groups in sorted(changes.items()):
        counts = ", ".join(
            f"{name.replace('_', ' ').upper().replace('GAIN', 'gain').replace('LOSE', 'lose')} {len(rows)}"
            for name, rows in groups.items()
        )
        print(f"  {product_id}: {counts}")
        for name, rows in groups.items():
            for row in rows[:limit]:
                old = "-" if row["old_score"] is None else f"{row['old_score']:.2f}"
                new = "-" if row["new_score"] is None else f"{row['new_score']:.2f}"
                print(f"    {name:<8} {row['lead_id']}  {row['email'] or '(no email)'}  score {old} → {new}")
            if len(rows) > limit:
                print(f"    {name:<8} … and {len(rows) - limit} more")


def add_cli_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `leadflow products validate|list` and `leadflow scoring preview` on the CLI's subparsers."""
    seeds_help = "folder with the seed CSVs (default dbt_project/seeds)"

    products = subparsers.add_parser(
        "products",
        help="check and list the products and their scoring seeds",
        description="Validate or list the lead model's seeds (dbt_project/seeds).",
    )
    products_sub = products.add_subparsers(dest="products_command", metavar="ACTION", required=True)
    validate = products_sub.add_parser(
        "validate",
        help="check every seed; exit 2 listing each problem",
        description="Check products, event_types, scoring_rules, fit_rules and "
        "stage_rules against each other. Exit 0 with a summary, or 2 with "
        "every problem (file, line, fix).",
    )
    validate.add_argument("--seeds-dir", default=str(SEEDS_DIR), help=seeds_help)
    validate.set_defaults(func=cmd_products_validate)
    listing = products_sub.add_parser(
        "list",
        help="a table of products, thresholds and rules",
        description="Show each product's thresholds, half-life, cap, workflow, "
        "channels and rule counts, as the seeds define them.",
    )
    listing.add_argument("--seeds-dir", default=str(SEEDS_DIR), help=seeds_help)
    listing.set_defaults(func=cmd_products_list)

    scoring = subparsers.add_parser(
        "scoring",
        help="try candidate scoring rules before changing the seed",
        description="Tools for scoring rules.",
    )
    scoring_sub = scoring.add_subparsers(dest="scoring_command", metavar="ACTION", required=True)
    preview = scoring_sub.add_parser(
        "preview",
        help="score leads with a candidate scoring_rules.csv and show who gains or loses MQL/SQL",
        description=f"Validate FILE, load it as {PREVIEW_SCHEMA}.scoring_rules, build fct_lead_scores into "
        f"schema {PREVIEW_SCHEMA} with it, and compare with analytics.fct_lead_scores per product.",
    )
    preview.add_argument("--rules", required=True, metavar="FILE", help="candidate scoring_rules.csv")
    preview.add_argument(
        "--as-of",
        default=None,
        help="ISO 8601 UTC time to score at (default: analytics' as_of if recorded, else now)",
    )
    preview.add_argument("--limit", type=int, default=10, help="lead ids to show per group (default 10)")
    preview.add_argument("--seeds-dir", default=str(SEEDS_DIR), help=seeds_help)
    preview.set_defaults(func=cmd_scoring_preview)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m orchestration.lead_config products validate`) until cli.py wires it."""
    parser = argparse.ArgumentParser(prog="leadflow")
    add_cli_commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
