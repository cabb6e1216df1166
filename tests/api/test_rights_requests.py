"""Members' rights requests over HTTP: submitting (the member's own and relayed), bad input,
who may call what, cancelling, and the access copy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import audit.uow
from audit.log import AuditUnavailable, read_head
from gate.context import Services
from gate.rights_jobs import expire_copies
from rights.models import RightsCopy, RightsCorrection, RightsRequest
from rights.requests import VERIFICATION_METHODS
from tests.api.conftest import MEMBER, auth, grant
from tests.api.rights_helpers import (
    app_at,
    entries,
    relay,
    statuses,
    stored_anywhere,
    submit,
    submitted,
)
from tests.conftest import NOW, Keys, ServicesFor
from worker.jobs import default_jobs
from worker.runner import Worker

SignIn = Callable[[str], str]


def count(session: Session, model: type) -> int:
    try:
        return session.scalar(select(func.count()).select_from(model)) or 0
    finally:
        session.close()


# -- submitting: the shape -----------------------------------------------------------


def test_a_request_has_the_documented_shape_with_due_at_in_the_policys_zone(
    app_client: TestClient, member_id: str, token_for: SignIn
) -> None:
    request = submitted(app_client, token_for(member_id), {"type": "deletion"})
    assert list(request) == [
        "id",
        "type",
        "member_id",
        "status",
        "received_at",
        "due_at",
        "deadline",
        "overdue",
        "channel",
        "fields",
        "history",
        "completed_at",
        "recipients",
    ]
    assert request["deadline"] == {
        "rule": "15 working days",
        "calendar": "CN official",
        "calendar_estimated": False,
    }
    # Received Sunday 22 November 2026, 16:00 in Shanghai; 15 working days later.
    assert request["received_at"].endswith("+08:00")
    assert request["due_at"] == "2026-12-11T23:59:59.999999+08:00"
    assert (request["channel"], request["overdue"], request["member_id"]) == (
        "member",
        False,
        member_id,
    )
    assert list(request["history"][0]) == ["at", "status", "by", "reason"]
    assert request["history"][0]["by"] == {"kind": "member", "id": member_id}


def test_a_relayed_request_counts_from_when_the_member_made_it(
    app_client: TestClient, member_id: str, relay_key: str
) -> None:
    response = relay(
        app_client,
        relay_key,
        member_id,
        {"type": "access", "received_at": "2026-11-01T09:00:00+08:00"},
    )
    assert response.status_code == 201, response.text
    request = response.json()
    assert request["channel"] == "relayed"
    assert request["received_at"] == "2026-11-01T09:00:00+08:00"
    assert request["due_at"] == "2026-12-01T23:59:59.999999+08:00"  # 30 days
    assert request["history"][0]["by"]["kind"] == "client"


def test_a_relayed_request_records_the_verification_method_but_not_its_reference(
    app_client: TestClient, member_id: str, relay_key: str, keys: Keys, session: Session
) -> None:
    response = relay(app_client, relay_key, member_id, {"type": "access"})
    assert response.status_code == 201, response.text
    (entry,) = [
        e
        for e in entries(app_client, keys.auditor, action="rights.request")
        if e["detail"]["status"] == "submitted"
    ]
    assert entry["detail"]["verification"] == "in_person_id"
    assert "CASE-2026-0042" not in str(entry)
    stored = session.get(RightsRequest, response.json()["id"])
    assert stored is not None and stored.verification_reference == "CASE-2026-0042"


# -- bad input: 422, nothing stored -------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"type": "portability"},
        {"type": "ACCESS"},
        {"type": None},
        {},
        {"type": "access", "changes": {"email": "x@example.com"}},
        {"type": "deletion", "changes": {}},
        {"type": "correction"},
        {"type": "correction", "changes": {}},
        {"type": "access", "extra": 1},
    ],
)
def test_a_request_of_no_known_type_or_shape_is_refused_and_nothing_is_stored(
    app_client: TestClient, member_id: str, token_for: SignIn, session: Session, body: dict
) -> None:
    token = token_for(member_id)
    size = read_head(session).size
    response = submit(app_client, token, body)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "validation-failed"
    assert count(session, RightsRequest) == 0
    assert read_head(session).size == size


def test_a_correction_of_an_unknown_field_is_refused_without_echoing_the_key(
    app_client: TestClient, member_id: str, token_for: SignIn, session: Session
) -> None:
    key = "wechat_13912345678"
    response = submit(
        app_client, token_for(member_id), {"type": "correction", "changes": {key: "x"}}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["errors"] == [{"field": "(unknown field)", "problem": "not a field of this policy"}]
    assert key not in response.text and "13912345678" not in response.text
    assert count(session, RightsRequest) == 0


def test_a_correction_of_a_field_no_correction_may_touch_names_the_field(
    app_client: TestClient, member_id: str, token_for: SignIn, session: Session
) -> None:
    response = submit(
        app_client,
        token_for(member_id),
        {"type": "correction", "changes": {"points_balance": 99999, "email": "a@b.example"}},
    )
    assert response.status_code == 422
    body = response.json()
    assert [e["field"] for e in body["errors"]] == ["points_balance"]
    assert "points_balance" not in body["allowed_fields"] and "email" in body["allowed_fields"]
    assert "99999" not in response.text
    assert count(session, RightsRequest) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        # The marker cannot occur by chance in an id, a hash or base64 (its '~').
        ("email", "not-an-email-~zq7~"),
        ("phone", "phone-~zq7~-42"),
        ("birthday", "1990-13-45~zq7~"),
        ("name", "~zq7~" * 200),
        ("gender", "~zq7~-other"),
    ],
)
def test_an_invalid_new_value_is_refused_naming_the_field_never_the_value_and_stores_nothing(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    session: Session,
    services: Services,
    field: str,
    value: str,
) -> None:
    token = token_for(member_id)
    size = read_head(session).size
    response = submit(app_client, token, {"type": "correction", "changes": {field: value}})
    assert response.status_code == 422, response.text
    body = response.json()
    assert [e["field"] for e in body["errors"]] == [field]
    assert value not in response.text and "~zq7~" not in response.text
    assert count(session, RightsRequest) == 0
    assert read_head(session).size == size
    assert stored_anywhere(services.sessions(), "~zq7~") == []


def test_a_relayed_request_received_in_the_future_is_refused(
    app_client: TestClient, member_id: str, relay_key: str, session: Session
) -> None:
    tomorrow = (NOW + timedelta(days=1)).isoformat()
    response = relay(
        app_client, relay_key, member_id, {"type": "deletion", "received_at": tomorrow}
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"field": "received_at", "problem": "must not be in the future"}
    ]
    assert count(session, RightsRequest) == 0


@pytest.mark.parametrize(
    "verification",
    [
        {},
        {"method": "Sms Code"},
        {"method": "sms_code", "reference": "张三 13812345678"},
        {"method": "sms_code", "reference": "x" * 65},
    ],
)
def test_a_relayed_request_needs_a_verification_method_and_an_opaque_reference(
    app_client: TestClient, member_id: str, relay_key: str, verification: dict
) -> None:
    response = app_client.post(
        f"/v1/members/{member_id}/requests",
        json={"type": "access", "verification": verification},
        headers=auth(relay_key),
    )
    assert response.status_code == 422, response.text
    assert "13812345678" not in response.text


@pytest.mark.parametrize(
    "method",
    ["zhangsan_13812345678", "id_document", "SMS_CODE", "wechat_zhou", None],
)
def test_a_verification_method_not_on_the_list_is_refused_unechoed_and_nothing_is_recorded(
    app_client: TestClient, member_id: str, relay_key: str, session: Session, method: object
) -> None:
    # The method goes into an append-only audit entry: free text there would stay for good.
    size = read_head(session).size
    response = app_client.post(
        f"/v1/members/{member_id}/requests",
        json={"type": "access", "verification": {"method": method, "reference": "CASE-1"}},
        headers=auth(relay_key),
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["type"] == "validation-failed"
    assert [e["loc"] for e in body["errors"]] == [["body", "verification", "method"]]
    assert str(method) not in response.text and "13812345678" not in response.text
    assert count(session, RightsRequest) == 0
    assert read_head(session).size == size


@pytest.mark.parametrize("method", VERIFICATION_METHODS)
def test_each_listed_verification_method_is_accepted_and_recorded_in_the_entry(
    app_client: TestClient, member_id: str, relay_key: str, keys: Keys, method: str
) -> None:
    response = app_client.post(
        f"/v1/members/{member_id}/requests",
        json={"type": "deletion", "verification": {"method": method}},
        headers=auth(relay_key),
    )
    assert response.status_code == 201, response.text
    (entry,) = [
        e
        for e in entries(app_client, keys.auditor, action="rights.request")
        if e["detail"]["status"] == "submitted"
    ]
    assert entry["detail"]["verification"] == method
    assert entry["detail"]["request"] == response.json()["id"]


# -- who may call what --------------------------------------------------------------------


def test_a_request_for_a_member_who_does_not_exist_is_not_found(
    app_client: TestClient, relay_key: str
) -> None:
    for member in ("b" * 24, "not-an-id"):
        response = relay(app_client, relay_key, member, {"type": "access"})
        assert response.status_code == 404, response.text
        assert response.json()["type"] == "not-found"


def test_only_a_client_with_rights_submit_relays_requests(
    app_client: TestClient, member_id: str, keys: Keys
) -> None:
    response = relay(app_client, keys.crm, member_id, {"type": "deletion"})
    assert response.status_code == 403
    assert response.json()["type"] == "scope-required"


def test_a_member_token_on_client_and_dpo_endpoints_is_refused(
    app_client: TestClient, member_id: str, token_for: SignIn
) -> None:
    token = token_for(member_id)
    for method, path in (
        ("GET", f"/v1/members/{member_id}?purpose=membership"),
        ("POST", f"/v1/members/{member_id}/requests"),
        ("GET", "/v1/requests"),
        ("GET", f"/v1/members/{member_id}/holds"),
        ("GET", "/v1/audit/entries"),
    ):
        response = app_client.request(method, path, json={"type": "access"}, headers=auth(token))
        assert response.status_code == 403, (path, response.text)
        assert response.json()["type"] == "role-required"


def test_a_client_or_dpo_key_on_the_members_own_endpoints_is_refused(
    app_client: TestClient, keys: Keys, dpo_key: str, relay_key: str
) -> None:
    for key in (keys.crm, relay_key, dpo_key, keys.auditor):
        for method, path in (("GET", "/v1/me/requests"), ("POST", "/v1/me/requests")):
            response = app_client.request(method, path, json={"type": "access"}, headers=auth(key))
            assert response.status_code == 403, (path, response.text)
            assert response.json()["type"] == "role-required"


def test_another_members_request_is_not_found(
    app_client: TestClient, keys: Keys, member_id: str, token_for: SignIn
) -> None:
    other = app_client.post(
        "/v1/members", json={**MEMBER, "phone": "13900001111"}, headers=auth(keys.crm)
    ).json()["id"]
    theirs = submitted(app_client, token_for(other), {"type": "access"})["id"]
    mine = token_for(member_id)
    for method, path in (
        ("GET", f"/v1/me/requests/{theirs}"),
        ("POST", f"/v1/me/requests/{theirs}/cancel"),
        ("GET", f"/v1/me/requests/{theirs}/copy"),
    ):
        response = app_client.request(method, path, headers=auth(mine))
        assert response.status_code == 404, (path, response.text)
        assert response.json()["type"] == "not-found"
    assert app_client.get("/v1/me/requests", headers=auth(mine)).json()["items"] == []


# -- cancelling --------------------------------------------------------------------------


def test_cancelling_a_completed_request_is_a_conflict(
    app_client: TestClient, member_id: str, token_for: SignIn
) -> None:
    token = token_for(member_id)
    request = submitted(app_client, token, {"type": "access"})
    assert request["status"] == "completed"
    response = app_client.post(f"/v1/me/requests/{request['id']}/cancel", headers=auth(token))
    assert response.status_code == 409, response.text
    assert response.json()["type"] == "request-state"


def test_cancelling_a_waiting_correction_destroys_its_sealed_values(
    app_client: TestClient, member_id: str, token_for: SignIn, session: Session, keys: Keys
) -> None:
    token = token_for(member_id)
    request = submitted(app_client, token, {"type": "correction", "changes": {"name": "王五"}})
    assert request["status"] == "submitted"
    response = app_client.post(f"/v1/me/requests/{request['id']}/cancel", headers=auth(token))
    assert response.status_code == 200, response.text
    assert statuses(response.json()) == ["submitted", "cancelled"]
    assert count(session, RightsCorrection) == 0
    again = app_client.post(f"/v1/me/requests/{request['id']}/cancel", headers=auth(token))
    assert again.status_code == 409
    read = app_client.get(f"/v1/members/{member_id}?purpose=delivery", headers=auth(keys.crm))
    assert read.json()["fields"]["name"] == MEMBER["name"]


def test_the_member_lists_their_requests_newest_first(
    app_client: TestClient, member_id: str, token_for: SignIn
) -> None:
    token = token_for(member_id)
    first = submitted(app_client, token, {"type": "access"})["id"]
    second = submitted(app_client, token, {"type": "correction", "changes": {"name": "王五"}})
    listed = app_client.get("/v1/me/requests", headers=auth(token)).json()
    assert [r["id"] for r in listed["items"]] == [second["id"], first]
    shown = app_client.get(f"/v1/me/requests/{first}", headers=auth(token)).json()
    assert shown["id"] == first and shown["type"] == "access"


# -- the access copy ---------------------------------------------------------------------


def test_an_access_request_completes_at_once_with_a_copy_of_every_section(
    app_client: TestClient, member_id: str, token_for: SignIn, keys: Keys
) -> None:
    grant(app_client, keys.app, member_id, "marketing_sms")
    read = app_client.get(f"/v1/members/{member_id}?purpose=delivery", headers=auth(keys.crm))
    assert read.status_code == 200
    token = token_for(member_id)
    request = submitted(app_client, token, {"type": "access"})
    assert statuses(request) == ["submitted", "completed"]
    assert request["completed_at"] is not None
    response = app_client.get(f"/v1/me/requests/{request['id']}/copy", headers=auth(token))
    assert response.status_code == 200, response.text
    copy = response.json()
    assert copy["format"] == "memberguard.copy/1"
    assert (copy["member_id"], copy["request_id"]) == (member_id, request["id"])
    # Every field, in clear (as stored: normalised).
    assert copy["fields"]["name"] == MEMBER["name"]
    assert copy["fields"]["phone"] == "+8613812345678"
    assert copy["fields"]["email"] == "zhang.san@example.com"
    assert copy["fields"]["id_number"] == MEMBER["id_number"]
    assert set(copy["fields"]) == set(MEMBER)
    assert copy["consents"]["state"]["marketing_sms"]["status"] == "granted"
    assert [e["purpose"] for e in copy["consents"]["history"]] == ["marketing_sms"]
    delivery = next(p for p in copy["purposes"] if p["id"] == "delivery")
    assert delivery["legal_basis"] == "contract" and delivery["retention_days"] == 90
    assert delivery["recipients"] == ["crm"] and delivery["fields"]["address"] == "clear"
    assert {r["name"] for r in copy["recipients"]} == {"crm", "app"}
    log = copy["access_log"]
    # The shape of GET /v1/me/access-log (gate.me.access_log_item).
    assert [(e["action"], e["recipient"], e["released"]) for e in log] == [
        ("member.create", {"kind": "client", "name": "crm"}, "none"),
        ("consent.change", {"kind": "client", "name": "app"}, "consent"),
        ("member.read", {"kind": "client", "name": "crm"}, "fields"),
    ]
    assert [e["prev"] for e in log] == [0, log[0]["seq"], log[1]["seq"]]
    assert log[2]["fields"]["address"] == "clear" and log[2]["purpose"] == "delivery"
    assert copy["checkpoint"].startswith("memberguard.test/audit\n")
    assert copy["controller"]["contact"] == "privacy@brand.example"
    assert response.headers["content-disposition"].startswith("attachment;")


def test_downloading_the_copy_is_recorded_as_a_release_to_the_member(
    app_client: TestClient, member_id: str, token_for: SignIn, keys: Keys
) -> None:
    token = token_for(member_id)
    request = submitted(app_client, token, {"type": "access"})
    response = app_client.get(f"/v1/me/requests/{request['id']}/copy", headers=auth(token))
    seq = int(response.headers["Audit-Seq"])
    (entry,) = entries(app_client, keys.auditor, action="rights.download")
    assert entry["seq"] == seq
    assert (entry["actor"], entry["actor_kind"], entry["decision"]) == (
        member_id,
        "member",
        "permit",
    )
    assert entry["fields"] == dict.fromkeys(sorted(MEMBER), "clear")
    assert entry["members"] == [member_id]
    assert entry["detail"] == {"request": request["id"]}


def test_a_copy_is_not_released_when_its_entry_cannot_be_written(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = token_for(member_id)
    request = submitted(app_client, token, {"type": "access"})

    def fail(*_args: object, **_kwargs: object) -> None:
        raise AuditUnavailable("the audit log could not be written; nothing was released")

    monkeypatch.setattr(audit.uow, "append_entries", fail)
    response = app_client.get(f"/v1/me/requests/{request['id']}/copy", headers=auth(token))
    assert response.status_code == 503
    assert response.json()["type"] == "audit-unavailable"
    assert MEMBER["name"] not in response.text and "13812345678" not in response.text


def test_the_copy_is_stored_sealed_and_the_request_holds_no_value(
    app_client: TestClient, member_id: str, token_for: SignIn, services: Services
) -> None:
    submitted(app_client, token_for(member_id), {"type": "access"})
    for value in (MEMBER["name"], "13812345678", "zhang.san@example.com", MEMBER["id_number"]):
        assert stored_anywhere(services.sessions(), value) == [], value


def test_an_expired_copy_is_gone_and_the_job_destroys_it(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    services: Services,
    services_for: ServicesFor,
    session: Session,
    keys: Keys,
) -> None:
    token = token_for(member_id)
    request = submitted(app_client, token, {"type": "access"})
    week = NOW + timedelta(days=7, seconds=1)
    with app_at(services_for, services, week) as later:
        response = later.get(f"/v1/me/requests/{request['id']}/copy", headers=auth(token))
        assert response.status_code == 410, response.text
        assert response.json()["type"] == "copy-expired"
    assert count(session, RightsCopy) == 1  # gone for the member; destroyed by the job
    assert expire_copies(services_for(services.sessions, clock=lambda: week)) == 1
    assert count(session, RightsCopy) == 0
    expired = [
        e
        for e in entries(app_client, keys.auditor, action="rights.copy")
        if e["detail"]["event"] == "expired"
    ]
    assert [e["detail"]["request"] for e in expired] == [request["id"]]
    assert expired[0]["actor"] is None
    with app_at(services_for, services, week) as later:
        response = later.get(f"/v1/me/requests/{request['id']}/copy", headers=auth(token))
        assert response.status_code == 410


def test_a_copy_the_job_finds_unexpired_stays(
    app_client: TestClient, member_id: str, token_for: SignIn, services: Services, session: Session
) -> None:
    submitted(app_client, token_for(member_id), {"type": "access"})
    assert expire_copies(services) == 0
    assert count(session, RightsCopy) == 1


def test_a_request_other_than_access_has_no_copy(
    app_client: TestClient, member_id: str, token_for: SignIn
) -> None:
    token = token_for(member_id)
    request = submitted(app_client, token, {"type": "correction", "changes": {"name": "王五"}})
    response = app_client.get(f"/v1/me/requests/{request['id']}/copy", headers=auth(token))
    assert response.status_code == 404


def test_the_worker_runs_the_rights_jobs_and_reports_counts(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    services: Services,
    services_for: ServicesFor,
    session: Session,
) -> None:
    submitted(app_client, token_for(member_id), {"type": "access"})
    week = NOW + timedelta(days=7, seconds=1)
    later = services_for(services.sessions, clock=lambda: week)
    runs = Worker(later, default_jobs(later.settings)).run_once(week)
    results = {run.job: dict(run.result) for run in runs if run.job.startswith("rights.")}
    assert results == {
        "rights.copies": {"expired": 1},
        "rights.holds": {"deletions_resumed": 0},
        "rights.deadlines": {"due_soon": 0, "overdue": 0, "notices": 0},
    }
    assert count(session, RightsCopy) == 0


def test_a_second_access_request_while_the_copy_is_available_names_it(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    services: Services,
    services_for: ServicesFor,
) -> None:
    token = token_for(member_id)
    first = submitted(app_client, token, {"type": "access"})
    again = app_client.post("/v1/me/requests", json={"type": "access"}, headers=auth(token))
    assert again.status_code == 409, again.text
    assert again.json()["type"] == "request-open"
    assert again.json()["existing_request"] == first["id"]
    # Once that copy has expired, the member may ask again.
    with app_at(services_for, services, NOW + timedelta(days=7, seconds=1)) as later:
        renewed = later.post("/v1/me/requests", json={"type": "access"}, headers=auth(token))
        assert renewed.status_code == 201, renewed.text
