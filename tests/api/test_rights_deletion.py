"""Deletion: the crypto-shred, what it keeps, who must be told, and legal holds."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.app import create_app
from audit.online import verify_log
from consent.models import ConsentEvent
from core.errors import NotFound
from gate.context import Services
from gate.rights_jobs import release_lapsed_holds
from policies.model import RightsDeletion
from principals.models import MemberLoginChallenge, MemberSession
from rights.models import RightsCopy, RightsCorrection
from tests.api.conftest import MEMBER, auth, grant
from tests.api.rights_helpers import app_at, entries, relay, statuses, submit, submitted
from tests.conftest import NOW, Keys, ServicesFor
from vault.crypto import DecryptionFailed, decrypt_value
from vault.members import member_data_key
from vault.models import VaultBlindIndex, VaultDataKey, VaultField, VaultMember

SignIn = Callable[[str], str]


def rows(session: Session, model: type, member_id: str) -> int:
    return (
        session.scalar(select(func.count()).select_from(model).where(model.member_id == member_id))
        or 0
    )


def place_hold(client: TestClient, dpo: str, member_id: str, **body: object) -> str:
    response = client.post(
        f"/v1/members/{member_id}/holds",
        json={"reason": "litigation hold, case 2026-118", **body},
        headers=auth(dpo),
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


# -- the acceptance: gone everywhere, recipients listed, the log intact ------------------


def test_after_a_deletion_the_member_is_gone_everywhere_and_the_log_still_verifies(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    keys: Keys,
    dpo_key: str,
    relay_key: str,
    services: Services,
    session: Session,
) -> None:
    # Another member, whose data key must not open the deleted member's ciphertexts.
    bystander = app_client.post(
        "/v1/members", json={"name": "李四", "phone": "13900001111"}, headers=auth(keys.crm)
    ).json()["id"]
    # Who received what before: crm reads and looks up; recs exports; the app records a
    # consent (and is answered with the state); the sms gateway is only ever refused.
    grant(app_client, keys.app, member_id, "personalization")
    assert (
        app_client.get(
            f"/v1/members/{member_id}?purpose=delivery", headers=auth(keys.crm)
        ).status_code
        == 200
    )
    assert (
        app_client.get(
            f"/v1/members/{member_id}?purpose=marketing_sms", headers=auth(keys.sms)
        ).status_code
        == 403
    )
    exported = app_client.get("/v1/members?purpose=personalization", headers=auth(keys.recs))
    assert member_id in exported.text
    lookup = {"phone": MEMBER["phone"], "purpose": "customer_service"}
    assert app_client.post("/v1/members/lookup", json=lookup, headers=auth(keys.crm)).json()[
        "ids"
    ] == [member_id]
    token = token_for(member_id)
    access = submitted(app_client, token, {"type": "access"})
    waiting = submitted(app_client, token, {"type": "correction", "changes": {"name": "王五"}})
    # A sign-in code asked for and never used.
    assert app_client.post("/v1/me/login", json={"phone": MEMBER["phone"]}).status_code == 202
    assert rows(session, MemberLoginChallenge, member_id) == 1
    old_name_ct = bytes(session.get(VaultField, (member_id, "name")).value_ct)
    # The key it dies with opens it now (so the failures below are the shred's doing).
    own_key = member_data_key(session, services.keyring, member_id)
    assert decrypt_value(own_key, member_id, "name", old_name_ct) == MEMBER["name"]
    session.close()

    deletion = submitted(app_client, token, {"type": "deletion"})

    assert statuses(deletion) == ["submitted", "completed"]
    assert {r["name"] for r in deletion["recipients"]} == {"crm", "recs", "app"}
    assert all(r["notified_at"] is None for r in deletion["recipients"])
    # The secrets are gone: no data key opens the old ciphertexts any more.
    assert rows(session, VaultDataKey, member_id) == 0
    for model in (
        VaultField,
        VaultBlindIndex,
        MemberSession,
        MemberLoginChallenge,
        RightsCorrection,
        RightsCopy,
    ):
        assert rows(session, model, member_id) == 0, model.__tablename__
    with pytest.raises(NotFound):
        member_data_key(session, services.keyring, member_id)
    others = session.scalars(select(VaultDataKey.member_id)).all()
    assert others == [bystander]  # the keys left: each is tried
    for other in others:
        with pytest.raises(DecryptionFailed):
            decrypt_value(
                member_data_key(session, services.keyring, other),
                member_id,
                "name",
                old_name_ct,
            )
    # Kept: the member row (the id), consent history, the requests and their history.
    assert session.get(VaultMember, member_id) is not None
    assert rows(session, ConsentEvent, member_id) == 1
    session.close()
    # The member's waiting correction was closed with it.
    shown = app_client.get(f"/v1/requests/{waiting['id']}", headers=auth(dpo_key)).json()
    assert statuses(shown) == ["submitted", "cancelled"]
    assert deletion["id"] in shown["history"][-1]["reason"]

    # Every endpoint answers as for a member who never existed.
    for method, path, body, key in (
        ("GET", f"/v1/members/{member_id}?purpose=delivery", None, keys.crm),
        ("PATCH", f"/v1/members/{member_id}", {"tier": "钻石"}, keys.crm),
        ("GET", f"/v1/members/{member_id}/consents", None, keys.crm),
        (
            "POST",
            f"/v1/members/{member_id}/consents",
            {
                "purposes": ["marketing_sms"],
                "status": "withdrawn",
                "channel": "app",
                "collected_at": "2026-11-02T10:00:00+08:00",
            },
            keys.crm,
        ),
        ("POST", f"/v1/members/{member_id}/holds", {"reason": "x"}, dpo_key),
        ("GET", f"/v1/members/{member_id}/holds", None, dpo_key),
    ):
        response = app_client.request(method, path, json=body, headers=auth(key))
        assert response.status_code == 404, (path, response.text)
        assert response.json()["type"] == "not-found"
    relayed = relay(app_client, relay_key, member_id, {"type": "access"})
    assert relayed.status_code == 404
    for body in (lookup, {"email": MEMBER["email"], "purpose": "customer_service"}):
        found = app_client.post("/v1/members/lookup", json=body, headers=auth(keys.crm))
        assert found.json()["ids"] == []
    again = app_client.get("/v1/members?purpose=personalization", headers=auth(keys.recs))
    assert again.status_code == 200, again.text
    assert member_id not in again.text
    # The old session is over: the member cannot act, or fetch their copy.
    for path in ("/v1/me/requests", f"/v1/me/requests/{access['id']}/copy"):
        response = app_client.get(path, headers=auth(token))
        assert response.status_code == 401, response.text
    assert submit(app_client, token, {"type": "access"}).status_code == 401

    # The log names the erasure, without a value, and still verifies.
    (erased,) = entries(app_client, keys.auditor, action="member.delete")
    assert erased["members"] == [member_id]
    assert erased["detail"] == {
        "request": deletion["id"],
        "destroyed": {
            "copies": 1,
            "data_key": 1,
            "login_codes": 1,
            "pending_corrections": 1,
            "sessions": 1,
        },
        "recipients": 3,
    }
    assert verify_log(session).ok


def test_a_client_that_only_received_refusals_is_no_recipient(
    app_client: TestClient, member_id: str, keys: Keys, relay_key: str
) -> None:
    for _ in range(2):
        refused = app_client.get(
            f"/v1/members/{member_id}?purpose=marketing_sms", headers=auth(keys.sms)
        )
        assert refused.status_code == 403
    response = relay(app_client, relay_key, member_id, {"type": "deletion"})
    assert response.status_code == 201, response.text
    # crm created the member (a write releases nothing): no one received anything.
    assert response.json()["recipients"] == []


def test_a_second_deletion_while_one_is_open_is_a_conflict_naming_it(
    app_client: TestClient, member_id: str, token_for: SignIn, dpo_key: str, relay_key: str
) -> None:
    place_hold(app_client, dpo_key, member_id)
    token = token_for(member_id)
    first = submitted(app_client, token, {"type": "deletion"})
    assert first["status"] == "on_hold"
    for response in (
        submit(app_client, token, {"type": "deletion"}),
        relay(app_client, relay_key, member_id, {"type": "deletion"}),
    ):
        assert response.status_code == 409, response.text
        assert response.json()["type"] == "request-open"
        assert response.json()["existing_request"] == first["id"]


# -- holds --------------------------------------------------------------------------------


def test_a_held_deletion_waits_on_hold_and_runs_when_the_hold_is_released(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    dpo_key: str,
    keys: Keys,
    session: Session,
) -> None:
    hold = place_hold(app_client, dpo_key, member_id)
    token = token_for(member_id)
    deletion = submitted(app_client, token, {"type": "deletion"})
    assert statuses(deletion) == ["submitted", "on_hold"]
    assert "legal hold" in deletion["history"][-1]["reason"]
    assert rows(session, VaultDataKey, member_id) == 1
    session.close()
    # The member sees why their deletion waits.
    mine = app_client.get(f"/v1/me/requests/{deletion['id']}", headers=auth(token)).json()
    assert mine["status"] == "on_hold"
    listed = app_client.get(f"/v1/members/{member_id}/holds", headers=auth(dpo_key)).json()
    assert [(h["id"], h["active"], h["until"]) for h in listed["items"]] == [(hold, True, None)]

    released = app_client.delete(f"/v1/members/{member_id}/holds/{hold}", headers=auth(dpo_key))
    assert released.status_code == 200, released.text
    assert released.json()["active"] is False and released.json()["released_at"] is not None

    done = app_client.get(f"/v1/requests/{deletion['id']}", headers=auth(dpo_key)).json()
    assert statuses(done) == ["submitted", "on_hold", "in_progress", "completed"]
    assert rows(session, VaultDataKey, member_id) == 0
    holds = [e["detail"]["event"] for e in entries(app_client, keys.auditor, action="rights.hold")]
    assert holds == ["placed", "released"]


def test_releasing_one_of_two_holds_keeps_the_deletion_waiting(
    app_client: TestClient, member_id: str, token_for: SignIn, dpo_key: str
) -> None:
    first = place_hold(app_client, dpo_key, member_id)
    second = place_hold(app_client, dpo_key, member_id, reason="tax audit 2026")
    deletion = submitted(app_client, token_for(member_id), {"type": "deletion"})
    app_client.delete(f"/v1/members/{member_id}/holds/{first}", headers=auth(dpo_key))
    waiting = app_client.get(f"/v1/requests/{deletion['id']}", headers=auth(dpo_key)).json()
    assert waiting["status"] == "on_hold"
    again = app_client.delete(f"/v1/members/{member_id}/holds/{first}", headers=auth(dpo_key))
    assert again.status_code == 409 and again.json()["type"] == "hold-ended"
    app_client.delete(f"/v1/members/{member_id}/holds/{second}", headers=auth(dpo_key))
    done = app_client.get(f"/v1/requests/{deletion['id']}", headers=auth(dpo_key)).json()
    assert done["status"] == "completed"


def test_a_hold_that_lapses_counts_as_released_and_the_job_runs_the_deletion(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    dpo_key: str,
    keys: Keys,
    services: Services,
    services_for: ServicesFor,
) -> None:
    until = NOW + timedelta(days=2)
    hold = place_hold(app_client, dpo_key, member_id, until=until.isoformat())
    deletion = submitted(app_client, token_for(member_id), {"type": "deletion"})
    assert deletion["status"] == "on_hold"
    later = NOW + timedelta(days=3)
    with app_at(services_for, services, later) as client:
        listed = client.get(f"/v1/members/{member_id}/holds", headers=auth(dpo_key)).json()
        assert [h["active"] for h in listed["items"]] == [False]
    assert release_lapsed_holds(services_for(services.sessions, clock=lambda: later)) == [
        deletion["id"]
    ]
    done = app_client.get(f"/v1/requests/{deletion['id']}", headers=auth(dpo_key)).json()
    assert done["status"] == "completed"
    assert done["history"][-2]["by"] == {"kind": "system", "id": None}
    lapsed = [
        e
        for e in entries(app_client, keys.auditor, action="rights.hold")
        if e["detail"]["event"] == "lapsed"
    ]
    assert [(e["detail"]["hold"], e["actor"]) for e in lapsed] == [(hold, None)]
    assert release_lapsed_holds(services_for(services.sessions, clock=lambda: later)) == []


def test_a_deletion_submitted_after_every_hold_lapsed_runs_at_once(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    dpo_key: str,
    services: Services,
    services_for: ServicesFor,
) -> None:
    place_hold(app_client, dpo_key, member_id, until=(NOW + timedelta(hours=1)).isoformat())
    token = token_for(member_id)
    with app_at(services_for, services, NOW + timedelta(hours=2)) as later:
        deletion = submitted(later, token, {"type": "deletion"})
    assert deletion["status"] == "completed"


@pytest.mark.parametrize(
    ("body", "slug"),
    [
        ({"reason": ""}, "validation-failed"),
        ({}, "validation-failed"),
        ({"reason": "x", "until": "2026-11-01T00:00:00+08:00"}, "validation-failed"),
        ({"reason": "x", "until": "2027-01-01T00:00:00"}, "validation-failed"),
    ],
)
def test_a_hold_needs_a_reason_and_a_future_end(
    app_client: TestClient, member_id: str, dpo_key: str, body: dict, slug: str
) -> None:
    response = app_client.post(f"/v1/members/{member_id}/holds", json=body, headers=auth(dpo_key))
    assert response.status_code == 422, response.text
    assert response.json()["type"] == slug


def test_holds_belong_to_the_dpo(
    app_client: TestClient, member_id: str, keys: Keys, relay_key: str
) -> None:
    for key in (keys.crm, relay_key, keys.auditor, keys.admin):
        response = app_client.post(
            f"/v1/members/{member_id}/holds", json={"reason": "x"}, headers=auth(key)
        )
        assert response.status_code == 403, response.text


def test_a_hold_of_another_member_is_not_found(
    app_client: TestClient, member_id: str, keys: Keys, dpo_key: str
) -> None:
    other = app_client.post(
        "/v1/members", json={**MEMBER, "phone": "13900001111"}, headers=auth(keys.crm)
    ).json()["id"]
    hold = place_hold(app_client, dpo_key, other)
    response = app_client.delete(f"/v1/members/{member_id}/holds/{hold}", headers=auth(dpo_key))
    assert response.status_code == 404


# -- a policy that has the DPO review deletions --------------------------------------------


@pytest.fixture
def reviewing(services: Services) -> Iterator[TestClient]:
    rights = services.policy.rights.model_copy(update={"deletion": RightsDeletion(review=True)})
    policy = services.policy.model_copy(update={"rights": rights})
    app = create_app(services=dataclasses.replace(services, policy=policy))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_a_reviewed_deletion_waits_for_the_dpo_and_a_hold_still_blocks_it(
    reviewing: TestClient, member_id: str, token_for: SignIn, dpo_key: str, session: Session
) -> None:
    deletion = submitted(reviewing, token_for(member_id), {"type": "deletion"})
    assert statuses(deletion) == ["submitted"]
    assert rows(session, VaultDataKey, member_id) == 1
    session.close()
    hold = place_hold(reviewing, dpo_key, member_id)
    approved = reviewing.post(f"/v1/requests/{deletion['id']}/approve", headers=auth(dpo_key))
    assert approved.status_code == 200, approved.text
    assert statuses(approved.json()) == ["submitted", "on_hold"]
    twice = reviewing.post(f"/v1/requests/{deletion['id']}/approve", headers=auth(dpo_key))
    assert twice.status_code == 409
    reviewing.delete(f"/v1/members/{member_id}/holds/{hold}", headers=auth(dpo_key))
    done = reviewing.get(f"/v1/requests/{deletion['id']}", headers=auth(dpo_key)).json()
    assert done["status"] == "completed"
    assert rows(session, VaultDataKey, member_id) == 0


def test_a_deletion_the_dpo_rejects_keeps_the_member(
    reviewing: TestClient, member_id: str, token_for: SignIn, dpo_key: str, keys: Keys
) -> None:
    deletion = submitted(reviewing, token_for(member_id), {"type": "deletion"})
    response = reviewing.post(
        f"/v1/requests/{deletion['id']}/reject",
        json={"reason": "open order 2026-55 must be delivered first"},
        headers=auth(dpo_key),
    )
    assert statuses(response.json()) == ["submitted", "rejected"]
    read = reviewing.get(f"/v1/members/{member_id}?purpose=delivery", headers=auth(keys.crm))
    assert read.status_code == 200
