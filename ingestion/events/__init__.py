"""Landing-zone events source (`raw_events`): see README.md in this folder."""

from ingestion.events.source import (
    InvalidEventLine,
    LandingEvent,
    landing_events_source,
    list_landing_files,
    new_landing_name,
    parse_event_line,
    parse_occurred_at,
    pending_landing_files,
    write_landing_file,
)

__all__ = [
    "InvalidEventLine",
    "LandingEvent",
    "landing_events_source",
    "list_landing_files",
    "new_landing_name",
    "parse_event_line",
    "parse_occurred_at",
    "pending_landing_files",
    "write_landing_file",
]
