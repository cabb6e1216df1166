"""Sign-in and members' own actions, without I/O: codes, digests, the locale, the rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.deps import preferred_locale
from audit import actions
from audit.actions import Release, released
from consent.registry import (
    ConsentChange,
    RecordableStatus,
    SeparateConsentAlone,
    check_own_change,
    check_recorder,
)
from core.errors import Forbidden, InvalidInput
from policies import Policy
from principals.actor import Actor
from principals.members import member_actor
from principals.signin import (
    CODE_DIGITS,
    code_hash,
    new_code,
    normalise_code,
    throttle_digest,
)
from tests.conftest import NOW
from vault.crypto import blind_index
from vault.keys import Keyring

MEMBER = member_actor("m" * 24, "h" * 64)

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@given(st.integers(min_value=0, max_value=10**CODE_DIGITS - 1))
def test_a_code_is_read_back_however_it_was_typed(number: int) -> None:
    code = f"{number:06d}"
    assert normalise_code(code) == code
    assert normalise_code(code.translate(FULL_WIDTH)) == code  # a Chinese input method
    assert normalise_code(f" {code[:3]} {code[3:]} ") == code


@pytest.mark.parametrize("typed", ["12345", "1234567", "12345a", "١٢٣٤٥٦", "", "123 45"])
def test_anything_but_six_digits_is_not_a_code(typed: str) -> None:
    with pytest.raises(InvalidInput):
        normalise_code(typed)


def test_new_codes_are_six_digits_and_vary() -> None:
    codes = {new_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(codes) > 150


def test_the_code_hash_needs_the_challenge() -> None:
    token_a, token_b = "a" * 43, "b" * 43
    assert code_hash(token_a, "123456") != code_hash(token_b, "123456")
    assert code_hash(token_a, "123456") != code_hash(token_a, "123457")
    assert "123456" not in code_hash(token_a, "123456")


def test_throttle_digests_name_neither_the_contact_nor_its_blind_index() -> None:
    keyring = Keyring.generate()
    digest = throttle_digest(keyring, "signin/phone", "+8613812345678")
    assert "13812345678" not in digest
    assert digest != blind_index(keyring, "phone", "+8613812345678")
    assert digest not in blind_index(keyring, "phone", "+8613812345678")
    assert digest != throttle_digest(keyring, "signin/email", "+8613812345678")
    assert digest == throttle_digest(keyring, "signin/phone", "+8613812345678")
    # Stable across a KEK rotation: counters keep counting.
    assert throttle_digest(keyring.with_new_kek(), "signin/phone", "+8613812345678") == digest


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        (None, "zh-CN"),
        ("", "zh-CN"),
        ("en", "en"),
        ("en-US,en;q=0.9", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("en;q=0.5, zh-TW;q=0.8", "zh-CN"),
        ("fr-FR, en;q=0.1", "en"),
        ("fr-FR, de", "zh-CN"),
        ("en;q=0", "zh-CN"),
        ("en;q=nan", "zh-CN"),
        ("en;q=oops", "zh-CN"),
        ("EN-gb", "en"),
        ("*", "zh-CN"),
        ("zh, en", "zh-CN"),
        ("en, zh", "en"),
    ],
)
def test_the_message_locale_follows_accept_language(header: str | None, locale: str) -> None:
    assert preferred_locale(header) == locale


@given(st.text(max_size=200))
def test_any_accept_language_gives_a_known_locale(header: str) -> None:
    assert preferred_locale(header) in ("zh-CN", "en")


def change(*purposes: str, status: RecordableStatus = "granted") -> ConsentChange:
    return ConsentChange(purposes=list(purposes), status=status, channel="web", collected_at=NOW)


def test_a_member_grants_a_separate_consent_alone(policy: Policy) -> None:
    check_own_change(policy, change("partner_sharing"))
    check_own_change(policy, change("marketing_sms", "marketing_email"))
    check_own_change(policy, change("partner_sharing", "marketing_sms", status="withdrawn"))
    with pytest.raises(SeparateConsentAlone) as refused:
        check_own_change(policy, change("marketing_sms", "identity_verification"))
    assert refused.value.extra["separate_purposes"] == ["identity_verification"]
    check_own_change(policy, change("fax", "marketing_sms"))  # unknown: check_change's to say


def test_a_member_may_record_their_own_separate_consent_and_a_client_may_not(
    policy: Policy,
) -> None:
    alone = change("partner_sharing")
    check_recorder(
        policy,
        alone,
        recorder_purposes=frozenset(),
        recorder_collects_only=False,
        recorder_is_member=True,
    )
    with pytest.raises(Forbidden):
        check_recorder(policy, alone, recorder_purposes=frozenset(), recorder_collects_only=False)
    with pytest.raises(Forbidden):  # bundled: not even the member
        check_recorder(
            policy,
            change("partner_sharing", "marketing_sms"),
            recorder_purposes=frozenset(),
            recorder_collects_only=False,
            recorder_is_member=True,
        )


def _stored(record: actions.Record) -> dict[str, object]:
    return {"action": str(record.action), "decision": record.decision, "fields": record.fields}


def test_a_self_read_releases_every_field_in_clear_to_the_member() -> None:
    record = actions.member_self_read(MEMBER, policy="v", fields=["phone", "name"], request_id="r")
    assert (record.actor, record.actor_kind, record.members) == (MEMBER.id, "member", [MEMBER.id])
    assert released(_stored(record)) == (Release.FIELDS, {"name": "clear", "phone": "clear"})


def test_a_sign_in_releases_nothing_and_a_burn_has_no_actor() -> None:
    signed_in = actions.member_signin(
        MEMBER, policy="v", member_id=MEMBER.id, channel="sms", decision="permit", request_id=None
    )
    assert (signed_in.actor, signed_in.actor_kind) == (MEMBER.id, "member")
    assert released(_stored(signed_in)) == (Release.NONE, {})
    burned = actions.member_signin(
        None, policy="v", member_id=MEMBER.id, channel="sms", decision="deny", request_id=None
    )
    assert (burned.actor, burned.decision, burned.members) == (None, "deny", [MEMBER.id])
    signed_out = actions.member_signed_out(MEMBER, policy="v", request_id=None)
    assert released(_stored(signed_out)) == (Release.NONE, {})


def test_the_members_builders_refuse_the_wrong_actor() -> None:
    client = Actor(id="c" * 24, name="crm", role="client", kind="client")
    with pytest.raises(ValueError):
        actions.member_self_read(client, policy="v", fields=["name"], request_id=None)
    with pytest.raises(ValueError):
        actions.member_signed_out(client, policy="v", request_id=None)
    with pytest.raises(ValueError):  # someone else's sign-in
        actions.member_signin(
            MEMBER,
            policy="v",
            member_id="o" * 24,
            channel="sms",
            decision="permit",
            request_id=None,
        )
    with pytest.raises(ValueError):
        actions.member_signin(
            None, policy="v", member_id=MEMBER.id, channel="sms", decision="permit", request_id=None
        )
    with pytest.raises(ValueError):
        actions.member_signin(
            MEMBER, policy="v", member_id=MEMBER.id, channel="sms", decision="deny", request_id=None
        )
