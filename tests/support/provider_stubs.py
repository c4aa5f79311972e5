"""Local stand-ins for the providers n8n delivers to, recording every call and failing on demand.

- `SendGridStub`: SendGrid v3 `POST /v3/mail/send` → 202, empty body, `X-Message-Id` header; 401 without a
  bearer key; 400 `{"errors": [{"message", "field", "help"}]}` for a body SendGrid would refuse.
- `WhatsAppStub`: Meta WhatsApp Cloud API `POST /v{n}/{phone_number_id}/messages` → 200
  `{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid…"}]}`;
  errors in Meta's `{"error": {"message", "type", "code", "fbtrace_id"}}` shape.
- `ChatbotStub`: a chatbot webhook, `POST /` with `{"user_id", "text"}` → 200 `{"message_id": …}`.
- `JsonSink`: records any JSON POST (leadflow's intake `/events/delivery`, the alert URL).

Faults: `fail_next(status, times, retry_after=None)` fails the next calls whatever they are;
`fail_recipient(recipient, status, times=None, retry_after=None)` fails calls for one recipient (every call
when `times` is None). Every call is recorded as
`Call(path, headers, body, recipient, status, response_headers)`.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: Any
    recipient: str | None
    status: int
    response_headers: dict[str, str]


@dataclass
class _Fault:
    status: int
    retry_after: float | None
    remaining: int | None  # None: forever


class _StubServer:
    """A threaded HTTP server with call recording and fault injection; subclasses speak one provider."""

    name = "stub"

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._faults: deque[_Fault] = deque()
        self._recipient_faults: dict[str, _Fault] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                status, payload, headers = stub._handle(self.path, dict(self.headers), body)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if payload is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name=self.name, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> _StubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._faults.clear()
            self._recipient_faults.clear()

    # -- faults ------------------------------------------------------------------------------------------
    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        with self._lock:
            self._faults.append(_Fault(status, retry_after, times))

    def fail_recipient(
        self, recipient: str, status: int, times: int | None = None, retry_after: float | None = None
    ) -> None:
        with self._lock:
            self._recipient_faults[recipient] = _Fault(status, retry_after, times)

    # -- queries -----------------------------------------------------------------------------------------
    def calls_for(self, recipient: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.recipient == recipient]

    def accepted_calls(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if 200 <= c.status < 300]

    # -- provider behaviour ------------------------------------------------------------------------------
    def recipient_of(self, body: Any) -> str | None:
        return None

    def check(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any] | None:
        """A provider's own validation: return (status, error payload) to refuse the request."""
        return None

    def error_payload(self, status: int, message: str) -> Any:
        return {"message": message}

    def success(self, body: Any, recipient: str | None) -> tuple[int, Any, dict[str, str]]:
        return 200, {"ok": True}, {}

    def _pick_fault(self, recipient: str | None) -> _Fault | None:
        candidates = [self._recipient_faults.get(recipient)] if recipient else []
        candidates += [self._faults[0]] if self._faults else []
        for fault in candidates:
            if fault is None:
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    if self._faults and self._faults[0] is fault:
                        self._faults.popleft()
                    else:
                        self._recipient_faults.pop(recipient, None)
            return fault
        return None

    def _handle(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        recipient = self.recipient_of(body) if isinstance(body, dict) else None
        with self._lock:
            refused = self.check(path, headers, body)
            fault = None if refused else self._pick_fault(recipient)
            if refused:
                status, payload, extra = refused[0], refused[1], {}
            elif fault:
                extra = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                status, payload = fault.status, self.error_payload(fault.status, f"injected {fault.status}")
            else:
                status, payload, extra = self.success(body, recipient)
            self.calls.append(Call(path, headers, body, recipient, status, extra))
        return status, payload, extra


def _bearer(headers: dict[str, str]) -> str | None:
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    return value[7:] if value.startswith("Bearer ") and len(value) > 7 else None


class SendGridStub(_StubServer):
    """SendGrid v3 mail/send."""

    name = "sendgrid"

    def __init__(self, api_key: str = "SG.test-key") -> None:
        super().__init__()
        self.api_key = api_key

    def recipient_of(self, body: Any) -> str | None:
        try:
            return body["personalizations"][0]["to"][0]["email"]
        except (KeyError, IndexError, TypeError):
            return None

    def error_payload(self, status: int, message: str) -> Any:
        return {"errors": [{"message": message, "field": None, "help": None}]}

    def check(self, path, headers, body):
        if path != "/v3/mail/send":
            return 404, {"errors": [{"message": "not found", "field": None, "help": None}]}
        if _bearer(headers) != self.api_key:
            return 401, {
                "errors": [
                    {
                        "message": "The provided authorization grant is invalid, expired, or revoked",
                        "field": None,
                        "help": None,
                    }
                ]
            }
        if not isinstance(body, dict):
            return 400, {"errors": [{"message": "Bad Request", "field": None, "help": None}]}
        problems = []
        if not body.get("personalizations"):
            problems.append(
                (
                    "The personalizations field is required and must have at least one personalization.",
                    "personalizations",
                )
            )
        elif not self.recipient_of(body):
            problems.append(
                (
                    "The to array is required for all personalization objects, and must have at "
                    "least one email object with a valid email address.",
                    "personalizations.0.to",
                )
            )
        if not (body.get("from") or {}).get("email"):
            problems.append(("The from object must be provided for every email send.", "from"))
        if not body.get("subject") and not any(p.get("subject") for p in body.get("personalizations") or []):
            problems.append(("The subject is required.", "subject"))
        if not body.get("content") and not body.get("template_id"):
            problems.append(
                ("Unless a valid template_id is provided, the content parameter is required.", "content")
            )
        if problems:
            return 400, {"errors": [{"message": m, "field": f, "help": None} for m, f in problems]}
        return None

    def success(self, body, recipient):
        return 202, None, {"X-Message-Id": f"sg{next(self._ids):06d}{uuid.uuid4().hex[:10]}"}


class WhatsAppStub(_StubServer):
    """Meta WhatsApp Cloud API messages endpoint."""

    name = "whatsapp"
    _PATH = re.compile(r"^/v\d+(\.\d+)?/(?P<phone_id>[^/]+)/messages$")

    def __init__(self, access_token: str = "wa-test-token", phone_number_id: str = "1234567890") -> None:
        super().__init__()
        self.access_token = access_token
        self.phone_number_id = phone_number_id

    def recipient_of(self, body: Any) -> str | None:
        return body.get("to")

    def error_payload(self, status: int, message: str) -> Any:
        code = {429: 130429, 401: 190}.get(status, 131000 if status >= 500 else 100)
        return {
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "fbtrace_id": uuid.uuid4().hex[:22],
            }
        }

    def check(self, path, headers, body):
        match = self._PATH.match(path)
        if not match or match["phone_id"] != self.phone_number_id:
            return 400, self.error_payload(
                400,
                f"Unsupported post request. Object with ID "
                f"'{match['phone_id'] if match else path}' does not exist",
            )
        if _bearer(headers) != self.access_token:
            return 401, self.error_payload(401, "Invalid OAuth access token - Cannot parse access token")
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return 400, self.error_payload(400, "(#100) The parameter messaging_product is required.")
        if not re.fullmatch(r"\d{6,15}", str(body.get("to") or "")):
            return 400, self.error_payload(400, "(#100) Invalid parameter: to")
        if body.get("type") not in ("template", "text"):
            return 400, self.error_payload(400, "(#100) Param type must be one of {TEXT, TEMPLATE}")
        return None

    def success(self, body, recipient):
        wamid = f"wamid.HBgL{next(self._ids):06d}{uuid.uuid4().hex[:12].upper()}"
        return (
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": recipient, "wa_id": recipient}],
                "messages": [{"id": wamid}],
            },
            {},
        )


class ChatbotStub(_StubServer):
    """A chatbot platform's inbound webhook."""

    name = "chatbot"

    def recipient_of(self, body: Any) -> str | None:
        return body.get("user_id")

    def check(self, path, headers, body):
        if not isinstance(body, dict) or not body.get("user_id") or not body.get("text"):
            return 400, {"message": "user_id and text are required"}
        return None

    def success(self, body, recipient):
        return 200, {"message_id": f"cb-{next(self._ids):06d}"}, {}

    @property
    def url(self) -> str:
        return f"{self.base_url}/"


class JsonSink(_StubServer):
    """Records JSON POSTs (the intake API's /events/delivery, the alert URL); answers 202."""

    name = "sink"

    def success(self, body, recipient):
        return 202, {"accepted": True}, {}


class ProviderStubs:
    """All stubs together, with the environment that points n8n at them."""

    def __init__(self) -> None:
        self.sendgrid = SendGridStub()
        self.whatsapp = WhatsAppStub()
        self.chatbot = ChatbotStub()
        self.intake = JsonSink()
        self.alerts = JsonSink()
        self.all = (self.sendgrid, self.whatsapp, self.chatbot, self.intake, self.alerts)

    def start(self) -> ProviderStubs:
        for stub in self.all:
            stub.start()
        return self

    def stop(self) -> None:
        for stub in self.all:
            stub.stop()

    def reset(self) -> None:
        for stub in self.all:
            stub.reset()

    def env(self) -> dict[str, str]:
        return {
            "SENDGRID_BASE_URL": self.sendgrid.base_url,
            "SENDGRID_API_KEY": self.sendgrid.api_key,
            "WHATSAPP_BASE_URL": self.whatsapp.base_url,
            "WHATSAPP_API_VERSION": "v21.0",
            "WHATSAPP_PHONE_NUMBER_ID": self.whatsapp.phone_number_id,
            "WHATSAPP_ACCESS_TOKEN": self.whatsapp.access_token,
            "CHATBOT_WEBHOOK_URL": self.chatbot.url,
            "LEADFLOW_DELIVERY_URL": f"{self.intake.base_url}/events/delivery",
            "LEADFLOW_INTAKE_TOKEN": "intake-test-token",
            "LEADFLOW_ALERT_URL": f"{self.alerts.base_url}/alerts",
        }

    def provider_calls(self) -> list[Call]:
        return [*self.sendgrid.calls, *self.whatsapp.calls, *self.chatbot.calls]

    def __enter__(self) -> ProviderStubs:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
