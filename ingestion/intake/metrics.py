"""`/metrics/…`: the analytics report's numbers as JSON (same queries as orchestration/reporting.py).

Read-only and short-lived like the Lead Tracker: one read-only warehouse connection per request. Bearer auth
with LEADFLOW_INTAKE_TOKEN (the same token as the Lead Tracker). A mart that is not built yet answers 200
with `built: false` and no rows (the pipeline has not run); an unreachable or locked warehouse answers 503.

Include in ingestion/intake/app.py, inside create_app: `app.include_router(metrics.router)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from pydantic import BaseModel, Field

from activation import warehouse as warehouse_module
from ingestion.intake import providers
from ingestion.intake.models import ErrorResponse
from orchestration import reporting

logger = logging.getLogger("leadflow.intake.metrics")

_PG_CONNECT_TIMEOUT_SECONDS = 3  # a dead warehouse host must not hang a request
Filter = Annotated[str | None, Query(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]


def require_bearer(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    token = request.app.state.config.intake_token
    if not token:
        raise HTTPException(503, "LEADFLOW_INTAKE_TOKEN is not set: set it to enable this endpoint")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not providers.token_matches(token, given.strip()):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


router = APIRouter(
    prefix="/metrics",
    tags=["metrics"],
    dependencies=[Depends(require_bearer)],
    responses={401: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)


# --- response models ---------------------------------------------------------------------------------


class MetricsBase(BaseModel):
    built: bool = Field(description="False while the analytics marts are not built (run the pipeline).")
    detail: str | None = Field(default=None, description="Why there are no numbers, when built is false.")


class FunnelStage(BaseModel):
    product_id: str
    funnel_stage: str = Field(description="new, engaged, mql, sql, opportunity or customer.")
    stage_order: int
    leads: int = Field(description="Leads that reached this stage or a later one.")
    leads_entered: int
    conversion_rate: float | None = Field(description="leads / leads_entered.")
    step_rate: float | None = Field(description="leads / leads at the previous stage.")


class CohortPoint(BaseModel):
    product_id: str
    cohort_week: date = Field(description="UTC Monday of the week of the leads' first touch.")
    leads_entered: int
    customers: int
    conversion_rate: float | None


class FunnelResponse(MetricsBase):
    stages: list[FunnelStage] = []
    cohorts: list[CohortPoint] = []


class TimeToConversion(BaseModel):
    product_id: str
    workflow: str | None = None
    channel: str = Field(description="First-touch channel, or `all`.")
    measured_from: str = Field(description="first_touch or mql.")
    conversions: int
    median_days: float | None
    p75_days: float | None
    p90_days: float | None
    mean_days: float | None
    min_days: float | None
    max_days: float | None


class TimeToConversionResponse(MetricsBase):
    rows: list[TimeToConversion] = []


class AttributionCredit(BaseModel):
    attribution_model: str = Field(
        description="first_touch, last_touch, linear, time_decay or position_based."
    )
    channel: str = Field(description="email, whatsapp, chatbot, product or none (a deal without touches).")
    credited_conversions: float = Field(description="Sum of attribution weights (each deal carries 1).")
    attributed_amount: float | None
    conversions_touched: int


class AttributionResponse(MetricsBase):
    rows: list[AttributionCredit] = []


class MessagePerformance(BaseModel):
    product_id: str
    workflow: str
    template: str
    channel: str
    sent: int
    delivered: int
    opened: int
    clicked: int
    replied: int
    failed: int
    converted: int
    delivery_rate: float | None
    open_rate: float | None
    click_rate: float | None
    reply_rate: float | None
    conversion_rate: float | None


class MessagesResponse(MetricsBase):
    rows: list[MessagePerformance] = []


class HoldoutLift(BaseModel):
    product_id: str
    workflow: str
    treated_leads: int
    treated_conversions: int
    holdout_leads: int
    holdout_conversions: int
    treated_rate: float | None
    holdout_rate: float | None
    lift: float | None = Field(description="treated_rate − holdout_rate.")
    lift_standard_error: float | None
    ci_z: float
    lift_ci_low: float | None = Field(description="Lower end of the 95 % interval (normal approximation).")
    lift_ci_high: float | None
    is_significant: bool
    is_sample_adequate: bool


class HoldoutResponse(MetricsBase):
    rows: list[HoldoutLift] = []


class Summary(MetricsBase):
    conversions: int = 0
    converted_amount: float = 0.0
    leads_in_funnel: int = 0
    messages_sent: int = 0
    generated_at: datetime | None = None


# --- reads -------------------------------------------------------------------------------------------

T = TypeVar("T", bound=MetricsBase)


def _read_url(url: str) -> str:
    if (
        url.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://"))
        and "connect_timeout" not in url
    ):
        return url + ("&" if "?" in url else "?") + f"connect_timeout={_PG_CONNECT_TIMEOUT_SECONDS}"
    return url


def _read(
    request: Request, model: type[T], work: Callable[[warehouse_module.Warehouse], dict[str, Any]]
) -> T:
    url = _read_url(request.app.state.config.warehouse_url)
    try:
        with warehouse_module.connect(url, read_only=True) as db:
            return model(built=True, **work(db))
    except reporting.MartMissing as error:
        return model(built=False, detail=str(error))
    except Exception as error:  # down, locked for too long, misconfigured
        logger.warning("warehouse read failed: %s", type(error).__name__)
        raise HTTPException(
            503,
            f"warehouse unavailable ({type(error).__name__}); retry shortly",
            headers={"Retry-After": "10"},
        ) from None


@router.get("/summary", response_model=Summary)
def summary(request: Request) -> Summary:
    """Headline figures: closed-won deals and amount, leads in the funnel, messages sent."""

    def work(db):
        return {**reporting.query_summary(db), "generated_at": datetime.now().astimezone()}

    return _read(request, Summary, work)


@router.get("/funnel", response_model=FunnelResponse)
def funnel(
    request: Request, product_id: Filter = None, channel: Filter = None, workflow: Filter = None
) -> FunnelResponse:
    """Leads per lifecycle stage and product (optionally one first-touch channel / workflow), and per
    weekly cohort of first touch the share that became customers."""

    def work(db):
        stages = reporting.query_funnel(db, product_id=product_id, channel=channel, workflow=workflow)
        return {"stages": stages, "cohorts": reporting.query_cohort_trend(db, product_id=product_id)}

    return _read(request, FunnelResponse, work)


@router.get("/time-to-conversion", response_model=TimeToConversionResponse)
def time_to_conversion(
    request: Request, product_id: Filter = None, channel: Filter = None
) -> TimeToConversionResponse:
    """Days to a closed-won deal from first touch and from MQL: median, p75, p90 per product and channel."""
    return _read(
        request,
        TimeToConversionResponse,
        lambda db: {"rows": reporting.query_time_to_conversion(db, product_id=product_id, channel=channel)},
    )


@router.get("/attribution", response_model=AttributionResponse)
def attribution(request: Request, product_id: Filter = None) -> AttributionResponse:
    """Closed-won deals credited to channels under each attribution model."""
    return _read(
        request,
        AttributionResponse,
        lambda db: {"rows": reporting.query_attribution(db, product_id=product_id)},
    )


@router.get("/messages", response_model=MessagesResponse)
def messages(request: Request, product_id: Filter = None, channel: Filter = None) -> MessagesResponse:
    """Sent, delivered, opened, clicked, replied, failed and converted per template and channel."""
    return _read(
        request,
        MessagesResponse,
        lambda db: {"rows": reporting.query_message_performance(db, product_id=product_id, channel=channel)},
    )


@router.get("/holdout", response_model=HoldoutResponse)
def holdout(request: Request, product_id: Filter = None) -> HoldoutResponse:
    """Treated minus holdout conversion rate per workflow with its 95 % confidence interval."""
    return _read(
        request, HoldoutResponse, lambda db: {"rows": reporting.query_holdout(db, product_id=product_id)}
    )
