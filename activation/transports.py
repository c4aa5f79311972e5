"""Where batches go: the n8n webhook (HTTP, with retries) or the file outbox."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


class OutboxTransport:
    """Writes each batch to `<outbox>/<send_list>/<batch_id>.json` (atomically: tmp, fsync, rename)."""

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
            json.dump(body, handle, ensure_ascii=False, indent=1)
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
    """POSTs each batch as JSON to the n8n webhook with the token header.

    429 waits for `Retry-After`; 5xx, timeouts and dropped connections are retried with exponential backoff
    and the same body (same idempotency keys); any other 4xx fails the batch with the receiver's message.
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
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.url = url
        self.destination = url
        self._token = token
        self.timeout = timeout
        self.session = session or requests.Session()
        self.max_attempts = max_attempts
        self._exponential = wait_exponential(multiplier=backoff_seconds, max=max_backoff_seconds)
        self.max_backoff_seconds = max_backoff_seconds
        self._sleep = sleep

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Retryable) and error.retry_after is not None:
            return min(error.retry_after, self.max_backoff_seconds)
        return self._exponential(state)

    def send(self, batch_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST the batch; return the receiver's JSON answer (n8n's per-message `results`), if any."""
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
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
        def post_once() -> requests.Response:
            try:
                response = self.session.post(self.url, data=data, headers=headers, timeout=self.timeout)
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
            response = post_once()
        except _Retryable as error:
            raise DeliveryError(f"gave up after {self.max_attempts} attempts: {error}") from error
        if response.status_code >= 400:
            raise DeliveryError(f"receiver refused the batch: {response.status_code} {response.text[:500]}")
        try:
            answer = response.json()
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None
