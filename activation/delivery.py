"""Reverse ETL: read a dbt send list, diff it against the ledger, render, batch, hand over, record.

The ledger (`leadflow_activation.delivery_ledger`) makes delivery exactly-once per idempotency key from
leadflow's side: every message of a batch is recorded `pending` (committed) before the batch leaves, and
`sent` (committed) after the receiver acknowledged it. A crash between the two leaves `pending` rows that the
next run re-sends with the same keys, which the receiver (n8n) drops as duplicates; a key recorded `sent` is
never handed over again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from activation.rendering import RenderError, render_message
from activation.warehouse import Warehouse, connect

log = logging.getLogger("leadflow.activation")

LEDGER_SCHEMA = "leadflow_activation"
LEDGER_TABLE = f"{LEDGER_SCHEMA}.delivery_ledger"
MAX_BATCH_SIZE = 1000  # SendGrid accepts at most 1000 personalizations per mail/send request
MAX_ATTEMPTS = 3  # a message the receiver failed this many times stays failed (no endless retries)

LEDGER_DDL = f"""
create table if not exists {LEDGER_TABLE} (
    idempotency_key varchar primary key,
    send_list varchar not null,
    lead_id varchar not null,
    product_id varchar,
    workflow varchar,
    step varchar,
    channel varchar,
    channel_used varchar,
    provider_message_id varchar,
    batch_id varchar,
    status varchar not null,
    retryable boolean,
    attempts integer not null default 0,
    destination varchar,
    error varchar,
    created_at timestamp with time zone not null,
    updated_at timestamp with time zone not null
)
"""


class Transport(Protocol):
    """Somewhere a batch of messages can be handed over."""

    destination: str

    def send(self, batch_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Hand over one batch; raise `DeliveryError` when the receiver refused it.

        May return the receiver's answer: `{"results": [{"idempotency_key", "status", "channel",
        "provider_message_id", "reason"}]}` with status `accepted`, `failed` or `duplicate` per message.
        """


class DeliveryError(RuntimeError):
    """The receiver did not accept a batch (after retries); the message says why."""


@dataclass
class DeliverySummary:
    """What one activation run did, for logs, the CLI summary and Dagster metadata."""

    send_list: str
    destination: str
    candidates: int = 0
    already_sent: int = 0
    sent: int = 0
    failed: int = 0
    quarantined: int = 0
    given_up: int = 0
    not_yet_due: int = 0
    unconfirmed: int = 0
    batches: int = 0
    failed_batches: int = 0
    errors: list[str] = field(default_factory=list)
    duration_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def ensure_ledger(warehouse: Warehouse) -> None:
    """Create the ledger schema and table if missing."""
    warehouse.execute(f"create schema if not exists {LEDGER_SCHEMA}")
    warehouse.execute(LEDGER_DDL)


def read_send_list(
    warehouse: Warehouse, send_list: str, schema: str = "analytics", workflow: str | None = None
) -> list[dict[str, Any]]:
    """All rows of a send list (of one workflow, when given), in a deterministic order."""
    if not warehouse.table_exists(schema, send_list):
        raise DeliveryError(
            f"send list {schema}.{send_list} does not exist: build it first with `leadflow transform`"
        )
    if workflow is not None:  # filtered in SQL: one delivery asset per workflow reads only its own rows
        return warehouse.query(
            f"select * from {schema}.{send_list} where workflow = ? order by idempotency_key", [workflow]
        )
    return warehouse.query(f"select * from {schema}.{send_list} order by idempotency_key")


def ledger_statuses(warehouse: Warehouse, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Status and attempts of each key already in the ledger."""
    del keys  # the ledger is read whole: one scan beats thousands of point lookups on DuckDB
    rows = warehouse.query(f"select idempotency_key, status, attempts, retryable from {LEDGER_TABLE}")
    return {row["idempotency_key"]: row for row in rows}


def _is_due(entry: dict[str, Any] | None) -> bool:
    """Never sent, still pending (a crash or a lost answer), quarantined, or failed fewer than MAX_ATTEMPTS times."""
    if entry is None:
        return True
    if entry["status"] == "sent":
        return False
    if entry["status"] == "failed":
        # a batch the receiver refused or never answered is retried; a message n8n answered `failed` has had
        # every route tried (with retries) already, and n8n remembers its key, so resending it would only be
        # answered `duplicate`
        return entry.get("retryable") is not False and int(entry["attempts"] or 0) < MAX_ATTEMPTS
    return True


def batch_id_for(send_list: str, keys: Sequence[str]) -> str:
    """A deterministic batch id: the same keys always form the same batch id."""
    digest = hashlib.sha256((send_list + "\n" + "\n".join(sorted(keys))).encode()).hexdigest()
    return f"{send_list}-{digest[:16]}"


@dataclass
class DeliveryPlan:
    """What a run would do now: the messages due (rendered or quarantined) and what is skipped and why."""

    send_list: str
    candidates: int = 0
    already_sent: int = 0
    given_up: int = 0
    not_yet_due: int = 0
    due_rows: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    in_ledger: set[str] = field(default_factory=set)  # keys of `due_rows` the ledger already holds


def plan_delivery(
    warehouse: Warehouse,
    send_list: str,
    *,
    from_email: str,
    unsubscribe_group_id: int | None = None,
    workflow: str | None = None,
    schema: str = "analytics",
    now: datetime | None = None,
    render: bool = True,
) -> DeliveryPlan:
    """Diff the send list against the ledger and render what is due; writes nothing.

    A row is due when its `due_at` (if the send list has one) has passed and the ledger has not recorded it as
    sent (or as failed `MAX_ATTEMPTS` times). With `render=False` only `due_rows` is filled: delivery renders
    batch by batch, so it never holds every rendered message at once.
    """
    moment = now or datetime.now(UTC)
    rows = read_send_list(warehouse, send_list, schema, workflow)
    statuses = (
        ledger_statuses(warehouse, (r["idempotency_key"] for r in rows))
        if warehouse.table_exists(LEDGER_SCHEMA, "delivery_ledger")
        else {}
    )
    plan = DeliveryPlan(send_list=send_list, candidates=len(rows))
    for row in rows:
        entry = statuses.get(row["idempotency_key"])
        if entry is not None and entry["status"] == "sent":
            plan.already_sent += 1
        elif not _is_due(entry):
            plan.given_up += 1
        elif _due_later(row.get("due_at"), moment) or _window_closed(row.get("window_ends_at"), moment):
            # not yet due, or its send window closed (local quiet hours began): the next build reschedules it
            plan.not_yet_due += 1
        else:
            plan.due_rows.append(row)
            if entry is not None:
                plan.in_ledger.add(row["idempotency_key"])
    if not render:
        return plan
    for row in plan.due_rows:
        try:
            plan.messages.append(
                render_message(row, from_email=from_email, unsubscribe_group_id=unsubscribe_group_id)
            )
        except RenderError as error:
            plan.quarantined.append((row, str(error)))
    return plan


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _due_later(due_at: Any, moment: datetime) -> bool:
    due = _as_utc(due_at)
    return due is not None and due > moment


def _window_closed(window_ends_at: Any, moment: datetime) -> bool:
    ends = _as_utc(window_ends_at)
    return ends is not None and moment >= ends


def deliver_send_list(
    warehouse_url: str,
    send_list: str,
    transport: Transport,
    *,
    from_email: str,
    unsubscribe_group_id: int | None = None,
    workflow: str | None = None,
    batch_size: int = MAX_BATCH_SIZE,
    schema: str = "analytics",
    now: datetime | None = None,
) -> DeliverySummary:
    """Deliver every due message of a send list not yet sent, exactly once per idempotency key.

    Args:
        warehouse_url: leadflow warehouse URL (duckdb:///… or postgresql://…).
        send_list: name of the send-list model (a table in `schema`).
        transport: where batches go (n8n webhook or file outbox).
        from_email: sender address for email payloads.
        unsubscribe_group_id: SendGrid unsubscribe group put on every email (None = none).
        workflow: deliver only this workflow's rows (None = all).
        batch_size: messages per batch, at most 1000.
        schema: schema holding the send list.
        now: the delivery time (defaults to the current time): rows due later wait.

    Returns:
        A summary with counts of sent, failed, quarantined and already-sent messages.
    """
    started = time.monotonic()
    batch_size = max(1, min(batch_size, MAX_BATCH_SIZE))
    summary = DeliverySummary(send_list=send_list, destination=transport.destination)
    with delivery_lock(warehouse_url, send_list), connect(warehouse_url) as warehouse:
        ensure_ledger(warehouse)
        warehouse.commit()
        plan = plan_delivery(
            warehouse,
            send_list,
            from_email=from_email,
            unsubscribe_group_id=unsubscribe_group_id,
            workflow=workflow,
            schema=schema,
            now=now,
            render=False,
        )

        def render(row: dict[str, Any]) -> dict[str, Any]:
            return render_message(row, from_email=from_email, unsubscribe_group_id=unsubscribe_group_id)

        _deliver(warehouse, summary, plan, send_list, transport, batch_size, now, render)
    summary.duration_seconds = round(time.monotonic() - started, 3)
    return summary


@contextmanager
def delivery_lock(warehouse_url: str, send_list: str, timeout: float = 600.0) -> Iterator[None]:
    """Serialize delivery runs of one send list, across threads and processes.

    Two runs at once would both see a key as unsent and both hand it over. On PostgreSQL a session advisory
    lock serializes them; on DuckDB (one writer process anyway) a lock file beside the warehouse does, which
    also covers two threads of one process.
    """
    if warehouse_url.startswith("duckdb:"):
        from filelock import FileLock

        path = "/" + warehouse_url[len("duckdb:///") :].lstrip("/")
        with FileLock(f"{path}.{send_list}.delivery.lock", timeout=timeout):
            yield
        return
    import psycopg2

    key = int.from_bytes(hashlib.sha256(f"leadflow:{send_list}".encode()).digest()[:8], "big", signed=True)
    lock_connection = psycopg2.connect(warehouse_url)
    lock_connection.autocommit = True
    try:
        with lock_connection.cursor() as cursor:
            cursor.execute("select pg_advisory_lock(%s)", (key,))
        yield
    finally:
        with lock_connection.cursor() as cursor:
            cursor.execute("select pg_advisory_unlock(%s)", (key,))
        lock_connection.close()


def _rendered_batches(
    rows: Sequence[dict[str, Any]],
    batch_size: int,
    render: Callable[[dict[str, Any]], dict[str, Any]],
    quarantined: list[tuple[dict[str, Any], str]],
) -> Iterator[list[dict[str, Any]]]:
    """Render due rows lazily into batches of `batch_size` messages; a row that fails goes to `quarantined`."""
    batch: list[dict[str, Any]] = []
    for row in rows:
        try:
            batch.append(render(row))
        except RenderError as error:
            quarantined.append((row, str(error)))
            continue
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _quarantine(
    warehouse: Warehouse,
    summary: DeliverySummary,
    send_list: str,
    quarantined: list[tuple[dict[str, Any], str]],
    now: datetime | None,
) -> None:
    """Record messages that did not render (one ledger write for the lot); log the first five."""
    if not quarantined:
        return
    _record(warehouse, send_list, [(r, "quarantined", None, err) for r, err in quarantined], now)
    for row, err in quarantined[: max(0, 5 - summary.quarantined)]:
        log.warning("quarantined message %s: %s", row["idempotency_key"], err)
    summary.quarantined += len(quarantined)
    quarantined.clear()


def _deliver(
    warehouse: Warehouse,
    summary: DeliverySummary,
    plan: DeliveryPlan,
    send_list: str,
    transport: Transport,
    batch_size: int,
    now: datetime | None,
    render: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """Render, record and hand over batch by batch, with up to `transport.concurrency` batches in flight.

    Every batch is recorded `pending` (committed) before it leaves and its outcome after its answer, all on
    this thread (the warehouse connection is not shared); only `transport.send` runs on the pool. The next
    batch renders while the previous one is on the wire, and at most `concurrency` batches are pending at
    once, so a crash leaves at most that many batches to re-send with the same keys.
    """
    summary.candidates = plan.candidates
    summary.already_sent = plan.already_sent
    summary.given_up = plan.given_up
    summary.not_yet_due = plan.not_yet_due
    by_key = {r["idempotency_key"]: r for r in plan.due_rows}
    in_ledger = set(plan.in_ledger)  # keys with a ledger row: their pending write is an upsert, others insert
    concurrency = max(1, int(getattr(transport, "concurrency", 1) or 1))
    quarantined: list[tuple[dict[str, Any], str]] = []
    in_flight: deque[tuple[str, list[str], Future]] = deque()

    def finish_oldest() -> None:
        batch_id, keys, sending = in_flight.popleft()
        try:
            answer = sending.result()
        except DeliveryError as error:
            _record(
                warehouse,
                send_list,
                _Entries(
                    [(by_key[k], "failed", batch_id, str(error), None, None, True) for k in keys],
                    recorded=True,
                ),
                now,
            )
            summary.failed += len(keys)
            summary.failed_batches += 1
            summary.errors.append(f"batch {batch_id}: {error}")
            log.error("batch %s failed: %s", batch_id, error)
            return
        outcomes = message_outcomes(keys, answer)
        entries = [
            (by_key[k], status, batch_id, reason, channel, provider_id, status != "failed")
            for k, (status, reason, channel, provider_id) in outcomes.items()
        ]
        _record(warehouse, send_list, _Entries(entries, recorded=True), now)
        for status, reason, _, _ in outcomes.values():
            if status == "sent":
                summary.sent += 1
            elif status == "failed":
                summary.failed += 1
                if len(summary.errors) < 20:
                    summary.errors.append(reason or "failed")
            else:
                summary.unconfirmed += 1
        summary.batches += 1
        log.info("handed over batch %s (%d messages) to %s", batch_id, len(keys), transport.destination)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="leadflow-delivery") as pool:
        for batch in _rendered_batches(plan.due_rows, batch_size, render, quarantined):
            keys = [m["idempotency_key"] for m in batch]
            batch_id = batch_id_for(send_list, keys)
            body = {
                "batch_id": batch_id,
                "send_list": send_list,
                "message_count": len(batch),
                "messages": batch,
            }
            while len(in_flight) >= concurrency:
                finish_oldest()
            _quarantine(warehouse, summary, send_list, quarantined, now)
            pending = _Entries(
                [(by_key[k], "pending", batch_id, None) for k in keys],
                fresh={k for k in keys if k not in in_ledger} if len(set(keys)) == len(keys) else None,
            )
            _record(warehouse, send_list, pending, now)
            in_ledger.update(keys)
            in_flight.append((batch_id, keys, pool.submit(transport.send, batch_id, body)))
        while in_flight:
            finish_oldest()
    _quarantine(warehouse, summary, send_list, quarantined, now)
    if summary.quarantined > 5:
        log.warning(
            "... and %d more quarantined (see status 'quarantined' in %s)",
            summary.quarantined - 5,
            LEDGER_TABLE,
        )


def message_outcomes(
    keys: Sequence[str], answer: dict[str, Any] | None
) -> dict[str, tuple[str, str | None, str | None, str | None]]:
    """Ledger outcome per key from the receiver's answer: (status, reason, channel used, provider message id).

    No per-message answer (file outbox, a plain 2xx) means every message was handed over. With n8n's
    `results`: `accepted` and `duplicate` (it processed that key before) are sent, `failed` is failed with the
    receiver's reason, and a key the answer does not mention stays pending: the next run re-sends it with
    the same key, which the receiver drops if it had in fact processed it.
    """
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        return {key: ("sent", None, None, None) for key in keys}
    by_key = {r.get("idempotency_key"): r for r in results if isinstance(r, dict)}
    outcomes: dict[str, tuple[str, str | None, str | None, str | None]] = {}
    for key in keys:
        result = by_key.get(key)
        if result is None:
            outcomes[key] = ("pending", "the receiver's answer did not mention this message", None, None)
            continue
        status = str(result.get("status", "")).lower()
        channel, provider_id = result.get("channel"), result.get("provider_message_id")
        if status in ("accepted", "sent", "duplicate"):
            outcomes[key] = ("sent", None, channel, provider_id)
        elif status == "failed":
            outcomes[key] = ("failed", str(result.get("reason") or "failed without a reason"), channel, None)
        else:
            outcomes[key] = ("pending", f"unknown status {status!r} from the receiver", channel, provider_id)
    return outcomes


LEDGER_COLUMNS = (
    "idempotency_key",
    "send_list",
    "lead_id",
    "product_id",
    "workflow",
    "step",
    "channel",
    "batch_id",
    "status",
    "error",
    "created_at",
    "updated_at",
    "channel_used",
    "provider_message_id",
    "retryable",
    "attempts",
)
# what recording an entry does to a key the ledger already holds (the upsert; outcomes' UPDATE does the same)
LEDGER_UPSERT = """
        on conflict (idempotency_key) do update set
            batch_id = excluded.batch_id,
            status = excluded.status,
            error = excluded.error,
            retryable = excluded.retryable,
            channel_used = coalesce(excluded.channel_used, delivery_ledger.channel_used),
            provider_message_id = coalesce(excluded.provider_message_id, delivery_ledger.provider_message_id),
            updated_at = excluded.updated_at,
            attempts = delivery_ledger.attempts
                + case when excluded.status = 'pending' then 1 else 0 end
        """
OUTCOME_COLUMNS = (
    "idempotency_key",
    "batch_id",
    "status",
    "error",
    "retryable",
    "channel_used",
    "provider_message_id",
    "updated_at",
)
OUTCOME_ASSIGNMENTS = """
            batch_id = cast(s.batch_id as varchar),
            status = cast(s.status as varchar),
            error = cast(s.error as varchar),
            retryable = cast(s.retryable as boolean),
            channel_used = coalesce(cast(s.channel_used as varchar), t.channel_used),
            provider_message_id = coalesce(cast(s.provider_message_id as varchar), t.provider_message_id),
            updated_at = cast(s.updated_at as timestamp with time zone),
            attempts = t.attempts + case when cast(s.status as varchar) = 'pending' then 1 else 0 end
        """


def _ledger_rows(send_list: str, entries: Sequence[tuple], stamp: datetime) -> list[tuple]:
    """Ledger rows (`LEDGER_COLUMNS`) of entries `(row, status, batch_id, error[, channel_used,
    provider_message_id, retryable])`; a first recording counts one attempt."""
    rows = []
    for row, status, batch_id, error, *extra in entries:
        channel_used, provider_message_id, retryable = (*extra, None, None, None)[:3]
        rows.append(
            (
                row["idempotency_key"],
                send_list,
                row["lead_id"],
                row.get("product_id"),
                row.get("workflow"),
                row.get("step"),
                row.get("channel"),
                batch_id,
                status,
                error,
                stamp,
                stamp,
                channel_used,
                provider_message_id,
                retryable if status == "failed" else None,
                1,
            )
        )
    return rows


class _Entries(list):
    """Ledger entries for `_record`, with what the caller knows about their keys, so the write can be cheaper:

    - `fresh`: the keys (all distinct) of these entries that the ledger does not hold yet: a plain insert;
    - `recorded`: every key (all distinct) was recorded pending by this run: an UPDATE of those rows.

    A list, so anything wrapping `_record` sees the entries as before.
    """

    __slots__ = ("fresh", "recorded")

    def __init__(self, entries: Iterable[tuple], *, fresh: set[str] | None = None, recorded: bool = False):
        super().__init__(entries)
        self.fresh = fresh
        self.recorded = recorded


def _record(
    warehouse: Warehouse,
    send_list: str,
    entries: Sequence[tuple],
    now: datetime | None,
) -> None:
    """Write ledger entries `(row, status, batch_id, error[, channel_used, provider_message_id, retryable])` and
    commit them before the caller goes on.

    The effect is always the upsert's (`LEDGER_UPSERT`): a new key gets a row with one attempt, a known key its
    new status (a `pending` one more attempt). On DuckDB the upsert costs twice a plain insert or update, so
    entries that say which keys are new (`_Entries.fresh`) insert those, and outcomes of keys this run just
    recorded pending (`_Entries.recorded`) update them; should the ledger not be as they say (another writer),
    that write is rolled back and the entries upserted.
    """
    stamp = now or datetime.now(UTC)
    fresh = getattr(entries, "fresh", None)
    if fresh:
        done = _insert_fresh(warehouse, send_list, entries, fresh, stamp)
    else:
        done = getattr(entries, "recorded", False) and _update_outcomes(warehouse, entries, stamp)
    if not done:
        _upsert(warehouse, send_list, entries, stamp)


def _upsert(warehouse: Warehouse, send_list: str, entries: Sequence[tuple], stamp: datetime) -> None:
    warehouse.insert_rows(
        LEDGER_TABLE, LEDGER_COLUMNS, _ledger_rows(send_list, entries, stamp), on_conflict=LEDGER_UPSERT
    )
    warehouse.commit()


def _insert_fresh(
    warehouse: Warehouse, send_list: str, entries: Sequence[tuple], fresh: set[str], stamp: datetime
) -> bool:
    """Insert the entries of `fresh` keys, upsert the others, commit; False (rolled back) if that failed."""
    new = [entry for entry in entries if entry[0]["idempotency_key"] in fresh]
    known = [entry for entry in entries if entry[0]["idempotency_key"] not in fresh]
    try:
        warehouse.insert_rows(LEDGER_TABLE, LEDGER_COLUMNS, _ledger_rows(send_list, new, stamp))
        if known:
            warehouse.insert_rows(
                LEDGER_TABLE, LEDGER_COLUMNS, _ledger_rows(send_list, known, stamp), on_conflict=LEDGER_UPSERT
            )
        warehouse.commit()
    except Exception as error:  # a key recorded meanwhile (or any failure): the upsert decides
        log.debug("ledger insert fell back to the upsert: %s", error)
        warehouse.rollback(restart=True)
        return False
    return True


def _update_outcomes(warehouse: Warehouse, entries: Sequence[tuple], stamp: datetime) -> bool:
    """Update the rows of keys recorded pending with their outcomes, commit; False (rolled back) unless the
    update found every key once."""
    rows = [
        (
            row["idempotency_key"],
            batch_id,
            status,
            error,
            (extra[2] if len(extra) > 2 else None) if status == "failed" else None,
            extra[0] if extra else None,
            extra[1] if len(extra) > 1 else None,
            stamp,
        )
        for row, status, batch_id, error, *extra in entries
    ]
    if len({r[0] for r in rows}) != len(rows):
        return False
    updated = warehouse.update_rows(
        LEDGER_TABLE, "idempotency_key", OUTCOME_COLUMNS, rows, OUTCOME_ASSIGNMENTS
    )
    if updated != len(rows):
        warehouse.rollback(restart=True)
        return False
    warehouse.commit()
    return True
