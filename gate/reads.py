"""The read path: decide, record, release.

1. Decide from the policy, the client's grants and the member's consent, read
   in the same transaction as the audit append and under the log-head lock,
   so the log's order is the order decisions were made in: a read recorded
   after a withdrawal was decided on it.
2. Record the decision (refusals too) and commit. If the append or the commit
   fails, the caller gets 503 and nothing else.
3. Release: decrypt only the released fields, apply their views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from audit.log import Record, append_entry, lock_head
from consent.registry import UnknownPurpose as UnknownPurposeError
from consent.registry import consent_fact, consent_facts
from core.db import UnitOfWork
from core.errors import Forbidden, NotFound
from core.ids import is_valid_id
from gate.clients import Actor, ensure_active
from gate.context import Services
from policies.decide import Decision, decide_lookup, decide_member, decide_purpose, deny
from vault.masking import apply_view, pseudonym
from vault.members import SealedMember, load_sealed, lookup, member_exists, normalise_lookup


class ReadRefused(Forbidden):
    """A recorded refusal. ``audit_seq`` names the entry that records it."""

    TITLES: ClassVar[dict[str, str]] = {
        "purpose-not-allowed": "Purpose not allowed",
        "consent-required": "Consent required",
        "consent-outdated": "Consent outdated",
        "lookup-not-allowed": "Lookup not allowed",
    }

    def __init__(self, detail: str, *, slug: str, audit_seq: int) -> None:
        super().__init__(detail, slug=slug)
        self.title = self.TITLES.get(slug, "Refused")
        self.audit_seq = audit_seq


class MemberNotFound(NotFound):
    def __init__(self, *, audit_seq: int) -> None:
        super().__init__("no such member")
        self.audit_seq = audit_seq


class UnknownPurpose(UnknownPurposeError):
    def __init__(self, detail: str, *, audit_seq: int, known: list[str]) -> None:
        super().__init__(detail, known_purposes=known)
        self.audit_seq = audit_seq


_REFUSAL_TEXT = {
    "purpose-not-allowed": "this client is not granted the purpose",
    "consent-required": "the member has not given consent for this purpose",
    "consent-outdated": "the member consented under a notice this policy no longer accepts",
    "lookup-not-allowed": "this purpose may not find members by that field",
}


def refusal(services: Services, decision: Decision, seq: int) -> Exception:
    if decision.reason == "unknown-purpose":
        return UnknownPurpose(
            "the purpose is not in the policy",
            audit_seq=seq,
            known=sorted(services.policy.purposes),
        )
    if decision.reason == "member-not-found":
        return MemberNotFound(audit_seq=seq)
    return ReadRefused(
        _REFUSAL_TEXT.get(decision.reason, decision.reason), slug=decision.reason, audit_seq=seq
    )


@dataclass(frozen=True, slots=True)
class MemberRelease:
    id: str
    purpose: str
    fields: dict[str, Any]
    withheld: dict[str, str]
    audit_seq: int


def release_fields(
    services: Services, actor: Actor, decision: Decision, sealed: SealedMember
) -> dict[str, Any]:
    values = sealed.open(services.keyring)
    released: dict[str, Any] = {}
    for name, view in decision.views.items():
        if name not in values:
            continue
        if view == "pseudonym":
            released[name] = pseudonym(
                services.keyring.pseudonym_key_for(actor.id), sealed.member_id
            )
        else:
            released[name] = apply_view(services.policy.fields[name].type, view, values[name])
    return released


def record_and_commit(uow: UnitOfWork, services: Services, record: Record) -> int:
    seq = append_entry(uow.session, record, clock=services.clock).seq
    services.commit(uow)
    return seq


def read_member(
    uow: UnitOfWork,
    *,
    services: Services,
    actor: Actor,
    member_id: str,
    purpose: str,
    request_id: str | None,
) -> MemberRelease:
    policy = services.policy
    session = uow.session
    lock_head(session)
    ensure_active(session, actor)
    decision = decide_purpose(policy, purpose=purpose, client_purposes=actor.purposes)
    sealed: SealedMember | None = None
    if decision.permitted:
        if not is_valid_id(member_id) or not member_exists(session, member_id):
            decision = deny("member-not-found", purpose)
        else:
            decision = decide_member(policy, decision, consent_fact(session, member_id, purpose))
    if decision.permitted:
        sealed = load_sealed(session, [member_id], decision.views.keys())[member_id]
    seq = record_and_commit(
        uow,
        services,
        Record(
            action="member.read",
            decision=decision.outcome,
            reason=decision.reason,
            policy=policy.version,
            actor=actor.id,
            actor_role=actor.role,
            purpose=decision.purpose,
            # A syntactically invalid id is attacker-chosen text: it is not
            # written to the log, only the refusal is.
            members=[member_id] if is_valid_id(member_id) else [],
            fields=_released_views(decision, sealed),
            request_id=request_id,
        ),
    )
    if sealed is None:
        raise refusal(services, decision, seq)
    return MemberRelease(
        id=member_id,
        purpose=purpose,
        fields=release_fields(services, actor, decision, sealed),
        withheld=decision.withheld,
        audit_seq=seq,
    )


def _released_views(decision: Decision, sealed: SealedMember | None) -> dict[str, str]:
    if sealed is None:
        return {}
    # Only fields the member actually has are released, and only those are logged.
    return {name: view for name, view in decision.views.items() if name in sealed.fields}


@dataclass(frozen=True, slots=True)
class LookupResult:
    ids: list[str]
    audit_seq: int


def lookup_members(
    uow: UnitOfWork,
    *,
    services: Services,
    actor: Actor,
    field_name: str,
    value: object,
    purpose: str,
    request_id: str | None,
) -> LookupResult:
    """Find members by phone or e-mail; only those the purpose admits are returned."""
    policy = services.policy
    normalised = normalise_lookup(field_name, value)  # bad input: 422 before anything is read
    session = uow.session
    lock_head(session)
    ensure_active(session, actor)
    decision = decide_purpose(policy, purpose=purpose, client_purposes=actor.purposes)
    decision = decide_lookup(policy, decision, field_name)
    admitted: list[str] = []
    matched = 0
    if decision.permitted:
        candidates = lookup(
            session, keyring=services.keyring, field_name=field_name, normalised=normalised
        )
        matched = len(candidates)
        facts = consent_facts(session, candidates, purpose)
        admitted = [
            m for m in candidates if decide_member(policy, decision, facts.get(m)).permitted
        ]
    seq = record_and_commit(
        uow,
        services,
        Record(
            action="member.lookup",
            decision=decision.outcome,
            reason=decision.reason,
            policy=policy.version,
            actor=actor.id,
            actor_role=actor.role,
            purpose=decision.purpose,
            members=admitted,
            request_id=request_id,
            # How many matched is recorded so that an auditor can see lookups
            # that found members the purpose did not admit.
            detail={"by": field_name, "matched": matched, "admitted": len(admitted)},
        ),
    )
    if not decision.permitted:
        raise refusal(services, decision, seq)
    # decide_lookup refuses pseudonymous purposes, so these are plain member ids.
    return LookupResult(ids=admitted, audit_seq=seq)
