"""The gated read: decide, record, release (HTTP contract)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.app import create_app
from audit.online import verify_log
from audit.queries import EntryFilter, page_entries
from gate.context import Services
from tests.api.conftest import auth, grant
from tests.conftest import Keys


def test_customer_service_read_is_masked_and_names_its_audit_entry(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    response = app_client.get(
        f"/v1/members/{member_id}?purpose=customer_service", headers=auth(keys.crm)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fields"]["name"] == "张*"
    assert body["fields"]["phone"] == "138****5678"
    assert body["fields"]["email"] == "z***@example.com"
    assert body["fields"]["address"] == "广东省深圳市***"
    assert body["fields"]["tier"] == "金卡"
    assert body["withheld"]["id_number"] == "not-needed-for-purpose"
    assert "id_number" not in body["fields"]
    seq = int(response.headers["Audit-Seq"])
    entries, _ = page_entries(
        session, EntryFilter(member=member_id, action="member.read"), cursor=None, limit=10
    )
    assert [e["seq"] for e in entries] == [seq]
    assert entries[0]["decision"] == "permit"
    assert entries[0]["fields"]["phone"] == "masked"


def test_marketing_read_without_consent_is_refused_and_recorded(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    response = app_client.get(
        f"/v1/members/{member_id}?purpose=marketing_sms", headers=auth(keys.sms)
    )
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "consent-required"
    assert "fields" not in response.json()
    seq = int(response.headers["Audit-Seq"])
    entries, _ = page_entries(
        session, EntryFilter(member=member_id, decision="deny"), cursor=None, limit=10
    )
    assert [(e["seq"], e["reason"]) for e in entries] == [(seq, "consent-required")]


def test_withdrawal_takes_effect_on_the_very_next_read(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    grant(app_client, keys.app, member_id, "marketing_sms")
    allowed = app_client.get(
        f"/v1/members/{member_id}?purpose=marketing_sms", headers=auth(keys.sms)
    )
    assert allowed.status_code == 200
    assert allowed.json()["fields"]["phone"] == "+8613812345678"
    grant(
        app_client,
        keys.crm,
        member_id,
        "marketing_sms",
        status="withdrawn",
        at="2026-11-02T10:00:00+08:00",
    )
    refused = app_client.get(
        f"/v1/members/{member_id}?purpose=marketing_sms", headers=auth(keys.sms)
    )
    assert refused.status_code == 403
    assert refused.json()["type"] == "consent-required"
    assert int(refused.headers["Audit-Seq"]) > int(allowed.headers["Audit-Seq"])
    assert verify_log(session).ok


def test_an_app_started_again_after_shutdown_still_serves_reads(
    services: Services, keys: Keys, member_id: str
) -> None:
    app = create_app(services=services)
    url = f"/v1/members/{member_id}?purpose=customer_service"
    for _run in range(2):  # each run of the lifespan ends by closing the read batcher
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get(url, headers=auth(keys.crm))
            assert response.status_code == 200, response.text
