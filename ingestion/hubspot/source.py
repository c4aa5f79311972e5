"""dlt source for HubSpot CRM contacts, companies and deals — incremental and read-only.

Each resource first lists archived records (``GET …?archived=true``, yielded with ``archived=True``
so staging can drop records archived since an earlier sync), then walks the search endpoint sorted
ascending by the last-modified property with a ``GTE`` filter from the incremental cursor.
HubSpot's search reaches at most 10,000 results per query, so when the cap is hit a new window
starts at the last seen timestamp; if a whole window shares one timestamp the client pages within
it by ``hs_object_id`` so it never loops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dlt
from dlt.sources import DltResource

from ingestion.hubspot.client import HubSpotApiError, HubSpotClient
from ingestion.hubspot.schema import COLUMNS, MODIFIED_PROPERTY, PROPERTIES, to_datetime, to_row

logger = logging.getLogger("leadflow.ingestion.hubspot")

#: Results one HubSpot search query can page through (``after`` >= this answers 400).
SEARCH_RESULT_CAP = 10_000
SEARCH_PAGE_MAX = 200


def _millis(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


class _Progress:
    def __init__(self, object_type: str, every_pages: int) -> None:
        self.object_type, self.every_pages = object_type, max(every_pages, 1)
        self.pages = self.records = 0

    def page(self, records: int) -> None:
        self.pages += 1
        self.records += records
        if self.pages % self.every_pages == 0:
            logger.info("hubspot %s: %d pages, %d records so far", self.object_type, self.pages, self.records)

    def done(self) -> None:
        logger.info("hubspot %s: done, %d pages, %d records", self.object_type, self.pages, self.records)


def search_modified_since(
    client: HubSpotClient,
    object_type: str,
    since: datetime | None,
    *,
    page_size: int = 100,
    properties: list[str] | None = None,
    result_cap: int = SEARCH_RESULT_CAP,
    progress: _Progress | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Yield pages of records modified at or after ``since``, ascending, beyond the 10,000 cap.

    Args:
        client: The read-only client.
        object_type: ``contacts``, ``companies`` or ``deals``.
        since: Lower bound (inclusive) on the modified property; None reads everything.
        page_size: Search page size (HubSpot allows up to 200).
        properties: Properties to request (default: the raw table's).
        result_cap: Results reachable per query (HubSpot: 10,000).
        progress: Progress logger.

    Yields:
        Lists of HubSpot objects. A record may appear twice at a window boundary (merge dedups).
    """
    modified = MODIFIED_PROPERTY[object_type]
    limit = min(max(page_size, 1), SEARCH_PAGE_MAX)
    props = list(properties or PROPERTIES[object_type])
    lower: tuple[str, str] | None = ("GTE", _millis(since)) if since else None  # (operator, epoch millis)
    tie: tuple[str, str] | None = None  # (timestamp millis, last id) while paging inside one timestamp
    while True:
        if tie is not None:
            filters = [
                {"propertyName": modified, "operator": "EQ", "value": tie[0]},
                {"propertyName": "hs_object_id", "operator": "GT", "value": tie[1]},
            ]
            sorts = [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]
        else:
            filters = [{"propertyName": modified, "operator": lower[0], "value": lower[1]}] if lower else []
            sorts = [{"propertyName": modified, "direction": "ASCENDING"}]
        after = 0
        window_first: str | None = None
        last: dict[str, Any] | None = None
        capped = False
        while True:
            body: dict[str, Any] = {
                "filterGroups": [{"filters": filters}] if filters else [],
                "sorts": sorts,
                "properties": props,
                "limit": limit,
            }
            if after:
                body["after"] = str(after)
            page = client.search(object_type, body)
            results = page.get("results", [])
            if progress:
                progress.page(len(results))
            if results:
                window_first = window_first or results[0]["properties"].get(modified)
                last = results[-1]
                yield results
            next_after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not next_after or not results:
                break
            after = int(next_after)
            if after >= result_cap:
                capped = True
                break
        if not capped or last is None:
            if tie is None:
                return
            # Done with the records sharing tie's timestamp: continue strictly after it.
            lower, tie = ("GT", tie[0]), None
            continue
        last_ms = _millis(to_datetime(last["properties"][modified]))  # type: ignore[arg-type]
        if tie is not None:
            tie = (tie[0], str(last["id"]))
        elif window_first is not None and _millis(to_datetime(window_first)) == last_ms:  # type: ignore[arg-type]
            # The whole window shares one timestamp: page inside it by id, never re-asking the same window.
            tie = (last_ms, "0")
            logger.info("hubspot %s: %d+ records share %s; paging by id", object_type, result_cap, last_ms)
        else:
            lower = ("GTE", last_ms)
            logger.info(
                "hubspot %s: search cap of %d reached; new window from %s", object_type, result_cap, last_ms
            )


def _archived_row(object_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    row = to_row(object_type, obj["id"], obj.get("properties") or {}, archived=True)
    # Archiving is the record's latest change: carry it in the cursor so the incremental keeps the row.
    archived_at = to_datetime(obj.get("archivedAt") or obj.get("updatedAt"))
    modified = MODIFIED_PROPERTY[object_type]
    if archived_at and (row[modified] is None or archived_at > row[modified]):
        row[modified] = archived_at
    return row


def _crm_resource(
    client: HubSpotClient, object_type: str, page_size: int, progress_every_pages: int, result_cap: int
) -> DltResource:
    modified = MODIFIED_PROPERTY[object_type]

    def read(cursor: dlt.sources.incremental[datetime] = dlt.sources.incremental(modified)) -> Iterator[Any]:  # noqa: B008
        progress = _Progress(object_type, progress_every_pages)
        since = cursor.last_value
        props = list(PROPERTIES[object_type])
        # Archived first: anything modified after this listing is still caught by the search below.
        for page in client.list_objects(object_type, properties=props, archived=True, limit=page_size):
            progress.page(len(page))
            rows = [_archived_row(object_type, obj) for obj in page]
            if object_type == "deals":
                for row in rows:
                    row["contact_ids"] = []
            if rows:
                yield rows
        for page in search_modified_since(
            client,
            object_type,
            since,
            page_size=page_size,
            properties=props,
            result_cap=result_cap,
            progress=progress,
        ):
            rows = [
                to_row(object_type, obj["id"], obj.get("properties") or {}, archived=False) for obj in page
            ]
            if object_type == "deals":
                contacts = client.associated_ids("deals", "contacts", [row["id"] for row in rows])
                for row in rows:
                    row["contact_ids"] = contacts.get(row["id"], [])
            yield rows
        progress.done()

    return dlt.resource(
        read,
        name=object_type,
        primary_key="id",
        write_disposition="merge",
        columns=COLUMNS[object_type],
    )


@dlt.source(name="crm", max_table_nesting=1)
def hubspot_source(
    base_url: str = dlt.config.value,
    access_token: str = dlt.secrets.value,
    page_size: int = 100,
    max_attempts: int = 6,
    backoff_base: float = 1.0,
    progress_every_pages: int = 50,
    search_result_cap: int = SEARCH_RESULT_CAP,
) -> list[DltResource]:
    """HubSpot CRM contacts, companies and deals as the raw ``crm`` tables (see ARCHITECTURE.md).

    Args:
        base_url: API root, ``https://api.hubapi.com`` or the demo CRM (``HUBSPOT_BASE_URL``).
        access_token: Private app token (``HUBSPOT_ACCESS_TOKEN``); needs the CRM object read scopes.
        page_size: Records per request (lists cap at 100, search at 200).
        max_attempts: Attempts per request; 429 (honouring ``Retry-After``), 5xx and timeouts retry.
        backoff_base: First backoff wait in seconds, doubling per attempt (tests use 0).
        progress_every_pages: Log progress on logger ``leadflow.ingestion.hubspot`` every N pages.
        search_result_cap: Results one search query can page through (HubSpot: 10,000); the source
            re-windows when it is reached.

    Returns:
        The ``contacts``, ``companies`` and ``deals`` resources (merge on ``id``).
    """
    if not access_token:
        raise HubSpotApiError(401, "No HubSpot access token: set HUBSPOT_ACCESS_TOKEN.")
    client = HubSpotClient(base_url, access_token, max_attempts=max_attempts, backoff_base=backoff_base)
    return [
        _crm_resource(client, t, page_size, progress_every_pages, search_result_cap)
        for t in ("contacts", "companies", "deals")
    ]
