"""The v1 contract of every endpoint (DESIGN.md, HTTP API v1)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.checkpoint import parse_checkpoint, verify_note
from audit.log import read_head
from audit.online import verify_log
from consent.models import ConsentEvent
from core.errors import Unauthenticated
from gate.context import Services
from tests.api.conftest import MEMBER, auth, grant
from tests.conftest import Keys
from vault.models import VaultField


def test_create_member_returns_an_opaque_id_and_stores_only_ciphertext(
    app_client: TestClient, keys: Keys, session: Session
) -> None:
    response = app_client.post("/v1/members", json=MEMBER, headers=auth(keys.crm))
    assert response.status_code == 201
    member_id = response.json()["id"]
    assert len(member_id) == 24 and member_id.isalnum()
    blobs = session.scalars(
        select(VaultField.value_ct).where(VaultField.member_id == member_id)
    ).all()
    assert len(blobs) == len(MEMBER)
    for blob in blobs:
        assert "张三".encode() not in blob and b"13812345678" not in blob


def test_patch_re_encrypts_and_the_next_read_sees_the_new_value(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    response = app_client.patch(
        f"/v1/members/{member_id}",
        json={"phone": "13900001111", "email": None},
        headers=auth(keys.crm),
    )
    assert response.status_code == 200, response.text
    body = app_client.get(
        f"/v1/members/{member_id}?purpose=delivery", headers=auth(keys.crm)
    ).json()
    assert body["fields"]["phone"] == "+8613900001111"
    cs = app_client.get(
        f"/v1/members/{member_id}?purpose=customer_service", headers=auth(keys.crm)
    ).json()
    assert "email" not in cs["fields"]
    old = app_client.post(
        "/v1/members/lookup",
        json={"phone": "13812345678", "purpose": "delivery"},
        headers=auth(keys.crm),
    )
    assert old.json()["ids"] == []


def test_clearing_a_required_field_is_refused(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    response = app_client.patch(
        f"/v1/members/{member_id}", json={"phone": None}, headers=auth(keys.crm)
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "phone"


def test_lookup_by_phone_or_email_in_any_written_form(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    for body in (
        {"phone": "+86 138-1234-5678"},
        {"phone": "13812345678"},
        {"email": " ZHANG.san@example.COM "},
    ):
        response = app_client.post(
            "/v1/members/lookup",
            json={**body, "purpose": "customer_service"},
            headers=auth(keys.crm),
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"ids": [member_id]}
        assert "Audit-Seq" in response.headers


def test_lookup_returns_only_members_the_purpose_admits(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    refused = app_client.post(
        "/v1/members/lookup",
        json={"phone": "13812345678", "purpose": "marketing_sms"},
        headers=auth(keys.sms),
    )
    assert refused.json() == {"ids": []}
    grant(app_client, keys.app, member_id, "marketing_sms")
    admitted = app_client.post(
        "/v1/members/lookup",
        json={"phone": "13812345678", "purpose": "marketing_sms"},
        headers=auth(keys.sms),
    )
    assert admitted.json() == {"ids": [member_id]}
    entries = app_client.get(
        "/v1/audit/entries?action=member.lookup", headers=auth(keys.auditor)
    ).json()
    assert [(e["members"], e["detail"]["matched"]) for e in entries["entries"]] == [
        ([], 1),
        ([member_id], 1),
    ]


def test_consent_grant_returns_events_and_a_kantara_receipt(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    body = grant(app_client, keys.app, member_id, "marketing_sms")
    [event] = body["events"]
    assert event["status"] == "granted" and event["notice_version"] == "privacy-2026-01"
    receipt = body["receipt"]
    for key in (
        "version",
        "jurisdiction",
        "consentTimestamp",
        "collectionMethod",
        "consentReceiptID",
        "piiPrincipalId",
        "piiControllers",
        "policyUrl",
        "services",
        "sensitive",
        "spiCat",
    ):
        assert key in receipt
    assert receipt["piiPrincipalId"] == member_id
    assert receipt["collectionMethod"] == "app"
    assert receipt["consentReceiptID"] == event["receipt_id"]
    ext = receipt["extensions"]["memberguard"]["purposes"]["marketing_sms"]
    assert ext["legalBasis"] == "consent" and ext["noticeVersion"] == "privacy-2026-01"
    assert len(ext["noticeSha256"]) == 64


def test_separate_consent_receipt_names_its_ground(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    response = app_client.post(
        f"/v1/members/{member_id}/consents",
        json={
            "purpose": "identity_verification",
            "status": "granted",
            "channel": "pos",
            "collected_at": "2026-11-01T10:00:00Z",
        },
        headers=auth(keys.app),
    )
    assert response.status_code == 201, response.text
    receipt = response.json()["receipt"]
    assert receipt["sensitive"] is True and receipt["spiCat"] == ["government_id"]
    ext = receipt["extensions"]["memberguard"]["purposes"]["identity_verification"]
    assert ext["separateConsentGround"] == "sensitive"


def test_consent_state_follows_the_latest_collected_event(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    grant(app_client, keys.app, member_id, "marketing_sms", at="2026-11-01T10:00:00Z")
    grant(
        app_client,
        keys.crm,
        member_id,
        "marketing_sms",
        status="withdrawn",
        at="2026-11-03T10:00:00Z",
    )
    # An offline till syncs an older grant late: it must not revive the consent.
    grant(app_client, keys.app, member_id, "marketing_sms", at="2026-11-02T10:00:00Z")
    state = app_client.get(f"/v1/members/{member_id}/consents", headers=auth(keys.crm))
    assert state.status_code == 200
    assert state.json()["purposes"]["marketing_sms"]["status"] == "withdrawn"


def test_identity_verification_needs_its_separate_consent(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    refused = app_client.get(
        f"/v1/members/{member_id}?purpose=identity_verification", headers=auth(keys.pos)
    )
    assert refused.status_code == 403 and refused.json()["type"] == "consent-required"
    granted = app_client.post(
        f"/v1/members/{member_id}/consents",
        json={
            "purposes": ["identity_verification"],
            "status": "granted",
            "channel": "pos",
            "collected_at": "2026-11-01T10:00:00Z",
        },
        headers=auth(keys.app),
    )
    assert granted.status_code == 201, granted.text
    allowed = app_client.get(
        f"/v1/members/{member_id}?purpose=identity_verification", headers=auth(keys.pos)
    )
    assert allowed.json()["fields"] == {"name": "张三", "id_number": "11010519491231002X"}


def test_analytics_read_gives_views_and_a_per_client_pseudonym(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    grant(app_client, keys.app, member_id, "analytics")
    body = app_client.get(
        f"/v1/members/{member_id}?purpose=analytics", headers=auth(keys.analytics)
    ).json()
    # Generalised views only: a band, a year, enums.
    assert body["fields"] == {
        "gender": "男",
        "tier": "金卡",
        "points_balance": "1000-4999",
        "registered_at": "2021",
        "channel": "app",
    }
    export = app_client.get("/v1/members?purpose=analytics", headers=auth(keys.analytics))
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    # One member is a group of one: suppressed (k = 5), and the trailer says so.
    [trailer] = [json.loads(x) for x in export.text.splitlines()]
    assert trailer["trailer"]["released"] == 0
    assert trailer["trailer"]["suppressed"]["small_groups"] == 1


def test_export_refused_for_a_purpose_not_granted(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    response = app_client.get("/v1/members?purpose=marketing_sms", headers=auth(keys.analytics))
    assert response.status_code == 403
    assert response.json()["type"] == "purpose-not-allowed"
    assert "Audit-Seq" in response.headers


def test_audit_entries_filter_and_page_with_an_opaque_cursor(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    for _ in range(5):
        app_client.get(f"/v1/members/{member_id}?purpose=membership", headers=auth(keys.crm))
    seen: list[int] = []
    cursor = None
    while True:
        params = {
            "member": member_id,
            "purpose": "membership",
            "limit": 2,
            **({"cursor": cursor} if cursor else {}),
        }
        page = app_client.get("/v1/audit/entries", params=params, headers=auth(keys.auditor)).json()
        seen += [e["seq"] for e in page["entries"]]
        assert all(
            e["purpose"] == "membership" and member_id in e["members"] for e in page["entries"]
        )
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and seen == sorted(seen)
    bad = app_client.get("/v1/audit/entries?cursor=nonsense", headers=auth(keys.auditor))
    assert bad.status_code == 422 and bad.json()["type"] == "invalid-cursor"


def test_audit_entries_export_as_ndjson_and_csv(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    app_client.get(f"/v1/members/{member_id}?purpose=membership", headers=auth(keys.crm))
    nd = app_client.get(
        f"/v1/audit/entries?member={member_id}",
        headers={**auth(keys.auditor), "Accept": "application/x-ndjson"},
    )
    lines = [json.loads(x) for x in nd.text.splitlines()]
    assert [e["action"] for e in lines] == ["member.create", "member.read"]
    as_csv = app_client.get(
        f"/v1/audit/entries?member={member_id}",
        headers={**auth(keys.auditor), "Accept": "text/csv"},
    )
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["action"] for r in rows] == ["member.create", "member.read"]
    assert rows[1]["members"] == member_id


def test_audit_head_matches_the_log(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    body = app_client.get("/v1/audit/head", headers=auth(keys.auditor)).json()
    head = read_head(session)
    assert (body["size"], body["head_hash"]) == (head.size, head.head_hash)
    key = app_client.get("/v1/audit/public-key", headers=auth(keys.auditor)).json()["verifier_key"]
    signed = parse_checkpoint(verify_note(body["checkpoint"], verifier=key))
    assert 0 < signed.size <= head.size
    assert verify_log(session).ok


def test_clients_register_list_and_revoke(app_client: TestClient, keys: Keys) -> None:
    created = app_client.post(
        "/v1/clients",
        json={"name": "ecommerce", "role": "client", "purposes": ["delivery"]},
        headers=auth(keys.admin),
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["key"].startswith("mg_") and body["purposes"] == ["delivery"]
    listed = app_client.get("/v1/clients", headers=auth(keys.admin)).json()
    assert "ecommerce" in [c["name"] for c in listed]
    assert body["key"] not in json.dumps(listed)
    assert (
        app_client.get("/v1/members?purpose=delivery", headers=auth(body["key"])).status_code == 200
    )
    assert (
        app_client.delete(f"/v1/clients/{body['id']}", headers=auth(keys.admin)).status_code == 204
    )
    assert (
        app_client.get("/v1/members?purpose=delivery", headers=auth(body["key"])).status_code == 401
    )
    again = app_client.delete(f"/v1/clients/{body['id']}", headers=auth(keys.admin))
    assert again.status_code == 409


def test_duplicate_client_name_is_a_conflict(app_client: TestClient, keys: Keys) -> None:
    response = app_client.post(
        "/v1/clients", json={"name": "crm", "role": "client"}, headers=auth(keys.admin)
    )
    assert response.status_code == 409 and response.json()["type"] == "client-exists"


def test_health_endpoints_need_no_key_and_everything_else_does(app_client: TestClient) -> None:
    assert app_client.get("/healthz").json() == {"status": "ok"}
    ready = app_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "keys": "ok"}
    for method, path in [
        ("GET", "/v1/members/x?purpose=delivery"),
        ("POST", "/v1/members"),
        ("GET", "/v1/audit/entries"),
        ("GET", "/v1/audit/head"),
        ("GET", "/v1/clients"),
        ("DELETE", "/v1/clients/x"),
        ("POST", "/v1/members/lookup"),
        ("GET", "/v1/members?purpose=x"),
    ]:
        response = app_client.request(method, path)
        assert response.status_code == 401, (method, path)
        assert response.json()["type"] == "unauthenticated"


def test_openapi_documents_every_v1_path_for_any_valid_key(
    app_client: TestClient, keys: Keys
) -> None:
    assert app_client.get("/openapi.json").status_code == 401
    assert app_client.get("/docs").status_code == 401
    paths = app_client.get("/openapi.json", headers=auth(keys.sms)).json()["paths"]
    for path in (
        "/v1/members",
        "/v1/members/{member_id}",
        "/v1/members/lookup",
        "/v1/members/{member_id}/consents",
        "/v1/audit/entries",
        "/v1/audit/head",
        "/v1/clients",
        "/v1/clients/{client_id}",
        "/healthz",
        "/readyz",
    ):
        assert path in paths
    assert app_client.get("/docs", headers=auth(keys.auditor)).status_code == 200


def test_every_consent_change_is_audited_in_the_same_transaction(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    body = grant(app_client, keys.app, member_id, "marketing_email")
    seq = body["events"][0]["audit_seq"]
    entries = app_client.get(
        f"/v1/audit/entries?member={member_id}&action=consent.change", headers=auth(keys.auditor)
    ).json()["entries"]
    assert [e["seq"] for e in entries] == [seq]
    assert entries[0]["detail"]["receipt_id"] == body["receipt"]["consentReceiptID"]
    assert (
        session.scalar(
            select(func.count()).select_from(ConsentEvent).where(ConsentEvent.audit_seq == seq)
        )
        == 1
    )


def test_a_grant_stamped_in_the_future_cannot_outrank_a_later_withdrawal(
    app_client: TestClient, keys: Keys, member_id: str, services: Services
) -> None:
    from datetime import timedelta

    ahead = (services.clock() + timedelta(minutes=4)).isoformat()
    grant(app_client, keys.app, member_id, "marketing_sms", at=ahead)
    # Collected after the grant was recorded, but stamped before the grant's clock.
    now = services.clock().isoformat()
    withdrawn = grant(app_client, keys.app, member_id, "marketing_sms", status="withdrawn", at=now)
    assert withdrawn["state"]["marketing_sms"]["status"] == "withdrawn"
    read = app_client.get(f"/v1/members/{member_id}?purpose=marketing_sms", headers=auth(keys.sms))
    assert read.status_code == 403


def test_lookup_is_refused_for_a_field_the_purpose_cannot_see_or_a_pseudonymous_purpose(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    grant(app_client, keys.app, member_id, "analytics")
    grant(app_client, keys.app, member_id, "marketing_sms")
    for key, body in (
        (keys.analytics, {"phone": "13812345678", "purpose": "analytics"}),
        (keys.sms, {"email": "zhang.san@example.com", "purpose": "marketing_sms"}),
    ):
        response = app_client.post("/v1/members/lookup", json=body, headers=auth(key))
        assert response.status_code == 403
        assert response.json()["type"] == "lookup-not-allowed"
        assert member_id not in response.text
        assert "Audit-Seq" in response.headers


def test_a_running_export_stops_when_its_client_is_revoked(
    app_client: TestClient, keys: Keys, services: Services
) -> None:
    from gate.export import export_members
    from principals.clients import authenticate

    for n in range(20):
        created = app_client.post(
            "/v1/members",
            json={**MEMBER, "phone": f"139{n:08d}", "email": f"m{n}@example.com"},
            headers=auth(keys.crm),
        )
        grant(app_client, keys.app, created.json()["id"], "personalization")
    with services.reading() as session:
        actor = authenticate(session, keys.recs)
    export = export_members(services, actor=actor, purpose="personalization", request_id=None)
    first = next(export.lines)
    assert "id" in first
    assert (
        app_client.delete(f"/v1/clients/{keys.ids['recs']}", headers=auth(keys.admin)).status_code
        == 204
    )
    with pytest.raises(Unauthenticated):
        list(export.lines)
    assert export.stats["released"] <= services.settings.export_batch_size


def test_access_log_lists_every_touch_with_unbroken_back_links(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    grant(app_client, keys.app, member_id, "personalization")
    app_client.get(f"/v1/members/{member_id}?purpose=customer_service", headers=auth(keys.crm))
    app_client.get(
        f"/v1/members/{member_id}?purpose=marketing_sms", headers=auth(keys.sms)
    )  # refused
    app_client.get("/v1/members?purpose=personalization", headers=auth(keys.recs))  # export
    body = app_client.get(f"/v1/members/{member_id}/access-log", headers=auth(keys.auditor)).json()
    actions = [(e["action"], e["decision"]) for e in body["entries"]]
    assert actions == [
        ("member.create", "permit"),
        ("consent.change", "permit"),
        ("member.read", "permit"),
        ("member.read", "deny"),
        ("member.export", "permit"),
    ]
    previous = 0
    for item in body["entries"]:
        assert item["prev"] == previous
        previous = item["seq"]
    assert body["checkpoint"] is not None
    assert (
        app_client.get(f"/v1/members/{member_id}/access-log", headers=auth(keys.crm)).status_code
        == 403
    )


def test_every_entry_records_who_acted_and_of_what_kind(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    app_client.get(f"/v1/members/{member_id}?purpose=customer_service", headers=auth(keys.crm))
    entries = app_client.get(
        "/v1/audit/entries", params={"limit": 1000}, headers=auth(keys.auditor)
    ).json()["entries"]
    kinds = {(e["action"], e["actor"], e["actor_role"], e["actor_kind"]) for e in entries}
    # The fixture's clients were registered by the operator at the CLI (a person: staff).
    assert ("client.create", "operator", "admin", "staff") in kinds
    assert ("member.create", keys.ids["crm"], "client", "client") in kinds
    assert ("member.read", keys.ids["crm"], "client", "client") in kinds
    # Only the log's own checkpoints have no actor.
    assert {e["action"] for e in entries if e["actor_kind"] is None} <= {"audit.checkpoint"}


# -- who may record a grant (separation of duties) ---------------------------------


def consent_post(client: TestClient, key: str, member_id: str, purpose: str, status: str):
    return client.post(
        f"/v1/members/{member_id}/consents",
        json={
            "purposes": [purpose],
            "status": status,
            "channel": "pos",
            "collected_at": "2026-11-01T10:00:00Z",
        },
        headers=auth(key),
    )


def test_a_client_may_not_grant_itself_a_purpose_it_reads(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    # The review's attack: crm holds marketing_sms and consents:write.
    response = consent_post(app_client, keys.crm, member_id, "marketing_sms", "granted")
    assert response.status_code == 403
    assert response.json()["type"] == "consent-self-grant"
    assert "marketing_sms" in response.json()["detail"]
    read = app_client.get(f"/v1/members/{member_id}?purpose=marketing_sms", headers=auth(keys.crm))
    assert read.json()["type"] == "consent-required"
    assert session.scalar(select(func.count()).select_from(ConsentEvent)) == 0
    # A grant for a purpose it does not read is a touchpoint's job, and
    # anyone's withdrawal or refusal is recorded.
    assert consent_post(app_client, keys.crm, member_id, "analytics", "granted").status_code == 201
    for status in ("withdrawn", "refused"):
        assert (
            consent_post(app_client, keys.crm, member_id, "marketing_sms", status).status_code
            == 201
        )


@pytest.mark.parametrize("purpose", ["identity_verification", "partner_sharing"])
def test_a_separate_consent_is_granted_only_by_a_client_that_only_collects_consent(
    app_client: TestClient, keys: Keys, member_id: str, purpose: str
) -> None:
    # crm reads neither purpose, but it reads others: it is not a collector.
    response = consent_post(app_client, keys.crm, member_id, purpose, "granted")
    assert response.status_code == 403
    assert response.json()["type"] == "separate-consent-collector-only"
    assert consent_post(app_client, keys.app, member_id, purpose, "granted").status_code == 201
    assert consent_post(app_client, keys.crm, member_id, purpose, "withdrawn").status_code == 201
