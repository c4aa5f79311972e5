"""Request and response models of the intake API (they are its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

MAX_BATCH_ITEMS = 1000  # per request; the n8n contract batches ≤ 1000 messages too
NonEmpty = Annotated[str, Field(min_length=1, max_length=512)]


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong and, where it applies, what to fix.")


class ValidationIssue(BaseModel):
    loc: list[str]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    detail: str = Field(description="The first problems, readable.")
    errors: list[ValidationIssue]


class Rejection(BaseModel):
    index: int = Field(description="Position of the event in the request (0-based).")
    reason: str


class IngestResult(BaseModel):
    """What happened to a batch: every event is counted exactly once in one of the three counts."""

    accepted: int = Field(description="New events durably written to the landing zone.")
    duplicates: int = Field(description="Events already landed before (same identity); not written again.")
    quarantined: int = Field(description="Invalid events, kept in the intake quarantine with the reason.")
    landing_file: str | None = Field(
        default=None, description="Landing file (relative to the landing dir) holding the accepted events."
    )
    rejections: list[Rejection] = Field(default_factory=list)


# --- product events (landing format) -------------------------------------------------------------


class LandingEventDoc(BaseModel):
    """One event in the landing format (ARCHITECTURE.md). Documented shape; invalid items are quarantined."""

    model_config = ConfigDict(extra="allow")

    event_id: str = Field(min_length=1, description="Stable unique id; a repeat is absorbed as a duplicate.")
    event_type: str = Field(min_length=1)
    occurred_at: str = Field(description="ISO 8601; naive means UTC.", examples=["2026-11-20T09:15:00Z"])
    product_id: str | None = None
    email: str | None = None
    phone: str | None = None
    user_id: str | None = None
    source: str | None = None
    properties: dict[str, Any] | None = None


def _loose(model: type[BaseModel]) -> Any:
    """A dict validated item by item in the handler (so one bad item is quarantined, not the batch),
    documented in OpenAPI with the model's schema."""
    return Annotated[dict[str, Any], WithJsonSchema(model.model_json_schema())]


class EventBatch(BaseModel):
    events: list[_loose(LandingEventDoc)] = Field(max_length=MAX_BATCH_ITEMS)  # type: ignore[valid-type]


# --- chatbot -------------------------------------------------------------------------------------


class ChatbotMessage(BaseModel):
    """One conversation message from the chatbot platform."""

    model_config = ConfigDict(extra="forbid")

    message_id: NonEmpty = Field(description="The platform's message id (identity for duplicates).")
    conversation_id: NonEmpty
    direction: Literal["inbound", "outbound"] = Field(description="inbound = written by the person.")
    sent_at: datetime
    text: str | None = Field(default=None, max_length=20_000)
    user_id: str | None = None
    email: str | None = None
    phone: str | None = None
    product_id: str | None = None
    properties: dict[str, Any] | None = None


class ChatbotBatch(BaseModel):
    messages: list[_loose(ChatbotMessage)] = Field(max_length=MAX_BATCH_ITEMS)  # type: ignore[valid-type]


# --- delivery results (n8n) ----------------------------------------------------------------------

DELIVERY_EVENT_TYPES = ("sent", "delivered", "opened", "clicked", "replied", "failed")


class DeliveryResult(BaseModel):
    """One message's delivery result: n8n's answer statuses (`accepted` = sent, `duplicate` = already
    delivered, not landed again) or a later delivery event."""

    model_config = ConfigDict(extra="forbid")

    idempotency_key: NonEmpty
    status: Literal["accepted", "duplicate", "sent", "delivered", "opened", "clicked", "replied", "failed"]
    channel: str | None = None
    provider_message_id: str | None = None
    reason: str | None = None
    occurred_at: datetime | None = Field(
        default=None,
        description="When it happened; absent = received time (then one event per key and status).",
    )
    lead_id: str | None = None
    product_id: str | None = None
    recipient: str | None = None
    properties: dict[str, Any] | None = None


class DeliveryBatch(BaseModel):
    batch_id: str | None = None
    results: list[_loose(DeliveryResult)] = Field(max_length=MAX_BATCH_ITEMS)  # type: ignore[valid-type]


# --- leads ---------------------------------------------------------------------------------------


class LeadScore(BaseModel):
    product_id: str
    stage: str | None = Field(
        description="From fct_lead_stages when built, else mql/sql/lead from the score."
    )
    score: float | None = Field(default=None, description="Decayed engagement + fit, capped (a double).")
    engagement_score: float | None = None
    fit_score: float | None = None
    score_cap: float | None = None
    mql_threshold: float | None = None
    sql_threshold: float | None = None
    is_mql: bool | None = None
    is_sql: bool | None = None
    mql_reached_at: datetime | None = None
    sql_reached_at: datetime | None = None
    event_count: int | None = None
    last_event_at: datetime | None = None


class LeadScores(BaseModel):
    lead_id: str
    scores: list[LeadScore]


class Lead(BaseModel):
    lead_id: str
    lead_key: str | None = None
    lead_key_type: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone_e164: str | None = None
    country: str | None = None
    time_zone: str | None = None
    job_title: str | None = None
    lifecycle_stage: str | None = None
    is_in_crm: bool | None = None
    is_product_user: bool | None = None
    first_seen_at: datetime | None = None
    last_product_activity_at: datetime | None = None
    email_opt_out: bool | None = None
    products: list[LeadScore] = Field(description="Stage and scores per product.")


class StageTransition(BaseModel):
    product_id: str | None = None
    transition_seq: int | None = None
    from_stage: str | None = None
    to_stage: str | None = None
    transitioned_at: datetime | None = None
    reason: str | None = Field(default=None, description="The trigger that fired (e.g. score_reached_mql).")
    rule_id: str | None = Field(default=None, description="The stage rule applied (stage_rules.csv).")
    triggering_event_id: str | None = Field(default=None, description="Event or deal id that fired the rule.")
    score: float | None = None
    rules_version: str | None = None


class StageHistory(BaseModel):
    lead_id: str
    transitions: list[StageTransition] = Field(
        description="Audit trail, oldest first; empty until fct_lead_stage_transitions is built."
    )


class LeadEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_type: NonEmpty
    occurred_at: datetime | None = Field(default=None, description="Default: now.")
    event_id: NonEmpty | None = Field(default=None, description="Default: a new unique id.")
    product_id: str | None = None
    properties: dict[str, Any] | None = None


class LeadEventsIn(BaseModel):
    events: list[LeadEventIn] = Field(min_length=1, max_length=1000)


class StageOverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_stage: NonEmpty
    reason: NonEmpty
    product_id: NonEmpty


class LeadIn(BaseModel):
    """A manual lead. `email` or `phone` is required (it decides the lead id)."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(
        default=None, max_length=64, description="International form, e.g. +44 20 7946 0000."
    )
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    company: str | None = Field(default=None, max_length=200)
    country: str | None = Field(default=None, max_length=64)
    product_id: str | None = None
    properties: dict[str, Any] | None = None


class WriteAccepted(BaseModel):
    """The write is durably landed; the warehouse reflects it after the next pipeline run."""

    lead_id: str
    event_ids: list[str]
    landing_file: str | None = None
    duplicates: int = 0


class ComponentHealth(BaseModel):
    ok: bool
    detail: str | None = None


class LastRun(BaseModel):
    finished_at: datetime | None = None
    status: str | None = None
    age_seconds: float | None = None
    detail: str | None = None


class Health(BaseModel):
    status: Literal["ok", "not_ready"]
    warehouse: ComponentHealth
    landing: ComponentHealth
    last_run: LastRun
