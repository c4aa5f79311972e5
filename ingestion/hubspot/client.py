"""Read-only HubSpot CRM HTTP client: allow-listed transport, retries, HubSpot errors.

The read-only guarantee sits at the lowest layer requests offers: :class:`ReadOnlyAdapter` is the
transport adapter mounted for ``http://`` and ``https://``, and it refuses any request that is not
one of HubSpot's read calls before a connection is opened, so no code path above it (retries,
redirects, a future helper) can write to the CRM.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

logger = logging.getLogger("leadflow.ingestion.hubspot")

#: (method, path regex relative to the base URL) of every call the client may make.
ALLOWED_CALLS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("GET", re.compile(r"/crm/v3/objects/[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)?")),
    ("POST", re.compile(r"/crm/v3/objects/[A-Za-z0-9_-]+/search")),
    ("POST", re.compile(r"/crm/v3/objects/[A-Za-z0-9_-]+/batch/read")),
    ("POST", re.compile(r"/crm/v4/associations/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/batch/read")),
)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class CrmWriteBlocked(RuntimeError):
    """A request that is not an allow-listed HubSpot read was refused before it was sent."""


class HubSpotApiError(RuntimeError):
    """HubSpot answered with an error status.

    Attributes:
        status: HTTP status code.
        category: HubSpot's error category (e.g. ``VALIDATION_ERROR``), if given.
        retry_after: Seconds from the ``Retry-After`` header, if given.
    """

    def __init__(
        self, status: int, message: str, category: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.retry_after = retry_after


class HubSpotAuthError(HubSpotApiError):
    """HubSpot rejected the access token (HTTP 401)."""


class ReadOnlyAdapter(HTTPAdapter):
    """Transport adapter that only sends allow-listed HubSpot reads.

    Args:
        base_path: Path prefix of the API base URL (``""`` for ``https://api.hubapi.com``).
    """

    def __init__(self, base_path: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_path = base_path.rstrip("/")

    def is_allowed(self, method: str, url: str) -> bool:
        """Whether ``method url`` is an allow-listed read under the base path."""
        path = urlsplit(url).path
        if not path.startswith(self.base_path + "/"):
            return False
        relative = path[len(self.base_path) :]
        return any(
            method.upper() == allowed and pattern.fullmatch(relative) for allowed, pattern in ALLOWED_CALLS
        )

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if not self.is_allowed(request.method or "", request.url or ""):
            raise CrmWriteBlocked(
                f"Refused {request.method} {urlsplit(request.url or '').path}: leadflow reads the CRM and "
                "never "
                "writes to it; only GET /crm/v3/objects/… and the search / batch read POSTs are allowed."
            )
        return super().send(request, *args, **kwargs)


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _is_retryable(error: BaseException) -> bool:
    if isinstance(error, HubSpotApiError):
        return error.status in RETRY_STATUSES
    return isinstance(error, requests.ConnectionError | requests.Timeout)


class HubSpotClient:
    """Read-only client for HubSpot's CRM API.

    Args:
        base_url: API root, e.g. ``https://api.hubapi.com`` or the demo CRM's URL.
        access_token: Private app token (sent as a bearer token, never logged).
        max_attempts: Attempts per request before giving up (429, 5xx and timeouts are retried).
        backoff_base: First exponential backoff wait in seconds (doubling, capped by ``backoff_max``).
        backoff_max: Longest wait between attempts in seconds.
        timeout: Per-request timeout in seconds.
    """

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        max_attempts: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        timeout: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._backoff = wait_exponential(multiplier=backoff_base, max=backoff_max)
        self.session = requests.Session()
        adapter = ReadOnlyAdapter(urlsplit(self.base_url).path)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"Authorization": f"Bearer {access_token}", "Accept": "application/json"})
        self.requests_sent = 0

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, HubSpotApiError) and error.status == 429 and error.retry_after is not None:
            return error.retry_after
        return self._backoff(state)

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.warning(
            "HubSpot request failed (%s); retry %d/%d in %.1fs",
            error,
            state.attempt_number,
            self.max_attempts - 1,
            state.upcoming_sleep,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send one read request with retries and return the decoded JSON body.

        Raises:
            CrmWriteBlocked: The call is not an allow-listed read (nothing was sent).
            HubSpotAuthError: HubSpot answered 401.
            HubSpotApiError: Any other error status, after retries for 429/5xx.
        """
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        return retrying(self._send_once, method, path, params, json)

    def _send_once(
        self, method: str, path: str, params: dict[str, Any] | None, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        self.requests_sent += 1
        response = self.session.request(
            method, self.base_url + path, params=params, json=body, timeout=self.timeout
        )
        if response.status_code < 400:
            return response.json() if response.content else {}
        try:
            payload = response.json()
        except ValueError:
            payload = {"message": response.text[:500]}
        message = payload.get("message") or response.reason
        category = payload.get("category") or payload.get("errorType")
        if response.status_code == 401:
            raise HubSpotAuthError(
                401,
                f"HubSpot rejected the access token (401 {category}: {message}). "
                "Set HUBSPOT_ACCESS_TOKEN to a private app token with the "
                "crm.objects.contacts/companies/deals.read scopes.",
                category,
            )
        raise HubSpotApiError(
            response.status_code,
            f"HubSpot {method} {path} → {response.status_code} {category or ''}: {message}",
            category,
            _retry_after_seconds(response),
        )

    # -- HubSpot calls ---------------------------------------------------------------------------
    def search(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /crm/v3/objects/{type}/search``."""
        return self.request("POST", f"/crm/v3/objects/{object_type}/search", json=body)

    def list_objects(
        self, object_type: str, *, properties: list[str], archived: bool = False, limit: int = 100
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield pages (lists) of ``GET /crm/v3/objects/{type}``, following ``after`` cursors."""
        after: str | None = None
        while True:
            params: dict[str, Any] = {
                "limit": min(limit, 100),
                "properties": ",".join(properties),
                "archived": str(archived).lower(),
            }
            if after:
                params["after"] = after
            page = self.request("GET", f"/crm/v3/objects/{object_type}", params=params)
            yield page.get("results", [])
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    def associated_ids(self, from_type: str, to_type: str, ids: list[str]) -> dict[str, list[str]]:
        """Map each id to its associated ``to_type`` ids via the v4 associations batch read."""
        found: dict[str, list[str]] = {i: [] for i in ids}
        for start in range(0, len(ids), 1000):  # v4 batch read takes at most 1,000 inputs
            chunk = ids[start : start + 1000]
            body = self.request(
                "POST",
                f"/crm/v4/associations/{from_type}/{to_type}/batch/read",
                json={"inputs": [{"id": i} for i in chunk]},
            )
            # Objects without associations come back under "errors" (HTTP 207); they keep [].
            for result in body.get("results", []):
                targets = found.setdefault(str(result["from"]["id"]), [])
                targets.extend(str(t["toObjectId"]) for t in result.get("to", []))
        return {key: sorted(set(value), key=lambda v: (len(v), v)) for key, value in found.items()}
