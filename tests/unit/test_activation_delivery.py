"""Delivery against a recording webhook with injected faults, on a DuckDB send list (no dbt needed)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter

import pytest
from jinja2 import DictLoader, Environment, StrictUndefined

from activation import delivery as delivery_module
from activation.delivery import LEDGER_TABLE, deliver_send_list
from activation.transports import OutboxTransport, WebhookTransport
from activation.warehouse import connect
from tests.support.webhook_sink import WebhookSink

FROM = "nurture@leadflow.example"


def make_send_list(url: str, count: int, template: str = "mql_welcome") -> list[str]:
    keys = []
    with connect(url) as wh:
        wh.execute("create schema if not exists analytics")
        wh.execute("drop table if exists analytics.send_list_nurture")
        wh.execute(
            "create table analytics.send_list_nurture (idempotency_key varchar, lead_id varchar, "
            "product_id varchar, product_name varchar, workflow varchar, step varchar, channel varchar, "
            "recipient varchar, template varchar, first_name varchar, score double precision, stage varchar, "
            "reason varchar, due_at timestamp with time zone)"
        )
        rows = []
        for i in range(count):
            key = hashlib.md5(f"lead{i}|atlas|nurture|mql_welcome|email|once".encode()).hexdigest()
            keys.append(key)
            rows.append(
                (
                    key,
                    f"lead{i}",
                    "atlas",
                    "Atlas",
                    "atlas_nurture",
                    "mql_welcome",
                    "email",
                    f"person{i}@example.com",
                    template,
                    f"Ana{i}",
                    42.0,
                    "mql",
                    "score >= 40",
                    None,
                )
            )
        columns = [
            "idempotency_key",
            "lead_id",
            "product_id",
            "product_name",
            "workflow",
            "step",
            "channel",
            "recipient",
            "template",
            "first_name",
            "score",
            "stage",
            "reason",
            "due_at",
        ]
        wh.insert_rows("analytics.send_list_nurture", columns, rows)
    return sorted(keys)


def ledger(url: str) -> dict[str, dict]:
    with connect(url, read_only=True) as wh:
        return {r["idempotency_key"]: r for r in wh.query(f"select * from {LEDGER_TABLE}")}


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path):
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'wh.duckdb'}"
    from tests.conftest import create_database

    return create_database(request.getfixturevalue("postgres_server_url"))


def webhook(sink: WebhookSink, **kwargs) -> WebhookTransport:
    kwargs.setdefault("backoff_seconds", 0.01)
    kwargs.setdefault("max_backoff_seconds", 0.05)
    return WebhookTransport(sink.url, sink.token, **kwargs)


def test_outbox_run_twice_hands_over_nothing_new(warehouse_url, tmp_path):
    keys = make_send_list(warehouse_url, 25)
    outbox = OutboxTransport(tmp_path / "outbox")
    first = deliver_send_list(warehouse_url, "send_list_nurture", outbox, from_email=FROM, batch_size=10)
    assert (first.sent, first.batches, first.already_sent) == (25, 3, 0)
    files = sorted((tmp_path / "outbox" / "send_list_nurture").glob("*.json"))
    assert len(files) == 3
    written = [m["idempotency_key"] for f in files for m in json.loads(f.read_text())["messages"]]
    assert sorted(written) == keys
    second = deliver_send_list(warehouse_url, "send_list_nurture", outbox, from_email=FROM, batch_size=10)
    assert (second.sent, second.already_sent) == (0, 25)
    assert len(list((tmp_path / "outbox" / "send_list_nurture").glob("*.json"))) == 3
    assert {r["status"] for r in ledger(warehouse_url).values()} == {"sent"}


def test_email_payload_is_a_sendgrid_v3_body_carrying_the_key(warehouse_url, tmp_path):
    make_send_list(warehouse_url, 1)
    deliver_send_list(warehouse_url, "send_list_nurture", OutboxTransport(tmp_path), from_email=FROM)
    (batch,) = (tmp_path / "send_list_nurture").glob("*.json")
    message = json.loads(batch.read_text())["messages"][0]
    body = message["sendgrid"]
    assert body["from"]["email"] == FROM
    assert body["personalizations"][0]["to"][0]["email"] == message["recipient"]
    assert body["custom_args"]["idempotency_key"] == message["idempotency_key"]
    assert {c["type"] for c in body["content"]} == {"text/plain", "text/html"}
    assert "Atlas" in body["subject"]


def test_5xx_on_batch_3_of_10_is_retried_with_the_same_keys(warehouse_url):
    keys = make_send_list(warehouse_url, 100)
    with WebhookSink() as sink:
        sink.pass_next(2)
        sink.fail_next(500, times=2)
        summary = deliver_send_list(
            warehouse_url, "send_list_nurture", webhook(sink), from_email=FROM, batch_size=10
        )
        assert summary.sent == 100 and summary.failed == 0
        bodies = [json.loads(r["raw"]) for r in sink.requests]
        assert len(bodies) == 12  # 10 batches + 2 retries of batch 3
        assert bodies[2] == bodies[3] == bodies[4]  # batch 3 re-sent byte-for-byte: same keys
        assert sorted(sink.accepted_keys()) == keys


def test_persistent_failure_is_recorded_and_only_unsent_batches_retried_next_run(warehouse_url):
    keys = make_send_list(warehouse_url, 100)
    with WebhookSink() as sink:
        sink.pass_next(2)
        sink.fail_next(503, times=3)  # batch 3 gives up after 3 attempts
        summary = deliver_send_list(
            warehouse_url, "send_list_nurture", webhook(sink, max_attempts=3), from_email=FROM, batch_size=10
        )
        assert summary.sent == 90 and summary.failed == 10
        failed_rows = {k: r for k, r in ledger(warehouse_url).items() if r["status"] == "failed"}
        assert len(failed_rows) == 10
        assert all("503" in r["error"] for r in failed_rows.values())
        failed = set(failed_rows)
        sent_first = set(sink.accepted_keys())
        retry = deliver_send_list(
            warehouse_url, "send_list_nurture", webhook(sink), from_email=FROM, batch_size=10
        )
        assert retry.sent == 10 and retry.already_sent == 90
        second_run_keys = sink.accepted_keys()[len(sent_first) :]
        assert set(second_run_keys) == failed  # only the failed batch went again
        assert sorted(set(sink.accepted_keys())) == keys
        assert {r["status"] for r in ledger(warehouse_url).values()} == {"sent"}


def test_429_waits_for_retry_after(warehouse_url):
    make_send_list(warehouse_url, 5)
    waits = []
    with WebhookSink() as sink:
        sink.fail_next(429, retry_after=7)
        summary = deliver_send_list(
            warehouse_url,
            "send_list_nurture",
            webhook(sink, max_backoff_seconds=60, sleep=waits.append),
            from_email=FROM,
        )
    assert summary.sent == 5
    assert waits == [7.0]


def test_other_4xx_fails_the_batch_with_the_receivers_message(warehouse_url):
    make_send_list(warehouse_url, 3)
    with WebhookSink(token="right") as sink:
        transport = WebhookTransport(sink.url, "wrong", backoff_seconds=0.01)
        summary = deliver_send_list(warehouse_url, "send_list_nurture", transport, from_email=FROM)
        assert summary.failed == 3 and len(sink.requests) == 1  # a 403 is not retried
    assert "403" in summary.errors[0] and "Authorization data is wrong" in summary.errors[0]
    assert {r["status"] for r in ledger(warehouse_url).values()} == {"failed"}


def test_dropped_answer_is_retried_with_the_same_keys_and_recorded_once(warehouse_url):
    keys = make_send_list(warehouse_url, 10)
    with WebhookSink() as sink:
        sink.drop_next()
        summary = deliver_send_list(warehouse_url, "send_list_nurture", webhook(sink), from_email=FROM)
        assert summary.sent == 10
        assert len(sink.accepted) == 2  # the receiver saw the batch twice ...
        assert sink.accepted[0] == sink.accepted[1]  # ... with identical keys, which it deduplicates
    rows = ledger(warehouse_url)
    assert sorted(rows) == keys and {r["status"] for r in rows.values()} == {"sent"}


def test_crash_between_pending_and_sent_resends_same_keys_never_new_ones(
    warehouse_url, tmp_path, monkeypatch
):
    keys = make_send_list(warehouse_url, 20)
    outbox = OutboxTransport(tmp_path / "outbox")
    real_record = delivery_module._record

    def crash_on_sent(warehouse, send_list, entries, now):
        if entries and entries[0][1] == "sent":
            raise KeyboardInterrupt("simulated crash after hand-over, before recording sent")
        return real_record(warehouse, send_list, entries, now)

    monkeypatch.setattr(delivery_module, "_record", crash_on_sent)
    with pytest.raises(KeyboardInterrupt):
        deliver_send_list(warehouse_url, "send_list_nurture", outbox, from_email=FROM, batch_size=20)
    assert {r["status"] for r in ledger(warehouse_url).values()} == {"pending"}
    monkeypatch.setattr(delivery_module, "_record", real_record)
    summary = deliver_send_list(warehouse_url, "send_list_nurture", outbox, from_email=FROM, batch_size=20)
    assert summary.sent == 20
    (batch_file,) = (tmp_path / "outbox" / "send_list_nurture").glob("*.json")  # same batch id, same file
    assert sorted(m["idempotency_key"] for m in json.loads(batch_file.read_text())["messages"]) == keys


def test_template_error_quarantines_only_that_message(warehouse_url, tmp_path, monkeypatch):
    make_send_list(warehouse_url, 4)
    with connect(warehouse_url) as wh:
        wh.execute("update analytics.send_list_nurture set template = 'broken' where lead_id = 'lead2'")
    env = Environment(
        loader=DictLoader(
            {
                "mql_welcome.subject.j2": "Hi {{ first_name }}",
                "mql_welcome.text.j2": "Hello {{ first_name }}",
                "mql_welcome.html.j2": "<p>Hello {{ first_name }}</p>",
                "broken.subject.j2": "Hi {{ no_such_field }}",
                "broken.text.j2": "x",
                "broken.html.j2": "x",
            }
        ),
        undefined=StrictUndefined,
    )
    monkeypatch.setattr("activation.rendering._environment", env)
    summary = deliver_send_list(
        warehouse_url, "send_list_nurture", OutboxTransport(tmp_path), from_email=FROM
    )
    assert (summary.sent, summary.quarantined) == (3, 1)
    rows = ledger(warehouse_url)
    (bad,) = [r for r in rows.values() if r["status"] == "quarantined"]
    assert bad["lead_id"] == "lead2" and "no_such_field" in bad["error"]


def test_per_message_answers_reach_the_ledger(warehouse_url):
    keys = make_send_list(warehouse_url, 6)
    with WebhookSink() as sink:
        sink.failing_keys[keys[0]] = "all routes failed: email 550 mailbox unavailable"
        sink.omit_keys.add(keys[1])
        sink.seen_keys.add(keys[2])  # the receiver had processed this key before
        summary = deliver_send_list(warehouse_url, "send_list_nurture", webhook(sink), from_email=FROM)
        assert (summary.sent, summary.failed, summary.unconfirmed, summary.failed_batches) == (4, 1, 1, 0)
        rows = ledger(warehouse_url)
        assert rows[keys[0]]["status"] == "failed" and "550" in rows[keys[0]]["error"]
        assert rows[keys[1]]["status"] == "pending"
        assert rows[keys[2]]["status"] == "sent"
        assert rows[keys[3]]["channel_used"] == "email" and rows[keys[3]]["provider_message_id"].startswith(
            "stub-"
        )

        # next run: the pending key goes again (now answered); the message n8n failed (every route tried) is
        # final and never resent: n8n remembers its key and would only answer `duplicate`
        sink.omit_keys.clear()
        again = deliver_send_list(warehouse_url, "send_list_nurture", webhook(sink), from_email=FROM)
        assert (again.sent, again.failed, again.already_sent, again.given_up) == (1, 0, 4, 1)
        assert ledger(warehouse_url)[keys[0]]["status"] == "failed"
        sent_keys = [k for body in sink.accepted for k in [m["idempotency_key"] for m in body["messages"]]]
        assert sent_keys.count(keys[0]) == 1


def test_dry_run_counts_equal_what_a_real_run_then_sends(warehouse_url, tmp_path):
    from activation.dry_run import dry_run

    make_send_list(warehouse_url, 30)
    deliver_send_list(
        warehouse_url,
        "send_list_nurture",
        OutboxTransport(tmp_path / "first"),
        from_email=FROM,
        batch_size=10,
    )
    # the send list grows to 45 rows (the first 30 already sent); one new row will not render
    extra = make_send_list(warehouse_url, 45)
    with connect(warehouse_url) as wh:
        wh.execute(
            "update analytics.send_list_nurture set template = 'no_such_template' where lead_id = 'lead40'"
        )
    before = ledger(warehouse_url)
    report = dry_run(warehouse_url, "send_list_nurture", from_email=FROM)
    assert ledger(warehouse_url) == before  # nothing recorded
    assert report.already_sent == 30 and len(report.quarantined) == 1
    assert report.to_send == {("atlas", "email"): 14}
    assert "would send: 14 messages" in report.render()
    real = deliver_send_list(
        warehouse_url, "send_list_nurture", OutboxTransport(tmp_path / "second"), from_email=FROM
    )
    assert real.sent == report.total_to_send and real.quarantined == 1
    assert len(extra) == 45


def test_two_activation_runs_at_once_never_send_a_key_twice(warehouse_url):
    import threading

    keys = make_send_list(warehouse_url, 200)
    with WebhookSink() as sink:
        results = []

        def run():
            results.append(
                deliver_send_list(
                    warehouse_url, "send_list_nurture", webhook(sink), from_email=FROM, batch_size=20
                )
            )

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(r.sent for r in results) == [0, 200]
        assert sorted(sink.accepted_keys()) == keys  # every key exactly once


def test_a_message_whose_send_window_closed_waits_for_the_next_build(warehouse_url, tmp_path):
    from datetime import UTC, datetime, timedelta

    make_send_list(warehouse_url, 4)
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    with connect(warehouse_url) as wh:
        wh.execute(
            "alter table analytics.send_list_nurture add column window_ends_at timestamp with time zone"
        )
        wh.execute("update analytics.send_list_nurture set window_ends_at = ?", [now + timedelta(hours=3)])
        wh.execute(  # lead0: local quiet hours began an hour ago
            "update analytics.send_list_nurture set window_ends_at = ? where lead_id = 'lead0'",
            [now - timedelta(hours=1)],
        )
        wh.execute(  # lead1: due tomorrow morning
            "update analytics.send_list_nurture set due_at = ? where lead_id = 'lead1'",
            [now + timedelta(hours=20)],
        )
    summary = deliver_send_list(
        warehouse_url, "send_list_nurture", OutboxTransport(tmp_path), from_email=FROM, now=now
    )
    assert (summary.sent, summary.not_yet_due) == (2, 2)
    assert {r["lead_id"] for r in ledger(warehouse_url).values()} == {"lead2", "lead3"}


class _CountingWebhook(WebhookTransport):
    """A webhook transport that records how many sends overlap.

    The first sends are held until a second one has started (or 10 s have passed), so whether batches overlap
    depends on the delivery code, not on how fast this machine renders the next batch (under load a 20 ms
    hold was not enough and the sends never overlapped).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._overlapped = threading.Event()
        self.in_flight = 0
        self.most_in_flight = 0

    def send(self, batch_id, body):
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            if self.in_flight > 1:
                self._overlapped.set()
        try:
            self._overlapped.wait(timeout=10)
            return super().send(batch_id, body)
        finally:
            with self._lock:
                self.in_flight -= 1


def test_concurrent_batches_hand_every_key_over_exactly_once_through_faults(warehouse_url, monkeypatch):
    keys = make_send_list(warehouse_url, 100)
    ledger_threads = set()
    real_record = delivery_module._record

    def record_on_caller_thread(*args, **kwargs):
        ledger_threads.add(threading.current_thread().name)
        return real_record(*args, **kwargs)

    monkeypatch.setattr(delivery_module, "_record", record_on_caller_thread)
    waits = []
    with WebhookSink() as sink:
        sink.pass_next(1)
        sink.fail_next(500, times=2)
        sink.fail_next(429, retry_after=3)
        sink.fail_next(503)
        sink.drop_next()  # accepted, answer lost: that batch reaches the receiver twice
        transport = _CountingWebhook(
            sink.url,
            sink.token,
            concurrency=4,
            backoff_seconds=0.01,
            max_backoff_seconds=60,
            sleep=waits.append,
        )
        summary = deliver_send_list(
            warehouse_url, "send_list_nurture", transport, from_email=FROM, batch_size=7
        )
        assert (summary.sent, summary.failed, summary.batches, summary.failed_batches) == (100, 0, 15, 0)
        assert transport.most_in_flight > 1  # batches really overlapped ...
        assert transport.most_in_flight <= 4  # ... never more than the setting
        assert 3.0 in waits  # the 429's Retry-After was honoured

        handed = Counter(sink.accepted_keys())
        twice = {k for k, n in handed.items() if n == 2}
        assert sorted(handed) == keys and set(handed.values()) <= {1, 2}
        assert len(twice) == 7  # only the dropped batch's keys came twice, answered `duplicate` the 2nd time
        assert sink.seen_keys == set(keys)

        again = deliver_send_list(
            warehouse_url, "send_list_nurture", transport, from_email=FROM, batch_size=7
        )
        assert (again.sent, again.already_sent, again.batches) == (0, 100, 0)
        assert Counter(sink.accepted_keys()) == handed  # the second run handed nothing over
        transport.close()
    assert ledger_threads == {threading.current_thread().name}  # the ledger is written on one thread
    rows = ledger(warehouse_url)
    assert sorted(rows) == keys and {r["status"] for r in rows.values()} == {"sent"}


def test_crash_with_batches_in_flight_leaves_at_most_concurrency_batches_pending(warehouse_url, monkeypatch):
    keys = make_send_list(warehouse_url, 100)
    real_record = delivery_module._record
    recorded_sent = []

    def crash_on_second_sent(warehouse, send_list, entries, now):
        if entries and entries[0][1] == "sent":
            if recorded_sent:
                raise KeyboardInterrupt("simulated crash after hand-over, before recording sent")
            recorded_sent.append(len(entries))
        return real_record(warehouse, send_list, entries, now)

    monkeypatch.setattr(delivery_module, "_record", crash_on_second_sent)
    with WebhookSink() as sink:
        transport = webhook(sink, concurrency=3)
        with pytest.raises(KeyboardInterrupt):
            deliver_send_list(warehouse_url, "send_list_nurture", transport, from_email=FROM, batch_size=10)
        after_crash = ledger(warehouse_url)
        pending = {k for k, r in after_crash.items() if r["status"] == "pending"}
        assert sum(r["status"] == "sent" for r in after_crash.values()) == 10
        assert 10 <= len(pending) <= 30  # at most 3 batches were in flight when it stopped
        assert set(sink.accepted_keys()) >= pending  # they had left (the pool finishes what it started)
        monkeypatch.setattr(delivery_module, "_record", real_record)
        summary = deliver_send_list(
            warehouse_url, "send_list_nurture", transport, from_email=FROM, batch_size=10
        )
        assert summary.sent == 90 and summary.already_sent == 10
        handed = Counter(sink.accepted_keys())
        assert sorted(handed) == keys
        # only the keys left pending went twice (same keys; the receiver answered them `duplicate`)
        assert {k for k, n in handed.items() if n == 2} == pending and max(handed.values()) == 2
    rows = ledger(warehouse_url)
    assert sorted(rows) == keys and {r["status"] for r in rows.values()} == {"sent"}


# ------------------------------------------------------------------ rendering: the fast paths keep the output


def _helper_or_error(call, **kwargs):
    """What a body builder returns, or the type and text of what it raises."""
    try:
        return call(**kwargs)
    except Exception as error:  # noqa: BLE001 - the two builders must fail alike, too
        return (type(error).__name__, str(error))


@pytest.mark.parametrize(
    ("from_email", "to_email", "to_name", "text", "group"),
    [
        (FROM, "person1@example.com", "Ana", "Hello Ana", None),
        (FROM, "person1@example.com", None, "Hello", 42),
        (FROM, "person1@example.com", "", "Hello", 0),
        ("Leadflow Team <team@leadflow.example>", "first.last+tag@sub.example.co.uk", None, "Hi", None),
        ("nurture", "p@example.com", None, "Hi", None),  # a from without an address: the helper's name
        ("", "p@example.com", None, "Hi", None),
        (FROM, "Some One <some.one@example.com>", None, "Hi", 7),
        (FROM, "Anna, Maria <am@example.com>", "Anna, Maria", "Hi", None),
        (FROM, "ünï@exämple.com", "Zoë", "Hi", None),
        (FROM, "", None, "Hi", None),
        (FROM, "+447700900123", None, "Hi", None),  # no address: the helper raises KeyError('email')
        (FROM, "p@example.com", 5, "Hi", None),  # a non-text name: the helper raises TypeError
        (FROM, "p@example.com", None, "SG.abc123.def456 leaked", None),  # an API key in the body
        (FROM, "p@example.com", "Ana", "", None),
    ],
)
def test_sendgrid_body_equals_what_the_sendgrid_helper_builds(from_email, to_email, to_name, text, group):
    from activation.rendering import _sendgrid_mail_body_with_helper, sendgrid_mail_body

    kwargs = dict(
        from_email=from_email,
        to_email=to_email,
        to_name=to_name,
        subject="Ana, here is what you can do next with <Atlas>",
        text=text,
        html=f"<p>{text}</p>",
        key="k-1",
        unsubscribe_group_id=group,
    )
    fast = _helper_or_error(sendgrid_mail_body, **kwargs)
    reference = _helper_or_error(_sendgrid_mail_body_with_helper, **kwargs)
    assert fast == reference
    if isinstance(reference, dict):
        assert list(fast) == list(reference)  # same key order, so the same JSON bytes


def test_sendgrid_reference_is_the_vendor_helper():
    from sendgrid.helpers.mail import Asm, CustomArg, GroupId, Mail

    from activation.rendering import sendgrid_mail_body

    mail = Mail(
        from_email=FROM,
        to_emails=[("person@example.com", "Ana")],
        subject="s",
        plain_text_content="t",
        html_content="<p>h</p>",
    )
    mail.custom_arg = CustomArg("idempotency_key", "k")
    mail.asm = Asm(GroupId(3))
    body = sendgrid_mail_body(
        from_email=FROM,
        to_email="person@example.com",
        to_name="Ana",
        subject="s",
        text="t",
        html="<p>h</p>",
        key="k",
        unsubscribe_group_id=3,
    )
    assert body == mail.get()
    assert json.dumps(body) == json.dumps(mail.get())


def _row(i: int, **changes) -> dict:
    row = {
        "idempotency_key": f"key-{i}",
        "lead_id": f"lead{i}",
        "product_id": "atlas",
        "product_name": "Atlas",
        "workflow": "atlas_nurture",
        "step": "mql_welcome",
        "channel": "email",
        "recipient": f"person{i}@example.com",
        "template": "mql_welcome",
        "message_type": "email",
        "first_name": "Ana",
        "fallback_channels": "whatsapp|chatbot",
        "fallback_recipients": f"+4477009{i:05d}|user-{i}",
        "fallback_message_types": "whatsapp_text|chatbot_text",
    }
    row.update(changes)
    return row


def test_renders_equal_fresh_jinja_renders():
    """What a message carries equals what Jinja renders for it on its own, route by route."""
    from activation import rendering

    fresh = Environment(
        loader=rendering._environment.loader,
        undefined=StrictUndefined,
        autoescape=rendering._environment.autoescape,
    )
    values = ["Ana", "<b>Zoë & Co</b>", "", None, "1", "Ana"]
    rows = [_row(i, first_name=v, product_name=["Atlas", "<A&B>", None][i % 3]) for i, v in enumerate(values)]
    rows += [_row(90, cta_url="https://x.example/?a=1&b=2"), _row(91, product_id=None)]
    chat_only = dict(channel="chatbot", message_type="chatbot_text", recipient="user-1", fallback_channels="")
    chat_only.update(fallback_recipients="", fallback_message_types="")
    # numbers equal as values but render differently
    rows += [_row(92 + i, first_name=v, **chat_only) for i, v in enumerate([1, 1.0, True, "1", 1, True])]
    for row in rows + rows:
        message = rendering.render_message(row, from_email=FROM)
        context = rendering._context(row)
        for part in ("subject", "text", "html", "chat"):
            expected = fresh.get_template(f"mql_welcome.{part}.j2").render(**context).strip()
            assert rendering.render_template(f"mql_welcome.{part}.j2", context) == expected
            if row["channel"] == "chatbot":
                if part == "chat":
                    assert message["content"]["text"] == expected
                    assert message["routes"][0]["chatbot"]["text"] == expected
            elif part == "chat":
                assert message["routes"][1]["whatsapp"]["text"]["body"] == expected
                assert message["routes"][2]["chatbot"]["text"] == expected
            else:
                assert message["content"][part] == expected


def test_every_message_renders_its_templates_afresh():
    from activation import rendering

    calls = []

    def counter() -> int:
        calls.append(1)
        return len(calls)

    env = Environment(
        loader=DictLoader(
            {
                "t.subject.j2": "Hi {{ first_name }} {{ counter() }}",
                "t.text.j2": "{{ first_name }}",
                "t.html.j2": "{{ first_name }}",
                "t.chat.j2": "{% for x in [1, 2] %}{{ x }}{% endfor %} {{ first_name }}",
            }
        ),
        undefined=StrictUndefined,
    )
    env.globals["counter"] = counter
    row = _row(1, template="t", fallback_channels="", fallback_recipients="", fallback_message_types="")
    subjects = [
        rendering.render_message(row, from_email=FROM, environment=env)["content"]["subject"]
        for _ in range(3)
    ]
    assert subjects == ["Hi Ana 1", "Hi Ana 2", "Hi Ana 3"]
    chat_row = _row(2, template="t", channel="chatbot", message_type="chatbot_text", recipient="user-2")
    chat_row.update(fallback_channels="", fallback_recipients="", fallback_message_types="")
    assert rendering.render_message(chat_row, from_email=FROM, environment=env)["content"]["text"] == "12 Ana"


def test_a_missing_variable_still_quarantines_after_earlier_renders():
    from activation import rendering

    assert rendering.render_message(_row(1), from_email=FROM)["content"]["subject"].startswith("Ana")
    row = _row(2)
    del row["first_name"]
    with pytest.raises(rendering.RenderError, match="first_name"):
        rendering.render_message(row, from_email=FROM)
