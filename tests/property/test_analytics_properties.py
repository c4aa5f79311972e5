"""Property 8: the analytics marts agree with a small Python reference, for 100 drawn examples.

A dbt build costs a minute or more here, so examples are batched: hypothesis draws 100 examples first; each
owns a namespace (CRM ids `exNN-…`, emails `exNN-lK@example.com`, deals `exNN-dJ`, ledger step / template
`exNN_step`) and its own week: every touch of example NN happens in week NN after BASE, so its leads' weekly
cohort is its own. Raw rows (raw_crm.contacts, deals, deals__contact_ids; raw_events.events incl. n8n
delivery results; the delivery ledger) are written directly, ONE `dbt build` with `as_of` pinned builds the
marts, then every example is checked:
  (a) per conversion, each attribution model's weights sum to 1, and equal the reference weights;
  (b) conversions reconcile with the closed-won deals (closed at or before as_of) and their leads;
  (c) funnel counts never increase down the funnel, and the example's cohort rows equal the reference;
  (d) message performance of the example's template and time to conversion per conversion equal the
      reference; across all examples: percentiles (linear interpolation) and holdout lift with its CI.
The reference reads the lead model's own marts (fct_lead_stages, fct_lead_stage_transitions,
fct_lead_workflow_routing: Properties 2/3/5 check those) only for stages, everything else from the raw rows.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.lead_config import read_dbt_var
from tests.support.analytics_fixtures import build_analytics, connect, create_ledger, insert
from tests.warehouse.raw_fixtures import (
    COMPANY_COLUMNS,
    CONTACT_COLUMNS,
    DEAL_COLUMNS,
    DEAL_CONTACT_COLUMNS,
    DLT_COLUMNS,
    EVENT_COLUMNS,
    LOAD_ID,
    QUARANTINE_COLUMNS,
)

MAX_EXAMPLES = 100
BASE = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday: example NN's week starts BASE + 7·NN days
AS_OF = datetime(2028, 1, 10, tzinfo=UTC)  # after every touch; some deals close after it (ignored)
PRODUCTS = ("atlas", "beacon")
OWN_EVENT_TYPES = ("login", "feature_used", "pricing_page_viewed", "trial_started", "demo_requested")
STAGE_ORDER = {"new": 1, "engaged": 2, "mql": 3, "sql": 4, "opportunity": 5, "customer": 6}
FUNNEL = list(STAGE_ORDER)
MODELS = ("first_touch", "last_touch", "linear", "time_decay", "position_based")
WEEK_MINUTES = 7 * 24 * 60
TOL = 1e-9


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


# ------------------------------------------------------------------------------------------ examples


@dataclass(frozen=True)
class EventSpec:
    lead: int
    product: str
    event_type: str
    minute: int  # minutes after the example's week start


@dataclass(frozen=True)
class MessageSpec:
    lead: int
    product: str
    channel: str
    minute: int
    status: str  # ledger status: sent | failed
    outcomes: tuple[str, ...]  # delivery results after the send: delivered, opened, clicked, replied


@dataclass(frozen=True)
class DealSpec:
    product: str
    stage: str
    created_minute: int
    closed_minute: int  # may be weeks after the example's week (up to 120 days)
    contacts: tuple[int, ...]


@dataclass(frozen=True)
class Example:
    leads: int
    events: tuple[EventSpec, ...]
    messages: tuple[MessageSpec, ...]
    deals: tuple[DealSpec, ...]


@st.composite
def examples(draw: st.DrawFn) -> Example:
    leads = draw(st.integers(1, 3))
    lead = st.integers(0, leads - 1)
    product = st.sampled_from(PRODUCTS)
    minute = st.integers(0, WEEK_MINUTES - 1)
    events = draw(
        st.lists(
            st.builds(
                EventSpec,
                lead,
                product,
                st.sampled_from((*OWN_EVENT_TYPES, "webinar_attended")),
                minute,
            ),
            max_size=6,
        )
    )
    messages = draw(
        st.lists(
            st.builds(
                MessageSpec,
                lead,
                product,
                st.sampled_from(("email", "whatsapp", "chatbot")),
                minute,
                st.sampled_from(("sent", "sent", "failed")),
                st.lists(st.sampled_from(("delivered", "opened", "clicked", "replied")), unique=True).map(
                    tuple
                ),
            ),
            max_size=3,
        )
    )
    deals = draw(
        st.lists(
            st.builds(
                DealSpec,
                product,
                st.sampled_from(("closedwon", "closedwon", "closedlost", "appointmentscheduled")),
                minute,
                st.integers(0, 120 * 24 * 60),
                st.lists(lead, max_size=leads, unique=True).map(tuple),
            ),
            max_size=2,
        )
    )
    return Example(leads, tuple(events), tuple(messages), tuple(deals))


_COLLECTED: list[Example] = []


def collect_examples() -> list[Example]:
    if _COLLECTED:
        return _COLLECTED

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(examples())
    def collect(example: Example) -> None:
        _COLLECTED.append(example)

    collect()
    return _COLLECTED


# ------------------------------------------------------------------------------ materialized examples


@dataclass
class Touch:
    touch_id: str
    lead_id: str
    product: str
    channel: str
    at: datetime


@dataclass
class Materialized:
    n: int
    week: datetime
    lead_ids: list[str]
    touches: list[Touch] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    conversions: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # deal id -> closed_at, product, leads


def materialize(n: int, example: Example, rows: dict[str, list[tuple]]) -> Materialized:
    ns = f"ex{n:02d}"
    week = BASE + timedelta(days=7 * n)
    emails = [f"{ns}-l{k}@example.com" for k in range(example.leads)]
    lead_ids = [md5(f"email:{e}") for e in emails]
    m = Materialized(n, week, lead_ids)
    for k, email in enumerate(emails):
        rows["contacts"].append(
            (f"{ns}-c{k}", email, f"L{k}", ns, None, None, None, "GB", "Europe/London", None, "lead", False,
             None, week, week, False, LOAD_ID, f"{ns}-c{k}")
        )  # fmt: skip
    for i, event in enumerate(example.events):
        at = week + timedelta(minutes=event.minute)
        event_id = f"{ns}-e{i}"
        rows["events"].append(
            (event_id, "product_events", event.event_type, at, event.product, emails[event.lead], None, None,
             "product", "{}", f"product_events/{ns}.jsonl", i + 1)
        )  # fmt: skip
        if event.event_type in OWN_EVENT_TYPES:
            m.touches.append(Touch(f"event:{event_id}", lead_ids[event.lead], event.product, "product", at))
    for i, message in enumerate(example.messages):
        at = week + timedelta(minutes=message.minute)
        key = md5(f"{ns}-k{i}")
        lead_id = lead_ids[message.lead]
        rows["ledger"].append(
            (key, lead_id, message.product, f"{ns}_step", message.channel, message.status, at.isoformat())
        )
        outcomes = message.outcomes if message.status == "sent" else ("failed",)
        for j, outcome in enumerate(outcomes):
            properties = json.dumps({"idempotency_key": key, "lead_id": lead_id, "channel": message.channel})
            rows["events"].append(
                (f"{ns}-k{i}-{outcome}", "delivery", outcome, at + timedelta(minutes=j + 1), message.product,
                 None, None, None, "n8n", properties, f"delivery/{ns}.jsonl", 100 + 10 * i + j)
            )  # fmt: skip
        sent = message.status == "sent"
        m.messages.append(
            {"key": key, "lead_id": lead_id, "product": message.product, "channel": message.channel,
             "sent_at": at if sent else None, "sent": sent, "outcomes": set(outcomes)}
        )  # fmt: skip
        if sent:
            m.touches.append(Touch(f"message:{key}", lead_id, message.product, message.channel, at))
    for j, deal in enumerate(example.deals):
        deal_id = f"{ns}-d{j}"
        created = week + timedelta(minutes=deal.created_minute)
        closed = (
            week + timedelta(minutes=deal.closed_minute) if deal.stage != "appointmentscheduled" else None
        )
        dlt_id = f"deal-{deal_id}"
        rows["deals"].append(
            (deal_id, deal_id, 100.0 * (j + 1), deal.stage, "default", closed, created, created, deal.product,
             False, LOAD_ID, dlt_id)
        )  # fmt: skip
        for idx, k in enumerate(deal.contacts):
            rows["deal_contacts"].append((f"{ns}-c{k}", dlt_id, idx, dlt_id, LOAD_ID, f"{dlt_id}-{idx}"))
        if deal.stage == "closedwon" and closed <= AS_OF:
            m.conversions[deal_id] = {
                "product": deal.product,
                "closed_at": closed,
                "amount": 100.0 * (j + 1),
                "leads": {lead_ids[k] for k in deal.contacts},
            }
    return m


# ---------------------------------------------------------------------------------------- reference


def reference_weights(touches: list[Touch], closed_at: datetime, lookback: float, half_life: float,
                      first: float, last: float) -> dict[str, dict[str, float]]:  # fmt: skip
    window = sorted(
        (t for t in touches if t.at <= closed_at and (closed_at - t.at).total_seconds() / 86400 <= lookback),
        key=lambda t: (t.at, t.touch_id),
    )
    if not window:
        return {model: {"none": 1.0} for model in MODELS}
    n = len(window)
    decay = [0.5 ** ((closed_at - t.at).total_seconds() / 86400 / half_life) for t in window]
    weights: dict[str, dict[str, float]] = {model: {} for model in MODELS}
    for i, t in enumerate(window):
        weights["first_touch"][t.touch_id] = 1.0 if i == 0 else 0.0
        weights["last_touch"][t.touch_id] = 1.0 if i == n - 1 else 0.0
        weights["linear"][t.touch_id] = 1.0 / n
        weights["time_decay"][t.touch_id] = decay[i] / sum(decay)
        if n == 1:
            position = 1.0
        elif n == 2:
            position = (first if i == 0 else last) / (first + last)
        else:
            position = first if i == 0 else last if i == n - 1 else (1 - first - last) / (n - 2)
        weights["position_based"][t.touch_id] = position
    return weights


def quantile(values: list[float], q: float) -> float:
    """Continuous percentile with linear interpolation (percentile_cont / quantile_cont)."""
    xs = sorted(values)
    position = q * (len(xs) - 1)
    low = math.floor(position)
    high = min(low + 1, len(xs) - 1)
    return xs[low] + (xs[high] - xs[low]) * (position - low)


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value


# ------------------------------------------------------------------------------------------- build


@dataclass
class Built:
    examples: list[Materialized]
    marts: dict[str, list[dict[str, Any]]]
    seconds: float


RAW = {
    ("raw_crm", "contacts"): CONTACT_COLUMNS + DLT_COLUMNS,
    ("raw_crm", "companies"): COMPANY_COLUMNS + DLT_COLUMNS,
    ("raw_crm", "deals"): DEAL_COLUMNS + DLT_COLUMNS,
    ("raw_crm", "deals__contact_ids"): DEAL_CONTACT_COLUMNS + DLT_COLUMNS,
    ("raw_events", "events"): EVENT_COLUMNS,
    ("raw_events", "quarantine"): QUARANTINE_COLUMNS,
}
MARTS = (
    "fct_conversions",
    "fct_conversion_funnel",
    "fct_conversion_attribution",
    "fct_message_performance",
    "fct_time_to_conversion",
    "fct_holdout_lift",
    "int_holdout_assignments",
    "fct_lead_stages",
    "fct_lead_stage_transitions",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    work = tmp_path_factory.mktemp("analytics-properties")
    location = str(work / "warehouse.duckdb")
    rows: dict[str, list[tuple]] = defaultdict(list)
    examples_ = [materialize(n, example, rows) for n, example in enumerate(collect_examples())]
    assert len(examples_) == MAX_EXAMPLES
    conn = connect("duckdb", location)
    try:
        cur = conn.cursor()
        for schema in ("raw_crm", "raw_events"):
            cur.execute(f"create schema {schema}")
        for (schema, table), columns in RAW.items():
            cur.execute(f"create table {schema}.{table} ({', '.join(f'{n} {t}' for n, t in columns)})")
        for key, table in (
            ("contacts", "raw_crm.contacts"),
            ("deals", "raw_crm.deals"),
            ("deal_contacts", "raw_crm.deals__contact_ids"),
            ("events", "raw_events.events"),
        ):
            columns = RAW[tuple(table.split("."))]
            insert(conn, "duckdb", table, [n for n, _ in columns], rows[key])
        create_ledger(conn, "duckdb", rows["ledger"])
        conn.commit()
    finally:
        conn.close()
    seconds = build_analytics("duckdb", location, work, as_of=AS_OF.isoformat(), test=False)
    conn = connect("duckdb", location)
    try:
        marts = {}
        for mart in MARTS:
            cur = conn.cursor()
            cur.execute(f"select * from analytics.{mart}")
            names = [d[0] for d in cur.description]
            marts[mart] = [{k: _utc(v) for k, v in zip(names, r, strict=True)} for r in cur.fetchall()]
    finally:
        conn.close()
    print(f"Property 8: {MAX_EXAMPLES} examples, one dbt build in {seconds:.1f}s")
    return Built(examples_, marts, seconds)


def _vars() -> dict[str, float]:
    names = (
        "analytics_attribution_lookback_days",
        "analytics_time_decay_half_life_days",
        "analytics_position_first_share",
        "analytics_position_last_share",
        "analytics_holdout_share",
        "analytics_holdout_ci_z",
    )
    return {name: float(read_dbt_var(name)) for name in names}


def _report(failures: list[str]) -> None:
    assert not failures, f"{len(failures)} failures, first ones:\n" + "\n".join(failures[:15])


# ------------------------------------------------------------------------------------------- checks


def test_property_8a_attribution_weights_sum_to_one_and_match_reference(built: Built) -> None:
    v = _vars()
    by_conversion: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for row in built.marts["fct_conversion_attribution"]:
        by_conversion[row["conversion_id"]][row["attribution_model"]][row["touch_id"]] = row[
            "attribution_weight"
        ]
    failures = []
    for conversion, models in by_conversion.items():
        for model, weights in models.items():
            if abs(sum(weights.values()) - 1) > TOL:
                failures.append(f"{conversion} {model}: weights sum to {sum(weights.values())}")
    for m in built.examples:
        for deal_id, conversion in m.conversions.items():
            touches = [
                t
                for t in m.touches
                if t.lead_id in conversion["leads"] and t.product == conversion["product"]
            ]
            expected = reference_weights(
                touches,
                conversion["closed_at"],
                v["analytics_attribution_lookback_days"],
                v["analytics_time_decay_half_life_days"],
                v["analytics_position_first_share"],
                v["analytics_position_last_share"],
            )
            got = by_conversion.get(deal_id, {})
            for model in MODELS:
                want, have = expected[model], got.get(model, {})
                if set(want) != set(have) or any(abs(want[k] - have[k]) > TOL for k in want):
                    failures.append(f"ex{m.n:02d} {deal_id} {model}: want {want}, got {dict(have)}")
    touch_counts = [len(models["linear"]) for models in by_conversion.values()]
    assert any(c >= 3 for c in touch_counts) and "none" in {
        t for models in by_conversion.values() for t in models["linear"]
    }, "the examples must include multi-touch conversions and conversions without touches"
    _report(failures)


def test_property_8b_conversions_reconcile_with_closed_won_deals(built: Built) -> None:
    got: dict[str, set] = defaultdict(set)
    for row in built.marts["fct_conversions"]:
        got[row["conversion_id"]].add(row["lead_id"])
    expected = {
        deal_id: (conversion["leads"] or {None})
        for m in built.examples
        for deal_id, conversion in m.conversions.items()
    }
    failures = [f"{d}: want leads {expected.get(d)}, got {got.get(d)}" for d in set(got) | set(expected)
                if got.get(d) != expected.get(d)]  # fmt: skip
    attributed = defaultdict(set)
    for row in built.marts["fct_conversion_attribution"]:
        attributed[row["conversion_id"]].add(row["attribution_model"])
    failures += [
        f"{d}: attributed under {attributed.get(d)}" for d in expected if attributed.get(d) != set(MODELS)
    ]
    assert len(expected) > 20, "too few conversions drawn to mean anything"
    _report(failures)


def _first_touches(m: Materialized) -> dict[tuple[str, str], Touch]:
    first: dict[tuple[str, str], Touch] = {}
    for t in sorted(m.touches, key=lambda t: (t.at, t.touch_id)):
        first.setdefault((t.lead_id, t.product), t)
    return first


def test_property_8c_funnel_never_increases_and_matches_reference(built: Built) -> None:
    funnel = built.marts["fct_conversion_funnel"]
    groups: dict[tuple, dict[str, int]] = defaultdict(dict)
    for row in funnel:
        groups[(row["product_id"], row["channel"], row["cohort_week"])][row["funnel_stage"]] = row["leads"]
    failures = []
    for group, counts in groups.items():
        series = [counts.get(stage, 0) for stage in FUNNEL]
        if series != sorted(series, reverse=True):
            failures.append(f"{group}: funnel increases {series}")
    deepest: dict[tuple[str, str], int] = defaultdict(lambda: 1)
    for row in built.marts["fct_lead_stage_transitions"]:
        level = STAGE_ORDER.get(row["to_stage"])
        if level:
            key = (row["lead_id"], row["product_id"])
            deepest[key] = max(deepest[key], level)
    staged = {(r["lead_id"], r["product_id"]) for r in built.marts["fct_lead_stages"]}
    for m in built.examples:
        converted = {(lead, c["product"]) for c in m.conversions.values() for lead in c["leads"]}
        expected: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FUNNEL, 0))
        for (lead, product), touch in _first_touches(m).items():
            if (lead, product) not in staged:
                continue
            depth = 6 if (lead, product) in converted else deepest[(lead, product)]
            for stage, order in STAGE_ORDER.items():
                expected[(product, touch.channel, m.week.date())][stage] += int(depth >= order)
        actual = {g: {s: c.get(s, 0) for s in FUNNEL} for g, c in groups.items() if g[2] == m.week.date()}
        if actual != dict(expected):
            failures.append(f"ex{m.n:02d}: want {dict(expected)}, got {actual}")
    _report(failures)


def test_property_8d_messages_time_to_conversion_and_holdout_match_reference(built: Built) -> None:
    v = _vars()
    failures = []
    performance = defaultdict(dict)
    for row in built.marts["fct_message_performance"]:
        performance[row["template"]][(row["product_id"], row["channel"])] = row
    conversions_rows = built.marts["fct_conversions"]
    mql_at: dict[tuple[str, str], datetime] = {}
    for row in built.marts["fct_lead_stage_transitions"]:
        if row["to_stage"] in ("mql", "sql"):
            key = (row["lead_id"], row["product_id"])
            mql_at[key] = min(mql_at.get(key, row["transitioned_at"]), row["transitioned_at"])
    durations: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    by_key = {(r["conversion_id"], r["lead_id"]): r for r in conversions_rows}
    for m in built.examples:
        # message performance of this example's template
        expected: dict[tuple[str, str], dict[str, int]] = {}
        for msg in m.messages:
            counts = expected.setdefault(
                (msg["product"], msg["channel"]),
                dict.fromkeys(
                    ("sent", "delivered", "opened", "clicked", "replied", "failed", "converted"), 0
                ),
            )
            outcomes = msg["outcomes"]
            delivered = bool(outcomes & {"delivered", "opened", "clicked", "replied"})
            counts["sent"] += msg["sent"]
            counts["delivered"] += delivered
            counts["opened"] += bool(outcomes & {"opened", "clicked"})
            counts["clicked"] += "clicked" in outcomes
            counts["replied"] += "replied" in outcomes
            counts["failed"] += not delivered and (not msg["sent"] or "failed" in outcomes)
            counts["converted"] += msg["sent"] and any(
                msg["lead_id"] in c["leads"]
                and c["product"] == msg["product"]
                and msg["sent_at"] <= c["closed_at"]
                and (c["closed_at"] - msg["sent_at"]).total_seconds() / 86400
                <= v["analytics_attribution_lookback_days"]
                for c in m.conversions.values()
            )
        got = {
            key: {
                name: row[name]
                for name in ("sent", "delivered", "opened", "clicked", "replied", "failed", "converted")
            }
            for key, row in performance.get(f"ex{m.n:02d}_step", {}).items()
        }
        if got != expected:
            failures.append(f"ex{m.n:02d} messages: want {expected}, got {got}")
        # time to conversion per conversion's lead
        first = _first_touches(m)
        for deal_id, c in m.conversions.items():
            for lead in c["leads"]:
                row = by_key.get((deal_id, lead))
                if row is None:
                    failures.append(f"ex{m.n:02d} {deal_id}: no fct_conversions row for {lead}")
                    continue
                touch = first.get((lead, c["product"]))
                want = (
                    (c["closed_at"] - touch.at).total_seconds() / 86400
                    if touch and touch.at <= c["closed_at"]
                    else None
                )
                qualified = mql_at.get((lead, c["product"]))
                want_mql = (
                    (c["closed_at"] - qualified).total_seconds() / 86400
                    if qualified and qualified <= c["closed_at"]
                    else None
                )
                for name, value in (("days_from_first_touch", want), ("days_from_mql", want_mql)):
                    have = row[name]
                    if (value is None) != (have is None) or (value is not None and abs(value - have) > 1e-6):
                        failures.append(f"ex{m.n:02d} {deal_id} {name}: want {value}, got {have}")
                channel = touch.channel if touch else "none"
                for measured_from, value in (("first_touch", want), ("mql", want_mql)):
                    if value is not None:
                        durations[(c["product"], channel, measured_from)].append(value)
                        durations[(c["product"], "all", measured_from)].append(value)
    # percentiles over all examples (linear interpolation, as percentile_cont / quantile_cont)
    ttc = {
        (r["product_id"], r["channel"], r["measured_from"]): r for r in built.marts["fct_time_to_conversion"]
    }
    if set(ttc) != set(durations):
        failures.append(f"time-to-conversion groups: want {sorted(durations)}, got {sorted(ttc)}")
    for key, values in durations.items():
        row = ttc.get(key)
        if row is None:
            continue
        for column, q in (("median_days", 0.5), ("p75_days", 0.75), ("p90_days", 0.9)):
            if abs(row[column] - quantile(values, q)) > 1e-6:
                failures.append(f"{key} {column}: want {quantile(values, q)}, got {row[column]}")
        if row["conversions"] != len(values):
            failures.append(f"{key} conversions: want {len(values)}, got {row['conversions']}")
    # holdout: the documented hash draw, and lift with its normal-approximation interval
    converted = {
        (lead, c["product"]) for m in built.examples for c in m.conversions.values() for lead in c["leads"]
    }
    groups: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for a in built.marts["int_holdout_assignments"]:
        draw = int(md5(f"{a['lead_id']}|{a['workflow']}")[:8], 16) / 2**32
        if a["is_holdout"] != (draw < v["analytics_holdout_share"]):
            failures.append(f"holdout draw of {a['lead_id']} {a['workflow']}: {a['holdout_draw']} vs {draw}")
        groups[a["workflow"]].append((a["is_holdout"], (a["lead_id"], a["product_id"]) in converted))
    for row in built.marts["fct_holdout_lift"]:
        members = groups[row["workflow"]]
        n_t = sum(not h for h, _ in members)
        n_h = sum(h for h, _ in members)
        c_t = sum(c for h, c in members if not h)
        c_h = sum(c for h, c in members if h)
        if (row["treated_leads"], row["treated_conversions"], row["holdout_leads"], row["holdout_conversions"]) != (
            n_t, c_t, n_h, c_h,
        ):  # fmt: skip
            failures.append(f"{row['workflow']} counts: want {(n_t, c_t, n_h, c_h)}, got {row}")
            continue
        if n_t and n_h:
            p_t, p_h = c_t / n_t, c_h / n_h
            se = math.sqrt(p_t * (1 - p_t) / n_t + p_h * (1 - p_h) / n_h)
            z = v["analytics_holdout_ci_z"]
            want = (p_t - p_h, p_t - p_h - z * se, p_t - p_h + z * se)
            have = (row["lift"], row["lift_ci_low"], row["lift_ci_high"])
            if any(abs(a - b) > 1e-9 for a, b in zip(want, have, strict=True)):
                failures.append(f"{row['workflow']} lift: want {want}, got {have}")
    assert any(n_h for n_h in (sum(h for h, _ in g) for g in groups.values())), "no holdout lead drawn"
    assert any(row["converted"] for rows in performance.values() for row in rows.values()), (
        "no converted message"
    )
    _report(failures)
