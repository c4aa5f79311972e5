"""A small, deliberately plain Python reference of dbt_project/LEAD_MODEL.md.

It computes what the dbt lead model must produce for a handful of leads, straight from the spec's
sentences, with loops instead of windows: earned points (repeatable / daily caps), decayed engagement
score, fit score, the stage machine (signals incl. inactivity, deals, overrides) with its audit trail,
and routing. Every weight, threshold, half-life and transition comes from the seed CSVs (through
orchestration.lead_config) and `dormant_after_days` from dbt_project.yml; nothing is repeated here.

Identity is kept simple on purpose: the property tests give every event an email and every lead at most
one CRM contact, so lead_id = md5('email:<lower(trim(email))>') (ARCHITECTURE.md) and the lead's CRM
attributes are that contact's (and its company's).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orchestration.lead_config import LeadConfig, ScoringRule

NURTURE_STAGES = ("engaged", "mql", "sql", "recycled", "dormant")  # LEAD_MODEL.md, Routing
MAX_TRANSITIONS_PER_SIGNAL = 9  # LEAD_MODEL.md, Stages ("at most 9 per signal")
CLOSED_WON, CLOSED_LOST = "closedwon", "closedlost"  # HubSpot's closed deal stages (stg_crm__deals)

# signal kinds and their processing order (LEAD_MODEL.md, Stages)
INACTIVITY, ENGAGEMENT, DEAL_CREATED, DEAL_CLOSED, OVERRIDE = 0, 1, 2, 3, 4


# ------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Company:
    company_id: str
    industry: str | None
    employee_count: int | None


@dataclass(frozen=True)
class Contact:
    contact_id: str
    email: str
    country: str | None
    job_title: str | None
    company_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class Deal:
    deal_id: str
    product_id: str
    deal_stage: str  # e.g. appointmentscheduled, closedwon, closedlost
    created_at: datetime
    closed_at: datetime | None
    contact_ids: tuple[str, ...]


@dataclass(frozen=True)
class Event:
    event_id: str
    event_type: str
    occurred_at: datetime
    product_id: str
    email: str
    properties: dict = field(default_factory=dict, hash=False, compare=False)


def lead_id_for_email(email: str) -> str:
    return hashlib.md5(f"email:{email.strip().lower()}".encode()).hexdigest()


# ------------------------------------------------------------------------------------------ outputs


@dataclass
class ScoreRow:
    engagement_score: float
    fit_score: float
    score: float
    is_mql: bool
    is_sql: bool


@dataclass
class Transition:
    transition_seq: int
    from_stage: str | None
    to_stage: str
    transitioned_at: datetime
    rule_id: str
    trigger: str | None
    engagement_score: float
    fit_score: float
    score: float
    triggering_event_id: str | None


@dataclass
class Result:
    earned: dict[tuple[str, str, str], float]  # (lead, product, event_id) -> earned points
    history: dict[tuple[str, str, str], tuple[float, float, float]]  # -> (engagement, fit, score) after it
    scores: dict[tuple[str, str], ScoreRow]
    transitions: dict[tuple[str, str], list[Transition]]
    stages: dict[tuple[str, str], tuple[str, datetime]]
    routing: dict[tuple[str, str], tuple[str, str, bool]]  # -> (workflow, workflow_step, is_in_nurture)


# ---------------------------------------------------------------------------------------- the model


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(value, high))


def _days(seconds: float) -> float:
    return seconds / 86400.0


def fit_score(config: LeadConfig, product_id: str, contact: Contact | None, company: Company | None) -> float:
    """Σ points of matching fit rules of the product on the lead's CRM attributes, clamped to [0, cap]."""
    if contact is None:
        return 0.0
    attributes = {
        "country": contact.country,
        "job_title": contact.job_title,
        "industry": company.industry if company else None,
        "employee_count": company.employee_count if company else None,
    }
    total = 0.0
    for rule in config.fit_rules:
        if rule.product_id != product_id:
            continue
        actual = attributes[rule.attribute]
        if actual is None:
            continue
        if rule.operator == "equals":
            matches = str(actual).strip().lower() == rule.value.strip().lower()
        elif rule.operator == "contains":
            matches = rule.value.strip().lower() in str(actual).lower()
        else:  # at_least
            matches = float(actual) >= float(rule.value)
        if matches:
            total += rule.points
    return _clamp(total, 0.0, config.products[product_id].score_cap)


def earned_points(candidates: list[tuple[Event, ScoringRule]]) -> dict[str, float]:
    """event_id -> earned points, for one (lead, product); candidates sorted by (occurred_at, event_id)."""
    earned: dict[str, float] = {}
    seen_per_rule: dict[str, int] = defaultdict(int)
    earning_per_rule_day: dict[tuple[str, object], int] = defaultdict(int)
    for event, rule in candidates:
        first = seen_per_rule[rule.rule_id] == 0
        seen_per_rule[rule.rule_id] += 1
        points = 0.0
        if rule.is_repeatable or first:
            day = (rule.rule_id, event.occurred_at.date())  # occurred_at is UTC
            if rule.daily_cap is None or earning_per_rule_day[day] < rule.daily_cap:
                points = float(rule.points)
            earning_per_rule_day[day] += 1  # an earning candidate (passed the repeatable test)
        earned[event.event_id] = points
    return earned


def engagement_score(
    earning: list[tuple[datetime, float]], t: datetime, half_life_days: float, cap: float
) -> float:
    total = sum(
        points * 0.5 ** (_days((t - at).total_seconds()) / half_life_days)
        for at, points in earning
        if at <= t
    )
    return _clamp(total, 0.0, cap)


def compute(
    config: LeadConfig,
    *,
    as_of: datetime,
    dormant_after_days: float,
    contacts: Iterable[Contact],
    companies: Iterable[Company],
    deals: Iterable[Deal],
    events: Iterable[Event],
) -> Result:
    contacts = [c for c in contacts if c.created_at <= as_of]
    companies_by_id = {c.company_id: c for c in companies}
    contact_by_lead = {lead_id_for_email(c.email): c for c in contacts}
    lead_by_contact = {c.contact_id: lead_id_for_email(c.email) for c in contacts}
    events = sorted((e for e in events if e.occurred_at <= as_of), key=lambda e: (e.occurred_at, e.event_id))
    rules_by_match: dict[tuple[str, str, str], ScoringRule] = {
        (r.product_id, r.event_product_id, r.event_type): r for r in config.scoring_rules
    }

    # candidate events per (lead, product)
    candidates: dict[tuple[str, str], list[tuple[Event, ScoringRule]]] = defaultdict(list)
    overrides: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for event in events:
        lead = lead_id_for_email(event.email)
        for product_id in config.products:
            rule = rules_by_match.get((product_id, event.product_id, event.event_type))
            if rule is not None:
                candidates[(lead, product_id)].append((event, rule))
        if event.event_type == "stage_override" and event.product_id in config.products:
            overrides[(lead, event.product_id)].append(event)

    deal_signals: dict[tuple[str, str], list[tuple[datetime, int, str, str]]] = defaultdict(list)
    for deal in deals:
        if deal.product_id not in config.products:
            continue
        leads = {lead_by_contact[c] for c in deal.contact_ids if c in lead_by_contact}
        for lead in leads:
            if deal.created_at <= as_of:
                deal_signals[(lead, deal.product_id)].append(
                    (deal.created_at, DEAL_CREATED, deal.deal_id, "deal_created")
                )
            if (
                deal.closed_at is not None
                and deal.closed_at <= as_of
                and deal.deal_stage in (CLOSED_WON, CLOSED_LOST)
            ):
                kind = "deal_closed_won" if deal.deal_stage == CLOSED_WON else "deal_closed_lost"
                deal_signals[(lead, deal.product_id)].append(
                    (deal.closed_at, DEAL_CLOSED, deal.deal_id, kind)
                )

    result = Result({}, {}, {}, {}, {}, {})
    pairs = set(candidates) | set(overrides) | set(deal_signals)
    for lead, product_id in sorted(pairs):
        product = config.products[product_id]
        cap, half_life = product.score_cap, product.decay_half_life_days
        contact = contact_by_lead.get(lead)
        company = companies_by_id.get(contact.company_id) if contact and contact.company_id else None
        fit = fit_score(config, product_id, contact, company)
        pair_candidates = candidates.get((lead, product_id), [])
        earned = earned_points(pair_candidates)
        earning = [(e.occurred_at, earned[e.event_id]) for e, _ in pair_candidates if earned[e.event_id] != 0]

        def scores_at(t: datetime, cap=cap, half_life=half_life, fit=fit, earning=earning):
            engagement = engagement_score(earning, t, half_life, cap)
            return engagement, fit, min(engagement + fit, cap)

        for event, _ in pair_candidates:
            result.earned[(lead, product_id, event.event_id)] = earned[event.event_id]
            result.history[(lead, product_id, event.event_id)] = scores_at(event.occurred_at)
        if pair_candidates:
            engagement, _, score = scores_at(as_of)
            result.scores[(lead, product_id)] = ScoreRow(
                engagement, fit, score, score >= product.mql_threshold, score >= product.sql_threshold
            )

        # signals: (time, kind order, id, trigger kind, payload)
        signals: list[tuple[datetime, int, str, str, str | None]] = []
        engagement_times = [e.occurred_at for e, _ in pair_candidates]
        dormant_after = timedelta(days=dormant_after_days)
        for i, (event, _) in enumerate(pair_candidates):
            signals.append((event.occurred_at, ENGAGEMENT, event.event_id, "engagement", None))
            following = engagement_times[i + 1] if i + 1 < len(engagement_times) else None
            due = event.occurred_at + dormant_after
            if (following is not None and following > due) or (following is None and due <= as_of):
                signals.append((due, INACTIVITY, "", "inactivity", None))
        for at, kind, deal_id, trigger in deal_signals.get((lead, product_id), []):
            signals.append((at, kind, deal_id, trigger, None))
        for event in overrides.get((lead, product_id), []):
            signals.append(
                (
                    event.occurred_at,
                    OVERRIDE,
                    event.event_id,
                    "manual_override",
                    (event.properties or {}).get("to_stage"),
                )
            )
        signals.sort(key=lambda s: (s[0], s[1], s[2]))

        transitions: list[Transition] = []
        stage, entered_at = None, None
        for at, kind, signal_id, trigger_kind, requested in signals:
            engagement, fit_now, score = scores_at(at)
            if stage is None:
                stage, entered_at = "new", at
                transitions.append(
                    Transition(
                        1, None, "new", at, "initial", None, engagement, fit_now, score, signal_id or None
                    )
                )
            for _ in range(MAX_TRANSITIONS_PER_SIGNAL):
                rule = _next_rule(config, product, stage, kind, trigger_kind, score, requested)
                if rule is None:
                    break
                transitions.append(
                    Transition(
                        len(transitions) + 1,
                        stage,
                        rule.to_stage,
                        at,
                        rule.rule_id,
                        rule.trigger,
                        engagement,
                        fit_now,
                        score,
                        None if kind == INACTIVITY else signal_id,
                    )
                )
                stage, entered_at = rule.to_stage, at
        if stage is not None:
            result.transitions[(lead, product_id)] = transitions
            result.stages[(lead, product_id)] = (stage, entered_at)
            result.routing[(lead, product_id)] = (product.nurture_workflow, stage, stage in NURTURE_STAGES)
    return result


def _next_rule(
    config: LeadConfig, product, stage: str, kind: int, trigger_kind: str, score: float, requested: str | None
):
    def holds(rule) -> bool:
        if rule.trigger in ("first_engagement", "reengaged"):
            return kind == ENGAGEMENT
        if rule.trigger == "score_reached_mql":
            return kind == ENGAGEMENT and score >= product.mql_threshold
        if rule.trigger == "score_reached_sql":
            return kind == ENGAGEMENT and score >= product.sql_threshold
        if rule.trigger == "manual_override":
            return kind == OVERRIDE and rule.to_stage == requested
        return rule.trigger == trigger_kind  # deal_created, deal_closed_won/lost, inactivity

    eligible = [r for r in config.stage_rules if r.from_stage == stage and holds(r)]
    return min(eligible, key=lambda r: (r.priority, r.rule_id)) if eligible else None
