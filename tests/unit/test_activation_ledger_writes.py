"""The ledger's cheap write paths (insert for new keys, UPDATE for outcomes) leave exactly what the upsert does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from activation import delivery
from activation.delivery import LEDGER_TABLE, _Entries, _record, ensure_ledger
from activation.warehouse import Warehouse, connect

SEND_LIST = "send_list_nurture"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_pair(request, tmp_path) -> tuple[str, str]:
    """Two empty warehouses of one kind: one written through the hints, one through the plain upsert."""
    if request.param == "duckdb":
        urls = (f"duckdb:///{tmp_path / 'hinted.duckdb'}", f"duckdb:///{tmp_path / 'upsert.duckdb'}")
    else:
        from tests.conftest import create_database

        server = request.getfixturevalue("postgres_server_url")
        urls = (create_database(server), create_database(server))
    for url in urls:
        with connect(url) as wh:
            ensure_ledger(wh)
    return urls


def _row(i: int) -> dict:
    return {
        "idempotency_key": f"key-{i:02d}",
        "lead_id": f"lead{i}",
        "product_id": None if i == 3 else "atlas",
        "workflow": "atlas_nurture",
        "step": "mql_welcome",
        "channel": "email",
    }


def _ledger(url: str) -> list[dict]:
    with connect(url, read_only=True) as wh:
        return wh.query(f"select * from {LEDGER_TABLE} order by idempotency_key")


def _write(urls: tuple[str, str], entries: list[tuple], now: datetime, **hints) -> None:
    hinted, plain = urls
    with connect(hinted) as wh:
        _record(wh, SEND_LIST, _Entries(entries, **hints), now)
    with connect(plain) as wh:
        _record(wh, SEND_LIST, list(entries), now)


def test_hinted_writes_leave_the_upserts_ledger(warehouse_pair, monkeypatch):
    restarts = []
    real_rollback = Warehouse.rollback

    def rollback(self, restart=False):
        restarts.append(restart)
        return real_rollback(self, restart)

    monkeypatch.setattr(Warehouse, "rollback", rollback)
    rows = [_row(i) for i in range(8)]
    now = T0
    # a first batch: every key new
    _write(
        warehouse_pair,
        [(r, "pending", "b1", None) for r in rows[:6]],
        now,
        fresh={r["idempotency_key"] for r in rows[:6]},
    )
    # its outcomes: sent with and without provider details, failed (not retryable), unmentioned (pending)
    now += timedelta(seconds=5)
    outcomes = [
        (rows[0], "sent", "b1", None, "email", "sg-0", True),
        (rows[1], "sent", "b1", None, None, None, True),
        (rows[2], "failed", "b1", "550 mailbox unavailable", "whatsapp", None, False),
        (rows[3], "pending", "b1", "the receiver's answer did not mention this message", None, None, True),
        (rows[4], "sent", "b1", None, "chatbot", "cb-4", True),
        (rows[5], "failed", "b1", "gave up", None, None, True),
    ]
    _write(warehouse_pair, outcomes, now, recorded=True)
    # the next run: the unsent keys again beside two new ones (a mixed batch)
    now += timedelta(minutes=1)
    again = [rows[2], rows[3], rows[5], rows[6], rows[7]]
    _write(warehouse_pair, [(r, "pending", "b2", None) for r in again], now, fresh={"key-06", "key-07"})
    now += timedelta(seconds=5)
    _write(
        warehouse_pair,
        [
            (rows[2], "sent", "b2", None, None, "sg-2", True),  # keeps the channel used the first time
            (rows[3], "sent", "b2", None, "email", None, True),
            (rows[5], "failed", "b2", "receiver refused", None, None, True),  # a refused batch
            (rows[6], "pending", "b2", "no answer", None, None, True),
            (rows[7], "sent", "b2", None, None, None, True),
        ],
        now,
        recorded=True,
    )
    # hints the ledger contradicts (another writer): the upsert decides
    now += timedelta(minutes=1)
    _write(warehouse_pair, [(r, "pending", "b3", None) for r in rows[5:7]], now, fresh={"key-05", "key-06"})
    ghost = {**_row(9), "idempotency_key": "key-09"}
    now += timedelta(seconds=5)
    _write(
        warehouse_pair,
        [
            (rows[5], "sent", "b3", None, "email", "sg-5", True),
            (ghost, "pending", "b3", "no answer", None, None, True),
        ],
        now,
        recorded=True,
    )
    # quarantined rows (plain entries): a new key and a known one
    _write(
        warehouse_pair,
        [(_row(10), "quarantined", None, "template x: missing"), (rows[1], "quarantined", None, "e")],
        now,
    )

    assert restarts == [True, True]  # the two contradicted hints fell back to the upsert, nothing else did
    hinted, plain = (_ledger(url) for url in warehouse_pair)
    assert hinted == plain
    by_key = {r["idempotency_key"]: r for r in hinted}
    assert (
        by_key["key-02"]["channel_used"] == "whatsapp" and by_key["key-02"]["provider_message_id"] == "sg-2"
    )
    assert by_key["key-03"]["attempts"] == 3  # pending, unmentioned (pending again), pending in run 2
    assert by_key["key-05"]["retryable"] is None and by_key["key-05"]["status"] == "sent"
    assert by_key["key-09"]["attempts"] == 1 and by_key["key-09"]["status"] == "pending"
    assert by_key["key-06"]["attempts"] == 3


def test_outcomes_naming_a_key_twice_are_left_to_the_upsert(warehouse_pair, monkeypatch):
    """The UPDATE path takes distinct keys only; anything else goes to the upsert (which refuses duplicates)."""
    with connect(warehouse_pair[0]) as wh:
        _record(wh, SEND_LIST, _Entries([(_row(1), "pending", "b", None)], fresh={"key-01"}), T0)
    upserted = []
    monkeypatch.setattr(
        delivery, "_upsert", lambda wh, send_list, entries, stamp: upserted.append(len(entries))
    )
    outcome = (_row(1), "sent", "b", None, None, None, True)
    with connect(warehouse_pair[0]) as wh:
        _record(wh, SEND_LIST, _Entries([outcome, outcome], recorded=True), T0)
    assert upserted == [2]
    assert [r["status"] for r in _ledger(warehouse_pair[0])] == ["pending"]
