"""Members are told about their requests: one message per change (received, completed,
rejected, on hold) to their e-mail address, else their phone, sent after the commit and
recorded (``notice.sent``) once it went; a failed send never fails or undoes the request,
and no address or body reaches a log line or an audit entry."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from api.app import create_app
from gate.context import Services
from gate.rights_jobs import release_lapsed_holds
from notify import Message, NotifierError
from notify.outbox import read_outbox
from policies.model import RightsDeletion
from tests.api.conftest import MEMBER, auth
from tests.api.rights_helpers import entries, relay, statuses, submit, submitted
from tests.conftest import NOW, Keys, ServicesFor
from vault.models import VaultDataKey, VaultField

SignIn = Callable[[str], str]

# MEMBER's contact as the vault stores it (normalised).
EMAIL = "zhang.san@example.com"
PHONE = "+8613812345678"
HOLD_REASON = "litigation hold, case 2026-118"
REJECT_REASON = "We could not match this request to a membership (case 2026-77)."
NAME_CHANGE = {"type": "correction", "changes": {"name": "王五"}}  # waits for the DPO


class Refusing:
    """A transport that is down: every message it is given fails."""

    def __init__(self, error: Callable[[Message], Exception] | None = None) -> None:
        self.tried: list[Message] = []
        self._error = error or (lambda _message: NotifierError("transport down (test)"))

    def send(self, message: Message, *, now: datetime) -> None:
        self.tried.append(message)
        raise self._error(message)


@pytest.fixture
def refusing() -> Refusing:
    return Refusing()


@pytest.fixture
def down_client(services: Services, refusing: Refusing) -> Iterator[TestClient]:
    """The same database and keys, with a notifier that fails every send."""
    app = create_app(services=dataclasses.replace(services, notifier=refusing))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def reviewing(services: Services) -> Iterator[TestClient]:
    """A policy that has the DPO review deletions."""
    rights = services.policy.rights.model_copy(update={"deletion": RightsDeletion(review=True)})
    policy = services.policy.model_copy(update={"rights": rights})
    app = create_app(services=dataclasses.replace(services, policy=policy))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def messages(outbox: Path) -> list[dict[str, Any]]:
    return list(read_outbox(outbox))


def notices(client: TestClient, auditor: str) -> list[dict[str, Any]]:
    return entries(client, auditor, action="notice.sent")


def new_member(client: TestClient, crm: str, **fields: object) -> str:
    body = {key: value for key, value in {**MEMBER, **fields}.items() if value is not None}
    response = client.post("/v1/members", json=body, headers=auth(crm))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def place_hold(client: TestClient, dpo: str, member_id: str, **body: object) -> str:
    response = client.post(
        f"/v1/members/{member_id}/holds",
        json={"reason": HOLD_REASON, **body},
        headers=auth(dpo),
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def assert_told(
    message: dict[str, Any],
    notice: dict[str, Any],
    *,
    member_id: str,
    request: dict[str, Any],
    template: str,
    channel: str = "email",
    to: str = EMAIL,
) -> None:
    """The message went to the member's contact, and its entry names the member, the
    template and the request, never the address or the body."""
    assert (message["template"], message["channel"], message["to"]) == (template, channel, to)
    assert request["id"] in message["body"]
    assert notice["members"] == [member_id]
    assert notice["detail"] == {
        "template": template,
        "channel": channel,
        "message": message["id"],
        "request": request["id"],
    }
    recorded = json.dumps(notice, ensure_ascii=False)
    for secret in (to, to.split("@")[0], to.removeprefix("+86"), message["body"].strip()):
        assert secret not in recorded


# -- which message, to whom ------------------------------------------------------------------


def test_a_correction_waiting_for_the_dpo_tells_the_member_it_was_received(
    app_client: TestClient, member_id: str, token_for: SignIn, keys: Keys, outbox: Path
) -> None:
    request = submitted(app_client, token_for(member_id), NAME_CHANGE)
    assert request["status"] == "submitted"
    (message,) = messages(outbox)
    (notice,) = notices(app_client, keys.auditor)
    assert_told(message, notice, member_id=member_id, request=request, template="request_received")
    # In Chinese by default, with the last day to answer in the policy's zone.
    assert message["locale"] == "zh-CN" and "我们已收到您关于" in message["body"]
    assert request["due_at"][:10] in message["body"]
    assert (notice["actor"], notice["actor_kind"]) == (member_id, "member")
    # Nothing of the value asked for goes in the message.
    assert "王五" not in message["body"] + message["subject"]


def test_a_member_who_asks_in_english_is_told_in_english(
    app_client: TestClient, member_id: str, token_for: SignIn, outbox: Path
) -> None:
    response = app_client.post(
        "/v1/me/requests",
        json=NAME_CHANGE,
        headers={**auth(token_for(member_id)), "Accept-Language": "en-GB,en;q=0.9,zh;q=0.5"},
    )
    assert response.status_code == 201, response.text
    (message,) = messages(outbox)
    assert message["locale"] == "en"
    assert message["subject"].endswith(f"we have received your request ({response.json()['id']})")


def test_a_relayed_request_tells_the_member_in_the_default_language(
    app_client: TestClient, member_id: str, relay_key: str, keys: Keys, outbox: Path
) -> None:
    response = relay(app_client, relay_key, member_id, NAME_CHANGE)
    assert response.status_code == 201, response.text
    (message,) = messages(outbox)
    (notice,) = notices(app_client, keys.auditor)
    assert_told(
        message,
        notice,
        member_id=member_id,
        request=response.json(),
        template="request_received",
    )
    assert message["locale"] == "zh-CN"
    # The entry names who caused it: the relaying client.
    assert notice["actor_kind"] == "client"


def test_an_access_request_tells_the_member_once_that_it_is_complete_and_until_when(
    app_client: TestClient, member_id: str, token_for: SignIn, keys: Keys, outbox: Path
) -> None:
    request = submitted(app_client, token_for(member_id), {"type": "access"})
    assert request["status"] == "completed"
    # One message, not "received" and then "completed" a moment later.
    (message,) = messages(outbox)
    (notice,) = notices(app_client, keys.auditor)
    assert_told(message, notice, member_id=member_id, request=request, template="request_completed")
    # Built at 16:00 on 22 November in Shanghai, the copy expires at 16:00 on the 29th:
    # the 28th is the last whole day it can be downloaded.
    assert "2026-11-28 前" in message["body"]


def test_an_sms_goes_to_a_member_with_no_email_address(
    app_client: TestClient, keys: Keys, token_for: SignIn, outbox: Path
) -> None:
    member_id = new_member(app_client, keys.crm, email=None)
    request = submitted(app_client, token_for(member_id), NAME_CHANGE)
    (message,) = messages(outbox)
    (notice,) = notices(app_client, keys.auditor)
    assert_told(
        message,
        notice,
        member_id=member_id,
        request=request,
        template="request_received",
        channel="sms",
        to=PHONE,
    )
    assert message["subject"] == ""


def test_a_corrected_email_address_is_confirmed_to_the_address_it_replaced(
    services: Services, member_id: str, token_for: SignIn, dpo_key: str, keys: Keys, outbox: Path
) -> None:
    # A policy where the DPO approves corrections of the address (not self-service).
    rights = services.policy.rights
    correction = rights.correction.model_copy(update={"self_service": ["address"]})
    policy = services.policy.model_copy(
        update={"rights": rights.model_copy(update={"correction": correction})}
    )
    app = create_app(services=dataclasses.replace(services, policy=policy))
    with TestClient(app, raise_server_exceptions=False) as client:
        request = submitted(
            client,
            token_for(member_id),
            {"type": "correction", "changes": {"email": "li.si@example.net"}},
        )
        approved = client.post(f"/v1/requests/{request['id']}/approve", headers=auth(dpo_key))
        assert approved.status_code == 200 and approved.json()["status"] == "completed"
        received, completed = messages(outbox)
        first, second = notices(client, keys.auditor)
        # Both to the address on record when each was decided: the old one.
        assert_told(
            received, first, member_id=member_id, request=request, template="request_received"
        )
        assert_told(
            completed, second, member_id=member_id, request=request, template="request_completed"
        )
        assert "li.si" not in received["body"] + completed["body"]
        # The correction did apply: the next message would go to the new address.
        assert (
            client.get("/v1/me", headers=auth(token_for(member_id))).json()["fields"]["email"]
            == "li.si@example.net"
        )


def test_a_rejection_tells_the_member_the_reason_the_dpo_wrote_for_them(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    dpo_key: str,
    keys: Keys,
    outbox: Path,
) -> None:
    request = submitted(app_client, token_for(member_id), NAME_CHANGE)
    response = app_client.post(
        f"/v1/requests/{request['id']}/reject",
        json={"reason": REJECT_REASON},
        headers=auth(dpo_key),
    )
    assert response.status_code == 200, response.text
    received, rejected = messages(outbox)
    assert received["template"] == "request_received"
    _, notice = notices(app_client, keys.auditor)
    assert_told(rejected, notice, member_id=member_id, request=request, template="request_rejected")
    assert REJECT_REASON in rejected["body"]
    assert notice["actor_role"] == "dpo"
    # The reason is the request's, shown to the member; never in an entry.
    assert REJECT_REASON not in json.dumps(entries(app_client, keys.auditor))


def test_a_deletion_blocked_by_a_hold_tells_the_member_it_waits_but_never_the_holds_reason(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    dpo_key: str,
    keys: Keys,
    outbox: Path,
) -> None:
    place_hold(app_client, dpo_key, member_id)
    request = submitted(app_client, token_for(member_id), {"type": "deletion"})
    assert request["status"] == "on_hold"
    (message,) = messages(outbox)
    (notice,) = notices(app_client, keys.auditor)
    assert_told(message, notice, member_id=member_id, request=request, template="request_on_hold")
    assert request["due_at"][:10] in message["body"]
    for word in ("litigation", "2026-118"):
        assert word not in message["body"] + message["subject"]


def test_a_deletion_is_confirmed_to_the_address_it_destroyed(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    keys: Keys,
    outbox: Path,
    session: Session,
) -> None:
    request = submitted(app_client, token_for(member_id), {"type": "deletion"})
    assert statuses(request) == ["submitted", "completed"]
    # The member is crypto-shredded: no key opens their contact any more ...
    count = select(func.count()).select_from(VaultDataKey)
    assert session.scalar(count.where(VaultDataKey.member_id == member_id)) == 0
    session.close()
    # ... and the confirmation, composed before the shred, went to it once.
    (message,) = messages(outbox)
    (notice,) = notices(app_client, keys.auditor)
    assert_told(message, notice, member_id=member_id, request=request, template="request_completed")
    assert "您的个人信息已删除" in message["body"]


def test_releasing_the_last_hold_runs_the_deletion_and_confirms_it(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    dpo_key: str,
    keys: Keys,
    outbox: Path,
) -> None:
    hold = place_hold(app_client, dpo_key, member_id)
    request = submitted(app_client, token_for(member_id), {"type": "deletion"})
    released = app_client.delete(f"/v1/members/{member_id}/holds/{hold}", headers=auth(dpo_key))
    assert released.status_code == 200, released.text
    on_hold, completed = messages(outbox)
    assert on_hold["template"] == "request_on_hold"
    _, notice = notices(app_client, keys.auditor)
    assert_told(
        completed, notice, member_id=member_id, request=request, template="request_completed"
    )
    assert notice["actor_role"] == "dpo"


def test_the_job_that_runs_a_deletion_whose_hold_lapsed_confirms_it(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    dpo_key: str,
    keys: Keys,
    outbox: Path,
    services: Services,
    services_for: ServicesFor,
) -> None:
    place_hold(app_client, dpo_key, member_id, until=(NOW + timedelta(days=2)).isoformat())
    request = submitted(app_client, token_for(member_id), {"type": "deletion"})
    later = NOW + timedelta(days=3)
    ran = release_lapsed_holds(services_for(services.sessions, clock=lambda: later))
    assert ran == [request["id"]]
    on_hold, completed = messages(outbox)
    assert on_hold["template"] == "request_on_hold"
    _, notice = notices(app_client, keys.auditor)
    assert_told(
        completed, notice, member_id=member_id, request=request, template="request_completed"
    )
    assert notice["actor"] is None  # a job: no one acted


def test_a_reviewed_deletion_is_received_then_confirmed_when_the_dpo_approves_it(
    reviewing: TestClient,
    member_id: str,
    token_for: SignIn,
    dpo_key: str,
    keys: Keys,
    outbox: Path,
) -> None:
    request = submitted(reviewing, token_for(member_id), {"type": "deletion"})
    approved = reviewing.post(f"/v1/requests/{request['id']}/approve", headers=auth(dpo_key))
    assert approved.status_code == 200, approved.text
    received, completed = messages(outbox)
    first, second = notices(reviewing, keys.auditor)
    assert_told(received, first, member_id=member_id, request=request, template="request_received")
    assert_told(
        completed, second, member_id=member_id, request=request, template="request_completed"
    )


def test_a_contact_that_cannot_be_opened_never_blocks_the_deletion(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    outbox: Path,
    session: Session,
    json_logs: Callable[[], str],
) -> None:
    # The stored address fails authentication (tampered with, or damaged).
    field = session.get(VaultField, (member_id, "email"))
    assert field is not None
    field.value_ct = bytes(field.value_ct)[:-1] + bytes([field.value_ct[-1] ^ 1])
    session.commit()
    session.close()
    request = submitted(app_client, token_for(member_id), {"type": "deletion"})
    assert request["status"] == "completed"
    assert messages(outbox) == []
    events = [json.loads(line).get("event") for line in json_logs().splitlines() if line]
    assert "rights.notice_contact_unreadable" in events
    assert "rights.notice_skipped" in events


def test_withdrawing_a_request_sends_nothing(
    app_client: TestClient, member_id: str, token_for: SignIn, outbox: Path
) -> None:
    token = token_for(member_id)
    request = submitted(app_client, token, NAME_CHANGE)
    cancelled = app_client.post(f"/v1/me/requests/{request['id']}/cancel", headers=auth(token))
    assert cancelled.status_code == 200, cancelled.text
    assert [m["template"] for m in messages(outbox)] == ["request_received"]


# -- a transport that fails ------------------------------------------------------------------


def shape(response: httpx.Response) -> dict[str, Any]:
    """What an answer says, without the ids and times that differ between two requests."""
    body = response.json()
    return {
        "status_code": response.status_code,
        "audit_seq": "Audit-Seq" in response.headers,
        "keys": list(body),
        "type": body["type"],
        "status": body["status"],
        "history": statuses(body),
        "overdue": body["overdue"],
        "fields": body["fields"],
        "recipients": [r["name"] for r in body["recipients"]],
    }


@pytest.mark.parametrize(
    "body",
    [NAME_CHANGE, {"type": "access"}, {"type": "deletion"}],
    ids=["received", "completed", "deleted"],
)
def test_a_failed_send_leaves_the_request_committed_and_the_answer_unchanged(
    body: dict[str, Any],
    app_client: TestClient,
    down_client: TestClient,
    refusing: Refusing,
    keys: Keys,
    token_for: SignIn,
    dpo_key: str,
    outbox: Path,
    json_logs: Callable[[], str],
) -> None:
    told = new_member(app_client, keys.crm, phone="13900000001")
    untold = new_member(app_client, keys.crm, phone="13900000002")
    normal = submit(app_client, token_for(told), body)
    failed = submit(down_client, token_for(untold), body)
    assert shape(failed) == shape(normal)
    # Committed: the DPO sees it as answered.
    shown = app_client.get(f"/v1/requests/{failed.json()['id']}", headers=auth(dpo_key))
    assert shown.json()["status"] == failed.json()["status"]
    # Tried once, not in the outbox, not recorded; logged by template and message id.
    (tried,) = refusing.tried
    assert [m["to"] for m in messages(outbox)] == [EMAIL]
    assert [n["members"] for n in notices(app_client, keys.auditor)] == [[told]]
    (line,) = [
        record
        for record in map(json.loads, filter(None, json_logs().splitlines()))
        if record.get("event") == "rights.notice_not_sent"
    ]
    assert (line["template"], line["message_id"], line["error_type"]) == (
        tried.template,
        tried.id,
        "NotifierError",
    )
    assert line["level"] == "error"


def test_a_failed_send_leaves_the_dpos_decisions_committed(
    app_client: TestClient,
    down_client: TestClient,
    refusing: Refusing,
    member_id: str,
    token_for: SignIn,
    dpo_key: str,
    keys: Keys,
) -> None:
    token = token_for(member_id)
    correction = submitted(down_client, token, NAME_CHANGE)
    rejected = down_client.post(
        f"/v1/requests/{correction['id']}/reject",
        json={"reason": REJECT_REASON},
        headers=auth(dpo_key),
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    hold = place_hold(down_client, dpo_key, member_id)
    deletion = submitted(down_client, token, {"type": "deletion"})
    assert deletion["status"] == "on_hold"
    released = down_client.delete(f"/v1/members/{member_id}/holds/{hold}", headers=auth(dpo_key))
    assert released.status_code == 200, released.text
    done = app_client.get(f"/v1/requests/{deletion['id']}", headers=auth(dpo_key)).json()
    assert done["status"] == "completed"
    assert [m.template for m in refusing.tried] == [
        "request_received",
        "request_rejected",
        "request_on_hold",
        "request_completed",
    ]
    assert notices(app_client, keys.auditor) == []


# -- canaries: no address, no body, in a log line or an entry ----------------------------------

CANARY_EMAIL = "canary.notice@example.org"
CANARY_PHONE = "13912345670"
CANARY_PHONE_FORMS = (CANARY_PHONE, "+86" + CANARY_PHONE, "139 1234 5670", "139-1234-5670")
CANARY_SMS_PHONE = "13912345671"
# Phrases only the request templates hold (zh-CN and en), and the rejection's reason.
BODY_PHRASES = (
    "我们已收到您关于",
    "已办结",
    "未能办理",
    "暂时需要保留",
    "您的个人信息已删除",
    "your request",
    REJECT_REASON,
)


def test_no_address_or_message_body_reaches_a_log_line_or_an_entry(
    app_client: TestClient,
    services: Services,
    keys: Keys,
    token_for: SignIn,
    dpo_key: str,
    relay_key: str,
    outbox: Path,
    session: Session,
    json_logs: Callable[[], str],
) -> None:
    by_email = new_member(app_client, keys.crm, email=CANARY_EMAIL, phone=CANARY_PHONE)
    by_sms = new_member(app_client, keys.crm, email=None, phone=CANARY_SMS_PHONE)
    # A transport whose error text names the recipient, as a careless one might.
    leaky = Refusing(lambda message: OSError(f"cannot reach {message.to}: {message.body}"))
    down = create_app(services=dataclasses.replace(services, notifier=leaky))
    with TestClient(down, raise_server_exceptions=False) as down_client:
        for client in (app_client, down_client):
            for member_id in (by_email, by_sms):
                token = token_for(member_id)
                english = {**auth(token), "Accept-Language": "en"}
                waiting = client.post("/v1/me/requests", json=NAME_CHANGE, headers=english)
                assert waiting.status_code == 201, waiting.text
                rejected = client.post(
                    f"/v1/requests/{waiting.json()['id']}/reject",
                    json={"reason": REJECT_REASON},
                    headers=auth(dpo_key),
                )
                assert rejected.status_code == 200, rejected.text
                # One copy per member at a time: relayed through one app, the member's own
                # through the other (each member is new for the second round).
                if client is app_client:
                    access = relay(client, relay_key, member_id, {"type": "access"})
                    assert access.status_code == 201, access.text
                else:
                    submitted(client, token, {"type": "access"})
            hold = place_hold(client, dpo_key, by_sms)
            submitted(client, token_for(by_sms), {"type": "deletion"})
            client.delete(f"/v1/members/{by_sms}/holds/{hold}", headers=auth(dpo_key))
            by_sms = new_member(app_client, keys.crm, email=None, phone=CANARY_SMS_PHONE)
            by_email = new_member(app_client, keys.crm, email=CANARY_EMAIL, phone=CANARY_PHONE)
        submitted(down_client, token_for(by_email), {"type": "deletion"})
    log = json_logs()

    # The scenario did send, and did fail, each kind of message.
    sent = {(m["template"], m["channel"]) for m in messages(outbox)}
    assert {t for t, _ in sent} == {
        "request_received",
        "request_completed",
        "request_rejected",
        "request_on_hold",
    }
    assert {c for _, c in sent} == {"email", "sms"}
    assert len(leaky.tried) >= 9 and "rights.notice_not_sent" in log
    bodies = [m.body for m in leaky.tried] + [m["body"] for m in messages(outbox)]
    assert any(REJECT_REASON in body for body in bodies)

    try:
        audit = b"\n".join(
            bytes(e) for e in session.execute(text("SELECT entry FROM audit_entry")).scalars()
        )
    finally:
        session.close()
    for where, haystack in (("log", log), ("audit", audit.decode())):
        for secret in (CANARY_EMAIL, "canary.notice", CANARY_SMS_PHONE, *CANARY_PHONE_FORMS):
            assert secret not in haystack, (where, secret)
        for phrase in BODY_PHRASES:
            assert phrase not in haystack, (where, phrase)
        for body in bodies:
            assert body.strip() not in haystack, where
