"""Provider payloads → landing events, and the signature checks that gate them.

Every event gets a deterministic `event_id` derived from what identifies it (message id, event type,
timestamp), because providers re-send the same event with a new delivery id: the seen-index and the
loader's merge on `event_id` then both collapse the copies.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from ingestion.events import InvalidEventLine, parse_event_line
from ingestion.intake.landing import Candidate, Rejected
from ingestion.intake.models import ChatbotMessage, DeliveryResult

# Keywords WhatsApp users send to stop or restart messages (Meta's and carriers' common set).
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "OPT OUT"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP"})


def derived_event_id(prefix: str, *parts: Any) -> str:
    """A stable event id from the parts that identify an event: `<prefix>-<32 hex>`."""
    text = "\x1f".join("" if part is None else str(part) for part in parts)
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _unix_to_iso(value: Any) -> str:
    """Provider timestamps are Unix seconds (int or numeric string)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"timestamp must be Unix seconds, got {type(value).__name__}")
    seconds = float(value)
    if not 0 <= seconds < 32503680000:  # year 3000
        raise ValueError(f"timestamp {value!r} is out of range")
    return _iso(datetime.fromtimestamp(seconds, UTC))


def _phone(wa_id: Any) -> str | None:
    if not isinstance(wa_id, str) or not wa_id.strip():
        return None
    wa_id = wa_id.strip()
    return wa_id if wa_id.startswith("+") else f"+{wa_id}"


def check_event(event: dict[str, Any], stream: str) -> None:
    """The loader's own validation, so nothing intake accepts is quarantined later."""
    try:
        line = orjson.dumps(event)
    except TypeError as error:  # e.g. an integer beyond 64 bits, which JSON consumers cannot read exactly
        raise InvalidEventLine(f"not serializable as landing JSON: {error}") from None
    parse_event_line(line, stream)


# --- signatures ------------------------------------------------------------------------------------


class SignatureError(Exception):
    """The request is not provably from the provider; the message is safe to return (401)."""


def verify_sendgrid(
    public_key: str, body: bytes, signature: str | None, timestamp: str | None, tolerance_seconds: int
) -> None:
    """Check SendGrid's ECDSA signature over timestamp + raw body and the timestamp's freshness.

    Raises:
        SignatureError: missing headers, stale/future timestamp, or a signature that does not verify.
        ValueError: the configured public key cannot be loaded.
    """
    from sendgrid.helpers.eventwebhook import EventWebhook

    if not signature or not timestamp:
        raise SignatureError(
            "missing X-Twilio-Email-Event-Webhook-Signature or X-Twilio-Email-Event-Webhook-Timestamp header"
        )
    try:
        sent_at = int(timestamp.strip())
    except ValueError:
        raise SignatureError("X-Twilio-Email-Event-Webhook-Timestamp is not Unix seconds") from None
    if abs(time.time() - sent_at) > tolerance_seconds:
        raise SignatureError(f"timestamp outside the {tolerance_seconds} s window (replay or clock skew)")
    verifier = EventWebhook()
    key = verifier.convert_public_key_to_ecdsa(public_key)
    try:
        payload = body.decode("utf-8")
        ok = verifier.verify_signature(payload, signature, timestamp, key)
    except (UnicodeDecodeError, binascii.Error, ValueError, TypeError):
        ok = False
    if not ok:
        raise SignatureError("SendGrid signature does not verify")


def load_sendgrid_key(public_key: str) -> None:
    """Raise ValueError when the configured key is not a base64 DER / PEM body of an EC public key."""
    from sendgrid.helpers.eventwebhook import EventWebhook

    EventWebhook().convert_public_key_to_ecdsa(public_key)


def verify_whatsapp(app_secret: str, body: bytes, header: str | None) -> None:
    """Check Meta's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` in constant time."""
    if not header or not header.startswith("sha256="):
        raise SignatureError("missing or malformed X-Hub-Signature-256 header")
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), header[len("sha256=") :].strip().lower().encode()):
        raise SignatureError("X-Hub-Signature-256 does not verify")


def token_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


# --- SendGrid ---------------------------------------------------------------------------------------


def sendgrid_events(batch: Any) -> tuple[list[Candidate], list[Rejected]]:
    """SendGrid Event Webhook batch (a JSON array) → `sendgrid` stream events `email_<event>`."""
    if not isinstance(batch, list):
        raise ValueError("a SendGrid Event Webhook body is a JSON array of events")
    candidates: list[Candidate] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(batch):
        try:
            if not isinstance(item, dict):
                raise ValueError("not a JSON object")
            kind = item.get("event")
            if not isinstance(kind, str) or not kind.strip():
                raise ValueError("missing 'event'")
            occurred_at = _unix_to_iso(item.get("timestamp"))
            message_id = item.get("sg_message_id") or item.get("smtp-id") or item.get("email")
            if not message_id:
                raise ValueError("no sg_message_id, smtp-id or email to identify the message")
            # Two clicks on different links in the same second are two events.
            extra = item.get("url") if kind == "click" else None
            event_id = derived_event_id("sg", message_id, kind, item.get("timestamp"), extra)
            email = item.get("email") if isinstance(item.get("email"), str) else None
            product_id = item.get("product_id") if isinstance(item.get("product_id"), str) else None
            event = {
                "event_id": event_id,
                "event_type": f"email_{kind.strip().lower()}",
                "occurred_at": occurred_at,
                "email": email,
                "product_id": product_id,
                "source": "sendgrid",
                "properties": item,
            }
            check_event(event, "sendgrid")
            keys = [event_id]
            if isinstance(item.get("sg_event_id"), str) and item["sg_event_id"]:
                keys.append(f"sendgrid:sg_event_id:{item['sg_event_id']}")
            candidates.append(Candidate(event, tuple(keys)))
        except (ValueError, InvalidEventLine, OverflowError, OSError) as error:
            rejected.append(Rejected(index, str(error), item))
    return candidates, rejected


# --- WhatsApp (Meta Cloud API) --------------------------------------------------------------------


def _message_text(message: dict[str, Any]) -> str | None:
    for path in (("text", "body"), ("button", "text"), ("interactive", "button_reply", "title")):
        value: Any = message
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str):
            return value
    return None


def whatsapp_event_type(message: dict[str, Any]) -> str:
    """`whatsapp_opt_out` / `whatsapp_opt_in` for a keyword message, else `whatsapp_inbound`."""
    text = _message_text(message)
    if text is not None:
        word = " ".join(text.upper().split()).strip(".! ")
        if word in OPT_OUT_KEYWORDS:
            return "whatsapp_opt_out"
        if word in OPT_IN_KEYWORDS:
            return "whatsapp_opt_in"
    return "whatsapp_inbound"


def whatsapp_events(payload: Any) -> tuple[list[Candidate], list[Rejected]]:
    """Meta webhook `entry[].changes[].value` → `whatsapp` stream events.

    `statuses[]` → `whatsapp_<status>` (sent, delivered, read, failed); `messages[]` → `whatsapp_inbound`
    (opens the 24-hour window), or `whatsapp_opt_out` / `whatsapp_opt_in` for keyword messages.
    Rejection indexes count the statuses and messages in payload order.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        raise ValueError("a WhatsApp webhook body is a JSON object with an 'entry' array")
    candidates: list[Candidate] = []
    rejected: list[Rejected] = []
    index = -1
    for entry in payload["entry"]:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            metadata = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
            names = {
                c.get("wa_id"): (c.get("profile") or {}).get("name")
                for c in value.get("contacts") or []
                if isinstance(c, dict) and isinstance(c.get("profile") or {}, dict)
            }
            for status in value.get("statuses") or []:
                index += 1
                try:
                    if not isinstance(status, dict):
                        raise ValueError("status is not a JSON object")
                    kind, wamid = status.get("status"), status.get("id")
                    if not isinstance(kind, str) or not kind or not isinstance(wamid, str) or not wamid:
                        raise ValueError("status needs 'id' and 'status'")
                    event_id = derived_event_id("wa", wamid, kind, status.get("timestamp"))
                    event = {
                        "event_id": event_id,
                        "event_type": f"whatsapp_{kind.lower()}",
                        "occurred_at": _unix_to_iso(status.get("timestamp")),
                        "phone": _phone(status.get("recipient_id")),
                        "source": "whatsapp",
                        "properties": {**status, "phone_number_id": metadata.get("phone_number_id")},
                    }
                    check_event(event, "whatsapp")
                    candidates.append(Candidate(event, (event_id,)))
                except (ValueError, InvalidEventLine, OverflowError, OSError) as error:
                    rejected.append(Rejected(index, str(error), status))
            for message in value.get("messages") or []:
                index += 1
                try:
                    if not isinstance(message, dict):
                        raise ValueError("message is not a JSON object")
                    wamid = message.get("id")
                    if not isinstance(wamid, str) or not wamid:
                        raise ValueError("message needs 'id'")
                    event_type = whatsapp_event_type(message)
                    event_id = derived_event_id("wa", wamid, event_type, message.get("timestamp"))
                    event = {
                        "event_id": event_id,
                        "event_type": event_type,
                        "occurred_at": _unix_to_iso(message.get("timestamp")),
                        "phone": _phone(message.get("from")),
                        "source": "whatsapp",
                        "properties": {
                            **message,
                            "profile_name": names.get(message.get("from")),
                            "phone_number_id": metadata.get("phone_number_id"),
                        },
                    }
                    check_event(event, "whatsapp")
                    candidates.append(Candidate(event, (event_id,)))
                except (ValueError, InvalidEventLine, OverflowError, OSError) as error:
                    rejected.append(Rejected(index, str(error), message))
    return candidates, rejected


# --- our own formats --------------------------------------------------------------------------------


def _validation_reason(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "item"
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first.get('msg')}{more}"


def product_events(items: Iterable[dict[str, Any]]) -> tuple[list[Candidate], list[Rejected]]:
    """Landing-format events, validated exactly like the loader validates lines."""
    candidates: list[Candidate] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(items):
        try:
            parsed = parse_event_line(orjson.dumps(item), "product_events")
        except (InvalidEventLine, TypeError) as error:
            rejected.append(Rejected(index, str(error), item))
            continue
        candidates.append(Candidate(item, (parsed.event_id,)))
    return candidates, rejected


def chatbot_events(items: Iterable[dict[str, Any]]) -> tuple[list[Candidate], list[Rejected]]:
    """Chatbot messages → `chatbot` stream events `chatbot_inbound` / `chatbot_outbound`."""
    candidates: list[Candidate] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(items):
        try:
            message = ChatbotMessage.model_validate(item)
        except ValidationError as error:
            rejected.append(Rejected(index, _validation_reason(error), item))
            continue
        event_type = f"chatbot_{message.direction}"
        event_id = derived_event_id("chat", message.message_id, event_type, _iso(message.sent_at))
        event = {
            "event_id": event_id,
            "event_type": event_type,
            "occurred_at": _iso(message.sent_at),
            "product_id": message.product_id,
            "email": message.email,
            "phone": message.phone,
            "user_id": message.user_id,
            "source": "chatbot",
            "properties": {
                **(message.properties or {}),
                "message_id": message.message_id,
                "conversation_id": message.conversation_id,
                "text": message.text,
            },
        }
        try:
            check_event(event, "chatbot")
        except InvalidEventLine as error:
            rejected.append(Rejected(index, str(error), item))
            continue
        candidates.append(Candidate(event, (event_id,)))
    return candidates, rejected


def delivery_events(
    items: Iterable[dict[str, Any]], batch_id: str | None
) -> tuple[list[Candidate], list[Rejected], int]:
    """n8n delivery results → `delivery` stream events (`accepted` lands as `sent`).

    Returns:
        (candidates, rejected, skipped) where skipped counts `duplicate` answers (already delivered).
    """
    candidates: list[Candidate] = []
    rejected: list[Rejected] = []
    skipped = 0
    received_at = _iso(datetime.now(UTC))
    for index, item in enumerate(items):
        try:
            result = DeliveryResult.model_validate(item)
        except ValidationError as error:
            rejected.append(Rejected(index, _validation_reason(error), item))
            continue
        if result.status == "duplicate":
            skipped += 1
            continue
        event_type = "sent" if result.status == "accepted" else result.status
        occurred = _iso(result.occurred_at) if result.occurred_at else None
        event_id = derived_event_id("dlv", result.idempotency_key, event_type, occurred)
        event = {
            "event_id": event_id,
            "event_type": event_type,
            "occurred_at": occurred or received_at,
            "product_id": result.product_id,
            "source": "n8n",
            "properties": {
                **(result.properties or {}),
                "idempotency_key": result.idempotency_key,
                "lead_id": result.lead_id,
                "channel": result.channel,
                "provider_message_id": result.provider_message_id,
                "recipient": result.recipient,
                "reason": result.reason,
                "batch_id": batch_id,
            },
        }
        try:
            check_event(event, "delivery")
        except InvalidEventLine as error:
            rejected.append(Rejected(index, str(error), item))
            continue
        candidates.append(Candidate(event, (event_id,)))
    return candidates, rejected, skipped


def new_event_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"
