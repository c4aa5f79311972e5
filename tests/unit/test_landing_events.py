"""Landing-zone events source: line validation, normalization, load-once bookkeeping (DuckDB)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import dlt
import duckdb
import pytest

import ingestion.events.source as events_source
from ingestion.events import (
    InvalidEventLine,
    landing_events_source,
    list_landing_files,
    parse_event_line,
    pending_landing_files,
    write_landing_file,
)
from ingestion.events.source import MAX_RAW_LINE_CHARS, raw_line_text

STREAM = "product_events"
VALID_FIELDS = b'"event_id": "a", "event_type": "login", "occurred_at": "2026-11-20T09:15:00Z"'


def _event(event_id: str, **overrides: object) -> dict[str, object]:
    return {"event_id": event_id, "event_type": "login", "occurred_at": "2026-11-20T09:15:00Z", **overrides}


def _reason(line: bytes | str) -> str:
    with pytest.raises(InvalidEventLine) as excinfo:
        parse_event_line(line, STREAM)
    return str(excinfo.value)


# --- line validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "invalid JSON: "),
        (b'{"event_id": "a"', "invalid JSON: "),
        (b"\xff\xfe{}", "not valid UTF-8: invalid start byte at byte 0"),
        (b"[1, 2]", "not a JSON object: got array"),
        (b'"just a string"', "not a JSON object: got string"),
        (b"null", "not a JSON object: got null"),
        (
            b'{"event_type": "login", "occurred_at": "2026-11-20T09:15:00Z"}',
            "missing required field 'event_id'",
        ),
        (
            b'{"event_id": "", "event_type": "login", "occurred_at": "2026-11-20T09:15:00Z"}',
            "'event_id' must be a non-empty string, got empty string",
        ),
        (
            b'{"event_id": "  ", "event_type": "login", "occurred_at": "2026-11-20T09:15:00Z"}',
            "'event_id' must be a non-empty string, got blank string",
        ),
        (
            b'{"event_id": 42, "event_type": "login", "occurred_at": "2026-11-20T09:15:00Z"}',
            "'event_id' must be a non-empty string, got number",
        ),
        (
            b'{"event_id": null, "event_type": "login", "occurred_at": "2026-11-20T09:15:00Z"}',
            "'event_id' must be a non-empty string, got null",
        ),
        (
            b'{"event_id": "a\\u0000b", "event_type": "login", "occurred_at": "2026-11-20T09:15:00Z"}',
            "'event_id' contains a NUL character",
        ),
        (b'{"event_id": "a", "occurred_at": "2026-11-20T09:15:00Z"}', "missing required field 'event_type'"),
        (
            b'{"event_id": "a", "event_type": {"k": 1}, "occurred_at": "2026-11-20T09:15:00Z"}',
            "'event_type' must be a non-empty string, got object",
        ),
        (b'{"event_id": "a", "event_type": "login"}', "missing required field 'occurred_at'"),
        (
            b'{"event_id": "a", "event_type": "login", "occurred_at": 1700000000}',
            "'occurred_at' must be an ISO 8601 string, got number",
        ),
        (
            b'{"event_id": "a", "event_type": "login", "occurred_at": "yesterday"}',
            "'occurred_at' is not an ISO 8601 timestamp: 'yesterday'",
        ),
        (
            b'{"event_id": "a", "event_type": "login", "occurred_at": "2026-13-01T00:00:00Z"}',
            "'occurred_at' is not an ISO 8601 timestamp: '2026-13-01T00:00:00Z'",
        ),
        (
            b'{"event_id": "a", "event_type": "login", "occurred_at": "2026-11-20"}',
            "'occurred_at' has no time of day: '2026-11-20'",
        ),
        (
            b'{"event_id": "a", "event_type": "login", "occurred_at": "0001-01-01T00:00:00+01:00"}',
            "'occurred_at' is out of range once converted to UTC: '0001-01-01T00:00:00+01:00'",
        ),
        (
            b"{" + VALID_FIELDS + b', "properties": [1]}',
            "'properties' must be a JSON object, got array",
        ),
        (
            b"{" + VALID_FIELDS + b', "properties": "x"}',
            "'properties' must be a JSON object, got string",
        ),
        (
            b"{" + VALID_FIELDS + b', "email": ["x"]}',
            "'email' must be a string or null, got array",
        ),
        (
            b"{" + VALID_FIELDS + b', "user_id": true}',
            "'user_id' must be a string or null, got boolean",
        ),
    ],
)
def test_malformed_lines_have_precise_reasons(line: bytes, reason: str) -> None:
    got = _reason(line)
    if reason.endswith(": "):
        assert got.startswith(reason), got
    else:
        assert got == reason


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [
        ("2026-11-20T09:15:00Z", datetime(2026, 11, 20, 9, 15, tzinfo=UTC)),
        ("2026-11-20T09:15:00", datetime(2026, 11, 20, 9, 15, tzinfo=UTC)),  # naive means UTC
        ("2026-11-20 09:15:00", datetime(2026, 11, 20, 9, 15, tzinfo=UTC)),
        ("2026-11-20T10:15:00+01:00", datetime(2026, 11, 20, 9, 15, tzinfo=UTC)),
        ("2026-11-20T04:15:00-05:00", datetime(2026, 11, 20, 9, 15, tzinfo=UTC)),
        ("2026-11-21T00:45:00+15:30", datetime(2026, 11, 20, 9, 15, tzinfo=UTC)),
        ("2026-11-20T09:15:00.123456Z", datetime(2026, 11, 20, 9, 15, 0, 123456, tzinfo=UTC)),
        ("20261120T091500Z", datetime(2026, 11, 20, 9, 15, tzinfo=UTC)),  # ISO 8601 basic format
    ],
)
def test_occurred_at_is_normalized_to_utc(occurred_at: str, expected: datetime) -> None:
    event = parse_event_line(json.dumps(_event("a", occurred_at=occurred_at)), STREAM)
    assert event.occurred_at == expected
    assert event.occurred_at.utcoffset().total_seconds() == 0


def test_valid_line_is_normalized() -> None:
    line = json.dumps(
        _event(
            "e-1",
            product_id="atlas",
            email="Ana@Example.com",
            phone="+44 20 7946 0000",
            user_id=123,
            properties={"page": "/pricing", "nested": {"a": [1, None]}},
            unknown_key="ignored",
        )
    )
    event = parse_event_line(line.encode(), STREAM)
    assert event.event_id == "e-1"
    assert event.email == "Ana@Example.com"  # normalization of identities belongs to dbt staging
    assert event.user_id == "123"
    assert event.source == STREAM
    assert json.loads(event.properties) == {"page": "/pricing", "nested": {"a": [1, None]}}


@pytest.mark.parametrize("source", [None, ""])
def test_missing_source_defaults_to_stream(source: str | None) -> None:
    assert parse_event_line(json.dumps(_event("a", source=source)), "sendgrid").source == "sendgrid"
    assert parse_event_line(json.dumps(_event("a", source="crm")), "sendgrid").source == "crm"


def test_properties_absent_is_null_and_nul_in_properties_is_escaped() -> None:
    assert parse_event_line(json.dumps(_event("a")), STREAM).properties is None
    event = parse_event_line(json.dumps(_event("a", properties={"k": "x\x00y"})), STREAM)
    assert "\x00" not in event.properties
    assert json.loads(event.properties) == {"k": "x\x00y"}


def test_raw_line_is_storable_text() -> None:
    assert raw_line_text(b"ab\x00\xffcd") == "ab\ufffd\ufffdcd"
    long = raw_line_text(b"x" * (MAX_RAW_LINE_CHARS + 5))
    assert long == "x" * MAX_RAW_LINE_CHARS + "…[truncated 5 chars]"


# --- writer and listing -----------------------------------------------------------------------------


def test_writer_is_atomic_and_never_overwrites(tmp_path: Path) -> None:
    path = write_landing_file(tmp_path, STREAM, "batch-1", [_event("a"), _event("b")])
    assert path == tmp_path / STREAM / "batch-1.jsonl"
    assert [json.loads(line)["event_id"] for line in path.read_text().splitlines()] == ["a", "b"]
    assert not list((tmp_path / STREAM).glob("*.tmp"))
    with pytest.raises(FileExistsError):
        write_landing_file(tmp_path, STREAM, "batch-1", [_event("c")])
    assert path.read_text().count("\n") == 2
    with pytest.raises(ValueError, match="invalid landing"):
        write_landing_file(tmp_path, "../escape", "x", [])
    generated = write_landing_file(tmp_path, STREAM, None, [_event("d", occurred_at=datetime(2026, 1, 1))])
    assert generated.suffix == ".jsonl"
    assert json.loads(generated.read_text())["occurred_at"] == "2026-01-01T00:00:00"


def test_listing_ignores_tmp_files_and_sorts(tmp_path: Path) -> None:
    write_landing_file(tmp_path, "b_stream", "2", [])
    write_landing_file(tmp_path, "b_stream", "1", [])
    write_landing_file(tmp_path, "a_stream", "9", [])
    (tmp_path / "a_stream" / "in-flight.jsonl.tmp").write_text("{}")
    assert list_landing_files(tmp_path) == ["a_stream/9.jsonl", "b_stream/1.jsonl", "b_stream/2.jsonl"]
    assert list_landing_files(tmp_path, ["b_stream"]) == ["b_stream/1.jsonl", "b_stream/2.jsonl"]
    assert list_landing_files(tmp_path / "missing") == []
    assert pending_landing_files(tmp_path, ["b_stream/1.jsonl"]) == ["a_stream/9.jsonl", "b_stream/2.jsonl"]


# --- loading into DuckDB ----------------------------------------------------------------------------


class Loader:
    """One dlt pipeline into a temp DuckDB file, plus query helpers."""

    def __init__(self, tmp_path: Path) -> None:
        self.landing = tmp_path / "landing"
        self.db = tmp_path / "warehouse.duckdb"
        self.pipeline = dlt.pipeline(
            pipeline_name=f"events_{uuid.uuid4().hex[:8]}",
            destination=dlt.destinations.duckdb(str(self.db)),
            dataset_name="raw_events",
            pipelines_dir=str(tmp_path / "pipelines"),
        )

    def run(self, **kwargs: object) -> None:
        self.pipeline.run(landing_events_source(str(self.landing), **kwargs))

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.db), read_only=True) as con:
            return con.execute(sql).fetchall()


@pytest.fixture
def loader(tmp_path: Path) -> Loader:
    return Loader(tmp_path)


def test_load_writes_events_and_quarantine_with_types(loader: Loader) -> None:
    path = write_landing_file(loader.landing, STREAM, "a", [_event("e1", properties={"x": 1}), _event("e2")])
    with path.open("a") as handle:
        handle.write("\n{broken\n")
    loader.run()
    assert loader.query("select event_id, line_number, properties from raw_events.events order by 1") == [
        ("e1", 1, '{"x":1}'),
        ("e2", 2, None),
    ]
    [(landing_file, line_number, raw_line, reason)] = loader.query(
        "select landing_file, line_number, raw_line, reason from raw_events.quarantine"
    )
    assert (landing_file, line_number, raw_line) == ("product_events/a.jsonl", 4, "{broken")
    assert reason.startswith("invalid JSON: ")
    types = dict(
        loader.query(
            "select table_name || '.' || column_name, data_type from information_schema.columns"
            " where table_schema = 'raw_events' and table_name in ('events', 'quarantine')"
        )
    )
    assert types["events.occurred_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["events.line_number"] == "BIGINT"
    assert types["events.properties"] == "VARCHAR"
    assert types["quarantine.quarantined_at"] == "TIMESTAMP WITH TIME ZONE"
    assert sorted(c.split(".", 1)[1] for c in types if c.startswith("events.")) == sorted(
        events_source.EVENTS_ARROW_SCHEMA.names
    )


def test_tables_exist_after_first_run_even_without_rows(loader: Loader) -> None:
    loader.landing.mkdir()
    loader.run()
    assert loader.query("select count(*) from raw_events.events") == [(0,)]
    assert loader.query("select count(*) from raw_events.quarantine") == [(0,)]


def test_file_is_never_loaded_twice_and_new_files_are_picked_up(loader: Loader) -> None:
    write_landing_file(loader.landing, STREAM, "a", [_event("e1"), _event("e2")])
    loader.run()
    # A load id per row would show a second load; compare whole-table contents across runs instead.
    first = loader.query("select * from raw_events.events order by event_id")
    loader.run()
    assert loader.query("select * from raw_events.events order by event_id") == first
    assert loader.pipeline.last_trace.last_normalize_info.row_counts.get("events", 0) == 0

    write_landing_file(loader.landing, STREAM, "b", [_event("e3"), "not an object"])  # type: ignore[list-item]
    loader.run()
    assert [row[0] for row in loader.query("select event_id from raw_events.events order by 1")] == [
        "e1",
        "e2",
        "e3",
    ]
    assert loader.query("select landing_file, line_number from raw_events.quarantine") == [
        ("product_events/b.jsonl", 2)
    ]
    loaded = loader.pipeline.state["sources"]["events"]["resources"]["events"]["loaded_files"]
    assert loaded == {"product_events/a.jsonl": 2, "product_events/b.jsonl": 1}


def test_state_survives_a_wiped_pipelines_dir(loader: Loader, tmp_path: Path) -> None:
    write_landing_file(loader.landing, STREAM, "a", [_event("e1")])
    loader.run()
    loader.pipeline.drop()  # what dagster-dlt does before every run: state comes back from the warehouse
    loader.run()
    assert loader.query("select count(*) from raw_events.events") == [(1,)]
    assert loader.pipeline.last_trace.last_normalize_info.row_counts.get("events", 0) == 0


def test_first_occurrence_of_a_duplicate_event_id_wins(loader: Loader) -> None:
    write_landing_file(loader.landing, STREAM, "a", [_event("dup", event_type="first"), _event("x")])
    write_landing_file(loader.landing, STREAM, "b", [_event("dup", event_type="second")])
    loader.run()
    write_landing_file(loader.landing, STREAM, "c", [_event("dup", event_type="third")])
    loader.run()
    assert loader.query("select event_type, landing_file from raw_events.events where event_id = 'dup'") == [
        ("first", "product_events/a.jsonl")
    ]


def test_a_failed_extract_leaves_the_file_for_the_next_run(
    loader: Loader, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_landing_file(loader.landing, STREAM, "a", [_event("e1")])
    loader.run()
    write_landing_file(loader.landing, STREAM, "b", [_event("e2"), _event("e3")])
    real_parse = events_source._parse

    def failing_parse(line: bytes | str, stream: str) -> tuple:
        if b"e3" in line:
            raise OSError("disk went away")
        return real_parse(line, stream)

    monkeypatch.setattr(events_source, "_parse", failing_parse)
    with pytest.raises(Exception, match="disk went away"):
        loader.run()
    monkeypatch.setattr(events_source, "_parse", real_parse)
    loader.run()
    assert [row[0] for row in loader.query("select event_id from raw_events.events order by 1")] == [
        "e1",
        "e2",
        "e3",
    ]


def test_streams_argument_limits_folders_and_source_defaults(loader: Loader) -> None:
    write_landing_file(loader.landing, STREAM, "a", [_event("p1")])
    write_landing_file(loader.landing, "sendgrid", "a", [_event("s1")])
    loader.run(streams=["sendgrid"])
    assert loader.query("select event_id, stream, source from raw_events.events") == [
        ("s1", "sendgrid", "sendgrid")
    ]
    loader.run()
    assert loader.query("select count(*) from raw_events.events") == [(2,)]


def test_small_chunks_load_the_same_rows(loader: Loader) -> None:
    write_landing_file(loader.landing, STREAM, "a", [_event(f"e{i}") for i in range(25)])
    write_landing_file(loader.landing, STREAM, "b", [_event(f"e{i}") for i in range(20, 30)])
    loader.run(chunk_rows=7, log_every_files=1)
    assert loader.query("select count(*), count(distinct event_id) from raw_events.events") == [(30, 30)]
    assert loader.query("select landing_file from raw_events.events where event_id = 'e22'") == [
        ("product_events/a.jsonl",)
    ]


def test_each_line_is_parsed_once_for_both_tables(loader: Loader, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_landing_file(loader.landing, STREAM, "a", [_event("e1"), _event("e2"), _event("e1")])
    with path.open("a") as handle:
        handle.write("\n{broken\n[1]\n")
    real_parse = events_source._parse
    calls: list[bytes | str] = []

    def counting_parse(line: bytes | str, stream: str) -> tuple:
        calls.append(line)
        return real_parse(line, stream)

    monkeypatch.setattr(events_source, "_parse", counting_parse)
    loader.run()
    assert len(calls) == 5  # 3 events + 2 malformed; the blank line is skipped
    assert loader.query("select event_id, line_number from raw_events.events order by 1") == [
        ("e1", 1),
        ("e2", 2),
    ]
    assert loader.query("select line_number from raw_events.quarantine order by 1") == [(5,), (6,)]


def test_selecting_one_table_leaves_the_other_its_backlog(loader: Loader) -> None:
    path = write_landing_file(loader.landing, STREAM, "a", [_event("e1")])
    with path.open("a") as handle:
        handle.write("{broken\n")
    loader.pipeline.run(landing_events_source(str(loader.landing)).with_resources("events"))
    assert loader.query("select event_id from raw_events.events") == [("e1",)]
    resources = loader.pipeline.state["sources"]["events"]["resources"]
    assert resources["events"]["loaded_files"] == {"product_events/a.jsonl": 1}
    assert "quarantine" not in resources
    assert "landing_files" not in resources  # the shared reader keeps no state of its own

    loader.run()  # the file is still new for quarantine, and only for quarantine
    counts = loader.pipeline.last_trace.last_normalize_info.row_counts
    assert (counts.get("events", 0), counts.get("quarantine", 0)) == (0, 1)
    assert loader.query("select line_number from raw_events.quarantine") == [(2,)]
    resources = loader.pipeline.state["sources"]["events"]["resources"]
    assert resources["quarantine"]["loaded_files"] == {"product_events/a.jsonl": 1}

    write_landing_file(loader.landing, STREAM, "b", [_event("e2")])
    loader.pipeline.run(landing_events_source(str(loader.landing)).with_resources("quarantine"))
    counts = loader.pipeline.last_trace.last_normalize_info.row_counts
    assert (counts.get("events", 0), counts.get("quarantine", 0)) == (0, 0)
    loader.run()
    assert [row[0] for row in loader.query("select event_id from raw_events.events order by 1")] == [
        "e1",
        "e2",
    ]
    assert sorted(loader.pipeline.state["sources"]["events"]["resources"]) == ["events", "quarantine"]


def test_source_exposes_only_the_two_tables() -> None:
    source = landing_events_source("/nonexistent")
    assert list(source.selected_resources) == ["events", "quarantine"]
    assert list(source.resources) == ["events", "quarantine"]


def test_timestamps_convert_exactly_at_the_edges() -> None:
    values = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 20, 9, 15, 0, 123456, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    assert events_source._timestamp_array(values).to_pylist() == values
