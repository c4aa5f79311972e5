"""A local recording webhook server standing in for n8n: records every batch, fails on demand."""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookSink:
    """Records POSTed batches. Queue faults with `fail_next(status, times, retry_after=None)` or `drop_next()`.

    A dropped request is *accepted and recorded* but the connection closes before the answer, as when a
    receiver processes a batch and the network fails on the way back.
    """

    def __init__(self, token: str = "sink-token"):
        self.token = token
        self.requests: list[dict[str, Any]] = []
        self.accepted: list[dict[str, Any]] = []
        self.faults: deque[tuple[str, int, float | None]] = deque()
        self.failing_keys: dict[str, str] = {}  # idempotency key -> reason answered as `failed`
        self.omit_keys: set[str] = set()  # keys left out of the answer (as if the receiver lost track)
        self.seen_keys: set[str] = (
            set()
        )  # keys processed before, answered as `duplicate` (n8n's second guard)
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with sink.lock:
                    record = {"path": self.path, "headers": dict(self.headers), "raw": raw}
                    sink.requests.append(record)
                    fault = sink.faults.popleft() if sink.faults else None
                if self.headers.get("X-Leadflow-Token") != sink.token:
                    return self._answer(403, {"message": "Authorization data is wrong!"})
                if fault and fault[0] == "status":
                    headers = {"Retry-After": str(fault[2])} if fault[2] is not None else {}
                    return self._answer(fault[1], {"message": f"injected {fault[1]}"}, headers)
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._answer(400, {"message": "body is not JSON"})
                with sink.lock:
                    sink.accepted.append(body)
                if fault and fault[0] == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return None
                statuses = []
                with sink.lock:
                    for message in body.get("messages", []):
                        key = message.get("idempotency_key")
                        if key in sink.omit_keys:
                            continue
                        if key in sink.failing_keys:
                            statuses.append(
                                {"idempotency_key": key, "status": "failed", "reason": sink.failing_keys[key]}
                            )
                        elif key in sink.seen_keys:
                            statuses.append({"idempotency_key": key, "status": "duplicate"})
                        else:
                            sink.seen_keys.add(key)
                            channel = (message.get("routes") or [{}])[0].get("channel") or message.get(
                                "channel"
                            )
                            statuses.append(
                                {
                                    "idempotency_key": key,
                                    "status": "accepted",
                                    "channel": channel,
                                    "provider_message_id": f"stub-{key[:12]}",
                                }
                            )
                return self._answer(200, {"results": statuses})

            def _answer(self, status: int, payload: dict, headers: dict | None = None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhook/leadflow"

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        for _ in range(times):
            self.faults.append(("status", status, retry_after))

    def pass_next(self, times: int = 1) -> None:
        for _ in range(times):
            self.faults.append(("ok", 200, None))

    def drop_next(self, times: int = 1) -> None:
        for _ in range(times):
            self.faults.append(("drop", 0, None))

    def accepted_keys(self) -> list[str]:
        return [m["idempotency_key"] for body in self.accepted for m in body.get("messages", [])]

    def __enter__(self) -> WebhookSink:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
