"""Intake webhooks and batch endpoints: signatures fail closed and a rejected request lands nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from ingestion.events import parse_event_line
from ingestion.intake import IntakeConfig, create_app

TOKEN = "intake-test-token"
APP_SECRET = "meta-app-secret"
VERIFY_TOKEN = "meta-verify-token"


def _keypair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def sendgrid_headers(private: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int | None = None) -> dict:
    """Sign like SendGrid: base64 DER ECDSA-SHA256 signature over timestamp + raw payload."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": ts,
        "Content-Type": "application/json",
    }


def whatsapp_headers(body: bytes, secret: str = APP_SECRET) -> dict:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def sendgrid_batch(n: int = 3, prefix: str = "m") -> bytes:
    events = [
        {
            "email": f"ana{i}@example.com",
            "timestamp": 1764147600 + i,
            "event": "delivered",
            "sg_event_id": f"sg-{prefix}-{i}",
            "sg_message_id": f"{prefix}{i}.filter0001",
            "idempotency_key": f"key-{i}",
        }
        for i in range(n)
    ]
    # SendGrid's own compact serialization; re-serializing changes bytes (and breaks the signature).
    return json.dumps(events, separators=(",", ":")).encode()


def landed_lines(home: Path, stream: str | None = None) -> list[dict]:
    root = home / "landing"
    pattern = f"{stream}/*.jsonl" if stream else "*/*.jsonl"
    return [
        orjson.loads(line) for path in sorted(root.glob(pattern)) for line in path.read_bytes().splitlines()
    ]


def nothing_landed(home: Path) -> bool:
    landing = list((home / "landing").glob("*/*.jsonl*"))
    quarantine = list((home / "intake" / "quarantine").glob("*/*"))
    return not landing and not quarantine


@pytest.fixture
def keys():
    return _keypair()


@pytest.fixture
def make_client(tmp_path: Path, keys):
    def make(**overrides) -> tuple[TestClient, Path]:
        fields = dict(
            home=tmp_path,
            warehouse_url=f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
            sendgrid_public_key=keys[1],
            whatsapp_verify_token=VERIFY_TOKEN,
            whatsapp_app_secret=APP_SECRET,
            intake_token=TOKEN,
        )
        fields.update(overrides)
        return TestClient(create_app(IntakeConfig(**fields))), tmp_path

    return make


@pytest.fixture
def client(make_client):
    return make_client()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


# --- SendGrid ------------------------------------------------------------------------------------


def test_sendgrid_signed_batch_lands_in_landing_format(client, keys) -> None:
    app_client, home = client
    body = sendgrid_batch(3)
    response = app_client.post("/webhooks/sendgrid", content=body, headers=sendgrid_headers(keys[0], body))
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3
    lines = landed_lines(home, "sendgrid")
    assert len(lines) == 3
    for line in lines:
        parsed = parse_event_line(orjson.dumps(line), "sendgrid")  # the loader accepts every line
        assert parsed.event_type == "email_delivered" and parsed.source == "sendgrid"
    assert lines[0]["properties"]["idempotency_key"] == "key-0"
    assert not list((home / "landing" / "sendgrid").glob("*.tmp"))


def test_forged_sendgrid_signature_is_rejected(client) -> None:
    app_client, home = client
    other_private, _ = _keypair()
    body = sendgrid_batch()
    response = app_client.post(
        "/webhooks/sendgrid", content=body, headers=sendgrid_headers(other_private, body)
    )
    assert response.status_code == 401
    assert "signature" in response.json()["detail"]
    assert nothing_landed(home)


def test_one_changed_byte_is_rejected(client, keys) -> None:
    app_client, home = client
    body = sendgrid_batch()
    headers = sendgrid_headers(keys[0], body)
    tampered = body.replace(b"ana0@", b"anb0@", 1)
    assert len(tampered) == len(body) and tampered != body
    assert app_client.post("/webhooks/sendgrid", content=tampered, headers=headers).status_code == 401
    assert nothing_landed(home)


def test_reserialized_json_is_rejected(client, keys) -> None:
    app_client, home = client
    body = sendgrid_batch()
    headers = sendgrid_headers(keys[0], body)
    reserialized = json.dumps(json.loads(body)).encode()  # same data, different bytes (spaces)
    assert reserialized != body
    assert app_client.post("/webhooks/sendgrid", content=reserialized, headers=headers).status_code == 401
    assert nothing_landed(home)


@pytest.mark.parametrize("age", [301, -301, 86400])
def test_timestamp_outside_the_window_is_rejected(client, keys, age: int) -> None:
    app_client, home = client
    body = sendgrid_batch()
    headers = sendgrid_headers(keys[0], body, timestamp=int(time.time()) - age)
    response = app_client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 401
    assert "window" in response.json()["detail"]
    assert nothing_landed(home)


@pytest.mark.parametrize(
    "drop", ["X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"]
)
def test_missing_signature_headers_are_rejected(client, keys, drop: str) -> None:
    app_client, home = client
    body = sendgrid_batch()
    headers = sendgrid_headers(keys[0], body)
    del headers[drop]
    assert app_client.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 401
    assert nothing_landed(home)


def test_garbage_signature_is_rejected_not_a_server_error(client, keys) -> None:
    app_client, home = client
    body = sendgrid_batch()
    headers = sendgrid_headers(keys[0], body)
    for garbage in ("not base64!!", base64.b64encode(b"short").decode(), ""):
        headers["X-Twilio-Email-Event-Webhook-Signature"] = garbage
        assert app_client.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 401
    assert nothing_landed(home)


def test_replay_lands_nothing_new(client, keys) -> None:
    app_client, home = client
    body = sendgrid_batch(4)
    headers = sendgrid_headers(keys[0], body)
    first = app_client.post("/webhooks/sendgrid", content=body, headers=headers).json()
    again = app_client.post("/webhooks/sendgrid", content=body, headers=headers).json()
    assert (first["accepted"], first["duplicates"]) == (4, 0)
    assert (again["accepted"], again["duplicates"]) == (0, 4)
    assert len(landed_lines(home, "sendgrid")) == 4


def test_resend_with_new_sg_event_id_is_a_duplicate(client, keys) -> None:
    app_client, home = client
    body = sendgrid_batch(2)
    app_client.post("/webhooks/sendgrid", content=body, headers=sendgrid_headers(keys[0], body))
    resent = json.loads(body)
    for event in resent:
        event["sg_event_id"] += "-retry"
    resent_body = json.dumps(resent).encode()
    result = app_client.post(
        "/webhooks/sendgrid", content=resent_body, headers=sendgrid_headers(keys[0], resent_body)
    ).json()
    assert (result["accepted"], result["duplicates"]) == (0, 2)
    assert len(landed_lines(home, "sendgrid")) == 2


def test_missing_sendgrid_key_fails_closed(make_client, keys) -> None:
    app_client, home = make_client(sendgrid_public_key=None)
    body = sendgrid_batch()
    response = app_client.post("/webhooks/sendgrid", content=body, headers=sendgrid_headers(keys[0], body))
    assert response.status_code == 503
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY" in response.json()["detail"]
    assert nothing_landed(home)


def test_invalid_sendgrid_events_are_quarantined_with_reason(client, keys) -> None:
    app_client, home = client
    events = json.loads(sendgrid_batch(2)) + [{"event": "open"}, "not an object"]
    body = json.dumps(events).encode()
    result = app_client.post(
        "/webhooks/sendgrid", content=body, headers=sendgrid_headers(keys[0], body)
    ).json()
    assert (result["accepted"], result["duplicates"], result["quarantined"]) == (2, 0, 2)
    assert [r["index"] for r in result["rejections"]] == [2, 3]
    quarantined = [
        orjson.loads(line)
        for path in (home / "intake" / "quarantine" / "sendgrid").glob("*.jsonl")
        for line in path.read_bytes().splitlines()
    ]
    assert {q["index"] for q in quarantined} == {2, 3}
    assert all(q["reason"] for q in quarantined)


# --- WhatsApp ------------------------------------------------------------------------------------


def whatsapp_payload() -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "PNID"},
                            "contacts": [{"profile": {"name": "Ana"}, "wa_id": "447700900123"}],
                            "messages": [
                                {
                                    "from": "447700900123",
                                    "id": "wamid.in1",
                                    "timestamp": "1764147600",
                                    "type": "text",
                                    "text": {"body": "Hi, tell me more"},
                                },
                                {
                                    "from": "447700900123",
                                    "id": "wamid.in2",
                                    "timestamp": "1764147601",
                                    "type": "text",
                                    "text": {"body": " stop "},
                                },
                                {
                                    "from": "447700900124",
                                    "id": "wamid.in3",
                                    "timestamp": "1764147602",
                                    "type": "button",
                                    "button": {"text": "UNSUBSCRIBE", "payload": "x"},
                                },
                                {
                                    "from": "447700900123",
                                    "id": "wamid.in4",
                                    "timestamp": "1764147603",
                                    "type": "text",
                                    "text": {"body": "START"},
                                },
                            ],
                        },
                    },
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": "PNID"},
                            "statuses": [
                                {
                                    "id": "wamid.out1",
                                    "status": s,
                                    "timestamp": str(1764147600 + n),
                                    "recipient_id": "447700900123",
                                }
                                for n, s in enumerate(["sent", "delivered", "read", "failed"])
                            ],
                        },
                    },
                ],
            }
        ],
    }


def test_whatsapp_handshake(make_client) -> None:
    app_client, _ = make_client()
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    response = app_client.get("/webhooks/whatsapp", params=params)
    assert response.status_code == 200 and response.text == "1158201444"
    wrong = app_client.get("/webhooks/whatsapp", params={**params, "hub.verify_token": "nope"})
    assert wrong.status_code == 403
    unset, _ = make_client(whatsapp_verify_token=None)
    missing = unset.get("/webhooks/whatsapp", params=params)
    assert missing.status_code == 503 and "WHATSAPP_VERIFY_TOKEN" in missing.json()["detail"]


def test_whatsapp_statuses_messages_and_keywords(client) -> None:
    app_client, home = client
    body = orjson.dumps(whatsapp_payload())
    result = app_client.post("/webhooks/whatsapp", content=body, headers=whatsapp_headers(body)).json()
    assert (result["accepted"], result["quarantined"]) == (8, 0)
    types = sorted(line["event_type"] for line in landed_lines(home, "whatsapp"))
    assert types == sorted(
        [
            "whatsapp_inbound",
            "whatsapp_opt_out",
            "whatsapp_opt_out",
            "whatsapp_opt_in",
            "whatsapp_sent",
            "whatsapp_delivered",
            "whatsapp_read",
            "whatsapp_failed",
        ]
    )
    assert {line["phone"] for line in landed_lines(home, "whatsapp")} == {"+447700900123", "+447700900124"}
    again = app_client.post("/webhooks/whatsapp", content=body, headers=whatsapp_headers(body)).json()
    assert (again["accepted"], again["duplicates"]) == (0, 8)


@pytest.mark.parametrize("how", ["forged", "changed_byte", "missing"])
def test_whatsapp_bad_signature_is_rejected(client, how: str) -> None:
    app_client, home = client
    body = orjson.dumps(whatsapp_payload())
    headers = whatsapp_headers(body, secret="wrong" if how == "forged" else APP_SECRET)
    if how == "changed_byte":
        body = body.replace(b"wamid.in1", b"wamid.in9")
    if how == "missing":
        del headers["X-Hub-Signature-256"]
    assert app_client.post("/webhooks/whatsapp", content=body, headers=headers).status_code == 401
    assert nothing_landed(home)


def test_whatsapp_missing_secret_fails_closed(make_client) -> None:
    app_client, home = make_client(whatsapp_app_secret=None)
    body = orjson.dumps(whatsapp_payload())
    response = app_client.post("/webhooks/whatsapp", content=body, headers=whatsapp_headers(body))
    assert response.status_code == 503 and "WHATSAPP_APP_SECRET" in response.json()["detail"]
    assert nothing_landed(home)


# --- bearer endpoints ------------------------------------------------------------------------------


def _product_event(i: int, **extra) -> dict:
    return {
        "event_id": f"e{i}",
        "event_type": "login",
        "occurred_at": "2026-11-20T09:15:00Z",
        "product_id": "atlas",
        "email": f"u{i}@example.com",
        **extra,
    }


@pytest.mark.parametrize("path", ["/events", "/events/delivery", "/webhooks/chatbot", "/leads"])
def test_bearer_endpoints_reject_missing_or_wrong_token(client, path: str) -> None:
    app_client, home = client
    body = {"events": [_product_event(1)]}
    assert app_client.post(path, json=body).status_code == 401
    assert app_client.post(path, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert nothing_landed(home)


def test_bearer_unset_fails_closed(make_client) -> None:
    app_client, home = make_client(intake_token=None)
    response = app_client.post("/events", json={"events": [_product_event(1)]}, headers=AUTH)
    assert response.status_code == 503 and "LEADFLOW_INTAKE_TOKEN" in response.json()["detail"]
    assert nothing_landed(home)


def test_product_events_counts_duplicates_and_quarantine(client) -> None:
    app_client, home = client
    events = [
        _product_event(1),
        _product_event(2),
        _product_event(1),
        {"event_id": "bad", "event_type": "login", "occurred_at": "yesterday"},
        {"event_type": "x"},
    ]
    result = app_client.post("/events", json={"events": events}, headers=AUTH).json()
    assert (result["accepted"], result["duplicates"], result["quarantined"]) == (2, 1, 2)
    reasons = {r["index"]: r["reason"] for r in result["rejections"]}
    assert "ISO 8601" in reasons[3] and "event_id" in reasons[4]
    assert [line["event_id"] for line in landed_lines(home, "product_events")] == ["e1", "e2"]


def test_chatbot_and_delivery_results(client) -> None:
    app_client, home = client
    messages = [
        {
            "message_id": "c1",
            "conversation_id": "conv",
            "direction": "inbound",
            "sent_at": "2026-11-20T09:00:00Z",
            "text": "hello",
            "user_id": "u-1",
            "product_id": "atlas",
        },
        {
            "message_id": "c2",
            "conversation_id": "conv",
            "direction": "sideways",
            "sent_at": "2026-11-20T09:00:00Z",
        },
    ]
    chat = app_client.post("/webhooks/chatbot", json={"messages": messages}, headers=AUTH).json()
    assert (chat["accepted"], chat["quarantined"]) == (1, 1)
    assert landed_lines(home, "chatbot")[0]["event_type"] == "chatbot_inbound"
    results = [
        {"idempotency_key": "k1", "status": "accepted", "channel": "email", "provider_message_id": "p1"},
        {"idempotency_key": "k2", "status": "failed", "channel": "whatsapp", "reason": "131026"},
        {"idempotency_key": "k3", "status": "duplicate"},
    ]
    delivery = app_client.post(
        "/events/delivery", json={"batch_id": "b1", "results": results}, headers=AUTH
    ).json()
    assert (delivery["accepted"], delivery["duplicates"]) == (2, 1)
    lines = landed_lines(home, "delivery")
    assert sorted(line["event_type"] for line in lines) == ["failed", "sent"]
    assert {line["properties"]["idempotency_key"] for line in lines} == {"k1", "k2"}
    repeat = app_client.post(
        "/events/delivery", json={"batch_id": "b1", "results": results}, headers=AUTH
    ).json()
    assert (repeat["accepted"], repeat["duplicates"]) == (0, 3)


# --- limits and errors ---------------------------------------------------------------------------


def test_oversized_body_is_413_with_the_limit(make_client) -> None:
    app_client, home = make_client(max_body_bytes=1000)
    body = {"events": [_product_event(i) for i in range(50)]}
    response = app_client.post("/events", json=body, headers=AUTH)
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["detail"]

    def chunks():
        for _ in range(20):
            yield b" " * 100

    streamed = app_client.post(
        "/events", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert nothing_landed(home)


def test_malformed_json_is_a_clear_4xx(client, keys) -> None:
    app_client, home = client
    body = b"{not json"
    response = app_client.post("/webhooks/sendgrid", content=body, headers=sendgrid_headers(keys[0], body))
    assert response.status_code == 400 and "JSON" in response.json()["detail"]
    response = app_client.post("/events", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422 and isinstance(response.json()["detail"], str)
    assert nothing_landed(home)


def test_config_from_env(tmp_path: Path) -> None:
    config = IntakeConfig.from_env(
        {
            "LEADFLOW_HOME": str(tmp_path),
            "LEADFLOW_INTAKE_MAX_BODY_BYTES": "2048",
            "LEADFLOW_INTAKE_TOKEN": "t",
            "SENDGRID_WEBHOOK_PUBLIC_KEY": " key ",
        }
    )
    assert config.home == tmp_path and config.max_body_bytes == 2048 and config.tolerance_seconds == 300
    assert config.warehouse_url == f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    assert config.sendgrid_public_key == "key" and config.whatsapp_app_secret is None
    assert "key" not in repr(config)
    from orchestration.settings import SettingsError

    with pytest.raises(SettingsError, match="LEADFLOW_INTAKE_MAX_BODY_BYTES"):
        IntakeConfig.from_env({"LEADFLOW_HOME": str(tmp_path), "LEADFLOW_INTAKE_MAX_BODY_BYTES": "lots"})


def test_unserializable_items_are_quarantined_not_500(client) -> None:
    app_client, home = client
    huge = 2**70  # valid JSON, but beyond what orjson (and most JSON consumers) read exactly
    results = [
        {"idempotency_key": "k1", "status": "sent", "properties": {"n": huge}},
        {"idempotency_key": "k2", "status": "sent"},
    ]
    body = json.dumps({"results": results}).encode()
    response = app_client.post(
        "/events/delivery", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert (response.json()["accepted"], response.json()["quarantined"]) == (1, 1)
    [quarantined] = (home / "intake" / "quarantine" / "delivery").glob("*.jsonl")
    assert str(huge) in quarantined.read_text()


def test_openapi_lists_every_endpoint(client) -> None:
    app_client, _ = client
    paths = app_client.get("/openapi.json").json()["paths"]
    assert set(paths) == {
        "/webhooks/sendgrid",
        "/webhooks/whatsapp",
        "/webhooks/chatbot",
        "/events",
        "/events/delivery",
        "/leads",
        "/leads/{lead_id}",
        "/leads/{lead_id}/score",
        "/leads/{lead_id}/stages",
        "/leads/{lead_id}/events",
        "/leads/{lead_id}/stage",
        "/health",
        "/metrics/summary",
        "/metrics/funnel",
        "/metrics/time-to-conversion",
        "/metrics/attribution",
        "/metrics/messages",
        "/metrics/holdout",
    }
    assert set(paths["/webhooks/whatsapp"]) == {"get", "post"}
