"""Durable landing with duplicate absorption.

One request's accepted events become one landing file, written with `ingestion.events.write_landing_file`
(tmp file, fsync, link to `.jsonl`, fsync folder). The seen-index (SQLite,
`$LEADFLOW_HOME/intake/seen.sqlite3`) remembers every identity key of every landed event. Each request runs

    BEGIN IMMEDIATE → look up its keys → write the landing file → insert its keys → COMMIT

so concurrent requests (threads or worker processes) are serialized on the index and a key is landed at
most once. The keys are committed only after the file is durable: a crash in between leaves the file
without its keys, the provider retries, the event lands a second time with the same deterministic
`event_id`, and the loader's merge on `event_id` still keeps one row. Nothing acknowledged is ever lost.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ingestion.events import write_landing_file

STREAMS = ("product_events", "sendgrid", "whatsapp", "chatbot", "delivery", "manual")
_BUSY_TIMEOUT_SECONDS = 60.0  # a request waits this long for other requests' fsyncs before failing (503)
_PRUNE_EVERY_SECONDS = 3600.0


@dataclass
class Candidate:
    """An event ready to land, with every key that identifies it (its event_id is always one of them)."""

    event: dict[str, Any]
    keys: tuple[str, ...]


@dataclass
class Rejected:
    """An event that cannot land, with the reason (goes to the quarantine folder)."""

    index: int
    reason: str
    raw: Any


@dataclass
class LandingResult:
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    landing_file: str | None = None
    rejections: list[Rejected] = field(default_factory=list)


def _storable(raw: Any) -> Any:
    """The raw item as orjson can write it; else its Python-json text (e.g. integers beyond 64 bits)."""
    try:
        orjson.dumps(raw)
        return raw
    except TypeError:
        return json.dumps(raw, default=str)


class IntakeStore:
    """The landing writer plus its seen-index. Thread-safe; one instance per app."""

    def __init__(
        self, landing_dir: Path, intake_dir: Path, quarantine_dir: Path, retention_days: int
    ) -> None:
        self.landing_dir = landing_dir
        self.quarantine_dir = quarantine_dir
        self.index_path = intake_dir / "seen.sqlite3"
        self.retention_seconds = retention_days * 86400
        self._local = threading.local()
        self._last_prune = 0.0
        intake_dir.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("pragma journal_mode=wal")
            conn.execute(
                "create table if not exists seen (key text primary key, landing_file text not null, "
                "seen_at real not null)"
            )
            conn.execute("create index if not exists seen_by_time on seen (seen_at)")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.index_path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None)
        # FULL: the index must not forget a key the landing file already holds after a power cut (it would
        # only cost a duplicate line, which the loader collapses, but FULL keeps landing exactly-once).
        conn.execute("pragma synchronous=full")
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def land(
        self, stream: str, candidates: Sequence[Candidate], rejected: Sequence[Rejected] = ()
    ) -> LandingResult:
        """Land new events of one request; count duplicates; quarantine the rejected ones.

        Returns only after everything it reports as accepted or quarantined is on disk.
        """
        if stream not in STREAMS:
            raise ValueError(f"unknown landing stream {stream!r}")
        result = LandingResult(quarantined=len(rejected), rejections=list(rejected))
        if rejected:
            now = datetime.now(UTC).isoformat()
            write_landing_file(
                self.quarantine_dir,
                stream,
                None,
                (
                    {"index": r.index, "reason": r.reason, "received_at": now, "raw": _storable(r.raw)}
                    for r in rejected
                ),
            )
        if not candidates:
            return result
        conn = self._conn()
        conn.execute("begin immediate")
        try:
            all_keys = sorted({key for c in candidates for key in c.keys})
            seen: set[str] = set()
            for start in range(0, len(all_keys), 500):  # SQLite's bound-parameter limit is 999 on old builds
                chunk = all_keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                seen.update(
                    row[0] for row in conn.execute(f"select key from seen where key in ({marks})", chunk)
                )
            fresh: list[Candidate] = []
            for candidate in candidates:
                if any(key in seen for key in candidate.keys):
                    result.duplicates += 1
                    continue
                seen.update(candidate.keys)  # a repeat inside the same batch is a duplicate too
                fresh.append(candidate)
            if fresh:
                path = write_landing_file(self.landing_dir, stream, None, (c.event for c in fresh))
                result.landing_file = path.relative_to(self.landing_dir).as_posix()
                stamp = time.time()
                conn.executemany(
                    "insert or ignore into seen (key, landing_file, seen_at) values (?, ?, ?)",
                    [(key, result.landing_file, stamp) for c in fresh for key in c.keys],
                )
                result.accepted = len(fresh)
            conn.execute("commit")
        except BaseException:
            conn.execute("rollback")
            raise
        self._maybe_prune()
        return result

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < _PRUNE_EVERY_SECONDS:
            return
        self._last_prune = now
        self._conn().execute("delete from seen where seen_at < ?", (time.time() - self.retention_seconds,))

    def landing_writable(self) -> tuple[bool, str | None]:
        """Whether a landing file can be written right now (for /health)."""
        probe = self.landing_dir / ".health"
        try:
            probe.mkdir(parents=True, exist_ok=True)
            target = probe / "probe"
            target.write_bytes(b"ok")
            target.unlink()
            return True, None
        except OSError as error:
            return False, f"landing zone not writable ({type(error).__name__})"
