"""The intake API: provider webhooks, event batches and the Lead Tracker, in one FastAPI app.

Writes only ever go to the landing zone (never to the CRM, never to the warehouse), so the warehouse
can be down or locked by a pipeline run while events keep arriving. Reads open a short-lived read-only
warehouse connection per request (DuckDB allows one writer process and no readers beside it).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activation import warehouse as warehouse_module
from ingestion.events import InvalidEventLine
from ingestion.intake import leads as lead_queries
from ingestion.intake import metrics, providers
from ingestion.intake.config import IntakeConfig
from ingestion.intake.landing import Candidate, IntakeStore, LandingResult
from ingestion.intake.models import (
    ChatbotBatch,
    ComponentHealth,
    DeliveryBatch,
    ErrorResponse,
    EventBatch,
    Health,
    IngestResult,
    LastRun,
    Lead,
    LeadEventsIn,
    LeadIn,
    LeadScore,
    LeadScores,
    Rejection,
    StageHistory,
    StageOverrideIn,
    StageTransition,
    ValidationErrorResponse,
    WriteAccepted,
)

logger = logging.getLogger("leadflow.intake")

_PG_CONNECT_TIMEOUT_SECONDS = 3  # a dead warehouse host must not hang a request or /health
LeadId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


class BodyLimitMiddleware:
    """413 for bodies over the limit, whether announced by Content-Length or streamed (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body exceeds the limit of {self.max_bytes} bytes (LEADFLOW_INTAKE_MAX_BODY_BYTES)"
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                return
            body = event.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
                return
            chunks.append(body)
            if not event.get("more_body", False):
                break
        buffered: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return buffered
            return await receive()

        await self.app(scope, replay, send)


def _read_url(url: str) -> str:
    if (
        url.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://"))
        and "connect_timeout" not in url
    ):
        return url + ("&" if "?" in url else "?") + f"connect_timeout={_PG_CONNECT_TIMEOUT_SECONDS}"
    return url


def _ingest_response(result: LandingResult, extra_duplicates: int = 0) -> IngestResult:
    return IngestResult(
        accepted=result.accepted,
        duplicates=result.duplicates + extra_duplicates,
        quarantined=result.quarantined,
        landing_file=result.landing_file,
        rejections=[Rejection(index=r.index, reason=r.reason) for r in result.rejections],
    )


def create_app(config: IntakeConfig) -> FastAPI:
    """Build the intake app for one configuration (tests build many, each with its own LEADFLOW_HOME)."""
    store = IntakeStore(
        config.landing_dir, config.intake_dir, config.quarantine_dir, config.seen_retention_days
    )
    read_url = _read_url(config.warehouse_url)
    app = FastAPI(
        title="leadflow intake",
        version="1.0.0",
        description="Provider webhooks, product events and the Lead Tracker. Every write lands in the "
        "landing zone before the response; the warehouse reflects it after the next pipeline run.",
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.state.config = config
    app.state.store = store
    app.include_router(metrics.router)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        # One readable message plus the locations; inputs are not echoed (they may be large or secret).
        issues = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": str(e.get("type"))}
            for e in error.errors()[:50]
        ]
        message = "; ".join(f"{'.'.join(i['loc'][1:]) or i['loc'][0]}: {i['msg']}" for i in issues[:10])
        return JSONResponse({"detail": message or "invalid request", "errors": issues}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = dict(error.headers or {})
        if error.status_code == 405:
            # Starlette answers with the first matching route's methods; a path served by two routes
            # (GET and POST /webhooks/whatsapp) must list both.
            methods: set[str] = set()
            for route in app.routes:
                if isinstance(route, APIRoute) and route.path_regex.match(request.url.path):
                    methods |= route.methods or set()
            if methods:
                headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"detail": str(error.detail)}, status_code=error.status_code, headers=headers)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            spec.setdefault("components", {}).setdefault("schemas", {})["HTTPValidationError"] = (
                ValidationErrorResponse.model_json_schema()
            )
            spec["components"]["schemas"].pop("ValidationError", None)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    # --- auth -------------------------------------------------------------------------------------

    def require_bearer(authorization: Annotated[str | None, Header()] = None) -> None:
        if not config.intake_token:
            raise HTTPException(503, "LEADFLOW_INTAKE_TOKEN is not set: set it to enable this endpoint")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not providers.token_matches(config.intake_token, token.strip()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    Bearer = Depends(require_bearer)

    async def land(stream: str, candidates: list[Candidate], rejected: list[Any]) -> LandingResult:
        try:
            return await run_in_threadpool(store.land, stream, candidates, rejected)
        except OSError as error:
            logger.exception("landing write failed")
            raise HTTPException(503, f"could not write the landing zone: {type(error).__name__}") from error

    # --- webhooks ---------------------------------------------------------------------------------

    sendgrid_body = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
        }
    }

    @app.post(
        "/webhooks/sendgrid",
        response_model=IngestResult,
        responses=_errors(400, 401, 413, 503),
        openapi_extra=sendgrid_body,
        tags=["webhooks"],
    )
    async def sendgrid_webhook(
        request: Request,
        x_twilio_email_event_webhook_signature: Annotated[str | None, Header()] = None,
        x_twilio_email_event_webhook_timestamp: Annotated[str | None, Header()] = None,
    ) -> IngestResult:
        """SendGrid Event Webhook batch, verified by its ECDSA signature (signed event webhook)."""
        if not config.sendgrid_public_key:
            raise HTTPException(
                503, "SENDGRID_WEBHOOK_PUBLIC_KEY is not set: signed events cannot be verified"
            )
        raw = await request.body()
        try:
            providers.verify_sendgrid(
                config.sendgrid_public_key,
                raw,
                x_twilio_email_event_webhook_signature,
                x_twilio_email_event_webhook_timestamp,
                config.tolerance_seconds,
            )
        except providers.SignatureError as error:
            raise HTTPException(401, str(error)) from None
        except ValueError:
            raise HTTPException(
                503,
                "SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid EC public key (base64 DER, as SendGrid shows it)",
            ) from None
        try:
            candidates, rejected = providers.sendgrid_events(orjson.loads(raw))
        except orjson.JSONDecodeError as error:
            raise HTTPException(400, f"body is not valid JSON: {error}") from None
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        return _ingest_response(await land("sendgrid", candidates, rejected))

    @app.get(
        "/webhooks/whatsapp",
        response_model=None,
        responses={
            200: {
                "description": "hub.challenge echoed",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **_errors(403, 503),
        },
        tags=["webhooks"],
    )
    async def whatsapp_verify(
        mode: Annotated[str | None, Query(alias="hub.mode")] = None,
        verify_token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
        challenge: Annotated[str | None, Query(alias="hub.challenge", max_length=1000)] = None,
    ) -> PlainTextResponse:
        """Meta's subscription handshake: echo hub.challenge when hub.verify_token matches."""
        if not config.whatsapp_verify_token:
            raise HTTPException(503, "WHATSAPP_VERIFY_TOKEN is not set: the handshake cannot be verified")
        if mode != "subscribe" or not providers.token_matches(config.whatsapp_verify_token, verify_token):
            raise HTTPException(403, "hub.mode must be 'subscribe' and hub.verify_token must match")
        return PlainTextResponse(challenge or "")

    @app.post(
        "/webhooks/whatsapp",
        response_model=IngestResult,
        responses=_errors(400, 401, 413, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["entry"],
                            "properties": {"object": {"type": "string"}, "entry": {"type": "array"}},
                        }
                    }
                },
            }
        },
        tags=["webhooks"],
    )
    async def whatsapp_webhook(
        request: Request, x_hub_signature_256: Annotated[str | None, Header()] = None
    ) -> IngestResult:
        """WhatsApp Cloud API notifications (statuses, inbound messages, opt-out/opt-in keywords)."""
        if not config.whatsapp_app_secret:
            raise HTTPException(503, "WHATSAPP_APP_SECRET is not set: signatures cannot be verified")
        raw = await request.body()
        try:
            providers.verify_whatsapp(config.whatsapp_app_secret, raw, x_hub_signature_256)
        except providers.SignatureError as error:
            raise HTTPException(401, str(error)) from None
        try:
            candidates, rejected = providers.whatsapp_events(orjson.loads(raw))
        except orjson.JSONDecodeError as error:
            raise HTTPException(400, f"body is not valid JSON: {error}") from None
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        return _ingest_response(await land("whatsapp", candidates, rejected))

    @app.post(
        "/webhooks/chatbot",
        response_model=IngestResult,
        responses=_errors(400, 401, 413, 503),
        dependencies=[Bearer],
        tags=["webhooks"],
    )
    async def chatbot_webhook(batch: ChatbotBatch) -> IngestResult:
        """Chatbot conversation messages; invalid messages are quarantined with the reason."""
        candidates, rejected = providers.chatbot_events(batch.messages)
        return _ingest_response(await land("chatbot", candidates, rejected))

    @app.post(
        "/events",
        response_model=IngestResult,
        responses=_errors(400, 401, 413, 503),
        dependencies=[Bearer],
        tags=["events"],
    )
    async def post_events(batch: EventBatch) -> IngestResult:
        """Product events in the landing format; invalid events are quarantined with the reason."""
        candidates, rejected = providers.product_events(batch.events)
        return _ingest_response(await land("product_events", candidates, rejected))

    @app.post(
        "/events/delivery",
        response_model=IngestResult,
        responses=_errors(400, 401, 413, 503),
        dependencies=[Bearer],
        tags=["events"],
    )
    async def post_delivery(batch: DeliveryBatch) -> IngestResult:
        """Delivery results from n8n (its `results` answer, or later delivery events)."""
        candidates, rejected, skipped = providers.delivery_events(batch.results, batch.batch_id)
        return _ingest_response(await land("delivery", candidates, rejected), extra_duplicates=skipped)

    # --- Lead Tracker -----------------------------------------------------------------------------

    def read(work: Any) -> Any:
        try:
            with warehouse_module.connect(read_url, read_only=True) as db:
                return work(db)
        except lead_queries.MartMissing as error:
            raise HTTPException(503, str(error)) from None
        except HTTPException:
            raise
        except Exception as error:  # the warehouse is down, locked for too long or misconfigured
            logger.warning("warehouse read failed: %s", type(error).__name__)
            raise HTTPException(
                503,
                f"warehouse unavailable ({type(error).__name__}); retry shortly",
                headers={"Retry-After": "10"},
            ) from None

    def load_lead(lead_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        def work(db: warehouse_module.Warehouse) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            lead = lead_queries.fetch_lead(db, lead_id)
            if lead is None:
                raise HTTPException(404, f"no lead with id {lead_id!r}")
            return lead, lead_queries.fetch_scores(db, lead_id)

        return read(work)

    def score_models(rows: list[dict[str, Any]]) -> list[LeadScore]:
        fields = LeadScore.model_fields
        return [LeadScore(**{k: v for k, v in row.items() if k in fields}) for row in rows]

    lead_reads = dict(responses=_errors(401, 404, 503), dependencies=[Bearer], tags=["leads"])

    @app.get("/leads/{lead_id}", response_model=Lead, **lead_reads)
    def get_lead(lead_id: LeadId) -> Lead:
        """A lead's profile with stage and scores per product."""
        lead, scores = load_lead(lead_id)
        fields = Lead.model_fields
        return Lead(
            **{k: v for k, v in lead.items() if k in fields and k != "products"},
            products=score_models(scores),
        )

    @app.get("/leads/{lead_id}/score", response_model=LeadScores, **lead_reads)
    def get_lead_score(lead_id: LeadId) -> LeadScores:
        """Scores (and stage) per product."""
        _, scores = load_lead(lead_id)
        return LeadScores(lead_id=lead_id, scores=score_models(scores))

    @app.get("/leads/{lead_id}/stages", response_model=StageHistory, **lead_reads)
    def get_lead_stages(lead_id: LeadId) -> StageHistory:
        """Stage audit trail, oldest first."""

        def work(db: warehouse_module.Warehouse) -> list[dict[str, Any]]:
            if lead_queries.fetch_lead(db, lead_id) is None:
                raise HTTPException(404, f"no lead with id {lead_id!r}")
            return lead_queries.fetch_transitions(db, lead_id)

        return StageHistory(lead_id=lead_id, transitions=[StageTransition(**t) for t in read(work)])

    def known_lead(lead_id: str) -> dict[str, Any] | None:
        """The lead's dim_leads row; 404 when the warehouse says it does not exist. A warehouse that is down
        or not built does not block a write (it lands; the warehouse catches up)."""
        try:
            with warehouse_module.connect(read_url, read_only=True) as db:
                lead = lead_queries.fetch_lead(db, lead_id)
        except Exception:  # noqa: BLE001 - availability over validation for writes
            return None
        if lead is None:
            raise HTTPException(404, f"no lead with id {lead_id!r}")
        return lead

    def manual_event(
        lead_id: str, lead: dict[str, Any] | None, event_type: str, **fields: Any
    ) -> dict[str, Any]:
        properties = {**(fields.pop("properties", None) or {}), "lead_id": lead_id}
        occurred_at = fields.pop("occurred_at", None) or datetime.now(UTC)
        return {
            "event_id": fields.pop("event_id", None) or providers.new_event_id("manual"),
            "event_type": event_type,
            "occurred_at": occurred_at.astimezone(UTC).isoformat()
            if occurred_at.tzinfo
            else occurred_at.isoformat(),
            "email": fields.pop("email", None) or (lead or {}).get("email"),
            "phone": fields.pop("phone", None) or (lead or {}).get("phone_e164"),
            "source": "manual",
            "properties": properties,
            **fields,
        }

    async def land_manual(events: list[dict[str, Any]]) -> LandingResult:
        for event in events:
            try:
                providers.check_event(event, "manual")
            except InvalidEventLine as error:
                raise HTTPException(422, str(error)) from None
        return await land("manual", [Candidate(e, (e["event_id"],)) for e in events], [])

    def write_response(lead_id: str, events: list[dict[str, Any]], result: LandingResult) -> WriteAccepted:
        return WriteAccepted(
            lead_id=lead_id,
            event_ids=[e["event_id"] for e in events],
            landing_file=result.landing_file,
            duplicates=result.duplicates,
        )

    lead_writes = dict(status_code=202, response_model=WriteAccepted, dependencies=[Bearer], tags=["leads"])

    @app.post("/leads/{lead_id}/events", responses=_errors(400, 401, 404, 413, 503), **lead_writes)
    async def post_lead_events(lead_id: LeadId, body: LeadEventsIn) -> WriteAccepted:
        """Record events for a lead (manual stream)."""
        lead = await run_in_threadpool(known_lead, lead_id)
        events = [
            manual_event(
                lead_id,
                lead,
                e.event_type,
                event_id=e.event_id,
                occurred_at=e.occurred_at,
                product_id=e.product_id,
                properties=e.properties,
            )
            for e in body.events
        ]
        result = await land_manual(events)
        return write_response(lead_id, events, result)

    @app.post("/leads/{lead_id}/stage", responses=_errors(400, 401, 404, 413, 503), **lead_writes)
    async def post_lead_stage(lead_id: LeadId, body: StageOverrideIn) -> WriteAccepted:
        """Manual stage override: lands a `stage_override` event the stage model applies."""
        lead = await run_in_threadpool(known_lead, lead_id)
        event = manual_event(
            lead_id,
            lead,
            "stage_override",
            product_id=body.product_id,
            properties={"to_stage": body.to_stage, "reason": body.reason, "product_id": body.product_id},
        )
        result = await land_manual([event])
        return write_response(lead_id, [event], result)

    def lead_upsert(lead_id: str, body: LeadIn, lead: dict[str, Any] | None) -> dict[str, Any]:
        attributes = body.model_dump(
            exclude_none=True, exclude={"properties", "email", "phone", "product_id"}
        )
        return manual_event(
            lead_id,
            lead,
            "lead_upserted",
            email=body.email,
            phone=body.phone,
            product_id=body.product_id,
            properties={**(body.properties or {}), **attributes},
        )

    @app.post("/leads", responses=_errors(400, 401, 413, 503), **lead_writes)
    async def post_lead(body: LeadIn) -> WriteAccepted:
        """Create (or update) a manual lead, identified by email, else phone."""
        phone = _e164(body.phone)
        lead_id = lead_queries.lead_id_for(body.email, phone)
        if lead_id is None:
            raise HTTPException(422, "a lead needs an email or a phone number in international form (+…)")
        event = lead_upsert(lead_id, body, None)
        result = await land_manual([event])
        return write_response(lead_id, [event], result)

    @app.put("/leads/{lead_id}", responses=_errors(400, 401, 404, 413, 503), **lead_writes)
    async def put_lead(lead_id: LeadId, body: LeadIn) -> WriteAccepted:
        """Update a known lead's attributes (manual stream)."""
        lead = await run_in_threadpool(known_lead, lead_id)
        event = lead_upsert(lead_id, body, lead)
        result = await land_manual([event])
        return write_response(lead_id, [event], result)

    # --- health -----------------------------------------------------------------------------------

    @app.get("/health", response_model=Health, responses={503: {"model": Health}}, tags=["health"])
    def health() -> JSONResponse:
        """Liveness and readiness: warehouse reachable, landing writable, age of the last pipeline run."""
        warehouse = _warehouse_health(read_url)
        landing_ok, landing_detail = store.landing_writable()
        landing = ComponentHealth(ok=landing_ok, detail=landing_detail)
        body = Health(
            status="ok" if warehouse.ok and landing.ok else "not_ready",
            warehouse=warehouse,
            landing=landing,
            last_run=_last_run(config),
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.status == "ok" else 503)

    return app


def _e164(phone: str | None) -> str | None:
    if not phone or not phone.strip():
        return None
    import phonenumbers

    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _warehouse_health(url: str) -> ComponentHealth:
    """One quick read-only open. A DuckDB file locked by a running pipeline step counts as reachable."""
    if url.startswith("duckdb:"):
        from urllib.parse import unquote

        import duckdb

        path = "/" + unquote(url[len("duckdb:///") :]).lstrip("/")
        try:
            duckdb.connect(path, read_only=True).close()
            return ComponentHealth(ok=True, detail="duckdb")
        except duckdb.IOException as error:
            if "lock" in str(error).lower():
                return ComponentHealth(ok=True, detail="duckdb busy: a pipeline step holds the write lock")
            # No path or message in an unauthenticated answer; the log has the details.
            logger.warning("health: duckdb not openable: %s", str(error).splitlines()[0][:300])
            return ComponentHealth(
                ok=False, detail="duckdb file not openable (pipeline not run yet, or unreadable)"
            )
        except Exception as error:  # noqa: BLE001
            return ComponentHealth(ok=False, detail=f"duckdb: {type(error).__name__}")
    try:
        with warehouse_module.connect(url, read_only=True) as db:
            db.scalar("select 1")
        return ComponentHealth(ok=True, detail="postgres")
    except Exception as error:  # noqa: BLE001
        return ComponentHealth(ok=False, detail=f"postgres unreachable: {type(error).__name__}")


def _last_run(config: IntakeConfig) -> LastRun:
    """`$LEADFLOW_HOME/last_run.json`: {"finished_at": ISO 8601 with offset, "status": "success"|…}."""
    path = config.last_run_path
    if not path.exists():
        return LastRun(detail="no pipeline run recorded yet")
    try:
        data = orjson.loads(path.read_bytes())
        finished = datetime.fromisoformat(data["finished_at"])
        if finished.tzinfo is None:
            finished = finished.replace(tzinfo=UTC)
        age = max(0.0, time.time() - finished.timestamp())
        return LastRun(finished_at=finished, status=str(data.get("status")), age_seconds=round(age, 1))
    except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as error:
        return LastRun(detail=f"unreadable {path.name}: {type(error).__name__}")


def serve(host: str = "127.0.0.1", port: int = 8000, config: IntakeConfig | None = None) -> None:
    """Run the intake API with uvicorn (blocking). Reads `IntakeConfig.from_env()` unless given one."""
    import uvicorn

    uvicorn.run(create_app(config or IntakeConfig.from_env()), host=host, port=port, log_level="info")
