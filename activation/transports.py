"""Where batches go: the n8n webhook (HTTP, with retries) or the file outbox.

A transport's `concurrency` says how many batches `deliver_send_list` may have in flight at once (the file
outbox: 1). Bodies are serialized once per batch with orjson (~10x the stdlib encoder on 3 MB batches here)
and the same bytes go out on every retry.
"""

from __future__ import annotations

import json
import os
import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
import requests
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from activation.delivery import DeliveryError

TOKEN_HEADER = "X-Leadflow-Token"  # the header n8n's webhook header-auth credential checks


def _json_default(value: Any) -> Any:
    """What the JSON encoders do with a value they do not know (orjson writes datetimes itself)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def encode_body(body: dict[str, Any]) -> bytes:
    """The batch as UTF-8 JSON bytes (compact; datetimes as ISO 8601, unknown types as text)."""
    return orjson.dumps(body, default=_json_default)


class OutboxTransport:
    """Writes each batch to `<outbox>/<send_list>/<batch_id>.json` (atomically: tmp, fsync, rename)."""

    concurrency = 1  # one file at a time: batches land in send order

    def __init__(self, outbox_dir: Path):
        self.outbox_dir = Path(outbox_dir)
        self.destination = str(self.outbox_dir)

    def send(self, batch_id: str, body: dict[str, Any]) -> None:
        """Write the batch file; the outbox has no per-message answer, so every message counts as handed over."""
        folder = self.outbox_dir / str(body.get("send_list", "batches"))
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{batch_id}.json"
        tmp = target.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(body, handle, ensure_ascii=False, indent=1, default=_json_default)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)


class _Retryable(Exception):
    """A transient failure worth retrying with the same keys (429, 5xx, timeout, dropped connection)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class WebhookTransport:
    """POSTs each batch as JSON to the n8n webhook with the token header, over kept-alive connections.

    429 waits for `Retry-After`; 5xx, timeouts and dropped connections are retried with exponential backoff
    and the same body (same idempotency keys); any other 4xx fails the batch with the receiver's message.

    `concurrency` batches may be in flight at once: `deliver_send_list` records each one pending before it
    leaves and its outcome after the answer, so leadflow never hands a key over twice except to re-send a
    pending one, and the receiver's duplicate guard must then hold under concurrent requests (the bundled
    n8n workflow's does not: see LEADFLOW_DELIVERY_CONCURRENCY in the README). Sessions are
    pooled: a send borrows one (with its kept-alive connection) and returns it, so at most `concurrency`
    connections stay open and are reused across batches and runs; pass `session` to use one session only.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 180.0,  # n8n answers a 1000-message batch after every provider call: 12-30 s here
        max_attempts: int = 6,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        concurrency: int = 1,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.url = url
        self.destination = url
        self._token = token
        self.timeout = timeout
        self.concurrency = max(1, int(concurrency))
        self._shared_session = session
        self._sessions: queue.SimpleQueue[requests.Session] = queue.SimpleQueue()
        self.max_attempts = max_attempts
        self._exponential = wait_exponential(multiplier=backoff_seconds, max=max_backoff_seconds)
        self.max_backoff_seconds = max_backoff_seconds
        self._sleep = sleep

    @contextmanager
    def _session(self) -> Iterator[requests.Session]:
        """Borrow a pooled session (a new one when all are busy) and give it back after the batch."""
        if self._shared_session is not None:
            yield self._shared_session
            return
        try:
            session = self._sessions.get_nowait()
        except queue.Empty:
            session = requests.Session()
        try:
            yield session
        finally:
            self._sessions.put(session)

    def close(self) -> None:
        """Close the pooled sessions and their connections."""
        while True:
            try:
                self._sessions.get_nowait().close()
            except queue.Empty:
                return

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Retryable) and error.retry_after is not None:
            return min(error.retry_after, self.max_backoff_seconds)
        return self._exponential(state)

    def send(self, batch_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST the batch; return the receiver's JSON answer (n8n's per-message `results`), if any.

        Safe to call from several threads at once.
        """
        data = encode_body(body)
        headers = {
            "Content-Type": "application/json",
            TOKEN_HEADER: self._token,
            "Idempotency-Key": batch_id,
        }

        @retry(
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
        )
        def post_once(session: requests.Session) -> requests.Response:
            try:
                response = session.post(self.url, data=data, headers=headers, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as error:
                raise _Retryable(f"{type(error).__name__}: {error}") from error
            if response.status_code == 429:
                raise _Retryable(
                    "429 Too Many Requests", _parse_retry_after(response.headers.get("Retry-After"))
                )
            if response.status_code >= 500:
                raise _Retryable(f"{response.status_code} {response.text[:300]}")
            return response

        try:
            with self._session() as session:
                response = post_once(session)
        except _Retryable as error:
            raise DeliveryError(f"gave up after {self.max_attempts} attempts: {error}") from error
        if response.status_code >= 400:
            raise DeliveryError(f"receiver refused the batch: {response.status_code} {response.text[:500]}")
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return None
        return answer if isinstance(answer, dict) else None
