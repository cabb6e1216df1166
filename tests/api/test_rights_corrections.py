"""Corrections: self-service fields applied at once, the rest sealed until the DPO decides,
and the clients that were released those fields listed to be told (GDPR Art. 19)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app import create_app
from gate.context import Services
from rights.models import RightsCorrection
from tests.api.conftest import MEMBER, auth, grant
from tests.api.rights_helpers import entries, statuses, stored_anywhere, submit, submitted
from tests.conftest import Keys, ServicesFor

SignIn = Callable[[str], str]


def read(client: TestClient, key: str, member_id: str, purpose: str = "delivery") -> dict:
    response = client.get(f"/v1/members/{member_id}?purpose={purpose}", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()["fields"]


def test_a_self_service_correction_is_applied_at_once_and_recorded(
    app_client: TestClient, member_id: str, token_for: SignIn, keys: Keys
) -> None:
    request = submitted(
        app_client,
        token_for(member_id),
        {"type": "correction", "changes": {"address": "浙江省杭州市西湖区文三路 90 号"}},
    )
    assert statuses(request) == ["submitted", "completed"]
    assert request["fields"] == ["address"]
    shown = read(app_client, keys.crm, member_id, "customer_service")
    assert shown["address"].startswith("浙江省杭州市")
    (entry,) = entries(app_client, keys.auditor, action="member.correct")
    assert entry["fields"] == {"address": "written"}
    assert entry["detail"] == {"request": request["id"], "approved": False}
    assert (entry["actor"], entry["actor_kind"]) == (member_id, "member")
    assert "文三路" not in str(entry)


def test_a_member_cannot_change_the_contact_they_sign_in_with_on_their_own(
    app_client: TestClient, member_id: str, token_for: SignIn, keys: Keys
) -> None:
    # A stolen session must not be able to point the sign-in codes elsewhere.
    request = submitted(
        app_client,
        token_for(member_id),
        {"type": "correction", "changes": {"email": "someone.else@example.com"}},
    )
    assert statuses(request) == ["submitted"]
    assert read(app_client, keys.crm, member_id, "customer_service")["email"] == "z***@example.com"
    assert entries(app_client, keys.auditor, action="member.correct") == []


def test_a_correction_the_dpo_must_approve_waits_sealed_then_applies_on_approval(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    keys: Keys,
    dpo_key: str,
    services: Services,
    session: Session,
) -> None:
    token = token_for(member_id)
    request = submitted(
        app_client,
        token,
        {"type": "correction", "changes": {"name": "王小五", "address": "浙江省杭州市文三路 1 号"}},
    )
    # address is self-service (applied now); name waits for the DPO.
    assert statuses(request) == ["submitted", "in_progress"]
    assert request["fields"] == ["address", "name"]
    assert read(app_client, keys.crm, member_id)["name"] == MEMBER["name"]
    assert stored_anywhere(services.sessions(), "王小五") == []
    sealed = session.scalars(select(RightsCorrection)).all()
    assert [row.request_id for row in sealed] == [request["id"]]
    session.close()

    response = app_client.post(f"/v1/requests/{request['id']}/approve", headers=auth(dpo_key))
    assert response.status_code == 200, response.text
    approved = response.json()
    assert statuses(approved) == ["submitted", "in_progress", "completed"]
    assert approved["history"][-1]["by"]["kind"] == "staff"
    assert read(app_client, keys.crm, member_id)["name"] == "王小五"
    assert session.scalars(select(RightsCorrection)).all() == []
    corrected = entries(app_client, keys.auditor, action="member.correct")
    assert [(e["fields"], e["detail"]["approved"]) for e in corrected] == [
        ({"address": "written"}, False),
        ({"name": "written"}, True),
    ]


def test_a_rejected_correction_keeps_the_old_value_and_destroys_the_new_one(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    keys: Keys,
    dpo_key: str,
    session: Session,
) -> None:
    request = submitted(
        app_client, token_for(member_id), {"type": "correction", "changes": {"name": "赵六"}}
    )
    missing = app_client.post(
        f"/v1/requests/{request['id']}/reject", json={}, headers=auth(dpo_key)
    )
    assert missing.status_code == 422
    response = app_client.post(
        f"/v1/requests/{request['id']}/reject",
        json={"reason": "evidence of the legal name change not provided (case 77)"},
        headers=auth(dpo_key),
    )
    assert response.status_code == 200, response.text
    rejected = response.json()
    assert statuses(rejected) == ["submitted", "rejected"]
    assert rejected["history"][-1]["reason"].startswith("evidence of the legal name")
    assert rejected["completed_at"] is None
    assert read(app_client, keys.crm, member_id)["name"] == MEMBER["name"]
    assert session.scalars(select(RightsCorrection)).all() == []
    (entry,) = [
        e
        for e in entries(app_client, keys.auditor, action="rights.request")
        if e["detail"]["status"] == "rejected"
    ]
    assert "case 77" not in str(entry)  # the reason stays with the request, out of the log


def test_approving_a_request_that_is_not_waiting_is_a_conflict(
    app_client: TestClient, member_id: str, token_for: SignIn, dpo_key: str
) -> None:
    token = token_for(member_id)
    done = submitted(app_client, token, {"type": "access"})
    waiting = submitted(app_client, token, {"type": "correction", "changes": {"name": "王五"}})
    app_client.post(f"/v1/me/requests/{waiting['id']}/cancel", headers=auth(token))
    for request in (done, waiting):
        response = app_client.post(f"/v1/requests/{request['id']}/approve", headers=auth(dpo_key))
        assert response.status_code == 409, response.text
        assert response.json()["type"] == "not-awaiting-approval"
    unknown = app_client.post(f"/v1/requests/{'c' * 24}/approve", headers=auth(dpo_key))
    assert unknown.status_code == 404


def test_two_open_corrections_of_one_field_conflict_but_of_different_fields_do_not(
    app_client: TestClient, member_id: str, token_for: SignIn
) -> None:
    token = token_for(member_id)
    first = submitted(app_client, token, {"type": "correction", "changes": {"name": "王五"}})
    clash = submit(app_client, token, {"type": "correction", "changes": {"name": "王六"}})
    assert clash.status_code == 409
    assert clash.json()["type"] == "request-open"
    assert clash.json()["existing_request"] == first["id"]
    assert "王六" not in clash.text
    other = submit(app_client, token, {"type": "correction", "changes": {"birthday": "1991-01-02"}})
    assert other.status_code == 201, other.text


def test_a_corrections_recipients_are_the_clients_that_were_released_those_fields(
    app_client: TestClient, member_id: str, token_for: SignIn, keys: Keys, dpo_key: str
) -> None:
    read(app_client, keys.crm, member_id, "delivery")  # name, phone, address: clear
    refused = app_client.get(
        f"/v1/members/{member_id}?purpose=marketing_sms", headers=auth(keys.sms)
    )
    assert refused.status_code == 403  # no consent: the sms gateway received nothing
    grant(app_client, keys.app, member_id, "personalization")
    export = app_client.get("/v1/members?purpose=personalization", headers=auth(keys.recs))
    assert export.status_code == 200
    token = token_for(member_id)
    name = submitted(app_client, token, {"type": "correction", "changes": {"name": "王五"}})
    approved = app_client.post(f"/v1/requests/{name['id']}/approve", headers=auth(dpo_key))
    # crm read the name; the personalization export released no name; sms was refused.
    assert [(r["name"], r["notified_at"]) for r in approved.json()["recipients"]] == [("crm", None)]
    birthday = submitted(
        app_client, token, {"type": "correction", "changes": {"birthday": "1991-01-02"}}
    )
    approved = app_client.post(f"/v1/requests/{birthday['id']}/approve", headers=auth(dpo_key))
    # Only the personalization export released the birthday (as its year): a view is a release.
    assert [r["name"] for r in approved.json()["recipients"]] == ["recs"]


def test_approval_refuses_a_field_the_policy_no_longer_lets_be_corrected(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    keys: Keys,
    dpo_key: str,
    services: Services,
    services_for: ServicesFor,
) -> None:
    request = submitted(
        app_client, token_for(member_id), {"type": "correction", "changes": {"name": "赵六"}}
    )
    rights = services.policy.rights
    stricter = services.policy.model_copy(
        update={
            "rights": rights.model_copy(
                update={
                    "correction": rights.correction.model_copy(
                        update={"not_correctable": (*rights.correction.not_correctable, "name")}
                    )
                }
            )
        }
    )
    later = services_for(services.sessions, policy=stricter)
    with TestClient(create_app(services=later)) as client:
        response = client.post(f"/v1/requests/{request['id']}/approve", headers=auth(dpo_key))
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"field": "name", "problem": "is kept by the programme and cannot be corrected"}
    ]
    assert read(app_client, keys.crm, member_id)["name"] == MEMBER["name"]
    shown = app_client.get(f"/v1/requests/{request['id']}", headers=auth(dpo_key)).json()
    assert statuses(shown) == ["submitted"]  # still waiting: nothing of the approval stayed
