"""The gate's decision: pure, so that it can be tested exhaustively.

Facts go in (policy, the purpose asked for, what the client is granted, the
member's current consent for the purpose); a decision comes out. Whether the
member exists is the vault's fact (they have a data key); the gate refuses a
member who does not with ``deny("member-not-found", purpose)`` after
``decide_purpose``, so a client learns nothing through a purpose it lacks.

Nothing here reads a clock, a database or a cache: a withdrawal is
seen because the caller reads the consent state in the same transaction that
records the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from core.errors import InvalidInput
from policies.model import Policy

Outcome = Literal["permit", "deny"]

WITHHELD_NOT_IN_PURPOSE = "not-needed-for-purpose"


class UnknownPurpose(InvalidInput):
    """A purpose the policy does not define (in a read, a lookup, a consent change)."""

    slug = "unknown-purpose"
    title = "Unknown purpose"


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

    Only by a field the purpose declares in its ``lookup`` list. The policy
    model admits there only fields the purpose sees clear or masked, and none
    for a purpose that releases pseudonyms (a lookup by phone that returned a
    pseudonym would re-identify the pseudonymous data set); the check is made
    again here so that the decision does not rest on the loader alone.
    """
    if not purpose_decision.permitted or purpose_decision.purpose is None:
        return purpose_decision
    spec = policy.purposes[purpose_decision.purpose]
    view = spec.fields.get(field_name)
    if (
        field_name not in spec.lookup
        or spec.member_id == "pseudonym"
        or view is None
        or view == "pseudonym"
    ):
        return deny("lookup-not-allowed", purpose_decision.purpose)
    return purpose_decision
