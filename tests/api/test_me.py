"""A signed-in member's own endpoints: /v1/me, its consents and its access log, and who
may call them (only the member's token) and what that token may not call."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.entry import parse_entry
from audit.log import AuditUnavailable
from audit.models import AuditEntry
from audit.uow import AuditedUnitOfWork
from consent.models import ConsentEvent
from gate.context import Services
from tests.api.conftest import MEMBER, auth, grant, sign_in
from tests.conftest import Keys
from vault.members import SealedMember

ME_ENDPOINTS = [
    ("GET", "/v1/me", None),
    ("GET", "/v1/me/consents", None),
    ("POST", "/v1/me/consents", {"purposes": ["marketing_sms"], "status": "withdrawn"}),
    ("GET", "/v1/me/access-log", None),
    ("POST", "/v1/me/logout", None),
]


def own_consent(client: TestClient, token: str, purposes: list[str], status: str) -> Any:
    return client.post(
        "/v1/me/consents", json={"purposes": purposes, "status": status}, headers=auth(token)
    )


def entries(session: Session, action: str) -> list[dict[str, Any]]:
    rows = session.execute(
        select(AuditEntry.entry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
    ).scalars()
    return [parse_entry(bytes(raw)) for raw in rows]


# -- who may call what ----------------------------------------------------------------


def test_the_members_endpoints_need_a_member_token(app_client: TestClient, keys: Keys) -> None:
    for method, path, body in ME_ENDPOINTS:
        missing = app_client.request(method, path, json=body)
        assert missing.status_code == 401, (method, path)
        assert missing.json()["type"] == "unauthenticated"
        unknown = app_client.request(method, path, json=body, headers=auth("mgm_" + "A" * 43))
        assert unknown.status_code == 401, (method, path)
        for key in (keys.crm, keys.app, keys.auditor, keys.admin):
            refused = app_client.request(method, path, json=body, headers=auth(key))
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.json()["type"] == "role-required"


def test_a_member_token_is_refused_by_every_client_staff_and_admin_endpoint(
    app_client: TestClient, member_id: str, member_token: str, session: Session
) -> None:
    m = f"/v1/members/{member_id}"
    calls = [
        ("GET", f"{m}?purpose=membership", None),
        ("GET", f"{m}?purpose=delivery", None),
        ("PATCH", m, {"tier": "钻石"}),
        ("POST", "/v1/members", MEMBER),
        ("GET", "/v1/members?purpose=membership", None),
        ("POST", "/v1/members/lookup", {"phone": MEMBER["phone"], "purpose": "membership"}),
        ("GET", f"{m}/consents", None),
        (
            "POST",
            f"{m}/consents",
            {
                "purposes": ["marketing_sms"],
                "status": "granted",
                "channel": "app",
                "collected_at": "2026-11-01T10:00:00+08:00",
            },
        ),
        ("GET", f"{m}/access-log", None),
        ("GET", "/v1/audit/entries", None),
        ("GET", "/v1/audit/head", None),
        ("GET", "/v1/clients", None),
        ("POST", "/v1/clients", {"name": "mine", "role": "admin"}),
    ]
    size = len(session.execute(select(AuditEntry.seq)).all())
    for method, path, body in calls:
        refused = app_client.request(method, path, json=body, headers=auth(member_token))
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json()["type"] == "role-required"
    assert len(session.execute(select(AuditEntry.seq)).all()) == size
    # An ended member token on the hot read path is unauthenticated, not refused by role.
    assert app_client.post("/v1/me/logout", headers=auth(member_token)).status_code == 204
    ended = app_client.get(f"{m}?purpose=membership", headers=auth(member_token))
    assert ended.status_code == 401 and ended.json()["type"] == "unauthenticated"


# -- the member's fields --------------------------------------------------------------


def test_nothing_is_released_when_the_self_read_cannot_be_recorded(
    app_client: TestClient, member_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[SealedMember] = []

    def fail(self: AuditedUnitOfWork) -> None:
        raise AuditUnavailable("the audit log could not be committed; nothing was released")

    monkeypatch.setattr(AuditedUnitOfWork, "commit", fail)
    monkeypatch.setattr(SealedMember, "open", lambda self, keyring: opened.append(self) or {})
    answer = app_client.get("/v1/me", headers=auth(member_token))
    assert answer.status_code == 503, answer.text
    assert answer.json()["type"] == "audit-unavailable"
    assert MEMBER["name"] not in answer.text
    assert opened == []  # nothing was even decrypted


def test_a_member_sees_only_the_fields_they_have(
    app_client: TestClient, keys: Keys, outbox: Path
) -> None:
    fields = {"name": "李四", "phone": "+8613912340000", "tier": "普通"}
    created = app_client.post("/v1/members", json=fields, headers=auth(keys.crm))
    assert created.status_code == 201, created.text
    token = sign_in(app_client, outbox, phone="13912340000")
    me = app_client.get("/v1/me", headers=auth(token)).json()
    assert me == {"id": created.json()["id"], "fields": fields}


# -- consents ---------------------------------------------------------------------------


def test_the_consent_state_lists_every_consent_purpose_with_what_the_member_needs_to_decide(
    app_client: TestClient, keys: Keys, member_id: str, member_token: str
) -> None:
    grant(app_client, keys.app, member_id, "marketing_sms")
    answer = app_client.get("/v1/me/consents", headers=auth(member_token))
    assert answer.status_code == 200, answer.text
    purposes = answer.json()["purposes"]
    assert set(purposes) == {
        "marketing_sms",
        "marketing_email",
        "birthday_benefits",
        "personalization",
        "analytics",
        "partner_sharing",
        "identity_verification",
    }
    sms = purposes["marketing_sms"]
    assert sms["status"] == "granted" and sms["in_effect"] is True
    assert sms["legal_basis"] == "consent"
    assert sms["description"] == "Send offers to the member by SMS."
    assert sms["notice"] == {
        "version": "privacy-2026-01",
        "url": "https://brand.example/privacy/2026-01",
        "sha256": "6f1c0b0e3b9a7d2c4e8f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f",
    }
    assert sms["separate_consent"] is False
    partner = purposes["partner_sharing"]
    assert partner["status"] is None and partner["in_effect"] is False
    assert partner["separate_consent"] is True
    assert partner["separate_consent_ground"] == "third_party"
    assert partner["third_party"] == "Example Airlines Co., Ltd."


def test_a_grant_under_a_retired_notice_is_shown_but_not_in_effect(
    app_client: TestClient, keys: Keys, member_id: str, member_token: str
) -> None:
    # personalization accepts only privacy-2026-01; an older grant must be given again.
    recorded = app_client.post(
        f"/v1/members/{member_id}/consents",
        json={
            "purposes": ["personalization"],
            "status": "withdrawn",
            "channel": "app",
            "collected_at": "2026-11-01T10:00:00+08:00",
            "notice_version": "privacy-2025-06",
        },
        headers=auth(keys.app),
    )
    assert recorded.status_code == 201, recorded.text
    state = app_client.get("/v1/me/consents", headers=auth(member_token)).json()
    assert state["purposes"]["personalization"]["status"] == "withdrawn"
    assert state["purposes"]["personalization"]["in_effect"] is False


def test_a_member_grants_and_withdraws_their_own_consent_on_the_web_channel(
    app_client: TestClient, member_id: str, member_token: str, session: Session
) -> None:
    granted = own_consent(app_client, member_token, ["marketing_sms", "marketing_email"], "granted")
    assert granted.status_code == 201, granted.text
    body = granted.json()
    assert {e["channel"] for e in body["events"]} == {"web"}
    assert {e["recorded_by"] for e in body["events"]} == {member_id}
    assert body["receipt"]["piiPrincipalId"] == member_id
    assert body["state"]["marketing_sms"]["status"] == "granted"
    (change,) = entries(session, "consent.change")
    assert (change["actor"], change["actor_kind"], change["members"]) == (
        member_id,
        "member",
        [member_id],
    )
    assert int(granted.headers["Audit-Seq"]) == change["seq"]
    state = app_client.get("/v1/me/consents", headers=auth(member_token)).json()["purposes"]
    assert state["marketing_email"]["in_effect"] is True
    withdrawn = own_consent(app_client, member_token, ["marketing_sms"], "withdrawn")
    assert withdrawn.status_code == 201
    assert withdrawn.json()["receipt"] is None
    state = app_client.get("/v1/me/consents", headers=auth(member_token)).json()["purposes"]
    assert state["marketing_sms"]["status"] == "withdrawn"


def test_a_separate_consent_is_granted_alone(
    app_client: TestClient, member_token: str, session: Session
) -> None:
    bundled = own_consent(app_client, member_token, ["partner_sharing", "marketing_sms"], "granted")
    assert bundled.status_code == 422, bundled.text
    assert bundled.json()["type"] == "separate-consent-alone"
    assert bundled.json()["separate_purposes"] == ["partner_sharing"]
    two = own_consent(
        app_client, member_token, ["partner_sharing", "identity_verification"], "granted"
    )
    assert two.status_code == 422 and two.json()["type"] == "separate-consent-alone"
    assert session.execute(select(ConsentEvent.id)).all() == []

    alone = own_consent(app_client, member_token, ["partner_sharing"], "granted")
    assert alone.status_code == 201, alone.text
    # Name, phone and tier are no sensitive personal information; the resident ID is.
    assert (alone.json()["receipt"]["sensitive"], alone.json()["receipt"]["spiCat"]) == (False, [])
    sensitive = own_consent(app_client, member_token, ["identity_verification"], "granted")
    assert sensitive.status_code == 201, sensitive.text
    assert sensitive.json()["receipt"]["sensitive"] is True
    # Withdrawing may name several at once: it must be as easy as granting was.
    withdrawn = own_consent(
        app_client, member_token, ["partner_sharing", "identity_verification"], "withdrawn"
    )
    assert withdrawn.status_code == 201, withdrawn.text


@pytest.mark.parametrize(
    ("body", "slug"),
    [
        ({"purposes": ["membership"], "status": "granted"}, "validation-failed"),
        ({"purposes": ["fax"], "status": "granted"}, "unknown-purpose"),
        ({"purposes": [], "status": "granted"}, "validation-failed"),
        ({"purposes": ["marketing_sms"], "status": "refused"}, "validation-failed"),
        (
            {"purposes": ["marketing_sms"], "status": "granted", "channel": "pos"},
            "validation-failed",
        ),
        ({"purpose": "marketing_sms", "status": "granted"}, "validation-failed"),
    ],
)
def test_a_malformed_own_consent_change_is_422(
    app_client: TestClient, member_token: str, body: dict[str, Any], slug: str
) -> None:
    answer = app_client.post("/v1/me/consents", json=body, headers=auth(member_token))
    assert answer.status_code == 422, answer.text
    assert answer.json()["type"] == slug


def test_a_withdrawal_by_the_member_decides_the_very_next_client_read(
    app_client: TestClient, keys: Keys, member_id: str, member_token: str
) -> None:
    grant(app_client, keys.app, member_id, "marketing_sms")
    read = f"/v1/members/{member_id}?purpose=marketing_sms"
    assert app_client.get(read, headers=auth(keys.sms)).status_code == 200
    assert own_consent(app_client, member_token, ["marketing_sms"], "withdrawn").status_code == 201
    refused = app_client.get(read, headers=auth(keys.sms))
    assert refused.status_code == 403 and refused.json()["type"] == "consent-required"
    # And the member's own grant opens it again.
    assert own_consent(app_client, member_token, ["marketing_sms"], "granted").status_code == 201
    assert app_client.get(read, headers=auth(keys.sms)).status_code == 200


# -- the access log ---------------------------------------------------------------------


def test_the_access_log_names_who_received_what_with_linked_entries(
    app_client: TestClient, keys: Keys, member_id: str, member_token: str
) -> None:
    grant(app_client, keys.app, member_id, "marketing_sms")
    assert (
        app_client.get(
            f"/v1/members/{member_id}?purpose=customer_service", headers=auth(keys.crm)
        ).status_code
        == 200
    )
    refused = app_client.get(f"/v1/members/{member_id}?purpose=delivery", headers=auth(keys.sms))
    assert refused.status_code == 403
    assert app_client.get("/v1/me", headers=auth(member_token)).status_code == 200

    answer = app_client.get("/v1/me/access-log", headers=auth(member_token))
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert answer.json()["next_cursor"] is None
    assert [i["action"] for i in items] == [
        "member.create",
        "notice.sent",
        "member.signin",
        "consent.change",
        "member.read",
        "member.read",
        "member.self_read",
    ]
    # Every item links to the member's previous one: nothing left out in between.
    assert items[0]["prev"] == 0
    for before, item in pairwise(items):
        assert item["prev"] == before["seq"]
    crm_read = items[4]
    assert crm_read["recipient"] == {"kind": "client", "name": "crm"}
    assert (crm_read["purpose"], crm_read["decision"], crm_read["released"]) == (
        "customer_service",
        "permit",
        "fields",
    )
    assert crm_read["fields"]["phone"] == "masked"
    sms_refusal = items[5]
    assert sms_refusal["recipient"] == {"kind": "client", "name": "sms"}
    assert (sms_refusal["decision"], sms_refusal["released"]) == ("deny", "none")
    assert items[1]["recipient"] is None  # the code was sent before anyone signed in
    assert items[3]["recipient"] == {"kind": "client", "name": "app"}
    own = items[6]
    assert own["recipient"] == {"kind": "member", "name": "you"}
    assert own["fields"] == {name: "clear" for name in MEMBER}
    assert set(own) == {
        "seq",
        "at",
        "recipient",
        "purpose",
        "action",
        "decision",
        "fields",
        "released",
        "prev",
    }
    assert own["at"].endswith("+00:00")


def test_the_access_log_pages_and_shows_no_one_elses_entries(
    app_client: TestClient, keys: Keys, member_id: str, outbox: Path
) -> None:
    other = app_client.post(
        "/v1/members", json={"name": "王五", "phone": "13912340001"}, headers=auth(keys.crm)
    ).json()["id"]
    for purpose in ("membership", "customer_service", "delivery"):
        read = app_client.get(f"/v1/members/{other}?purpose={purpose}", headers=auth(keys.crm))
        assert read.status_code == 200, read.text  # entries of someone else's, to leave out
    token = sign_in(app_client, outbox, phone=MEMBER["phone"])
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = app_client.get("/v1/me/access-log", params=params, headers=auth(token)).json()
        seen.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 2 and [i["action"] for i in seen] == [
        "member.create",
        "notice.sent",
        "member.signin",
    ]
    bad = app_client.get("/v1/me/access-log", params={"cursor": "nope"}, headers=auth(token))
    assert bad.status_code == 422 and bad.json()["type"] == "invalid-cursor"


# -- proofs of the member's own entries --------------------------------------------------


def test_a_member_gets_the_inclusion_proof_of_their_own_entry_with_the_verifier_key(
    app_client: TestClient, keys: Keys, member_id: str, member_token: str, session: Session
) -> None:
    from audit.checkpoint import parse_checkpoint, verify_note
    from audit.entry import leaf_hash
    from audit.merkle import verify_inclusion
    from gate.operator import cut_checkpoint

    log = app_client.get("/v1/me/access-log", headers=auth(member_token)).json()["items"]
    newest = log[-1]["seq"]
    pending = app_client.get(f"/v1/me/access-log/{newest}/proof", headers=auth(member_token))
    assert pending.status_code == 404 and pending.json()["type"] == "no-checkpoint"
    cut_checkpoint(app_client.app.state.services)  # type: ignore[attr-defined]
    proof = app_client.get(f"/v1/me/access-log/{newest}/proof", headers=auth(member_token))
    assert proof.status_code == 200, proof.text
    body = proof.json()
    assert body["shared"] is False and body["leaf_index"] == newest - 1
    import base64

    assert leaf_hash(base64.b64decode(body["entry"])).hex() == body["leaf_hash"]
    root = parse_checkpoint(verify_note(body["checkpoint"], verifier=body["verifier_key"])).root
    verify_inclusion(
        bytes.fromhex(body["leaf_hash"]),
        body["leaf_index"],
        body["tree_size"],
        [bytes.fromhex(h) for h in body["hashes"]],
        root,
    )
    # An entry that does not name the member is not theirs to ask for.
    other = app_client.post(
        "/v1/members", json={**MEMBER, "phone": "13900001111"}, headers=auth(keys.crm)
    )
    assert other.status_code == 201
    cut_checkpoint(app_client.app.state.services)  # type: ignore[attr-defined]
    theirs = max(
        session.execute(
            select(AuditEntry.seq).where(AuditEntry.action == "member.create")
        ).scalars()
    )
    refused = app_client.get(f"/v1/me/access-log/{theirs}/proof", headers=auth(member_token))
    assert refused.status_code == 404 and refused.json()["type"] == "not-found"


def test_an_entry_naming_other_members_too_is_proven_without_its_bytes(
    app_client: TestClient, services: Services, token_for: Callable[[str], str]
) -> None:
    from gate.imports import import_members
    from gate.operator import cut_checkpoint

    # An import batch is one entry naming every member it created.
    first, _second = import_members(
        services,
        [{**MEMBER, "phone": "13900001111"}, {**MEMBER, "phone": "13900002222"}],
        source="test",
    )
    cut_checkpoint(services)
    token = token_for(first)
    (item,) = app_client.get("/v1/me/access-log", headers=auth(token)).json()["items"]
    assert item["action"] == "member.import"
    body = app_client.get(f"/v1/me/access-log/{item['seq']}/proof", headers=auth(token)).json()
    assert body["shared"] is True and body["entry"] is None
    assert body["leaf_hash"] and body["checkpoint"]  # the leaf is still proven
