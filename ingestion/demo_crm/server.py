"""A HubSpot CRM v3-compatible HTTP server over a generated CRM, for demos and tests.

HubSpot endpoints served (bearer token required, default ``demo-token``):

- ``GET  /crm/v3/objects/{type}`` — ``limit`` (max 100), ``after``, ``properties``, ``archived``,
  ``associations``
- ``GET  /crm/v3/objects/{type}/{id}``
- ``POST /crm/v3/objects/{type}/search`` — ``filterGroups``, ``sorts``, ``properties``, ``limit``
  (max 200), ``after``; at most ``search_cap`` (10,000, as HubSpot) results are reachable
- ``POST /crm/v3/objects/{type}/batch/read``
- ``POST /crm/v4/associations/{from}/{to}/batch/read``
- writes (``POST /crm/v3/objects/{type}``, ``PATCH``/``DELETE /crm/v3/objects/{type}/{id}``, any
  other ``POST``/``PUT``/``PATCH``/``DELETE``) are accepted and applied like HubSpot would, and —
  like every request — recorded in the request log, so a test can catch a client that writes.

Admin endpoints (no auth, not HubSpot): see :data:`ADMIN_ENDPOINTS` and ``README.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ingestion.demo_crm.generator import (
    DEAL_STAGES,
    JOB_TITLES,
    LIFECYCLE_STAGES,
    MODIFIED_PROPERTY,
    OBJECT_TYPES,
    DemoCrm,
    generate_crm,
    hubspot_timestamp,
)

logger = logging.getLogger("leadflow.ingestion.demo_crm")

DEFAULT_TOKEN = "demo-token"
HUBSPOT_SEARCH_CAP = 10_000

ADMIN_ENDPOINTS = {
    "GET /_demo/health": "liveness: {'status': 'ok'}",
    "GET /_demo/log": "request log: [{method, path, query, body, status, at}]",
    "DELETE /_demo/log": "clear the request log",
    "POST /_demo/faults": "{'status': 429|500|503, 'count': N, 'retry_after': seconds?} answer the next N "
    "HubSpot requests with that status",
    "POST /_demo/mutate": "{'object_type': 'contacts', 'action': 'update'|'archive'|'create', "
    "'count': N?, 'ids': [...]?, 'properties': {...}?} → {'ids': [...]}",
    "POST /_demo/reset": "{'seed': S, 'contacts': N} regenerate the data, clear log and faults",
}

_DEFAULT_PROPERTIES = {
    "contacts": ("firstname", "lastname", "email"),
    "companies": ("name", "domain"),
    "deals": ("dealname", "amount", "dealstage", "pipeline", "closedate"),
}
_DATETIME_PROPERTIES = {"createdate", "lastmodifieddate", "hs_lastmodifieddate", "closedate"}
_NUMBER_PROPERTIES = {"hs_object_id", "amount", "numberofemployees", "associatedcompanyid"}
_ASSOCIATION_TYPES = {  # (from, to) → (typeId, label) as in HubSpot's default association types
    ("deals", "contacts"): (3, "deal_to_contact"),
    ("contacts", "deals"): (4, "contact_to_deal"),
    ("contacts", "companies"): (279, "contact_to_company"),
    ("companies", "contacts"): (280, "company_to_contact"),
}
_OBJECT_TYPE_ALIASES = {
    "contact": "contacts",
    "company": "companies",
    "deal": "deals",
    "0-1": "contacts",
    "0-2": "companies",
    "0-3": "deals",
}


class HubSpotError(Exception):
    """An error answered in HubSpot's JSON error shape."""

    def __init__(self, status: int, message: str, category: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
            **extra,
        }


def _millis(value: str | None) -> float | None:
    """Parse a HubSpot datetime value (ISO 8601 or epoch millis) to epoch millis."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return float(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000


def _typed(prop: str, value: Any) -> Any:
    if value is None:
        return None
    if prop in _DATETIME_PROPERTIES:
        return _millis(value)
    if prop in _NUMBER_PROPERTIES:
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return str(value).lower()


class CrmStore:
    """Thread-safe in-memory CRM with HubSpot query semantics and test mutations."""

    def __init__(self, crm: DemoCrm, *, search_cap: int = HUBSPOT_SEARCH_CAP) -> None:
        self.search_cap = search_cap
        self.lock = threading.RLock()
        self.reset(crm)

    def reset(self, crm: DemoCrm) -> None:
        """Replace all data with ``crm``'s (deep-copied)."""
        with self.lock:
            self.crm = crm
            self.objects: dict[str, dict[str, dict[str, Any]]] = {
                t: {o["id"]: copy.deepcopy(o) for o in crm.objects(t)} for t in OBJECT_TYPES
            }
            self.deal_contacts = {k: list(v) for k, v in crm.deal_contacts.items()}
            self.rng = random.Random(f"leadflow-demo-mutations-{crm.seed}")
            self.version = 0
            self._search_cache: dict[str, list[dict[str, Any]]] = {}
            self._last_stamp_ms = max(
                (_millis(o["updatedAt"]) or 0 for t in OBJECT_TYPES for o in self.objects[t].values()),
                default=0,
            )

    # -- reads -----------------------------------------------------------------------------------
    def _view(
        self, object_type: str, obj: dict[str, Any], properties: Iterable[str] | None
    ) -> dict[str, Any]:
        wanted = list(properties) if properties else list(_DEFAULT_PROPERTIES[object_type])
        always = ["createdate", MODIFIED_PROPERTY[object_type], "hs_object_id"]
        if object_type == "contacts":
            always.append("lastmodifieddate")
        props = obj["properties"]
        view = dict(obj)
        view["properties"] = {p: props.get(p) for p in dict.fromkeys([*wanted, *always])}
        return view

    def list_objects(
        self,
        object_type: str,
        *,
        limit: int,
        after: str | None,
        properties: list[str] | None,
        archived: bool,
        associations: list[str] | None,
    ) -> dict[str, Any]:
        with self.lock:
            start = int(after) if after else 0
            rows = [
                o
                for o in self.objects[object_type].values()
                if o["archived"] == archived and int(o["id"]) >= start
            ]
            rows.sort(key=lambda o: int(o["id"]))
            page = rows[:limit]
            results = [self._view(object_type, o, properties) for o in page]
            if associations:
                for result in results:
                    result["associations"] = {
                        to: {
                            "results": [
                                {
                                    "id": i,
                                    "type": _ASSOCIATION_TYPES.get((object_type, to), (0, "unknown"))[1],
                                }
                                for i in self._associated(object_type, to, result["id"])
                            ]
                        }
                        for to in associations
                        if self._associated(object_type, to, result["id"])
                    }
            body: dict[str, Any] = {"results": results}
            if len(rows) > limit:
                next_after = str(int(rows[limit]["id"]))
                body["paging"] = {"next": {"after": next_after, "link": f"?after={next_after}"}}
            return body

    def get_object(
        self, object_type: str, object_id: str, properties: list[str] | None, archived: bool = False
    ) -> dict[str, Any]:
        with self.lock:
            obj = self.objects[object_type].get(object_id)
            if obj is None or obj["archived"] != archived:
                raise HubSpotError(
                    404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND"
                )
            return self._view(object_type, obj, properties)

    def _matches(self, obj: dict[str, Any], group: dict[str, Any]) -> bool:
        props = obj["properties"]
        for flt in group.get("filters", []):
            prop, op = flt.get("propertyName"), str(flt.get("operator", "EQ")).upper()
            actual = _typed(prop, props.get(prop))
            if op == "HAS_PROPERTY":
                ok = actual is not None
            elif op == "NOT_HAS_PROPERTY":
                ok = actual is None
            elif op in ("IN", "NOT_IN"):
                values = {_typed(prop, v) for v in flt.get("values", [])}
                ok = (actual in values) == (op == "IN")
            else:
                expected = _typed(prop, flt.get("value"))
                if op == "NEQ":
                    ok = actual != expected
                elif actual is None or expected is None:
                    ok = False
                elif op == "EQ":
                    ok = actual == expected
                elif op == "GT":
                    ok = actual > expected
                elif op == "GTE":
                    ok = actual >= expected
                elif op == "LT":
                    ok = actual < expected
                elif op == "LTE":
                    ok = actual <= expected
                else:
                    raise HubSpotError(400, f"Unsupported operator {op}", "VALIDATION_ERROR")
            if not ok:
                return False
        return True

    def search(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        limit = int(body.get("limit", 10))
        if limit > 200:
            raise HubSpotError(400, "Limit must be less than or equal to 200", "VALIDATION_ERROR")
        after = int(body.get("after") or 0)
        if after >= self.search_cap:
            raise HubSpotError(
                400,
                f"Paging past {self.search_cap} results is not supported; narrow the search with filters.",
                "VALIDATION_ERROR",
            )
        with self.lock:
            key = json.dumps(
                [self.version, object_type, body.get("filterGroups"), body.get("sorts"), body.get("query")],
                sort_keys=True,
            )
            matched = self._search_cache.get(key)
            if matched is None:
                groups = body.get("filterGroups") or [{"filters": []}]
                matched = [
                    o
                    for o in self.objects[object_type].values()
                    if not o["archived"] and any(self._matches(o, g) for g in groups)
                ]
                matched.sort(key=lambda o: int(o["id"]))
                for sort in reversed(body.get("sorts") or []):
                    if isinstance(sort, str):
                        prop, descending = sort.lstrip("-"), sort.startswith("-")
                    else:
                        prop, descending = (
                            sort["propertyName"],
                            str(sort.get("direction", "ASCENDING")).upper() == "DESCENDING",
                        )
                    present = [o for o in matched if _typed(prop, o["properties"].get(prop)) is not None]
                    missing = [o for o in matched if _typed(prop, o["properties"].get(prop)) is None]
                    present.sort(key=lambda o, p=prop: _typed(p, o["properties"][p]), reverse=descending)
                    matched = present + missing
                self._search_cache = {key: matched}
            page = matched[after : after + limit]
            result: dict[str, Any] = {
                "total": len(matched),
                "results": [self._view(object_type, o, body.get("properties")) for o in page],
            }
            if after + limit < len(matched):
                result["paging"] = {"next": {"after": str(after + limit)}}
            return result

    def batch_read(
        self, object_type: str, body: dict[str, Any], archived: bool
    ) -> tuple[int, dict[str, Any]]:
        now = hubspot_timestamp(datetime.now(UTC))
        results, missing = [], []
        with self.lock:
            for item in body.get("inputs", []):
                obj = self.objects[object_type].get(str(item.get("id")))
                if obj is None or obj["archived"] != archived:
                    missing.append(str(item.get("id")))
                else:
                    results.append(self._view(object_type, obj, body.get("properties")))
        out: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
        if missing:
            out["errors"] = [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": f"Could not get some {object_type} objects, they may be deleted or not exist.",
                    "context": {"ids": missing},
                }
            ]
            out["numErrors"] = 1
            return 207, out
        return 200, out

    def _associated(self, from_type: str, to_type: str, object_id: str) -> list[str]:
        if (from_type, to_type) == ("deals", "contacts"):
            return list(self.deal_contacts.get(object_id, []))
        if (from_type, to_type) == ("contacts", "deals"):
            return [d for d, cs in self.deal_contacts.items() if object_id in cs]
        if (from_type, to_type) == ("contacts", "companies"):
            contact = self.objects["contacts"].get(object_id)
            company = contact["properties"].get("associatedcompanyid") if contact else None
            return [company] if company else []
        if (from_type, to_type) == ("companies", "contacts"):
            return [
                c["id"]
                for c in self.objects["contacts"].values()
                if c["properties"].get("associatedcompanyid") == object_id
            ]
        return []

    def associations_batch_read(
        self, from_type: str, to_type: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        now = hubspot_timestamp(datetime.now(UTC))
        type_id, label = _ASSOCIATION_TYPES.get((from_type, to_type), (0, None))
        results, errors = [], []
        with self.lock:
            for item in body.get("inputs", []):
                object_id = str(item.get("id"))
                targets = self._associated(from_type, to_type, object_id)
                if targets:
                    results.append(
                        {
                            "from": {"id": object_id},
                            "to": [
                                {
                                    "toObjectId": int(t),
                                    "associationTypes": [
                                        {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}
                                    ],
                                }
                                for t in targets
                            ],
                        }
                    )
                else:
                    # HubSpot reports objects without associations as errors in a 207 multi-status.
                    errors.append(
                        {
                            "status": "error",
                            "category": "OBJECT_NOT_FOUND",
                            "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                            "message": f"No {label or to_type} is associated with {from_type} {object_id}.",
                            "context": {"fromObjectId": [object_id]},
                        }
                    )
        out: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
        if errors:
            out["errors"], out["numErrors"] = errors, len(errors)
            return 207, out
        return 200, out

    # -- writes and test mutations ---------------------------------------------------------------
    def next_stamp(self) -> datetime:
        """A modification time: now, but strictly after every timestamp already in the store."""
        with self.lock:
            stamp = max(time.time() * 1000, self._last_stamp_ms + 1)
            stamp = float(int(stamp))
            self._last_stamp_ms = stamp
            return datetime.fromtimestamp(stamp / 1000, UTC)

    def _touch(self, object_type: str, obj: dict[str, Any], stamp: datetime) -> None:
        text = hubspot_timestamp(stamp)
        obj["properties"][MODIFIED_PROPERTY[object_type]] = text
        obj["updatedAt"] = text
        self.version += 1

    def _random_changes(self, object_type: str) -> dict[str, str]:
        rng = self.rng
        if object_type == "contacts":
            return {"jobtitle": rng.choice(JOB_TITLES), "lifecyclestage": rng.choice(LIFECYCLE_STAGES)}
        if object_type == "companies":
            return {"numberofemployees": str(rng.randrange(1, 10_000))}
        return {"dealstage": rng.choice(DEAL_STAGES), "amount": f"{rng.randrange(5, 900) * 100}.00"}

    def _pick(
        self, object_type: str, ids: Iterable[str] | None, count: int | None, archived: bool = False
    ) -> list[str]:
        if ids is not None:
            return [str(i) for i in ids if str(i) in self.objects[object_type]]
        candidates = [i for i, o in self.objects[object_type].items() if o["archived"] == archived]
        return self.rng.sample(candidates, min(count or 1, len(candidates)))

    def update_records(
        self,
        object_type: str,
        ids: Iterable[str] | None = None,
        count: int | None = None,
        properties: dict[str, str | None] | None = None,
    ) -> list[str]:
        """Change properties of records and bump their modified timestamp; returns the ids."""
        with self.lock:
            chosen = self._pick(object_type, ids, count)
            for object_id in chosen:
                obj = self.objects[object_type][object_id]
                changes = properties if properties is not None else self._random_changes(object_type)
                for key, value in changes.items():
                    if value is None:
                        obj["properties"].pop(key, None)
                    else:
                        obj["properties"][key] = str(value)
                self._touch(object_type, obj, self.next_stamp())
            return chosen

    def archive_records(
        self, object_type: str, ids: Iterable[str] | None = None, count: int | None = None
    ) -> list[str]:
        """Archive records (HubSpot's soft delete); returns the ids."""
        with self.lock:
            chosen = self._pick(object_type, ids, count)
            for object_id in chosen:
                obj = self.objects[object_type][object_id]
                stamp = self.next_stamp()
                obj["archived"] = True
                obj["archivedAt"] = hubspot_timestamp(stamp)
                obj["updatedAt"] = obj["archivedAt"]
                self.version += 1
            return chosen

    def create_records(
        self, object_type: str, count: int = 1, properties: dict[str, str] | None = None
    ) -> list[str]:
        """Create records with fresh ids (greater than every existing one); returns the ids."""
        with self.lock:
            created = []
            for _ in range(count):
                object_id = str(max((int(i) for i in self.objects[object_type]), default=0) + 1)
                stamp = self.next_stamp()
                text = hubspot_timestamp(stamp)
                props = {"createdate": text, MODIFIED_PROPERTY[object_type]: text, "hs_object_id": object_id}
                if properties is not None:
                    props.update({k: str(v) for k, v in properties.items() if v is not None})
                elif object_type == "contacts":
                    props.update(
                        {
                            "email": f"new.{object_id}@example.org",
                            "firstname": "New",
                            "lastname": f"Lead {object_id}",
                            "hs_email_optout": "false",
                            "lifecyclestage": "lead",
                        }
                    )
                elif object_type == "companies":
                    props.update({"name": f"New Co {object_id}", "domain": f"newco{object_id}.example"})
                else:
                    props.update(
                        {
                            "dealname": f"New deal {object_id}",
                            "dealstage": self.rng.choice(DEAL_STAGES),
                            "pipeline": "default",
                            "leadflow_product": self.rng.choice(("atlas", "beacon")),
                        }
                    )
                    contacts = [i for i, o in self.objects["contacts"].items() if not o["archived"]]
                    if contacts:
                        self.deal_contacts[object_id] = [self.rng.choice(contacts)]
                self.objects[object_type][object_id] = {
                    "id": object_id,
                    "properties": props,
                    "createdAt": text,
                    "updatedAt": text,
                    "archived": False,
                }
                self.version += 1
                created.append(object_id)
            return created


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; without this, Nagle + delayed ACK add ~40 ms a request.
    disable_nagle_algorithm = True
    server: _DemoHttpServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802
        self._handle()

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        query = {
            k: v[-1] if len(v) == 1 else v for k, v in parse_qs(parts.query, keep_blank_values=True).items()
        }
        entry = {
            "method": self.command,
            "path": parts.path,
            "query": query,
            "body": body,
            "status": None,
            "at": time.time(),
        }
        headers: dict[str, str] = {}
        try:
            if parts.path.startswith("/_demo/"):
                status, payload = owner._admin(self.command, parts.path, body)
            else:
                with owner._lock:
                    owner.request_log.append(entry)
                fault = owner._take_fault()
                if fault is not None:
                    status, retry_after = fault
                    if retry_after is not None:
                        headers["Retry-After"] = str(retry_after)
                    if status == 429:
                        payload = {
                            "status": "error",
                            "message": "You have reached your secondly limit.",
                            "errorType": "RATE_LIMIT",
                            "correlationId": str(uuid.uuid4()),
                            "policyName": "SECONDLY",
                            "groupName": "publicapi",
                        }
                    else:
                        payload = {
                            "status": "error",
                            "message": "internal error",
                            "correlationId": str(uuid.uuid4()),
                            "category": "INTERNAL_ERROR",
                        }
                else:
                    owner._authorize(self.headers.get("Authorization"))
                    status, payload = owner._route(self.command, parts.path, query, body)
        except HubSpotError as error:
            status, payload = error.status, {k: v for k, v in error.body.items() if v is not None}
        except Exception as error:  # a bug in the demo server must still answer like a server
            logger.exception("demo CRM failed on %s %s", self.command, self.path)
            status, payload = 500, {"status": "error", "message": str(error), "category": "INTERNAL_ERROR"}
        entry["status"] = status
        data = b"" if status == 204 else json.dumps(payload).encode()
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if data:
            self.wfile.write(data)


class _DemoHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: DemoCrmServer


class DemoCrmServer:
    """HubSpot-compatible demo CRM on 127.0.0.1, runnable in a background thread.

    Example:
        >>> with DemoCrmServer(seed=42, n_contacts=50) as crm:
        ...     crm.base_url  # 'http://127.0.0.1:<port>'

    Args:
        crm: Data to serve; default ``generate_crm(seed, n_contacts)``.
        seed: Generator seed when ``crm`` is not given.
        n_contacts: Number of contacts when ``crm`` is not given.
        host: Interface to bind (loopback by default).
        port: TCP port; 0 picks a free one.
        token: Accepted bearer token.
        search_cap: Results reachable through search paging (HubSpot: 10,000). Tests may lower it.
    """

    def __init__(
        self,
        crm: DemoCrm | None = None,
        *,
        seed: int = 42,
        n_contacts: int = 500,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = DEFAULT_TOKEN,
        search_cap: int = HUBSPOT_SEARCH_CAP,
    ) -> None:
        self.store = CrmStore(
            crm if crm is not None else generate_crm(seed, n_contacts), search_cap=search_cap
        )
        self.token = token
        self.request_log: list[dict[str, Any]] = []
        self._faults: list[tuple[int, int | None]] = []
        self._lock = threading.Lock()
        self._httpd = _DemoHttpServer((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> DemoCrmServer:
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="demo-crm", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> DemoCrmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test control ----------------------------------------------------------------------------
    def inject_faults(self, status: int, count: int = 1, retry_after: int | None = None) -> None:
        """Answer the next ``count`` HubSpot requests with ``status`` (429 → ``Retry-After`` header)."""
        with self._lock:
            self._faults.extend([(status, retry_after)] * count)

    def clear_faults(self) -> None:
        """Drop pending injected faults."""
        with self._lock:
            self._faults.clear()

    def clear_log(self) -> None:
        """Empty the request log."""
        with self._lock:
            self.request_log.clear()

    def writes(self) -> list[dict[str, Any]]:
        """Logged requests that are not one of HubSpot's read calls."""
        return [e for e in self.request_log if not is_read_request(e["method"], e["path"])]

    def reset(self, crm: DemoCrm) -> None:
        """Serve ``crm`` from now on; clears the log and faults."""
        self.store.reset(crm)
        with self._lock:
            self.request_log.clear()
            self._faults.clear()

    def update_records(
        self,
        object_type: str,
        ids: Iterable[str] | None = None,
        count: int | None = None,
        properties: dict[str, str | None] | None = None,
    ) -> list[str]:
        """See :meth:`CrmStore.update_records`."""
        return self.store.update_records(object_type, ids, count, properties)

    def archive_records(
        self, object_type: str, ids: Iterable[str] | None = None, count: int | None = None
    ) -> list[str]:
        """See :meth:`CrmStore.archive_records`."""
        return self.store.archive_records(object_type, ids, count)

    def create_records(
        self, object_type: str, count: int = 1, properties: dict[str, str] | None = None
    ) -> list[str]:
        """See :meth:`CrmStore.create_records`."""
        return self.store.create_records(object_type, count, properties)

    def _take_fault(self) -> tuple[int, int | None] | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _authorize(self, header: str | None) -> None:
        if not header or not header.startswith("Bearer "):
            raise HubSpotError(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                "and you can find more details at https://developers.hubspot.com/docs/methods/auth/"
                "oauth-overview",
                "INVALID_AUTHENTICATION",
            )
        if header[len("Bearer ") :].strip() != self.token:
            raise HubSpotError(
                401, "The OAuth token used to make this call expired or is invalid.", "INVALID_AUTHENTICATION"
            )

    def _admin(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        body = body if isinstance(body, dict) else {}
        if path == "/_demo/health":
            return 200, {"status": "ok"}
        if path == "/_demo/log":
            if method == "DELETE":
                self.clear_log()
                return 200, {"cleared": True}
            with self._lock:
                return 200, list(self.request_log)
        if path == "/_demo/faults" and method == "POST":
            self.inject_faults(
                int(body.get("status", 429)), int(body.get("count", 1)), body.get("retry_after")
            )
            return 200, {"pending": len(self._faults)}
        if path == "/_demo/mutate" and method == "POST":
            object_type = _object_type(body.get("object_type", "contacts"))
            action = body.get("action", "update")
            if action == "update":
                ids = self.update_records(
                    object_type, body.get("ids"), body.get("count"), body.get("properties")
                )
            elif action == "archive":
                ids = self.archive_records(object_type, body.get("ids"), body.get("count"))
            elif action == "create":
                ids = self.create_records(object_type, int(body.get("count", 1)), body.get("properties"))
            else:
                raise HubSpotError(400, f"unknown action {action}", "VALIDATION_ERROR")
            return 200, {"ids": ids}
        if path == "/_demo/reset" and method == "POST":
            self.reset(generate_crm(int(body.get("seed", 42)), int(body.get("contacts", 500))))
            return 200, {"reset": True}
        raise HubSpotError(404, f"unknown admin endpoint {method} {path}", "OBJECT_NOT_FOUND")

    def _route(self, method: str, path: str, query: dict[str, Any], body: Any) -> tuple[int, Any]:
        body = body if isinstance(body, dict) else {}
        store = self.store
        if (m := re.fullmatch(r"/crm/v4/associations/([^/]+)/([^/]+)/batch/read", path)) and method == "POST":
            return store.associations_batch_read(_object_type(m[1]), _object_type(m[2]), body)
        if path.startswith("/crm/v4/") and method in ("POST", "PUT", "PATCH", "DELETE"):
            return 200, {"status": "COMPLETE", "results": []}  # association writes: accepted, logged
        m = re.fullmatch(r"/crm/v3/objects/([^/]+)(?:/([^/]+))?(?:/([^/]+))?", path)
        if not m:
            raise HubSpotError(404, f"No route for {method} {path}", "OBJECT_NOT_FOUND")
        object_type, second, third = _object_type(m[1]), m[2], m[3]
        props = [p for p in str(query.get("properties", "")).split(",") if p] or None
        archived = str(query.get("archived", "false")).lower() == "true"
        if method == "GET" and second is None:
            limit = min(max(int(query.get("limit", 10)), 1), 100)
            assocs = [_object_type(a) for a in str(query.get("associations", "")).split(",") if a] or None
            return 200, store.list_objects(
                object_type,
                limit=limit,
                after=query.get("after"),
                properties=props,
                archived=archived,
                associations=assocs,
            )
        if method == "GET" and third is None:
            return 200, store.get_object(object_type, second, props, archived)
        if method == "POST" and second == "search" and third is None:
            return 200, store.search(object_type, body)
        if method == "POST" and second == "batch" and third == "read":
            return store.batch_read(object_type, body, archived)
        # Writes: accepted and applied the way HubSpot would, so a writing client changes the data.
        if method == "POST" and second is None:
            object_id = store.create_records(object_type, 1, body.get("properties") or {})[0]
            return 201, store.get_object(object_type, object_id, None)
        if method == "PATCH" and second is not None and third is None:
            store.update_records(object_type, [second], properties=body.get("properties") or {})
            return 200, store.get_object(object_type, second, None)
        if method == "DELETE" and second is not None and third is None:
            store.archive_records(object_type, [second])
            return 204, None
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            return 200, {"status": "COMPLETE", "results": []}
        raise HubSpotError(405, f"Method {method} not allowed on {path}", "METHOD_NOT_ALLOWED")


def _object_type(name: str) -> str:
    object_type = _OBJECT_TYPE_ALIASES.get(name, name)
    if object_type not in OBJECT_TYPES:
        raise HubSpotError(400, f"Unable to infer object type from: {name}", "VALIDATION_ERROR")
    return object_type


_READ_ROUTES = (
    ("GET", re.compile(r"/crm/v3/objects/[^/]+(/[^/]+)?")),
    ("POST", re.compile(r"/crm/v3/objects/[^/]+/search")),
    ("POST", re.compile(r"/crm/v3/objects/[^/]+/batch/read")),
    ("POST", re.compile(r"/crm/v4/associations/[^/]+/[^/]+/batch/read")),
)


def is_read_request(method: str, path: str) -> bool:
    """Whether ``method path`` is one of HubSpot's read-only CRM calls."""
    return any(method == m and pattern.fullmatch(path) for m, pattern in _READ_ROUTES)


def run_demo_crm(
    port: int = 8765, seed: int = 42, contacts: int = 500, host: str = "127.0.0.1", token: str = DEFAULT_TOKEN
) -> None:
    """Serve the demo CRM in the foreground until interrupted (``leadflow demo-crm``).

    Args:
        port: TCP port.
        seed: Generator seed.
        contacts: Number of contacts.
        host: Interface to bind.
        token: Accepted bearer token.
    """
    server = DemoCrmServer(seed=seed, n_contacts=contacts, host=host, port=port, token=token)
    print(
        f"demo CRM (HubSpot v3 compatible) on {server.base_url} — token {token!r}; Ctrl-C stops", flush=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """CLI entry: ``python -m ingestion.demo_crm [--port N] [--seed S] [--contacts N]``."""
    parser = argparse.ArgumentParser(prog="demo-crm", description="HubSpot-compatible demo CRM server")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--contacts", type=int, default=500)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    args = parser.parse_args(argv)
    run_demo_crm(port=args.port, seed=args.seed, contacts=args.contacts, host=args.host, token=args.token)
    return 0
