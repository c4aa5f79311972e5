"""Demo CRM: generator determinism and messiness, HubSpot-shaped HTTP API, faults, log, mutations."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import requests

from ingestion.demo_crm import DemoCrmServer, demo_events, generate_crm, write_demo_events
from ingestion.demo_crm.generator import DEAL_STAGES

AUTH = {"Authorization": "Bearer demo-token"}


@pytest.fixture(scope="module")
def crm_server():
    with DemoCrmServer(seed=7, n_contacts=300) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(crm_server):
    crm_server.clear_faults()
    crm_server.clear_log()


def test_generator_is_deterministic_and_messy():
    crm = generate_crm(42, 500)
    assert crm == generate_crm(42, 500)
    assert crm != generate_crm(43, 500)
    contacts = crm.contacts
    assert all(set(c) >= {"id", "properties", "createdAt", "updatedAt", "archived"} for c in contacts)
    assert all(isinstance(v, str) for c in contacts for v in c["properties"].values())
    emails = [c["properties"]["email"] for c in contacts if c["properties"].get("email")]
    lowered = Counter(e.lower() for e in emails)
    assert any(n > 1 for n in lowered.values()), "same person twice with different-case e-mails"
    assert len(lowered) < len(set(emails))
    assert any("email" not in c["properties"] and c["properties"].get("phone") for c in contacts)
    assert any(c["archived"] for c in contacts)
    assert any(c["properties"]["hs_email_optout"] == "true" for c in contacts)
    assert any("hs_timezone" not in c["properties"] for c in contacts)
    assert any(c["properties"].get("hs_timezone") == "europe_slash_berlin" for c in contacts)
    names = "".join(
        c["properties"].get("firstname", "") + c["properties"].get("lastname", "") for c in contacts
    )
    assert any(ord(ch) > 127 for ch in names)
    assert {d["properties"]["dealstage"] for d in crm.deals} == set(DEAL_STAGES)
    assert {d["properties"]["leadflow_product"] for d in crm.deals} == {"atlas", "beacon"}
    assert all(d["properties"]["pipeline"] == "default" for d in crm.deals)
    contact_ids = {c["id"] for c in contacts}
    assert all(set(ids) <= contact_ids for ids in crm.deal_contacts.values())
    assert all(c["properties"]["lastmodifieddate"] for c in contacts)
    assert all(c["properties"]["hs_lastmodifieddate"] for c in crm.companies + crm.deals)


def test_generator_is_fast():
    started = time.perf_counter()
    generate_crm(1, 10_000)
    assert time.perf_counter() - started < 5  # ~0.8 s here; generous for noisy machines


def test_id_offset_gives_disjoint_ids():
    a, b = generate_crm(1, 50), generate_crm(1, 50, id_offset=100_000_000)
    for object_type in ("contacts", "companies", "deals"):
        assert not {o["id"] for o in a.objects(object_type)} & {o["id"] for o in b.objects(object_type)}


def test_write_demo_events_is_deterministic_and_atomic(tmp_path):
    crm = generate_crm(42, 500)
    first = write_demo_events(tmp_path / "a", 42, crm)
    second = write_demo_events(tmp_path / "b", 42, crm)
    assert first.name == "demo-42.jsonl" and first.parent.name == "product_events"
    assert first.read_bytes() == second.read_bytes()
    assert not list((tmp_path / "a" / "product_events").glob("*.tmp"))
    lines = [json.loads(line) for line in first.read_text().splitlines()]
    assert 4_000 <= len(lines) <= 6_000
    assert len({e["event_id"] for e in lines}) == len(lines)
    assert {e["event_type"] for e in lines} >= {
        "login",
        "feature_used",
        "pricing_page_viewed",
        "trial_started",
        "demo_requested",
    }
    crm_emails = {c["properties"]["email"] for c in crm.contacts if c["properties"].get("email")}
    event_emails = {e.get("email") for e in lines if e.get("email")}
    assert event_emails & crm_emails and event_emails - crm_emails
    assert any(e != e.strip() for e in event_emails), "some e-mails carry whitespace"
    # An existing file is never rewritten.
    first.write_text("kept\n")
    write_demo_events(tmp_path / "a", 42, crm)
    assert first.read_text() == "kept\n"


def test_demo_events_default_count():
    assert len(demo_events(42, generate_crm(42, 500))) == 5_000


def test_auth_required(crm_server):
    url = crm_server.base_url + "/crm/v3/objects/contacts"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = requests.get(url, headers=headers)
        assert response.status_code == 401
        body = response.json()
        assert (
            body["status"] == "error"
            and body["category"] == "INVALID_AUTHENTICATION"
            and body["correlationId"]
        )
    assert [e["status"] for e in crm_server.request_log] == [401, 401]


def test_list_paging_properties_and_archived(crm_server):
    url = crm_server.base_url + "/crm/v3/objects/contacts"
    seen, after = [], None
    while True:
        params = {"limit": 1000, "properties": "email,phone"}  # limit is capped at 100
        if after:
            params["after"] = after
        body = requests.get(url, params=params, headers=AUTH).json()
        assert len(body["results"]) <= 100
        seen.extend(body["results"])
        after = body.get("paging", {}).get("next", {}).get("after")
        if not after:
            break
    live = [c for c in crm_server.store.objects["contacts"].values() if not c["archived"]]
    assert [r["id"] for r in seen] == [c["id"] for c in live]
    assert set(seen[0]["properties"]) == {"email", "phone", "hs_object_id", "createdate", "lastmodifieddate"}
    archived = requests.get(url, params={"archived": "true", "limit": 100}, headers=AUTH).json()["results"]
    assert archived and all(r["archived"] and r["archivedAt"] for r in archived)


def test_get_one_and_404(crm_server):
    url = crm_server.base_url + "/crm/v3/objects/deals/9000001"
    body = requests.get(url, params={"properties": "dealstage"}, headers=AUTH).json()
    assert body["id"] == "9000001" and body["properties"]["dealstage"] == "appointmentscheduled"
    missing = requests.get(crm_server.base_url + "/crm/v3/objects/deals/1", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["category"] == "OBJECT_NOT_FOUND"


def test_search_filters_sorts_and_paging(crm_server):
    url = crm_server.base_url + "/crm/v3/objects/contacts/search"
    cutoff = "2026-06-01T00:00:00.000Z"
    body = {
        "filterGroups": [
            {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": cutoff}]}
        ],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ["email"],
        "limit": 50,
    }
    results, after, total = [], None, None
    while True:
        page = requests.post(url, json={**body, **({"after": after} if after else {})}, headers=AUTH).json()
        total = page["total"]
        results.extend(page["results"])
        after = page.get("paging", {}).get("next", {}).get("after")
        if not after:
            break
    stamps = [r["properties"]["lastmodifieddate"] for r in results]
    assert stamps == sorted(stamps) and all(s >= cutoff for s in stamps)
    assert len(results) == total and not any(r["archived"] for r in results)
    # Epoch millis work as well as ISO values.
    millis = str(int(time.mktime(time.strptime("2026-06-01", "%Y-%m-%d")) * 1000))
    by_millis = requests.post(
        url,
        json={
            **body,
            "filterGroups": [
                {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": millis}]}
            ],
        },
        headers=AUTH,
    ).json()
    assert by_millis["total"] == total
    too_big = requests.post(url, json={**body, "limit": 201}, headers=AUTH)
    assert too_big.status_code == 400


def test_search_cap_is_hubspots_10000_by_default(crm_server):
    assert crm_server.store.search_cap == 10_000
    response = requests.post(
        crm_server.base_url + "/crm/v3/objects/contacts/search",
        json={"limit": 10, "after": "10000"},
        headers=AUTH,
    )
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"


def test_batch_read_and_v4_associations(crm_server):
    body = requests.post(
        crm_server.base_url + "/crm/v3/objects/deals/batch/read",
        json={"inputs": [{"id": "9000001"}, {"id": "9000002"}], "properties": ["dealname"]},
        headers=AUTH,
    ).json()
    assert {r["id"] for r in body["results"]} == {"9000001", "9000002"}
    deal_ids = list(crm_server.store.deal_contacts)[:20]
    response = requests.post(
        crm_server.base_url + "/crm/v4/associations/deals/contacts/batch/read",
        json={"inputs": [{"id": i} for i in deal_ids]},
        headers=AUTH,
    )
    assert response.status_code in (200, 207)
    got = {r["from"]["id"]: sorted(str(t["toObjectId"]) for t in r["to"]) for r in response.json()["results"]}
    expected = {d: sorted(cs) for d in deal_ids if (cs := crm_server.store.deal_contacts[d])}
    assert got == expected
    assert all(t["associationTypes"][0]["typeId"] == 3 for r in response.json()["results"] for t in r["to"])


def test_injected_faults_and_retry_after(crm_server):
    crm_server.inject_faults(429, count=1, retry_after=3)
    crm_server.inject_faults(503, count=1)
    url = crm_server.base_url + "/crm/v3/objects/companies"
    first, second, third = (requests.get(url, headers=AUTH) for _ in range(3))
    assert first.status_code == 429 and first.headers["Retry-After"] == "3"
    assert first.json()["errorType"] == "RATE_LIMIT"
    assert second.status_code == 503 and third.status_code == 200
    assert [e["status"] for e in crm_server.request_log] == [429, 503, 200]


def test_admin_endpoints(crm_server):
    base = crm_server.base_url
    assert requests.get(base + "/_demo/health").json() == {"status": "ok"}
    requests.post(base + "/_demo/faults", json={"status": 500, "count": 1})
    assert requests.get(base + "/crm/v3/objects/deals", headers=AUTH).status_code == 500
    before = max(o["properties"]["hs_lastmodifieddate"] for o in crm_server.store.objects["deals"].values())
    ids = requests.post(
        base + "/_demo/mutate", json={"object_type": "deals", "action": "update", "count": 2}
    ).json()["ids"]
    assert len(ids) == 2
    assert all(
        crm_server.store.objects["deals"][i]["properties"]["hs_lastmodifieddate"] > before for i in ids
    )
    log = requests.get(base + "/_demo/log").json()
    assert [e["path"] for e in log] == ["/crm/v3/objects/deals"], "admin calls are not logged"
    requests.delete(base + "/_demo/log")
    assert crm_server.request_log == []


def test_mutations_are_strictly_after_previous_max(crm_server):
    store = crm_server.store
    before = max(o["properties"]["lastmodifieddate"] for o in store.objects["contacts"].values())
    updated = crm_server.update_records("contacts", count=3)
    stamps = [store.objects["contacts"][i]["properties"]["lastmodifieddate"] for i in updated]
    assert all(s > before for s in stamps) and len(set(stamps)) == 3
    archived = crm_server.archive_records("contacts", count=1)
    assert store.objects["contacts"][archived[0]]["archived"]
    created = crm_server.create_records("contacts", 2)
    assert all(int(i) > 300 for i in created)


def test_writes_are_accepted_and_logged(crm_server):
    base = crm_server.base_url + "/crm/v3/objects/contacts"
    created = requests.post(base, json={"properties": {"email": "w@example.com"}}, headers=AUTH)
    assert created.status_code == 201
    new_id = created.json()["id"]
    assert (
        requests.patch(f"{base}/{new_id}", json={"properties": {"firstname": "W"}}, headers=AUTH).status_code
        == 200
    )
    assert requests.delete(f"{base}/{new_id}", headers=AUTH).status_code == 204
    assert requests.post(base + "/batch/update", json={"inputs": []}, headers=AUTH).status_code == 200
    assert [(e["method"], e["path"]) for e in crm_server.writes()] == [
        ("POST", "/crm/v3/objects/contacts"),
        ("PATCH", f"/crm/v3/objects/contacts/{new_id}"),
        ("DELETE", f"/crm/v3/objects/contacts/{new_id}"),
        ("POST", "/crm/v3/objects/contacts/batch/update"),
    ]
    assert crm_server.request_log[0]["body"] == {"properties": {"email": "w@example.com"}}
