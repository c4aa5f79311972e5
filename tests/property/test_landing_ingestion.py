"""Property 1 (landing part): every valid landing event lands exactly once in `raw_events.events`, every
malformed line lands in `raw_events.quarantine`, whatever the split of lines into files and runs.

A dlt run costs about a second, so the examples are batched: hypothesis draws 100 examples first, each in
its own stream folder `exNNN` (and event ids prefixed `exNNN-`), step k of every example is written
before pipeline run k, and after every run each example is compared with a reference computed here.
The reference is independent of the loader: the generator knows what it wrote (UTC instants, the reason
for each malformed line) and replays "first loaded occurrence of an event id wins".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dlt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.events import landing_events_source

MAX_EXAMPLES = 100

# --- what a line is -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidLine:
    local_id: str  # prefixed with the example's namespace when written
    event_type: str
    occurred_at: str  # as written
    instant: datetime  # expected UTC value
    optional: dict[str, Any]  # product_id/email/phone/user_id/source as written (absent keys absent)
    properties: dict[str, Any] | None
    has_properties_key: bool


@dataclass(frozen=True)
class BadLine:
    kind: str  # how it is malformed; the reason check depends on it
    text: str | None = None  # for kinds that carry their own text


@dataclass(frozen=True)
class BlankLine:
    text: str


Line = ValidLine | BadLine | BlankLine

safe_text = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=0, max_size=12
)
non_blank_text = safe_text.filter(lambda value: value.strip() != "")
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def timestamps(draw: st.DrawFn) -> tuple[str, datetime]:
    naive = draw(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)))
    style = draw(st.sampled_from(["naive", "naive_space", "z", "offset"]))
    if style == "naive":
        return naive.isoformat(), naive.replace(tzinfo=UTC)
    if style == "naive_space":
        return naive.isoformat(sep=" "), naive.replace(tzinfo=UTC)
    if style == "z":
        return naive.isoformat() + "Z", naive.replace(tzinfo=UTC)
    minutes = draw(st.integers(-14 * 60, 14 * 60))
    aware = naive.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    return aware.isoformat(), aware.astimezone(UTC)


@st.composite
def valid_lines(draw: st.DrawFn) -> ValidLine:
    # A pool of 6 ids per example makes duplicates across lines, files and runs common.
    local_id = draw(st.sampled_from([f"e{i}" for i in range(6)]))
    written, instant = draw(timestamps())
    optional: dict[str, Any] = {}
    for name in ("product_id", "email", "phone", "user_id", "source"):
        choice = draw(st.sampled_from(["absent", "null", "text"]))
        if choice == "null":
            optional[name] = None
        elif choice == "text":
            optional[name] = draw(safe_text)
    has_properties_key = draw(st.booleans())
    properties = draw(st.none() | st.dictionaries(st.text(max_size=6), json_values, max_size=4))
    return ValidLine(
        local_id=local_id,
        event_type=draw(non_blank_text),
        occurred_at=written,
        instant=instant,
        optional=optional,
        properties=properties if has_properties_key else None,
        has_properties_key=has_properties_key,
    )


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# Line breaks would split the line; "{}"-like text would be valid JSON.
broken_json = (
    st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00\n\r"), max_size=12)
    .map(lambda value: "{" + value)
    .filter(lambda value: not _is_json(value))
)
bad_lines = st.one_of(
    st.builds(BadLine, st.just("not_json"), broken_json),
    st.builds(BadLine, st.sampled_from(["array", "number", "string_line"])),
    st.builds(BadLine, st.sampled_from(["missing_event_id", "empty_event_type", "numeric_event_id"])),
    st.builds(BadLine, st.sampled_from(["date_only", "garbled_time", "missing_occurred_at"])),
    st.builds(BadLine, st.sampled_from(["properties_array", "email_object"])),
)
lines = st.one_of(
    valid_lines(),
    valid_lines(),
    bad_lines,
    st.builds(BlankLine, st.sampled_from(["", "   ", "\t"])),
)
files = st.lists(lines, min_size=0, max_size=6)
FILE_NAMES = [f"f{i:02d}" for i in range(12)]


@st.composite
def examples(draw: st.DrawFn) -> list[dict[str, list[Line]]]:
    """Steps (runs) of files: [{file name: lines}, ...]; names are unique within an example."""
    step_count = draw(st.integers(1, 3))
    names = draw(st.lists(st.sampled_from(FILE_NAMES), unique=True, min_size=0, max_size=6))
    steps: list[dict[str, list[Line]]] = [{} for _ in range(step_count)]
    for name in names:
        steps[draw(st.integers(0, step_count - 1))][name] = draw(files)
    return steps


# --- rendering and the reference -----------------------------------------------------------------------


def render(line: Line, prefix: str) -> str:
    if isinstance(line, BlankLine):
        return line.text
    if isinstance(line, ValidLine):
        record: dict[str, Any] = {
            "event_id": prefix + line.local_id,
            "event_type": line.event_type,
            "occurred_at": line.occurred_at,
            **line.optional,
        }
        if line.has_properties_key:
            record["properties"] = line.properties
        return json.dumps(record)
    base = {"event_id": prefix + "bad", "event_type": "login", "occurred_at": "2026-11-20T09:15:00Z"}
    kind = line.kind
    if kind == "not_json":
        return line.text or "{"
    if kind == "array":
        return json.dumps([base])
    if kind == "number":
        return "42"
    if kind == "string_line":
        return json.dumps("event")
    if kind == "missing_event_id":
        return json.dumps({k: v for k, v in base.items() if k != "event_id"})
    if kind == "empty_event_type":
        return json.dumps({**base, "event_type": ""})
    if kind == "numeric_event_id":
        return json.dumps({**base, "event_id": 7})
    if kind == "date_only":
        return json.dumps({**base, "occurred_at": "2026-11-20"})
    if kind == "garbled_time":
        return json.dumps({**base, "occurred_at": "2026-11-20T25:99:00Z"})
    if kind == "missing_occurred_at":
        return json.dumps({k: v for k, v in base.items() if k != "occurred_at"})
    if kind == "properties_array":
        return json.dumps({**base, "properties": [1, 2]})
    if kind == "email_object":
        return json.dumps({**base, "email": {"a": 1}})
    raise AssertionError(kind)


EXPECTED_REASONS: dict[str, Callable[[str], bool]] = {
    "not_json": lambda r: r.startswith("invalid JSON: "),
    "array": lambda r: r == "not a JSON object: got array",
    "number": lambda r: r == "not a JSON object: got number",
    "string_line": lambda r: r == "not a JSON object: got string",
    "missing_event_id": lambda r: r == "missing required field 'event_id'",
    "empty_event_type": lambda r: r == "'event_type' must be a non-empty string, got empty string",
    "numeric_event_id": lambda r: r == "'event_id' must be a non-empty string, got number",
    "date_only": lambda r: r == "'occurred_at' has no time of day: '2026-11-20'",
    "garbled_time": lambda r: r == "'occurred_at' is not an ISO 8601 timestamp: '2026-11-20T25:99:00Z'",
    "missing_occurred_at": lambda r: r == "missing required field 'occurred_at'",
    "properties_array": lambda r: r == "'properties' must be a JSON object, got array",
    "email_object": lambda r: r == "'email' must be a string or null, got object",
}


@dataclass
class Reference:
    """What the warehouse must hold for one example after the runs so far."""

    events: dict[str, tuple[str, int, ValidLine]] = field(default_factory=dict)  # id -> (file, line, event)
    quarantine: dict[tuple[str, int], tuple[BadLine, str]] = field(default_factory=dict)  # -> (line, raw)

    def apply_run(self, stream: str, prefix: str, step: dict[str, list[Line]]) -> int:
        """Add one run's files; returns the rows the run hands to dlt for `events`.

        That is one per distinct id among the run's valid lines, an id loaded by an earlier run
        included (the insert-only merge then keeps the earlier row).
        """
        run_ids = {line.local_id for lines in step.values() for line in lines if isinstance(line, ValidLine)}
        for name in sorted(step):
            landing_file = f"{stream}/{name}.jsonl"
            for number, line in enumerate(step[name], start=1):
                if isinstance(line, ValidLine):
                    self.events.setdefault(prefix + line.local_id, (landing_file, number, line))
                elif isinstance(line, BadLine):
                    self.quarantine[(landing_file, number)] = (line, render(line, prefix))
        return len(run_ids)


def write_step(landing: Path, stream: str, prefix: str, step: dict[str, list[Line]]) -> None:
    folder = landing / stream
    folder.mkdir(parents=True, exist_ok=True)
    for name, file_lines in step.items():
        text = "".join(render(line, prefix) + "\n" for line in file_lines)
        (folder / f"{name}.jsonl").write_text(text, encoding="utf-8")


def check_example(
    index: int,
    reference: Reference,
    events: list[tuple],
    quarantine: list[tuple],
    stream: str,
) -> None:
    where = f"example {index} ({stream})"
    got_ids = [row[0] for row in events]
    assert len(got_ids) == len(set(got_ids)), f"{where}: duplicate event ids {got_ids}"
    assert set(got_ids) == set(reference.events), (
        f"{where}: events {sorted(got_ids)} != {sorted(reference.events)}"
    )
    for (
        event_id,
        row_stream,
        event_type,
        occurred_at,
        product_id,
        email,
        phone,
        user_id,
        source,
        props,
        lf,
        ln,
    ) in events:
        landing_file, number, line = reference.events[event_id]
        assert (lf, ln) == (landing_file, number), f"{where}: {event_id} came from {lf}:{ln}"
        assert row_stream == stream
        assert event_type == line.event_type, where
        assert occurred_at == line.instant, f"{where}: {event_id} {occurred_at} != {line.instant}"
        optional = line.optional
        assert (product_id, email, phone, user_id) == tuple(
            optional.get(name) or None for name in ("product_id", "email", "phone", "user_id")
        ), where
        assert source == (optional.get("source") or stream), where
        expected_props = line.properties if line.has_properties_key else None
        assert (None if props is None else json.loads(props)) == expected_props, where
    got_quarantine = {(lf, ln): (raw, reason) for lf, ln, raw, reason in quarantine}
    assert set(got_quarantine) == set(reference.quarantine), (
        f"{where}: quarantine {sorted(got_quarantine)} != {sorted(reference.quarantine)}"
    )
    for key, (bad, raw) in reference.quarantine.items():
        got_raw, reason = got_quarantine[key]
        assert got_raw == raw, f"{where}: raw line at {key}"
        assert EXPECTED_REASONS[bad.kind](reason), f"{where}: {bad.kind} got reason {reason!r}"


# --- the batched property ------------------------------------------------------------------------------


def collect_examples(count: int) -> list[list[dict[str, list[Line]]]]:
    collected: list[list[dict[str, list[Line]]]] = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(examples())
    def collect(example: list[dict[str, list[Line]]]) -> None:
        collected.append(example)

    collect()
    return collected


def run_property(
    tmp_path: Path,
    destination: Any,
    fetch: Callable[[str], list[tuple]],
    count: int = MAX_EXAMPLES,
) -> int:
    """Write, load and check `count` examples; returns the number of pipeline runs."""
    batch = collect_examples(count)
    all_lines = [line for example in batch for step in example for lines in step.values() for line in lines]
    valid_ids = [line.local_id for line in all_lines if isinstance(line, ValidLine)]
    # The batch must exercise what the property is about; at 100 examples each is near-certain.
    assert len(valid_ids) > len(set(valid_ids)), "no duplicate event ids drawn"
    assert any(isinstance(line, BadLine) for line in all_lines), "no malformed lines drawn"
    assert any(len(example) > 1 for example in batch), "no example with several runs"
    landing = tmp_path / "landing"
    landing.mkdir()
    pipeline = dlt.pipeline(
        pipeline_name=f"prop_{uuid.uuid4().hex[:8]}",
        destination=destination,
        dataset_name="raw_events",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    references = [Reference() for _ in batch]
    runs = max(len(example) for example in batch)
    for step_index in range(runs):
        for index, example in enumerate(batch):
            if step_index < len(example):
                stream, prefix = f"ex{index:03d}", f"ex{index:03d}-"
                write_step(landing, stream, prefix, example[step_index])
        quarantined_before = sum(len(r.quarantine) for r in references)
        new_events = 0
        for index, example in enumerate(batch):
            if step_index < len(example):
                stream, prefix = f"ex{index:03d}", f"ex{index:03d}-"
                new_events += references[index].apply_run(stream, prefix, example[step_index])
        pipeline.run(landing_events_source(str(landing)))
        # Tables alone cannot show a file read twice (merge absorbs it): the run's row counts can.
        row_counts = pipeline.last_trace.last_normalize_info.row_counts
        new_quarantine = sum(len(r.quarantine) for r in references) - quarantined_before
        assert (row_counts.get("events", 0), row_counts.get("quarantine", 0)) == (new_events, new_quarantine)
        events = fetch(
            "select event_id, stream, event_type, occurred_at, product_id, email, phone, user_id, source,"
            " properties, landing_file, line_number from raw_events.events"
        )
        quarantine = fetch("select landing_file, line_number, raw_line, reason from raw_events.quarantine")
        for index, reference in enumerate(references):
            stream = f"ex{index:03d}"
            check_example(
                index,
                reference,
                [row for row in events if row[1] == stream],
                [row for row in quarantine if row[0].startswith(stream + "/")],
                stream,
            )
    return runs


def test_every_landing_line_lands_exactly_once_duckdb(tmp_path: Path) -> None:
    import duckdb

    db = tmp_path / "warehouse.duckdb"

    def fetch(sql: str) -> list[tuple]:
        with duckdb.connect(str(db), read_only=True) as con:
            return con.execute(sql).fetchall()

    run_property(tmp_path, dlt.destinations.duckdb(str(db)), fetch)


@pytest.mark.postgres
def test_every_landing_line_lands_exactly_once_postgres(tmp_path: Path, postgres_url: str) -> None:
    import psycopg2

    def fetch(sql: str) -> list[tuple]:
        conn = psycopg2.connect(postgres_url)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()
        finally:
            conn.close()

    # dlt's PostgresCredentials insist on a password; the test server trusts local connections.
    parts = urlsplit(postgres_url)
    credentials = postgres_url
    if parts.password is None:
        netloc = parts.netloc.replace("@", ":unused@", 1) if "@" in parts.netloc else parts.netloc
        credentials = urlunsplit(parts._replace(netloc=netloc))
    run_property(tmp_path, dlt.destinations.postgres(credentials), fetch)
    types = dict(
        fetch(
            "select table_name || '.' || column_name, data_type from information_schema.columns"
            " where table_schema = 'raw_events' and table_name in ('events', 'quarantine')"
        )
    )
    assert types["events.occurred_at"] == "timestamp with time zone"
    assert types["events.line_number"] == "bigint"
    # dlt's "text" is an unbounded varchar on PostgreSQL: same storage and operators as text.
    assert types["events.properties"] in ("text", "character varying")
    assert types["quarantine.quarantined_at"] == "timestamp with time zone"
    assert types["quarantine.line_number"] == "bigint"
