"""Property 4, multi-channel delivery: what reaches the receiver respects consent, caps and quiet hours,
goes out on exactly one channel, and no idempotency key is ever delivered twice.

A dbt build costs 20-40 s, so the examples are batched: hypothesis draws 200 examples first, each owning a
namespace of leads (`p4-ex{N}-l{K}`: emails, phones, CRM ids, event ids) with random consent evidence
(SendGrid unsubscribe / spam report / hard and soft bounce / `dropped` for an unsubscribed address, WhatsApp
START / STOP / plain messages, CRM opt-out), channel addresses present or missing (an email, an own or a
shared phone, a chatbot conversation), a time zone (hs_timezone in IANA or HubSpot spelling, a country, or
neither), one or two products reaching MQL the same day, messages the ledger already holds as sent earlier
in the week, and a fault sequence for delivery. All examples' raw rows go into one warehouse (next to the
lead-model fixtures of raw_fixtures.py), ONE `dbt build` of the send lists runs with `as_of` pinned and
`analytics_holdout_share: 0` (tests/warehouse/test_send_lists.py's helpers), then activation delivers
`send_list_messages` to a WebhookSink:

- phase 1: at each distinct due time in turn (`now` = that time), `deliver_send_list` is run until a run
  finishes without a simulated crash (a crash = the process dies after the receiver took a batch and before
  the ledger recorded the answer: the key stays `pending`);
- phase 2: `deliver_send_list` runs once more at each due time (the retry / next scheduled run),
  re-delivering whatever is pending or failed.

Delivery uses batches of one message, so each hand-over belongs to one example: before each hand-over the
next entry of that example's fault sequence is applied to the sink (request faults: 500, 429, dropped
connection, 400 - then the message outcome: accepted, answered `failed`, left out of the answer, or a crash
after the receiver processed it). The sink dedupes by key like n8n (`seen_keys`).

Checks, per example, against a small reference computed from the example's inputs (never from the models):
every message first accepted by the sink (a) goes to a channel the lead may be contacted on, and every
failover route it carries is such a channel too, in the product's order of preference; (b) keeps the lead
within activation_max_messages_per_day / _per_week in the lead's local time, counting the ledger's earlier
sends; (c) is due outside local quiet hours and not before as_of; (d) goes out on exactly one channel, the
accepted route (routes[0] = the send list's channel = the ledger's channel_used); (e) is first-accepted
exactly once, handed over again never after the ledger recorded it sent, and is the only message of its
(lead, product, workflow, step). The ledger holds `sent` for exactly the keys whose answer came back.

Nothing depends on the process or the clock: the examples are drawn with a fixed seed and without
Hypothesis' constants from loaded modules (_no_local_constants), dbt gets `as_of`, and every delivery run
gets `now`, so the same examples, send list and hand-overs come out alone, in `make test` and at any hour,
on DuckDB and PostgreSQL alike.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture.providers import HypothesisProvider

from activation.delivery import LEDGER_DDL, LEDGER_SCHEMA, DeliveryError, deliver_send_list
from activation.transports import WebhookTransport
from orchestration.lead_config import read_dbt_var
from tests.conftest import create_database
from tests.support.webhook_sink import WebhookSink
from tests.warehouse.raw_fixtures import (
    AS_OF,
    CONTACT_COLUMNS,
    DLT_COLUMNS,
    EVENT_COLUMNS,
    LOAD_ID,
    create_raw_tables,
)
from tests.warehouse.test_send_lists import (
    DBT,
    DBT_PROJECT,
    SEND_LISTS,
    _connect,
    _dbt_env,
    _rows,
    md5,
)

REPO = Path(__file__).resolve().parents[2]
# 200, not the spec's minimum of 100: the sufficiency floor at the end wants >= 50 delivered messages, and
# about 0.8 of the send list is delivered. 100 examples give 61 send-list rows for SEED, but 22-107 rows
# (median 63, 5th percentile 39) across seeds 0-199, so a Hypothesis release or a strategy edit that changes
# the draw would fail the floor about half the time. 200 examples give 120 rows (20 weekly-cap decisions)
# for SEED and 80-197 rows (5th percentile 100, weekly-cap decisions 2-49) across seeds 0-47. Rows counted
# by a reference that derives the send decisions from the drawn examples (it matched dbt's build exactly);
# the example count hardly changes the time of the one dbt build.
MAX_EXAMPLES = 200
SEED = 0
AS_OF_DT = datetime.fromisoformat(AS_OF.replace("Z", "+00:00"))
# well after every due_at (the latest is the next 08:00 local after as_of), so everything due is sent
NOW = AS_OF_DT + timedelta(days=2)
SEND_LIST = "send_list_messages"

MAX_PER_DAY = int(read_dbt_var("activation_max_messages_per_day"))
MAX_PER_WEEK = int(read_dbt_var("activation_max_messages_per_week"))
QUIET_START = int(read_dbt_var("activation_quiet_hours_start_hour"))
QUIET_END = int(read_dbt_var("activation_quiet_hours_end_hour"))
DEFAULT_ZONE = str(read_dbt_var("activation_default_time_zone"))
SESSION_HOURS = float(read_dbt_var("activation_whatsapp_session_hours"))


def _seed(name: str) -> list[dict[str, str]]:
    with open(REPO / "dbt_project" / "seeds" / name, newline="") as handle:
        return list(csv.DictReader(handle))


PRODUCT_CHANNELS = {row["product_id"]: row["channels"].split("|") for row in _seed("products.csv")}
COUNTRY_ZONES = {row["country"]: row["time_zone"] for row in _seed("country_time_zones.csv")}
IANA = {name.lower(): name for name in available_timezones()}

# fmt: off
HS_TIMEZONES = [None, None, "Europe/Berlin", "europe_slash_berlin", "America/New_York",
                "america_slash_los_angeles", "Asia/Tokyo", "Pacific/Auckland", "Not/A_Zone"]
COUNTRIES = [None, "GB", "US", "JP", "DE", "AU", "NZ", "ZZ"]
EMAIL_EVENTS = ["unsubscribe", "spamreport", "bounce", "blocked", "dropped_unsubscribed"]
WA_EVENTS = ["whatsapp_opt_in", "whatsapp_opt_out", "whatsapp_inbound"]
REQUEST_FAULTS = ["500", "429", "drop", "400"]
OUTCOMES = ["ok", "ok", "ok", "fail", "omit", "crash"]
# fmt: on

# --------------------------------------------------------------------------------------------- examples


@dataclass
class Lead:
    has_email: bool
    phone: str  # none | own | shared (lead 0's number)
    chatbot_at: int | None  # minutes from as_of of an inbound chatbot message
    hs_timezone: str | None
    country: str | None
    crm_opt_out: bool
    email_events: list[tuple[str, int]]  # (kind, minutes from as_of)
    wa_events: list[tuple[str, int]]
    products: list[str]
    prior_sent: list[int]  # minutes before as_of of messages the ledger holds as sent


@dataclass
class Fault:
    request_faults: list[str]
    outcome: str


@dataclass
class Example:
    leads: list[Lead]
    faults: list[Fault]
    number: int = -1
    # filled by _materialize
    emails: dict[int, str | None] = field(default_factory=dict)
    phones: dict[int, str | None] = field(default_factory=dict)
    lead_ids: dict[int, str] = field(default_factory=dict)


_minutes = st.integers(min_value=-9 * 24 * 60, max_value=12 * 60)  # a few after as_of: must not count


@st.composite
def _lead(draw) -> Lead:
    has_email = draw(st.integers(0, 3)) != 0
    phone = draw(st.sampled_from(["none", "own", "own", "shared"]))
    if not has_email and phone == "none":
        phone = "own"
    times = draw(st.lists(_minutes, min_size=0, max_size=6, unique=True))
    n_email = draw(st.integers(0, min(2, len(times))))
    email_events = [(draw(st.sampled_from(EMAIL_EVENTS)), t) for t in times[:n_email]]
    wa_events = [(draw(st.sampled_from(WA_EVENTS + ["whatsapp_opt_in"])), t) for t in times[n_email:]]
    return Lead(
        has_email=has_email,
        phone=phone,
        chatbot_at=draw(st.none() | _minutes),
        hs_timezone=draw(st.sampled_from(HS_TIMEZONES)),
        country=draw(st.sampled_from(COUNTRIES)),
        crm_opt_out=draw(st.integers(0, 3)) == 0,
        email_events=email_events,
        wa_events=wa_events,
        products=draw(st.sampled_from([["atlas"], ["beacon"], ["atlas", "beacon"], ["atlas", "beacon"]])),
        prior_sent=draw(st.lists(st.integers(1, 8 * 24 * 60), max_size=3, unique=True)),
    )


_fault = st.builds(
    Fault,
    request_faults=st.lists(st.sampled_from(REQUEST_FAULTS), max_size=3),
    outcome=st.sampled_from(OUTCOMES),
)
_examples = st.builds(
    Example,
    leads=st.lists(_lead(), min_size=1, max_size=3),
    faults=st.lists(_fault, max_size=8),
)


@contextmanager
def _no_local_constants() -> Iterator[None]:
    """Hypothesis without its constants from local source code, so a draw depends on the seed alone.

    Hypothesis (6.170 here) lets a draw return, with a 5 % chance, a literal found in the source of any
    *local, non-test* module in sys.modules (HypothesisProvider._maybe_draw_constant, fed by
    providers._get_local_constants). A fixed seed does not fix that pool, so the examples depended on
    which of leadflow's modules the pytest session had imported by then: the same seed gave 84 send-list
    rows (59 delivered) alone and 48 (44 delivered) after `pytest tests` had collected every test module,
    and the sufficiency floor failed in the full session only. Without the pool the draw is a function of
    SEED, the example count, this file's strategies and the Hypothesis version. If Hypothesis renames the
    hook, patch.object fails here, loudly.
    """
    with patch.object(HypothesisProvider, "_maybe_draw_constant", lambda self, *args, **kwargs: None):
        yield


def draw_examples(count: int = MAX_EXAMPLES) -> list[Example]:
    """The examples, fresh (not materialized): the same list in any process (see _no_local_constants)."""
    drawn: list[Example] = []

    # a fixed seed (derandomize would hash this function's source: any edit here would change the draw)
    @seed(SEED)
    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        # pinned, so no settings profile can change what is drawn
        phases=[Phase.generate],
        backend="hypothesis",
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_examples)
    def collect(example: Example) -> None:
        drawn.append(example)

    with _no_local_constants():
        collect()
    return drawn


def examples_fingerprint(examples: list[Example]) -> str:
    return md5(repr([(example.leads, example.faults) for example in examples]))


_COLLECTED: list[Example] = []


def collect_examples() -> list[Example]:
    """The examples, drawn and materialized once per process (both warehouses use the same ones)."""
    if not _COLLECTED:
        _COLLECTED.extend(draw_examples())
        for number, example in enumerate(_COLLECTED):
            _materialize(example, number)
    return _COLLECTED


def _materialize(example: Example, number: int) -> None:
    example.number = number
    lead0 = example.leads[0]
    for k, lead in enumerate(example.leads):
        # a shared number only between two email leads (two phone-only leads with one number are one person)
        if lead.phone == "shared" and not (
            k > 0 and lead.has_email and lead0.has_email and lead0.phone == "own"
        ):
            lead.phone = "own"
        email = f"p4-ex{number}-l{k}@example.com" if lead.has_email else None
        if lead.phone == "own":
            phone = f"+4477{number:03d}{k:02d}00"
        elif lead.phone == "shared":
            phone = f"+4477{number:03d}{0:02d}00"
        else:
            phone = None
        example.emails[k], example.phones[k] = email, phone
        example.lead_ids[k] = md5(f"email:{email}") if email else md5(f"phone:{phone}")


# ------------------------------------------------------------------------------------------- reference


def _at(minutes: int) -> datetime:
    return AS_OF_DT + timedelta(minutes=minutes)


def ref_time_zone(lead: Lead) -> str:
    if lead.hs_timezone:
        key = lead.hs_timezone.replace("_slash_", "/").replace("_minus_", "-").replace("_plus_", "+").lower()
        if key in IANA:
            return IANA[key]
    if lead.country in COUNTRY_ZONES:
        return COUNTRY_ZONES[lead.country]
    return DEFAULT_ZONE


def ref_allowed(example: Example, k: int, phone_owners: Counter) -> dict[str, str | None]:
    """channel -> None if the lead may be contacted there, else why not (the reference's own words)."""
    lead = example.leads[k]
    past = [(kind, m) for kind, m in lead.email_events if _at(m) <= AS_OF_DT]
    blocking = {"unsubscribe", "spamreport", "bounce", "dropped_unsubscribed"}
    if not lead.has_email:
        email = "no email"
    elif lead.crm_opt_out:
        email = "CRM opt-out"
    elif any(kind in blocking for kind, _ in past):
        email = "SendGrid " + ",".join(kind for kind, _ in past if kind in blocking)
    else:
        email = None
    phone = example.phones[k]
    consent = sorted(
        (m, kind) for kind, m in lead.wa_events if kind != "whatsapp_inbound" and _at(m) <= AS_OF_DT
    )
    if phone is None:
        whatsapp = "no phone"
    elif phone_owners[phone] > 1:
        whatsapp = "shared phone"
    elif not consent or consent[-1][1] != "whatsapp_opt_in":
        whatsapp = f"latest WhatsApp consent word: {consent[-1][1] if consent else 'none'}"
    else:
        whatsapp = None
    chatbot = (
        None if lead.chatbot_at is not None and _at(lead.chatbot_at) <= AS_OF_DT else "no chatbot message"
    )
    return {"email": email, "whatsapp": whatsapp, "chatbot": chatbot}


# ------------------------------------------------------------------------------------------------- rows


def _event(event_id, stream, event_type, at, product=None, email=None, phone=None, user=None, props="{}"):
    return (event_id, stream, event_type, at, product, email, phone, user, stream, props)


def example_rows(example: Example) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """(contacts, events, prior ledger rows) of one example, in raw shapes."""
    n = example.number
    contacts, events, ledger = [], [], []
    created = datetime(2026, 10, 1, 9, tzinfo=UTC)
    for k, lead in enumerate(example.leads):
        prefix = f"p4-ex{n}-l{k}"
        email, phone, lead_id = example.emails[k], example.phones[k], example.lead_ids[k]
        contacts.append(
            (
                prefix,
                email,
                f"F{n}x{k}",
                "Prop",
                phone,
                None,
                phone,
                lead.country,
                lead.hs_timezone,
                None,
                "lead",
                lead.crm_opt_out,
                None,
                created,
                created,
                False,
                LOAD_ID,
                f"{prefix}-dlt",
            )
        )
        for product in lead.products:
            # atlas: 25 + 15 + 10 = 50 >= 40; beacon: 30 + 15 = 45 >= 30 (as test_send_lists' _mql_events)
            for i, kind in enumerate(["demo_requested", "trial_started", "pricing_page_viewed"]):
                at = datetime(2026, 11, 21, 10 + i, tzinfo=UTC)
                events.append(
                    _event(
                        f"{prefix}-{product}-{i}",
                        "product_events",
                        kind,
                        at,
                        product,
                        email=email,
                        phone=None if email else phone,
                    )
                )
        for i, (kind, m) in enumerate(lead.email_events):
            body: dict[str, Any] = {"email": email or f"{prefix}-nobody@example.com"}
            if kind == "blocked":
                body.update(event="bounce", type="blocked")
            elif kind == "bounce":
                body.update(event="bounce", type="bounce")
            elif kind == "dropped_unsubscribed":
                body.update(event="dropped", reason="Unsubscribed Address")
            else:
                body.update(event=kind)
            event_type = "email_" + body["event"]
            events.append(
                _event(
                    f"{prefix}-sg-{i}",
                    "sendgrid",
                    event_type,
                    _at(m),
                    email=body["email"],
                    props=json.dumps(body),
                )
            )
        for i, (kind, m) in enumerate(lead.wa_events):
            if phone is None:
                continue
            text = {"whatsapp_opt_in": "START", "whatsapp_opt_out": "STOP"}.get(kind, "hello")
            events.append(
                _event(
                    f"{prefix}-wa-{i}",
                    "whatsapp",
                    kind,
                    _at(m),
                    phone=phone,
                    props=json.dumps({"id": f"wamid.{prefix}.{i}", "type": "text", "text": {"body": text}}),
                )
            )
        if lead.chatbot_at is not None:
            events.append(
                _event(
                    f"{prefix}-chat",
                    "chatbot",
                    "chatbot_inbound",
                    _at(lead.chatbot_at),
                    email=email,
                    phone=None if email else phone,
                    user=f"{prefix}-chat",
                    props=json.dumps({"message_id": f"{prefix}-c", "text": "hi"}),
                )
            )
        for i, m in enumerate(lead.prior_sent):
            at = AS_OF_DT - timedelta(minutes=m)
            ledger.append(
                (
                    f"{prefix}-prior-{i}",
                    SEND_LIST,
                    lead_id,
                    "beacon",
                    "beacon_nurture",
                    f"earlier-{i}",
                    "email",
                    "sent",
                    1,
                    at,
                    at,
                )
            )
    return contacts, events, ledger


def _insert_many(conn: Any, target: str, table: str, names: list[str], rows: list[tuple]) -> None:
    """Multi-row inserts: DuckDB's executemany costs ~10 ms a row here (20 s for the ~1,900 rows)."""
    mark = "(" + ", ".join(["?" if target == "duckdb" else "%s"] * len(names)) + ")"
    cur = conn.cursor()
    for start in range(0, len(rows), 200):
        chunk = rows[start : start + 200]
        cur.execute(
            f"insert into {table} ({', '.join(names)}) values {', '.join([mark] * len(chunk))}",
            [value for row in chunk for value in row],
        )


def write_raw(target: str, location: str, examples: list[Example]) -> None:
    create_raw_tables(location)
    contacts, events, ledger = [], [], []
    for example in examples:
        c, e, lg = example_rows(example)
        contacts += c
        events += e
        ledger += lg
    events = [(*e, f"{e[1]}/p4.jsonl", i + 1) for i, e in enumerate(events)]
    conn = _connect(target, location)
    try:
        cur = conn.cursor()
        _insert_many(
            conn, target, "raw_crm.contacts", [n for n, _ in CONTACT_COLUMNS + DLT_COLUMNS], contacts
        )
        _insert_many(conn, target, "raw_events.events", [n for n, _ in EVENT_COLUMNS], events)
        cur.execute(f"create schema if not exists {LEDGER_SCHEMA}")
        cur.execute(LEDGER_DDL)
        names = [
            "idempotency_key",
            "send_list",
            "lead_id",
            "product_id",
            "workflow",
            "step",
            "channel",
            "status",
            "attempts",
            "created_at",
            "updated_at",
        ]
        _insert_many(conn, target, f"{LEDGER_SCHEMA}.delivery_ledger", names, ledger)
        conn.commit()
    finally:
        conn.close()


def dbt_build(env: dict[str, str]) -> None:
    """test_send_lists' build of the send lists (same vars, same selection), without dbt unit tests.

    The unit tests are left out because `int_message_candidates_budgeted::test_contact_budget_ranks_products_
    by_priority` does not compile: the model reads int_holdout_assignments and the unit test gives no such
    input (dbt: "depends on a node named 'int_holdout_assignments' which was not found"). Models and data
    tests (including the singular send-list checks) still run and must pass.
    """
    args = [
        str(DBT),
        "build",
        "--vars",
        f"{{as_of: '{AS_OF}', analytics_holdout_share: 0}}",
        "--indirect-selection",
        "buildable",
        "--exclude-resource-type",
        "unit_test",
        "--select",
        *SEND_LISTS,
    ]
    result = subprocess.run(args, cwd=DBT_PROJECT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]


# --------------------------------------------------------------------------------------------- delivery


class SimulatedCrash(Exception):
    """The activation process died after the receiver took the batch, before the ledger recorded it."""


class _RecordingSet(set):
    """The sink's `seen_keys`: every add is a first acceptance (n8n processed the key)."""

    def __init__(self) -> None:
        super().__init__()
        self.first_acceptances: list[str] = []

    def add(self, key: str) -> None:  # type: ignore[override]
        self.first_acceptances.append(key)
        super().add(key)


@dataclass
class HandOver:
    phase: str
    key: str
    routes: list[dict[str, Any]]
    status: str  # the receiver's answer: accepted | duplicate | failed | omitted; refused = no answer
    channel: str | None
    crashed: bool = False  # the process died before recording the answer


class FaultingTransport:
    """Batches of one: applies the owning example's next fault to the sink, then hands over."""

    # one hand-over at a time: the faults go into the one shared sink just before each hand-over
    concurrency = 1

    def __init__(self, sink: WebhookSink, owner: dict[str, int], faults: dict[int, deque[Fault]]):
        self.sink = sink
        self.inner = WebhookTransport(sink.url, sink.token, timeout=30, max_attempts=4, sleep=lambda _: None)
        self.destination = self.inner.destination
        self.owner = owner
        self.faults = faults
        self.phase = ""
        self.log: list[HandOver] = []

    def send(self, batch_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        (message,) = body["messages"]
        key = message["idempotency_key"]
        example = self.owner.get(key)
        queue = self.faults.get(example) if example is not None else None
        fault = queue.popleft() if queue else Fault([], "ok")
        if fault.outcome == "crash" and self.phase != "phase1":
            fault = Fault(fault.request_faults, "ok")  # crashes only where the test resumes them
        self.sink.faults.clear()
        for kind in fault.request_faults:
            if kind == "drop":
                self.sink.drop_next()
            elif kind == "429":
                self.sink.fail_next(429, retry_after=0)
            else:
                self.sink.fail_next(int(kind))
        if fault.outcome == "fail":
            self.sink.failing_keys[key] = "injected provider failure"
        elif fault.outcome == "omit":
            self.sink.omit_keys.add(key)
        try:
            answer = self.inner.send(batch_id, body)
        except DeliveryError:
            self.log.append(HandOver(self.phase, key, message["routes"], "refused", None))
            raise
        finally:
            self.sink.faults.clear()
            self.sink.failing_keys.pop(key, None)
            self.sink.omit_keys.discard(key)
        results = {r["idempotency_key"]: r for r in (answer or {}).get("results", [])}
        result = results.get(key)
        status = result["status"] if result else "omitted"
        crashed = fault.outcome == "crash"
        self.log.append(
            HandOver(self.phase, key, message["routes"], status, (result or {}).get("channel"), crashed)
        )
        if crashed:
            raise SimulatedCrash(key)
        return answer


# ------------------------------------------------------------------------------------------------ test


def _local(moment: datetime, zone: str) -> datetime:
    return moment.astimezone(ZoneInfo(zone))


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


@pytest.mark.parametrize("target", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_property_4_multichannel_delivery(
    target: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    started = time.monotonic()
    examples = collect_examples()
    if target == "duckdb":
        location = str(tmp_path / "warehouse.duckdb")
        url = "duckdb:///" + location
    else:
        location = url = create_database(request.getfixturevalue("postgres_server_url"), prefix="p4")
    write_raw(target, location, examples)
    print(f"property 4 ({target}): examples and raw rows {time.monotonic() - started:.1f}s")
    dbt_build(_dbt_env(target, location, tmp_path))
    built = time.monotonic()

    rows = {r["idempotency_key"]: r for r in _rows(target, location, f"select * from analytics.{SEND_LIST}")}
    decisions = _rows(
        target,
        location,
        "select lead_id, product_id, step, decision, due_at from analytics.int_message_candidates_budgeted",
    )
    example_of_lead = {lid: (ex.number, k) for ex in examples for k, lid in ex.lead_ids.items()}
    owner = {
        key: example_of_lead[r["lead_id"]][0] for key, r in rows.items() if r["lead_id"] in example_of_lead
    }
    faults = {ex.number: deque(ex.faults) for ex in examples}

    crashes = 0
    with WebhookSink() as sink:
        seen = _RecordingSet()
        sink.seen_keys = seen
        transport = FaultingTransport(sink, owner, faults)
        # time moves forward through every due time: activation holds a message whose local send window
        # closed (quiet hours began) for the next build, so one late `now` would deliver nothing
        times = sorted({_utc(r["due_at"]) for r in rows.values() if r.get("due_at") is not None}) or [NOW]
        transport.phase = "phase1"
        for moment in times:
            while True:  # crash-resume: run again until a run completes
                try:
                    deliver_send_list(
                        url, SEND_LIST, transport, from_email="p4@example.com", batch_size=1, now=moment
                    )
                    break
                except SimulatedCrash:
                    crashes += 1
                    assert crashes < 500
        transport.phase = "phase2"
        for moment in times:
            deliver_send_list(
                url, SEND_LIST, transport, from_email="p4@example.com", batch_size=1, now=moment
            )
    delivered_at = time.monotonic()

    ledger = {r["idempotency_key"]: r for r in _rows(target, location, f"select * from {LEDGER_TABLE_SQL}")}
    ledger_counts = Counter(
        r["idempotency_key"]
        for r in _rows(target, location, f"select idempotency_key from {LEDGER_TABLE_SQL}")
    )
    first = Counter(seen.first_acceptances)
    problems: list[str] = []

    # --- idempotency, over every key the sink saw (fixture leads included) ----------------------------
    for key, count in first.items():
        if count != 1:
            problems.append(f"key {key}: first-accepted {count} times at the sink")
    for key, count in ledger_counts.items():
        if count != 1:
            problems.append(f"key {key}: {count} ledger rows")
    acknowledged: dict[str, int] = {}
    for index, hand in enumerate(transport.log):
        if hand.key in acknowledged:
            problems.append(
                f"key {hand.key}: handed over again ({hand.phase}) after the ledger recorded it sent "
                f"(hand-over #{acknowledged[hand.key]})"
            )
        if hand.status in ("accepted", "duplicate") and not hand.crashed:
            acknowledged.setdefault(hand.key, index)
    for key in rows:
        status = (ledger.get(key) or {}).get("status")
        if (status == "sent") != (key in acknowledged):
            problems.append(
                f"key {key}: ledger status {status!r} but the receiver's answer "
                f"{'acknowledged' if key in acknowledged else 'never acknowledged'} it"
            )
        if status == "sent" and key not in first:
            problems.append(f"key {key}: ledger sent, never accepted by the sink")

    # --- per example: consent, route, caps, quiet hours ---------------------------------------------
    phone_owners = Counter(p for ex in examples for p in ex.phones.values() if p)
    per_step: Counter = Counter()
    stats = Counter()
    for ex in examples:
        n = ex.number
        leads_of = {lid: k for k, lid in ex.lead_ids.items()}
        delivered = [rows[key] for key in first if key in rows and rows[key]["lead_id"] in leads_of]
        listed = [r for r in rows.values() if r["lead_id"] in leads_of]
        stats["listed"] += len(listed)
        stats["delivered"] += len(delivered)
        for row in listed:
            k = leads_of[row["lead_id"]]
            lead = ex.leads[k]
            allowed = ref_allowed(ex, k, phone_owners)
            where = f"example {n} lead l{k} ({row['product_id']}/{row['step']}, key {row['idempotency_key'][:10]})"
            is_delivered = row["idempotency_key"] in first
            tag = "delivered" if is_delivered else "on the send list"
            # (a) consent: the first route and every failover route allowed, in the product's order
            expected_routes = [c for c in PRODUCT_CHANNELS[row["product_id"]] if allowed[c] is None]
            routes = [row["channel"]] + [c for c in row["fallback_channels"].split("|") if c]
            for channel in routes:
                if allowed[channel] is not None:
                    problems.append(
                        f"{where}: {tag} with route {channel} but reference says: {allowed[channel]}"
                    )
            if routes != expected_routes:
                problems.append(f"{where}: routes {routes}, reference allows {expected_routes} ({allowed})")
            # (c) quiet hours, in the reference time zone
            zone = ref_time_zone(lead)
            due = _utc(row["due_at"])
            local = _local(due, zone)
            if row["time_zone"] != zone:
                problems.append(f"{where}: time_zone {row['time_zone']}, reference {zone}")
            if QUIET_START != QUIET_END and (local.hour >= QUIET_START or local.hour < QUIET_END):
                problems.append(f"{where}: {tag}, due {local.isoformat()} inside quiet hours")
            if due < AS_OF_DT:
                problems.append(f"{where}: due {due.isoformat()} before as_of")
            # message type: free-form WhatsApp text only inside the session window
            for channel, mtype in zip(
                routes,
                [row["message_type"]] + [t for t in row["fallback_message_types"].split("|") if t],
                strict=False,
            ):
                if channel == "whatsapp":
                    inbound = [_at(m) for _, m in lead.wa_events if _at(m) <= AS_OF_DT]
                    in_session = any(due - timedelta(hours=SESSION_HOURS) < t <= due for t in inbound)
                    want = "whatsapp_text" if in_session else "whatsapp_template"
                    if mtype != want:
                        problems.append(f"{where}: WhatsApp message_type {mtype}, reference {want}")
        for row in delivered:
            k = leads_of[row["lead_id"]]
            key = row["idempotency_key"]
            where = f"example {n} lead l{k} ({row['product_id']}/{row['step']}, key {key[:10]})"
            # (d) one channel: the accepted route is the send list's channel and the ledger's channel_used
            hand = next(h for h in transport.log if h.key == key and h.status == "accepted")
            route_channels = [r["channel"] for r in hand.routes]
            if len(set(route_channels)) != len(route_channels):
                problems.append(f"{where}: routes repeat a channel: {route_channels}")
            if not (hand.channel == route_channels[0] == row["channel"]):
                problems.append(
                    f"{where}: accepted on {hand.channel}, routes[0] {route_channels[0]}, "
                    f"send list {row['channel']}"
                )
            if ledger[key]["status"] == "sent" and ledger[key]["channel_used"] not in (None, row["channel"]):
                problems.append(
                    f"{where}: ledger channel_used {ledger[key]['channel_used']} != {row['channel']}"
                )
            per_step[(row["lead_id"], row["product_id"], row["workflow"], row["step"])] += 1
            stats["failover"] += row["channel"] != PRODUCT_CHANNELS[row["product_id"]][0]
        # (b) caps per lead and local day / ISO week: delivered messages + the ledger's earlier sends
        for k, lead in enumerate(ex.leads):
            zone = ref_time_zone(lead)
            days: Counter = Counter()
            for row in delivered:
                if leads_of[row["lead_id"]] == k:
                    days[_local(_utc(row["due_at"]), zone).date()] += 1
            if not days:
                continue
            prior: Counter = Counter(
                _local(AS_OF_DT - timedelta(minutes=m), zone).date() for m in lead.prior_sent
            )
            for day, count in days.items():
                if count + prior[day] > MAX_PER_DAY:
                    problems.append(
                        f"example {n} lead l{k}: {count} delivered + {prior[day]} sent before on {day} ({zone}) "
                        f"> {MAX_PER_DAY} per day"
                    )
                week = _iso_week(day)
                in_week = sum(c for d, c in days.items() if _iso_week(d) == week)
                before = sum(c for d, c in prior.items() if _iso_week(d) == week)
                if in_week + before > MAX_PER_WEEK:
                    problems.append(
                        f"example {n} lead l{k}: {in_week} delivered + {before} sent before in week {week} "
                        f"({zone}) > {MAX_PER_WEEK} per week"
                    )
    # the other direction: a message held back for consent or the budget must have been held back rightly
    for decision in decisions:
        if decision["lead_id"] not in example_of_lead:
            continue
        n, k = example_of_lead[decision["lead_id"]]
        ex = examples[n]
        lead = ex.leads[k]
        where = f"example {n} lead l{k} ({decision['product_id']}/{decision['step']})"
        stats[decision["decision"]] += 1
        if decision["decision"] == "no_usable_channel":
            allowed = ref_allowed(ex, k, phone_owners)
            usable = [c for c in PRODUCT_CHANNELS[decision["product_id"]] if allowed[c] is None]
            if usable:
                problems.append(f"{where}: no_usable_channel, but reference allows {usable} ({allowed})")
        elif decision["decision"] in ("daily_cap", "weekly_cap"):
            zone = ref_time_zone(lead)
            day = _local(_utc(decision["due_at"]), zone).date()
            sent_days = [
                _local(_utc(r["due_at"]), zone).date()
                for key, r in rows.items()
                if r["lead_id"] == decision["lead_id"]
            ]
            sent_days += [_local(AS_OF_DT - timedelta(minutes=m), zone).date() for m in lead.prior_sent]
            if decision["decision"] == "daily_cap":
                # the day is ranked first: a message ranked ahead holds the day's slot even when the weekly cap
                # then stops it (only messages within the daily cap compete for the week), e.g. atlas
                # weekly-capped after 3 earlier sends that week, beacon daily-capped behind it
                sent_days += [
                    _local(_utc(d["due_at"]), zone).date()
                    for d in decisions
                    if d["lead_id"] == decision["lead_id"] and d["decision"] == "weekly_cap"
                ]
            used = (
                sum(d == day for d in sent_days)
                if decision["decision"] == "daily_cap"
                else sum(_iso_week(d) == _iso_week(day) for d in sent_days)
            )
            cap = MAX_PER_DAY if decision["decision"] == "daily_cap" else MAX_PER_WEEK
            if used < cap:
                problems.append(
                    f"{where}: {decision['decision']} on {day} ({zone}) with only {used} other "
                    f"messages that {'day' if cap == MAX_PER_DAY else 'week'} (cap {cap})"
                )
    for step, count in per_step.items():
        if count != 1:
            problems.append(f"lead {step[0][:10]} {step[1:]}: {count} messages delivered for one step")

    finished = time.monotonic()
    print(
        f"property 4 ({target}): {len(examples)} examples, {stats['listed']} listed, {stats['delivered']} delivered "
        f"({stats['failover']} on a failover route), decisions "
        f"{ {k: v for k, v in stats.items() if k not in ('listed', 'delivered', 'failover')} }, "
        f"{crashes} crashes resumed, {len(transport.log)} hand-overs; "
        f"build {built - started:.1f}s, delivery {delivered_at - built:.1f}s, checks {finished - delivered_at:.1f}s"
    )
    assert not problems, f"{len(problems)} violations:\n" + "\n".join(problems[:60])
    # not vacuous (what the draw yields: see MAX_EXAMPLES; SEED gives 120 listed, 110 delivered, 43 failovers)
    assert stats["delivered"] >= 50 and stats["failover"] >= 5 and crashes >= 1, stats


def test_property_4_examples_do_not_depend_on_the_modules_loaded() -> None:
    """The draw is the same in a process that has imported more of leadflow (as a full session has).

    Guards _no_local_constants: before it, the same seed drew other examples depending on which
    local modules pytest had imported, and the sufficiency floor failed in the full session only.
    """
    code = (
        "import ingestion.demo_crm.generator, orchestration.settings\n"
        "from tests.property.test_multichannel_delivery import draw_examples, examples_fingerprint\n"
        "print(examples_fingerprint(draw_examples(30)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == examples_fingerprint(draw_examples(30))


LEDGER_TABLE_SQL = f"{LEDGER_SCHEMA}.delivery_ledger"


def _iso_week(day: date) -> tuple[int, int]:
    iso = day.isocalendar()
    return iso[0], iso[1]
