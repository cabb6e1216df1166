"""The gate's decision: pure, so that it can be tested exhaustively.

Facts go in (policy, the purpose asked for, what the client is granted, whether
the member exists, the member's current consent for the purpose); a decision
comes out. Nothing here reads a clock, a database or a cache: a withdrawal is
seen because the caller reads the consent state in the same transaction that
records the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from policies.model import Policy

Outcome = Literal["permit", "deny"]

WITHHELD_NOT_IN_PURPOSE = "not-needed-for-purpose"


@dataclass(frozen=True, slots=True)
class ConsentFact:
    status: str
    notice_version: str | None


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    # A stable slug: for a permit, the legal basis it rests on
    # ("legal-basis:contract"); for a denial, why (also the problem type).
    reason: str
    purpose: str | None
    views: dict[str, str] = field(default_factory=dict)
    withheld: dict[str, str] = field(default_factory=dict)

    @property
    def permitted(self) -> bool:
        return self.outcome == "permit"


def deny(reason: str, purpose: str | None) -> Decision:
    return Decision(outcome="deny", reason=reason, purpose=purpose)


def decide_purpose(policy: Policy, *, purpose: str, client_purposes: frozenset[str]) -> Decision:
    """The member-independent half: is this purpose known and granted to the client?

    Checked before the member is looked up, so that a client cannot learn
    whether a member exists through a purpose it was never granted.
    """
    if purpose not in policy.purposes:
        return deny("unknown-purpose", None)
    if purpose not in client_purposes:
        return deny("purpose-not-allowed", purpose)
    spec = policy.purposes[purpose]
    views = dict(spec.fields)
    withheld = {name: WITHHELD_NOT_IN_PURPOSE for name in policy.fields if name not in views}
    return Decision(
        outcome="permit",
        reason=f"legal-basis:{spec.legal_basis}",
        purpose=purpose,
        views=views,
        withheld=withheld,
    )


def decide_member(
    policy: Policy, purpose_decision: Decision, consent: ConsentFact | None
) -> Decision:
    """The member-dependent half: does this member's consent admit the purpose?"""
    if not purpose_decision.permitted or purpose_decision.purpose is None:
        return purpose_decision
    spec = policy.purposes[purpose_decision.purpose]
    if not spec.needs_consent:
        return purpose_decision
    if consent is None or consent.status != "granted":
        return deny("consent-required", purpose_decision.purpose)
    if consent.notice_version not in spec.accepted_notices:
        # Consent given under a notice the policy no longer accepts must be
        # collected again under the current one.
        return deny("consent-outdated", purpose_decision.purpose)
    return purpose_decision


def decide_lookup(policy: Policy, purpose_decision: Decision, field_name: str) -> Decision:
    """May this purpose find members by ``field_name``?

    Only by a field the purpose itself may see, and never for a purpose that
    releases pseudonyms: a lookup by phone that returned a pseudonym would
    re-identify the pseudonymous data set.
    """
    if not purpose_decision.permitted or purpose_decision.purpose is None:
        return purpose_decision
    spec = policy.purposes[purpose_decision.purpose]
    view = spec.fields.get(field_name)
    if spec.member_id == "pseudonym" or view is None or view == "pseudonym":
        return deny("lookup-not-allowed", purpose_decision.purpose)
    return purpose_decision


def decide(
    policy: Policy,
    *,
    purpose: str,
    client_purposes: frozenset[str],
    member_exists: bool,
    consent: ConsentFact | None,
) -> Decision:
    decision = decide_purpose(policy, purpose=purpose, client_purposes=client_purposes)
    if not decision.permitted:
        return decision
    if not member_exists:
        return deny("member-not-found", purpose)
    return decide_member(policy, decision, consent)
