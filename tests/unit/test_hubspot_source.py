"""HubSpot source against the demo CRM: read-only transport, retries, errors, incremental windows."""

from __future__ import annotations

import logging
import tempfile
import uuid

import dlt
import pytest
import requests

from ingestion.demo_crm import DemoCrmServer, generate_crm, is_read_request
from ingestion.hubspot import (
    CrmWriteBlocked,
    HubSpotApiError,
    HubSpotAuthError,
    HubSpotClient,
    hubspot_source,
)
from ingestion.hubspot.source import search_modified_since


@pytest.fixture
def crm_server():
    with DemoCrmServer(seed=3, n_contacts=120) as server:
        yield server


def _client(server: DemoCrmServer, **kwargs) -> HubSpotClient:
    return HubSpotClient(server.base_url, "demo-token", backoff_base=0, **kwargs)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/crm/v3/objects/contacts"),
        ("PATCH", "/crm/v3/objects/contacts/1"),
        ("PUT", "/crm/v3/objects/contacts/1/associations/companies/5000001/1"),
        ("DELETE", "/crm/v3/objects/contacts/1"),
        ("POST", "/crm/v3/objects/contacts/batch/update"),
        ("POST", "/crm/v3/objects/contacts/batch/archive"),
        ("POST", "/crm/v3/objects/contacts/merge"),
        ("POST", "/crm/v3/objects/contacts/gdpr-delete"),
        ("POST", "/crm/v4/associations/deals/contacts/batch/create"),
        ("GET", "/crm/v3/owners"),
        ("HEAD", "/crm/v3/objects/contacts"),
    ],
)
def test_writes_are_blocked_before_sending(crm_server, method, path):
    client = _client(crm_server)
    with pytest.raises(CrmWriteBlocked):
        client.request(method, path, json={"properties": {"email": "x@example.com"}})
    with pytest.raises(CrmWriteBlocked):  # even through the raw session
        client.session.request(method, crm_server.base_url + path)
    assert crm_server.request_log == []


def test_allow_list_matches_server_read_routes(crm_server):
    client = _client(crm_server)
    client.request("GET", "/crm/v3/objects/contacts", params={"limit": 1})
    client.request("GET", "/crm/v3/objects/deals/9000001")
    client.search("contacts", {"limit": 1})
    client.request("POST", "/crm/v3/objects/deals/batch/read", json={"inputs": [{"id": "9000001"}]})
    client.associated_ids("deals", "contacts", ["9000001"])
    assert len(crm_server.request_log) == 5
    assert all(is_read_request(e["method"], e["path"]) for e in crm_server.request_log)


def test_base_path_prefix_is_respected():
    client = HubSpotClient("http://127.0.0.1:9/proxy/hubspot", "t")
    adapter = client.session.get_adapter("http://127.0.0.1:9/")
    assert adapter.is_allowed("GET", "http://127.0.0.1:9/proxy/hubspot/crm/v3/objects/contacts")
    assert not adapter.is_allowed("GET", "http://127.0.0.1:9/crm/v3/objects/contacts")
    assert not adapter.is_allowed("POST", "http://127.0.0.1:9/proxy/hubspot/crm/v3/objects/contacts")


def test_429_honours_retry_after(crm_server, monkeypatch):
    client = HubSpotClient(crm_server.base_url, "demo-token", backoff_base=5)
    slept: list[float] = []
    monkeypatch.setattr("tenacity.nap.time.sleep", slept.append)
    crm_server.inject_faults(429, count=2, retry_after=0)
    crm_server.inject_faults(429, count=1, retry_after=2)
    body = client.search("contacts", {"limit": 1})
    assert body["results"]
    assert slept == [0.0, 0.0, 2.0]
    assert [e["status"] for e in crm_server.request_log] == [429, 429, 429, 200]


def test_5xx_retried_with_backoff_then_gives_up(crm_server, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr("tenacity.nap.time.sleep", slept.append)
    client = HubSpotClient(crm_server.base_url, "demo-token", backoff_base=0.5, max_attempts=3)
    crm_server.inject_faults(500, count=1)
    crm_server.inject_faults(503, count=1)
    assert client.search("deals", {"limit": 1})["results"]
    assert slept == [0.5, 1.0]
    crm_server.inject_faults(503, count=3)
    with pytest.raises(HubSpotApiError) as error:
        client.search("deals", {"limit": 1})
    assert error.value.status == 503


def test_other_4xx_raise_with_hubspot_message(crm_server):
    client = _client(crm_server)
    with pytest.raises(HubSpotApiError, match="OBJECT_NOT_FOUND") as error:
        client.request("GET", "/crm/v3/objects/deals/42")
    assert error.value.status == 404
    assert len(crm_server.request_log) == 1  # not retried


def test_timeouts_are_retried(monkeypatch):
    calls = []

    def flaky_send(self, request, **kwargs):
        calls.append(request.url)
        raise requests.ConnectTimeout("slow")

    monkeypatch.setattr("requests.adapters.HTTPAdapter.send", flaky_send)
    client = HubSpotClient("http://127.0.0.1:9", "t", backoff_base=0, max_attempts=3)
    with pytest.raises(requests.ConnectTimeout):
        client.search("contacts", {})
    assert len(calls) == 3


def test_401_names_the_setting(crm_server):
    client = HubSpotClient(crm_server.base_url, "wrong", backoff_base=0)
    with pytest.raises(HubSpotAuthError, match="HUBSPOT_ACCESS_TOKEN"):
        client.search("contacts", {})


def _rows(source) -> dict[str, list[dict]]:
    """Iterate a source with fresh incremental state (iterating outside a pipeline shares state)."""
    pipeline = dlt.pipeline(pipeline_name=f"rows_{uuid.uuid4().hex[:8]}", pipelines_dir=tempfile.mkdtemp())
    pipeline.activate()
    try:
        return {name: list(resource) for name, resource in source.resources.items()}
    finally:
        pipeline.deactivate()


def test_rows_have_raw_table_shape(crm_server):
    rows = _rows(hubspot_source(crm_server.base_url, "demo-token", backoff_base=0))
    contact = next(r for r in rows["contacts"] if r["phone_e164"])
    assert set(contact) == {
        "id",
        "email",
        "firstname",
        "lastname",
        "phone",
        "mobilephone",
        "phone_e164",
        "country",
        "hs_timezone",
        "jobtitle",
        "lifecyclestage",
        "hs_email_optout",
        "associatedcompanyid",
        "createdate",
        "lastmodifieddate",
        "archived",
    }
    assert contact["phone_e164"].startswith("+")
    assert isinstance(contact["hs_email_optout"], bool) and contact["lastmodifieddate"].tzinfo is not None
    deal = next(r for r in rows["deals"] if r["contact_ids"])
    assert isinstance(deal["contact_ids"], list) and isinstance(deal["contact_ids"][0], str)
    assert deal["contact_ids"] == crm_server.store.deal_contacts[deal["id"]]
    company = next(r for r in rows["companies"] if r["numberofemployees"] is not None)
    assert isinstance(company["numberofemployees"], int)
    archived = {r["id"] for r in rows["contacts"] if r["archived"]}
    assert archived == {i for i, o in crm_server.store.objects["contacts"].items() if o["archived"]}
    live = {r["id"] for r in rows["contacts"] if not r["archived"]}
    assert live == {i for i, o in crm_server.store.objects["contacts"].items() if not o["archived"]}


def test_search_rewindows_past_the_10000_cap():
    crm = generate_crm(11, 25_000)
    with DemoCrmServer(crm) as server:  # HubSpot's default cap of 10,000
        client = _client(server)
        seen = [
            o["id"] for page in search_modified_since(client, "contacts", None, page_size=200) for o in page
        ]
        live = {o["id"] for o in crm.contacts if not o["archived"]}
        assert set(seen) == live
        # Re-reads happen only at window boundaries: the records sharing the boundary timestamp
        # (the generator's bulk import gives ~10% of contacts one timestamp).
        assert len(seen) < len(live) * 1.15
        afters = [int(e["body"].get("after", 0)) for e in server.request_log]
        assert max(afters) < 10_000
        assert all(e["status"] == 200 for e in server.request_log)


def test_window_sharing_one_timestamp_pages_by_id():
    crm = generate_crm(5, 60)
    stamp = "2026-01-01T00:00:00.000Z"
    for contact in crm.contacts:  # every record modified in the same millisecond
        contact["properties"]["lastmodifieddate"] = stamp
    with DemoCrmServer(crm, search_cap=20) as server:
        client = _client(server)
        seen = [
            o["id"]
            for page in search_modified_since(client, "contacts", None, page_size=7, result_cap=20)
            for o in page
        ]
        assert sorted(set(seen), key=int) == sorted(
            {o["id"] for o in crm.contacts if not o["archived"]}, key=int
        )
        assert len(server.request_log) < 40, "no loop"
        assert any(
            f["propertyName"] == "hs_object_id"
            for e in server.request_log
            for g in e["body"].get("filterGroups", [])
            for f in g["filters"]
        )


def test_incremental_sync_starts_at_last_modified(crm_server, tmp_path, caplog):
    pipeline = dlt.pipeline(pipeline_name="hs_incr", pipelines_dir=str(tmp_path))
    caplog.set_level(logging.INFO, logger="leadflow.ingestion.hubspot")
    contacts = crm_server.store.objects["contacts"].values()
    newest = max(max(o["properties"]["lastmodifieddate"], o.get("archivedAt", "")) for o in contacts)
    pipeline.extract(
        hubspot_source(crm_server.base_url, "demo-token", backoff_base=0, progress_every_pages=1)
    )
    assert "pages" in caplog.text
    crm_server.update_records("contacts", count=3)
    crm_server.clear_log()
    pipeline.extract(hubspot_source(crm_server.base_url, "demo-token", backoff_base=0))
    search = next(e for e in crm_server.request_log if e["path"] == "/crm/v3/objects/contacts/search")
    (flt,) = search["body"]["filterGroups"][0]["filters"]
    assert flt["operator"] == "GTE"
    assert int(flt["value"]) == int(dlt.common.pendulum.parse(newest).timestamp() * 1000)
