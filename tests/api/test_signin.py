"""Members sign in with a one-time code: the contract of /v1/me/login, /verify and /logout.

Codes are read from the outbox, as the demo does. Time is the services'
injected clock (``StepClock``), never the wall clock; the rate limits count in
``limits``' own (wall-clock) windows, which no test here waits out.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, inspect, select, text
from sqlalchemy.orm import Session

from api.app import create_app
from audit.entry import parse_entry
from audit.models import AuditEntry
from gate.context import Services
from principals.members import delete_member_sessions
from principals.models import MemberLoginChallenge, MemberSession
from tests.api.conftest import MEMBER, auth, code_in, outbox_messages, sign_in
from tests.conftest import NOW, Keys
from vault.members import shred_member

PHONE = MEMBER["phone"]
PHONE_E164 = "+86" + PHONE
UNKNOWN_PHONE = "13987654321"
EMAIL = "zhang.san@example.com"


class StepClock:
    """The services' clock: one millisecond per reading, and ``advance`` jumps ahead."""

    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


def login(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/me/login", json=body)


def verify(client: TestClient, challenge: str, code: str) -> Any:
    return client.post("/v1/me/login/verify", json={"challenge": challenge, "code": code})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def entries(session: Session, action: str | None = None) -> list[dict[str, Any]]:
    rows = session.execute(select(AuditEntry.entry).order_by(AuditEntry.seq)).scalars()
    parsed = [parse_entry(bytes(raw)) for raw in rows]
    return [e for e in parsed if action is None or e["action"] == action]


def challenges(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(MemberLoginChallenge)) or 0


# -- the whole flow ---------------------------------------------------------------


def test_a_member_signs_in_by_phone_reads_their_fields_and_signs_out(
    app_client: TestClient, member_id: str, outbox: Path, session: Session
) -> None:
    started = login(app_client, phone="138 1234 5678")
    assert started.status_code == 202, started.text
    body = started.json()
    assert set(body) == {"challenge", "expires_at"}
    assert datetime.fromisoformat(body["expires_at"]) > NOW

    (message,) = outbox_messages(outbox)
    assert (message["channel"], message["to"], message["template"]) == (
        "sms",
        PHONE_E164,
        "login_code",
    )
    assert message["locale"] == "zh-CN" and "验证码" in message["body"]

    verified = verify(app_client, body["challenge"], code_in(message))
    assert verified.status_code == 200, verified.text
    token = verified.json()["token"]
    assert token.startswith("mgm_")
    # Tokens last member_token_minutes (30) from the sign-in.
    lasts = datetime.fromisoformat(verified.json()["expires_at"]) - NOW
    assert timedelta(minutes=30) <= lasts < timedelta(minutes=30, seconds=1)

    me = app_client.get("/v1/me", headers=auth(token))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == member_id
    fields = me.json()["fields"]
    assert fields["name"] == MEMBER["name"]
    assert fields["phone"] == PHONE_E164
    assert fields["id_number"] == MEMBER["id_number"]
    assert fields["points_balance"] == MEMBER["points_balance"]
    assert set(fields) == set(MEMBER)

    (self_read,) = entries(session, "member.self_read")
    assert int(me.headers["Audit-Seq"]) == self_read["seq"]
    assert (self_read["actor"], self_read["actor_kind"], self_read["actor_role"]) == (
        member_id,
        "member",
        "member",
    )
    assert self_read["members"] == [member_id]
    assert self_read["fields"] == {name: "clear" for name in MEMBER}
    (signin,) = entries(session, "member.signin")
    assert (signin["actor"], signin["decision"], signin["detail"]) == (
        member_id,
        "permit",
        {"channel": "sms"},
    )
    (notice,) = entries(session, "notice.sent")
    assert notice["actor"] is None and notice["members"] == [member_id]
    assert notice["detail"] == {
        "template": "login_code",
        "channel": "sms",
        "message": message["id"],
    }

    out = app_client.post("/v1/me/logout", headers=auth(token))
    assert out.status_code == 204, out.text
    (signout,) = entries(session, "member.signout")
    assert signout["actor"] == member_id and signout["actor_kind"] == "member"
    after = app_client.get("/v1/me", headers=auth(token))
    assert after.status_code == 401
    assert after.json()["type"] == "unauthenticated"
    again = app_client.post("/v1/me/logout", headers=auth(token))
    assert again.status_code == 401
    assert len(entries(session, "member.signout")) == 1


def test_a_member_signs_in_by_email_in_english_when_asked(
    app_client: TestClient, member_id: str, outbox: Path
) -> None:
    started = app_client.post(
        "/v1/me/login",
        json={"email": "  ZHANG.San@example.com "},
        headers={"Accept-Language": "en-GB,en;q=0.9,zh-CN;q=0.5"},
    )
    assert started.status_code == 202, started.text
    (message,) = outbox_messages(outbox)
    assert (message["channel"], message["to"], message["locale"]) == ("email", EMAIL, "en")
    assert message["subject"] == "Your Brand Loyalty Club sign-in code"
    verified = verify(app_client, started.json()["challenge"], code_in(message))
    assert verified.status_code == 200, verified.text
    me = app_client.get("/v1/me", headers=auth(verified.json()["token"]))
    assert me.json()["id"] == member_id


def test_chinese_is_the_default_and_wins_when_preferred(
    app_client: TestClient, member_id: str, outbox: Path
) -> None:
    for headers in ({}, *({"Accept-Language": v} for v in ("zh-CN,en;q=0.8", "fr-FR", "*"))):
        answer = app_client.post("/v1/me/login", json={"phone": PHONE}, headers=headers)
        assert answer.status_code == 202
    assert [m["locale"] for m in outbox_messages(outbox)] == ["zh-CN"] * 4


# -- no enumeration ---------------------------------------------------------------


def test_an_unknown_contact_gets_the_same_answer_and_no_code_is_sent(
    app_client: TestClient, member_id: str, outbox: Path, session: Session
) -> None:
    known = login(app_client, phone=PHONE)
    log_size = len(entries(session))
    rows = challenges(session)
    unknown = login(app_client, phone=UNKNOWN_PHONE)
    nobody = login(app_client, email="nobody@example.com")
    for answer in (unknown, nobody):
        assert answer.status_code == known.status_code == 202
        assert answer.json().keys() == known.json().keys()
        assert len(answer.json()["challenge"]) == len(known.json()["challenge"])
        assert answer.headers.keys() == known.headers.keys()
    # A challenge is opened all the same; no message, and nothing to record.
    assert challenges(session) == rows + 2
    assert len(outbox_messages(outbox)) == 1
    assert len(entries(session)) == log_size
    # Its challenge can be answered with no code at all: none was sent.
    for code in ("000000", "123456", "999999"):
        refused = verify(app_client, unknown.json()["challenge"], code)
        assert refused.status_code == 401 and refused.json()["type"] == "invalid-code"


def test_a_contact_two_members_share_signs_no_one_in(
    app_client: TestClient, keys: Keys, member_id: str, outbox: Path, session: Session
) -> None:
    twin = app_client.post(
        "/v1/members", json={"name": "张四", "phone": PHONE}, headers=auth(keys.crm)
    )
    assert twin.status_code == 201, twin.text
    shared = login(app_client, phone=PHONE)
    assert shared.status_code == 202
    assert outbox_messages(outbox) == []
    assert entries(session, "notice.sent") == []
    # Each can still sign in by a contact of their own.
    assert sign_in(app_client, outbox, email=EMAIL).startswith("mgm_")


def test_a_crypto_shredded_member_cannot_sign_in_and_their_code_stops_working(
    app_client: TestClient, member_id: str, outbox: Path, services: Services
) -> None:
    pending = login(app_client, phone=PHONE).json()["challenge"]
    (message,) = outbox_messages(outbox)
    with services.sessions() as session:
        assert shred_member(session, member_id)
        delete_member_sessions(session, member_id)  # what the deletion does with the shred
        session.commit()
    refused = verify(app_client, pending, code_in(message))
    assert refused.status_code == 401 and refused.json()["type"] == "challenge-closed"
    assert login(app_client, phone=PHONE).status_code == 202
    assert len(outbox_messages(outbox)) == 1  # no code for someone who is no one


def test_a_member_shredded_without_the_session_cleanup_still_gets_no_session(
    app_client: TestClient, member_id: str, outbox: Path, services: Services
) -> None:
    pending = login(app_client, phone=PHONE).json()["challenge"]
    (message,) = outbox_messages(outbox)
    with services.sessions() as session:
        assert shred_member(session, member_id)  # the challenge row stays
        session.commit()
    refused = verify(app_client, pending, code_in(message))
    assert refused.status_code == 401 and refused.json()["type"] == "challenge-closed"


# -- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"phone": "12345"},
        {"phone": "zhang.san@example.com"},
        {"email": "13812345678"},
        {"email": "zhang.san@"},
        {},
        {"phone": PHONE, "email": EMAIL},
        {"phone": PHONE, "purpose": "membership"},
        {"phone": 13812345678},
    ],
)
def test_a_malformed_login_is_422_and_never_echoes_the_value(
    app_client: TestClient, body: dict[str, Any], session: Session
) -> None:
    answer = login(app_client, **body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["type"] == "validation-failed"
    for value in body.values():
        assert str(value) not in answer.text
    assert challenges(session) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"challenge": "x" * 43, "code": "12345"},
        {"challenge": "x" * 43, "code": "1234567"},
        {"challenge": "x" * 43, "code": "12345a"},
        {"challenge": "x" * 42, "code": "123456"},
        {"challenge": "x" * 43 + "\n", "code": "123456"},
        {"challenge": "x" * 43},
        {"challenge": "x" * 43, "code": 123456},
    ],
)
def test_a_malformed_verification_is_422(app_client: TestClient, body: dict[str, Any]) -> None:
    answer = app_client.post("/v1/me/login/verify", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["type"] == "validation-failed"


def test_a_code_typed_with_full_width_digits_and_spaces_is_accepted(
    app_client: TestClient, member_id: str, outbox: Path
) -> None:
    challenge = login(app_client, phone=PHONE).json()["challenge"]
    code = code_in(outbox_messages(outbox)[0])
    typed = " ".join(chr(ord(d) - ord("0") + ord("０")) for d in code)
    assert verify(app_client, challenge, typed).status_code == 200


# -- wrong, burned, expired, used ---------------------------------------------------


def test_a_wrong_code_is_401_invalid_code_and_says_how_many_are_left(
    app_client: TestClient, member_id: str, outbox: Path, session: Session
) -> None:
    challenge = login(app_client, phone=PHONE).json()["challenge"]
    code = code_in(outbox_messages(outbox)[0])
    refused = verify(app_client, challenge, wrong(code))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert refused.json()["type"] == "invalid-code"
    assert refused.json()["attempts_left"] == 4
    assert code not in refused.text
    assert entries(session, "member.signin") == []  # a wrong code is not recorded one by one
    assert verify(app_client, challenge, code).status_code == 200  # the right one still works


def test_five_wrong_codes_burn_the_challenge_and_the_burn_is_recorded(
    app_client: TestClient, member_id: str, outbox: Path, session: Session
) -> None:
    challenge = login(app_client, phone=PHONE).json()["challenge"]
    code = code_in(outbox_messages(outbox)[0])
    left = []
    for _ in range(5):
        refused = verify(app_client, challenge, wrong(code))
        assert refused.status_code == 401 and refused.json()["type"] == "invalid-code"
        left.append(refused.json()["attempts_left"])
    assert left == [4, 3, 2, 1, 0]
    burned = verify(app_client, challenge, code)
    assert burned.status_code == 401
    assert burned.json()["type"] == "challenge-closed"
    (deny,) = entries(session, "member.signin")
    assert (deny["decision"], deny["reason"], deny["members"]) == (
        "deny",
        "too-many-wrong-codes",
        [member_id],
    )
    assert deny["actor"] is None and deny["actor_kind"] is None
    # A new code opens a new challenge.
    assert sign_in(app_client, outbox, phone=PHONE).startswith("mgm_")


def test_burning_a_challenge_for_no_member_records_nothing(
    app_client: TestClient, session: Session
) -> None:
    challenge = login(app_client, phone=UNKNOWN_PHONE).json()["challenge"]
    size = len(entries(session))
    for _ in range(5):
        assert verify(app_client, challenge, "123456").json()["type"] == "invalid-code"
    assert verify(app_client, challenge, "123456").json()["type"] == "challenge-closed"
    assert len(entries(session)) == size


def test_a_code_expires_after_the_configured_minutes(
    app_client: TestClient, member_id: str, outbox: Path, clock: StepClock
) -> None:
    challenge = login(app_client, phone=PHONE).json()["challenge"]
    code = code_in(outbox_messages(outbox)[0])
    clock.advance(minutes=10)
    expired = verify(app_client, challenge, code)
    assert expired.status_code == 401
    assert expired.json()["type"] == "challenge-closed"


def test_a_code_just_inside_its_lifetime_still_works(
    app_client: TestClient, member_id: str, outbox: Path, clock: StepClock
) -> None:
    challenge = login(app_client, phone=PHONE).json()["challenge"]
    code = code_in(outbox_messages(outbox)[0])
    clock.advance(minutes=9, seconds=59)
    assert verify(app_client, challenge, code).status_code == 200


def test_a_code_answers_once(app_client: TestClient, member_id: str, outbox: Path) -> None:
    challenge = login(app_client, phone=PHONE).json()["challenge"]
    code = code_in(outbox_messages(outbox)[0])
    assert verify(app_client, challenge, code).status_code == 200
    again = verify(app_client, challenge, code)
    assert again.status_code == 401 and again.json()["type"] == "challenge-closed"


def test_a_code_answers_only_its_own_challenge(
    app_client: TestClient, member_id: str, outbox: Path
) -> None:
    first = login(app_client, phone=PHONE).json()["challenge"]
    second = login(app_client, phone=PHONE).json()["challenge"]
    first_code, second_code = (code_in(m) for m in outbox_messages(outbox))
    if first_code != second_code:  # (one chance in a million that they are the same)
        refused = verify(app_client, first, second_code)
        assert refused.json()["type"] == "invalid-code"
    assert verify(app_client, second, second_code).status_code == 200
    assert verify(app_client, first, first_code).status_code == 200  # both were open


def test_an_unknown_challenge_is_closed(app_client: TestClient) -> None:
    refused = verify(app_client, "A" * 43, "123456")
    assert refused.status_code == 401 and refused.json()["type"] == "challenge-closed"


def test_a_member_token_lasts_the_configured_minutes(
    app_client: TestClient, member_token: str, clock: StepClock
) -> None:
    assert app_client.get("/v1/me", headers=auth(member_token)).status_code == 200
    clock.advance(minutes=29, seconds=58)
    assert app_client.get("/v1/me", headers=auth(member_token)).status_code == 200
    clock.advance(seconds=2)
    expired = app_client.get("/v1/me", headers=auth(member_token))
    assert expired.status_code == 401 and expired.json()["type"] == "unauthenticated"
    assert app_client.post("/v1/me/logout", headers=auth(member_token)).status_code == 401


def test_expired_challenges_are_purged_by_the_next_request_for_a_code(
    app_client: TestClient, member_id: str, session: Session, clock: StepClock
) -> None:
    login(app_client, phone=PHONE)
    login(app_client, phone=UNKNOWN_PHONE)
    assert challenges(session) == 2
    clock.advance(minutes=11)
    login(app_client, phone=PHONE)
    assert challenges(session) == 1


# -- rate limits ----------------------------------------------------------------------


@pytest.fixture
def limited(services: Services) -> Iterator[Services]:
    settings = services.settings.model_copy(
        update={
            "member_login_rate_per_contact": "3/hour;100/day",
            "member_login_rate_per_address": "4/hour",
            "member_verify_rate_per_address": "6/hour",
        }
    )
    yield dataclasses.replace(services, settings=settings)


def from_address(services: Services, address: str) -> TestClient:
    return TestClient(
        create_app(services=services), raise_server_exceptions=False, client=(address, 40000)
    )


def assert_rate_limited(answer: Any) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.json()["type"] == "rate-limited"
    assert 1 <= int(answer.headers["Retry-After"]) <= 3600


def test_codes_for_one_contact_are_limited_from_any_address(
    limited: Services, member_id: str, outbox: Path
) -> None:
    for n in range(3):
        assert login(from_address(limited, f"198.51.100.{n}"), phone=PHONE).status_code == 202
    refused = login(from_address(limited, "198.51.100.9"), phone="+86 138-1234-5678")
    assert_rate_limited(refused)
    assert PHONE not in refused.text
    assert len(outbox_messages(outbox)) == 3  # the refused request sent nothing
    # The same for a contact no member has: the limit does not tell them apart.
    for n in range(3):
        client = from_address(limited, f"198.51.100.{n}")
        assert login(client, phone=UNKNOWN_PHONE).status_code == 202
    assert_rate_limited(login(from_address(limited, "198.51.100.9"), phone=UNKNOWN_PHONE))
    # Other contacts are not held back.
    assert login(from_address(limited, "198.51.100.9"), email=EMAIL).status_code == 202


def test_codes_asked_from_one_address_are_limited(
    limited: Services, member_id: str, session: Session
) -> None:
    client = from_address(limited, "203.0.113.7")
    for n in range(4):
        assert login(client, phone=f"1391234567{n}").status_code == 202
    assert_rate_limited(login(client, phone="13912345679"))
    assert challenges(session) == 4  # nothing was written for the refusal
    assert login(from_address(limited, "203.0.113.8"), phone=PHONE).status_code == 202


def test_codes_tried_from_one_address_are_limited(
    limited: Services, member_id: str, outbox: Path
) -> None:
    client = from_address(limited, "203.0.113.7")
    for _ in range(6):
        assert verify(client, "A" * 43, "123456").json()["type"] == "challenge-closed"
    assert_rate_limited(verify(client, "A" * 43, "123456"))
    # Another address still signs in.
    other = from_address(limited, "203.0.113.8")
    assert sign_in(other, outbox, phone=PHONE).startswith("mgm_")


# -- nothing in clear -----------------------------------------------------------------


def stored_text(session: Session) -> list[tuple[str, str, str]]:
    """(table, column, text) of every stored value, long hex runs (hashes) taken out: a
    six-digit code may occur by chance inside a hash, which does not store it."""
    found = []
    for table in inspect(session.connection()).get_table_names():
        for row in session.execute(text(f"SELECT * FROM {table}")).mappings():
            for column, value in row.items():
                if isinstance(value, bytes | memoryview):
                    value = bytes(value).decode("latin-1")
                if isinstance(value, str):
                    found.append((table, column, re.sub(r"[0-9a-f]{32,}", "", value)))
    return found


def test_codes_challenges_and_tokens_are_stored_only_as_hashes(
    app_client: TestClient, member_id: str, outbox: Path, session: Session
) -> None:
    challenge = login(app_client, phone=PHONE).json()["challenge"]
    code = code_in(outbox_messages(outbox)[0])
    verify(app_client, challenge, wrong(code))
    token = verify(app_client, challenge, code).json()["token"]
    pending = login(app_client, email=EMAIL).json()["challenge"]
    pending_code = code_in(outbox_messages(outbox)[1])
    stored = stored_text(session)
    assert {table for table, _c, _v in stored} >= {"member_login_challenge", "member_session"}
    for secret in (code, challenge, token, token.removeprefix("mgm_"), pending, pending_code):
        assert [(t, c) for t, c, v in stored if secret in v] == []
    # What is stored instead: the hashes.
    row = session.scalars(select(MemberLoginChallenge)).first()
    assert row is not None and len(row.id) == len(row.code_hash) == 64
    assert session.scalars(select(MemberSession.token_hash)).one() != token
    # The detector does see a value that is stored in clear.
    assert any(member_id in v for _t, _c, v in stored)


def test_the_outbox_message_and_the_answers_carry_no_hash_of_the_code(
    app_client: TestClient, member_id: str, outbox: Path, session: Session
) -> None:
    started = login(app_client, phone=PHONE)
    (message,) = outbox_messages(outbox)
    row = session.scalars(select(MemberLoginChallenge)).one()
    assert row.code_hash not in json.dumps(message) and row.code_hash not in started.text
    assert row.id not in started.text
