"""Policy loading, validation messages, versioning and the pure decision functions.

The decision is tested through the functions the gate runs, in its order:
``decide_purpose``, the member-not-found refusal, ``decide_member``; and
``decide_lookup`` for lookups.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import PolicyError, load_policy
from policies.decide import (
    WITHHELD_NOT_IN_PURPOSE,
    ConsentFact,
    Decision,
    decide_lookup,
    decide_member,
    decide_purpose,
    deny,
)
from policies.loader import default_policy_dir
from policies.model import VIEWS_BY_TYPE
from vault.masking import apply_view

POLICY = load_policy()
SAMPLE = {
    "name": "张三",
    "phone": "+8613812345678",
    "email": "zhang@example.com",
    "date": "1990-05-17",
    "address": "广东省深圳市南山区科技园路88号",
    "id_number": "11010519491231002X",
    "enum": "金卡",
    "integer": 12,
    "text": "SZ-012",
}


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policy"
    shutil.copytree(default_policy_dir(), target)
    return target


def test_default_policy_describes_the_loyalty_programme() -> None:
    assert set(POLICY.fields) >= {
        "name",
        "phone",
        "email",
        "birthday",
        "gender",
        "address",
        "id_number",
        "tier",
        "points_balance",
        "registered_at",
        "channel",
        "home_store",
    }
    assert POLICY.fields["id_number"].sensitive
    assert POLICY.fields["tier"].values == ("普通", "银卡", "金卡", "钻石")
    assert POLICY.searchable_fields == ("phone", "email")
    assert POLICY.purposes["delivery"].legal_basis == "contract"
    assert POLICY.purposes["marketing_sms"].legal_basis == "consent"
    assert POLICY.purposes["birthday_benefits"].fields == {
        "birthday": "month_day",
        "name": "masked",
        "tier": "clear",
    }
    assert POLICY.purposes["partner_sharing"].separate_consent_ground == "third_party"
    assert POLICY.purposes["identity_verification"].separate_consent_ground == "sensitive"
    assert POLICY.purposes["analytics"].member_id == "pseudonym"


def test_policy_version_is_stable_and_changes_with_the_policy(policy_dir: Path) -> None:
    assert load_policy(policy_dir).version == POLICY.version
    purposes = policy_dir / "purposes.toml"
    purposes.write_text(purposes.read_text().replace("retention_days = 90", "retention_days = 91"))
    assert load_policy(policy_dir).version != POLICY.version


def test_policy_version_ignores_formatting(policy_dir: Path) -> None:
    purposes = policy_dir / "purposes.toml"
    purposes.write_text("# a comment\n\n" + purposes.read_text())
    assert load_policy(policy_dir).version == POLICY.version


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (
            "purposes.toml",
            'legal_basis = "contract"\nretention_days = 90',
            'legal_basis = "contrakt"\nretention_days = 90',
            "purposes.toml: purposes.delivery.legal_basis:",
        ),
        (
            "purposes.toml",
            'fields = { name = "clear", phone = "clear", address = "clear" }',
            'fields = { name = "clear", phone = "clear", adress = "clear" }',
            "unknown field 'adress'",
        ),
        (
            "purposes.toml",
            'fields = { name = "clear", phone = "clear", address = "clear" }',
            'fields = { name = "clear", phone = "year", address = "clear" }',
            "view 'year' does not apply to phone",
        ),
        ("fields.toml", 'type = "phone"', 'type = "telephone"', "fields.toml: fields.phone.type:"),
        (
            "fields.toml",
            'category = "contact"\nsearchable = true\nrequired = true',
            'category = "contact"\nsearchable = true\nrequired = true\ncolour = "red"',
            "fields.phone.colour:",
        ),
        (
            "purposes.toml",
            'separate_consent_ground = "third_party"\n',
            "",
            "separate_consent needs separate_consent_ground",
        ),
        (  # "$" matches before a final newline: ids are matched whole
            "programme.toml",
            'channels = ["app", ',
            'channels = ["app\\n", ',
            "is not a valid channel id",
        ),
    ],
)
def test_bad_policy_names_the_file_the_key_and_the_problem(
    policy_dir: Path, file: str, old: str, new: str, expected: str
) -> None:
    target = policy_dir / file
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    with pytest.raises(PolicyError) as info:
        load_policy(policy_dir)
    assert any(expected in problem for problem in info.value.problems), info.value.problems
    assert all(problem.startswith(str(policy_dir)) for problem in info.value.problems)


def test_sensitive_field_in_a_purpose_without_separate_consent_is_rejected(
    policy_dir: Path,
) -> None:
    target = policy_dir / "purposes.toml"
    text = target.read_text()
    target.write_text(
        text.replace(
            'fields = { name = "clear", phone = "clear", address = "clear" }',
            'fields = { name = "clear", id_number = "masked" }',
        )
    )
    with pytest.raises(PolicyError, match="sensitive field needs a purpose"):
        load_policy(policy_dir)


def test_invalid_toml_and_duplicate_definitions_are_reported(policy_dir: Path) -> None:
    (policy_dir / "extra.toml").write_text(
        "[purposes.delivery]\ndescription = 'again'\nlegal_basis='contract'\n"
    )
    (policy_dir / "broken.toml").write_text("[fields\n")
    with pytest.raises(PolicyError) as info:
        load_policy(policy_dir)
    text = "\n".join(info.value.problems)
    assert "broken.toml: not valid TOML" in text
    assert "purposes.delivery: already defined in" in text
    assert "extra.toml" in text


def test_missing_policy_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such file or directory"):
        load_policy(tmp_path / "nope")


@pytest.mark.parametrize(("field_type", "views"), sorted(VIEWS_BY_TYPE.items()))
def test_every_view_the_policy_allows_is_implemented(
    field_type: str, views: frozenset[str]
) -> None:
    # The parameters of the views that need them ("band", a text field's "region").
    params = {"bands": (0, 1000, 5000), "region_pattern": re.compile(r"^([A-Z]{2})-")}
    for view in views - {"pseudonym"}:  # pseudonym is computed from the member id by the gate
        result = apply_view(field_type, view, SAMPLE[field_type], **params)
        assert isinstance(result, str | int)


CLIENT_ALL = frozenset(POLICY.purposes)


def read_decision(
    purpose: str,
    client_purposes: frozenset[str],
    member_exists: bool,
    consent: ConsentFact | None,
) -> Decision:
    """A single read's decision, composed as gate/reads.py ``_decide`` composes it.

    ``decide_purpose`` first; a permitted purpose for a member without a data
    key is refused as not found; only then does ``decide_member`` look at consent.
    """
    decision = decide_purpose(POLICY, purpose=purpose, client_purposes=client_purposes)
    if decision.permitted and not member_exists:
        decision = deny("member-not-found", purpose)
    if decision.permitted:
        decision = decide_member(POLICY, decision, consent)
    return decision


def assert_purpose_permit(decision: Decision, purpose: str) -> None:
    """``decide_purpose``'s permit: the purpose's legal basis, its fields, the rest withheld."""
    spec = POLICY.purposes[purpose]
    assert decision == Decision(
        outcome="permit",
        reason=f"legal-basis:{spec.legal_basis}",
        purpose=purpose,
        views=dict(spec.fields),
        withheld={
            name: WITHHELD_NOT_IN_PURPOSE for name in POLICY.fields if name not in spec.fields
        },
    )


# Which step of the production path settles each case: "purpose"
# (decide_purpose), "existence" (the gate's member-not-found refusal) or
# "member" (decide_member, on the member's consent).
@pytest.mark.parametrize(
    ("purpose", "granted", "exists", "consent", "outcome", "reason", "settled_by"),
    [
        ("nope", CLIENT_ALL, True, None, "deny", "unknown-purpose", "purpose"),
        ("delivery", frozenset(), True, None, "deny", "purpose-not-allowed", "purpose"),
        ("delivery", CLIENT_ALL, False, None, "deny", "member-not-found", "existence"),
        ("delivery", CLIENT_ALL, True, None, "permit", "legal-basis:contract", "member"),
        ("marketing_sms", CLIENT_ALL, True, None, "deny", "consent-required", "member"),
        (
            "marketing_sms",
            CLIENT_ALL,
            True,
            ConsentFact("withdrawn", "privacy-2026-01"),
            "deny",
            "consent-required",
            "member",
        ),
        (
            "marketing_sms",
            CLIENT_ALL,
            True,
            ConsentFact("refused", "privacy-2026-01"),
            "deny",
            "consent-required",
            "member",
        ),
        (
            "marketing_sms",
            CLIENT_ALL,
            True,
            ConsentFact("granted", "privacy-2026-01"),
            "permit",
            "legal-basis:consent",
            "member",
        ),
        (
            "personalization",
            CLIENT_ALL,
            True,
            ConsentFact("granted", "privacy-2025-06"),
            "deny",
            "consent-outdated",
            "member",
        ),
    ],
)
def test_decision_table(purpose, granted, exists, consent, outcome, reason, settled_by) -> None:  # type: ignore[no-untyped-def]
    # Each step's own output, in the order production runs them.
    by_purpose = decide_purpose(POLICY, purpose=purpose, client_purposes=granted)
    if settled_by == "purpose":
        assert (by_purpose.outcome, by_purpose.reason) == (outcome, reason)
        # A refusal of the purpose is final: decide_member passes it through.
        assert decide_member(POLICY, by_purpose, consent) == by_purpose
    else:
        assert_purpose_permit(by_purpose, purpose)
        if settled_by == "existence":
            assert not exists
            not_found = deny("member-not-found", purpose)
            assert (not_found.outcome, not_found.reason, not_found.purpose) == (
                outcome,
                reason,
                purpose,
            )
        else:
            assert exists
            by_member = decide_member(POLICY, by_purpose, consent)
            assert (by_member.outcome, by_member.reason) == (outcome, reason)
            if by_member.permitted:
                assert by_member == by_purpose
    # And the composition, as the read path runs it.
    decision = read_decision(purpose, granted, exists, consent)
    assert (decision.outcome, decision.reason) == (outcome, reason)
    if outcome == "deny":
        assert decision.views == {}
        assert decision.withheld == {}


def test_purpose_check_comes_before_member_existence() -> None:
    # A client must not learn whether a member exists through a purpose it lacks.
    by_purpose = decide_purpose(POLICY, purpose="delivery", client_purposes=frozenset())
    assert (by_purpose.outcome, by_purpose.reason) == ("deny", "purpose-not-allowed")
    decision = read_decision("delivery", frozenset(), member_exists=False, consent=None)
    assert decision.reason == "purpose-not-allowed"


@given(
    purpose=st.sampled_from(sorted(POLICY.purposes)),
    status=st.sampled_from(["granted", "withdrawn", "refused", "expired"]),
    notice=st.sampled_from(sorted(POLICY.notices)),
)
def test_a_permit_releases_only_the_purposes_fields_and_withholds_the_rest(
    purpose: str, status: str, notice: str
) -> None:
    by_purpose = decide_purpose(POLICY, purpose=purpose, client_purposes=CLIENT_ALL)
    assert_purpose_permit(by_purpose, purpose)
    decision = decide_member(POLICY, by_purpose, ConsentFact(status, notice))
    assert decision == read_decision(
        purpose, CLIENT_ALL, member_exists=True, consent=ConsentFact(status, notice)
    )
    spec = POLICY.purposes[purpose]
    if decision.permitted:
        assert decision.views == dict(spec.fields)
        assert set(decision.views) | set(decision.withheld) == set(POLICY.fields)
        assert not set(decision.views) & set(decision.withheld)
        if spec.needs_consent:
            assert status == "granted" and notice in spec.accepted_notices
    else:
        assert spec.needs_consent
        assert status != "granted" or notice not in spec.accepted_notices
        assert (decision.views, decision.withheld) == ({}, {})


@pytest.mark.parametrize(
    ("purpose", "granted", "field_name", "outcome", "reason"),
    [
        ("delivery", CLIENT_ALL, "phone", "permit", "legal-basis:contract"),
        ("customer_service", CLIENT_ALL, "email", "permit", "legal-basis:contract"),
        # Consent is then decided per member found (decide_member), as for a read.
        ("marketing_sms", CLIENT_ALL, "phone", "permit", "legal-basis:consent"),
        # Only by a field the purpose itself may see.
        ("delivery", CLIENT_ALL, "email", "deny", "lookup-not-allowed"),
        # ... and lists in its ``lookup``: partner_sharing sees the phone in
        # clear, but has no business finding members by it.
        ("partner_sharing", CLIENT_ALL, "phone", "deny", "lookup-not-allowed"),
        # membership sees the phone masked and may find members by it.
        ("membership", CLIENT_ALL, "phone", "permit", "legal-basis:contract"),
        # Never for a pseudonymous purpose.
        ("analytics", CLIENT_ALL, "phone", "deny", "lookup-not-allowed"),
        # Refusals of the purpose come first and pass through unchanged.
        ("delivery", frozenset(), "phone", "deny", "purpose-not-allowed"),
        ("nope", CLIENT_ALL, "phone", "deny", "unknown-purpose"),
    ],
)
def test_lookup_decision_table(
    purpose: str, granted: frozenset[str], field_name: str, outcome: str, reason: str
) -> None:
    # As gate/lookups.py ``lookup_members`` runs them: decide_purpose, then decide_lookup.
    by_purpose = decide_purpose(POLICY, purpose=purpose, client_purposes=granted)
    decision = decide_lookup(POLICY, by_purpose, field_name)
    assert (decision.outcome, decision.reason) == (outcome, reason)
    if by_purpose.permitted:
        assert_purpose_permit(by_purpose, purpose)
    else:
        assert decision == by_purpose
    if decision.permitted:
        assert decision == by_purpose
    else:
        assert decision.views == {}


def test_a_pseudonymous_purpose_may_not_look_up_even_by_a_field_it_sees() -> None:
    # A lookup by phone answered with a pseudonym would re-identify the data
    # set. The loader refuses such a policy (next test); the decision refuses
    # it too, so that it does not rest on the loader alone.
    analytics = POLICY.purposes["analytics"]
    unchecked = analytics.model_copy(
        update={"fields": {**analytics.fields, "phone": "masked"}, "lookup": ("phone",)}
    )
    policy = POLICY.model_copy(update={"purposes": {**POLICY.purposes, "analytics": unchecked}})
    by_purpose = decide_purpose(policy, purpose="analytics", client_purposes=CLIENT_ALL)
    assert by_purpose.permitted
    decision = decide_lookup(policy, by_purpose, "phone")
    assert (decision.outcome, decision.reason) == ("deny", "lookup-not-allowed")


@pytest.mark.parametrize(
    ("purpose", "lookup", "problem"),
    [
        # A pseudonymous purpose: a lookup would re-identify its data set.
        ("analytics", '["phone"]', "member_id = 'clear'"),
        # A field the purpose does not see at all.
        ("partner_sharing", '["email"]', "purpose's fields"),
        # A field that has no blind index.
        ("partner_sharing", '["name"]', "not a searchable field"),
        ("partner_sharing", '["telepathy"]', "not a searchable field"),
    ],
)
def test_a_lookup_field_the_purpose_may_not_use_is_rejected_at_load(
    policy_dir: Path, purpose: str, lookup: str, problem: str
) -> None:
    target = policy_dir / "purposes.toml"
    text = target.read_text()
    header = f"[purposes.{purpose}]\n"
    assert header in text
    target.write_text(text.replace(header, f"{header}lookup = {lookup}\n", 1))
    with pytest.raises(PolicyError) as excinfo:
        load_policy(policy_dir)
    assert f"purposes.{purpose}.lookup" in str(excinfo.value)
    assert problem in str(excinfo.value)


def test_lookup_fields_default_to_none(policy_dir: Path) -> None:
    target = policy_dir / "purposes.toml"
    text = target.read_text()
    assert 'lookup = ["phone"]\n' in text
    target.write_text(text.replace('lookup = ["phone"]\n', ""))
    policy = load_policy(policy_dir)
    assert policy.purposes["delivery"].lookup == ()
    by_purpose = decide_purpose(policy, purpose="delivery", client_purposes=CLIENT_ALL)
    assert decide_lookup(policy, by_purpose, "phone").reason == "lookup-not-allowed"


def test_a_purpose_can_take_a_fields_default_view(policy_dir: Path) -> None:
    target = policy_dir / "purposes.toml"
    text = target.read_text()
    target.write_text(
        text.replace(
            'fields = { name = "clear", phone = "clear", address = "clear" }',
            'fields = { name = "clear", phone = "default", address = "clear" }',
        )
    )
    assert load_policy(policy_dir).purposes["delivery"].fields["phone"] == "masked"
