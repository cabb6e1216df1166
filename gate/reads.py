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

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from audit.log import Record, append_entries, append_entry, lock_head
from consent.registry import UnknownPurpose as UnknownPurposeError
from consent.registry import consent_facts_for
from core.db import UnitOfWork
from core.errors import Forbidden, NotFound, Unauthenticated
from core.ids import is_valid_id
from gate.clients import Actor, authenticate_many, ensure_active
from gate.context import Services
from policies.decide import Decision, decide_lookup, decide_member, decide_purpose, deny
from vault.masking import apply_view, pseudonym
from vault.members import (
    SealedMember,
    load_sealed,
    lookup,
    normalise_lookup,
)


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


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One gated single-member read, before it is decided.

    ``credential`` is the API key, authenticated in the deciding transaction
    (under the log-head lock, so it is also the revocation check); its client
    must have one of ``roles``.
    """

    credential: str
    member_id: str
    purpose: str
    request_id: str | None
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Decided:
    """A recorded and committed decision to release, not yet decrypted."""

    actor: Actor
    decision: Decision
    sealed: SealedMember
    member_id: str
    purpose: str
    audit_seq: int

    def release(self, services: Services) -> MemberRelease:
        return MemberRelease(
            id=self.member_id,
            purpose=self.purpose,
            fields=release_fields(services, self.actor, self.decision, self.sealed),
            withheld=self.decision.withheld,
            audit_seq=self.audit_seq,
        )


@dataclass(frozen=True, slots=True)
class Refused:
    """A request that releases nothing: ``error`` says why (recorded if it has an ``audit_seq``)."""

    error: Exception
    actor: Actor | None = None


Outcome = Decided | Refused


def decide_reads(
    uow: UnitOfWork, services: Services, requests: Sequence[ReadRequest]
) -> list[Outcome]:
    """Decide, record and commit a batch of reads in one transaction (group commit).

    Every request is decided under the log-head lock on the facts committed
    before the batch, each gets its own entry, and one commit makes them all
    durable; nothing is decrypted here. The statements are per batch, not per
    request, which is what makes a busy server cheaper per read than an idle
    one. If the append or the commit fails, ``AuditUnavailable`` is raised and
    no request of the batch releases anything.
    """
    policy = services.policy
    session = uow.session
    lock_head(session)
    actors = _authenticate(session, requests)

    outcomes: list[Outcome | None] = [None] * len(requests)
    decisions: dict[int, Decision] = {}
    for index, request in enumerate(requests):
        actor = actors.get(index)
        if actor is None:
            outcomes[index] = Refused(Unauthenticated("unknown or revoked API key"))
            continue
        try:
            actor.require_role(*request.roles)
        except Forbidden as exc:
            outcomes[index] = Refused(exc, actor)
            continue
        decisions[index] = decide_purpose(
            policy, purpose=request.purpose, client_purposes=actor.purposes
        )

    # The facts for the whole batch, one query each: the sealed rows of every
    # member a permitted purpose names (a member without a data key does not
    # exist, or was crypto-shredded), then their consent for those purposes.
    candidates = [
        i for i, d in decisions.items() if d.permitted and is_valid_id(requests[i].member_id)
    ]
    sealed = load_sealed(
        session,
        {requests[i].member_id for i in candidates},
        {name for i in candidates for name in decisions[i].views},
    )
    for index, decision in decisions.items():
        if decision.permitted and requests[index].member_id not in sealed:
            decisions[index] = deny("member-not-found", requests[index].purpose)
    pairs = {
        (requests[i].member_id, requests[i].purpose) for i, d in decisions.items() if d.permitted
    }
    facts = consent_facts_for(session, pairs)
    for index, decision in decisions.items():
        if decision.permitted:
            request = requests[index]
            decisions[index] = decide_member(
                policy, decision, facts.get((request.member_id, request.purpose))
            )
    released = {i for i, d in decisions.items() if d.permitted}

    order = sorted(decisions)
    records = []
    for index in order:
        request, decision, actor = requests[index], decisions[index], actors[index]
        member_sealed = sealed.get(request.member_id) if index in released else None
        records.append(
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
                members=[request.member_id] if is_valid_id(request.member_id) else [],
                fields=_released_views(decision, member_sealed),
                request_id=request.request_id,
            )
        )
    appended = []
    if records:
        appended = append_entries(session, records, clock=services.clock)
        services.commit(uow)
    for index, entry in zip(order, appended, strict=True):
        request, decision, actor = requests[index], decisions[index], actors[index]
        member_sealed = sealed.get(request.member_id) if index in released else None
        if member_sealed is not None and member_sealed.fields.keys() - decision.views.keys():
            # Loaded for another read of the batch: never opened for this one.
            member_sealed = replace(
                member_sealed,
                fields={n: ct for n, ct in member_sealed.fields.items() if n in decision.views},
            )
        if member_sealed is None:
            outcomes[index] = Refused(refusal(services, decision, entry.seq), actor)
        else:
            outcomes[index] = Decided(
                actor=actor,
                decision=decision,
                sealed=member_sealed,
                member_id=request.member_id,
                purpose=request.purpose,
                audit_seq=entry.seq,
            )
    decided = [outcome for outcome in outcomes if outcome is not None]
    if len(decided) != len(requests):  # not an assert: it must hold under -O too
        raise RuntimeError("a read of the batch was left without an outcome")
    return decided


def _authenticate(session: Session, requests: Sequence[ReadRequest]) -> dict[int, Actor]:
    """Each request's actor, checked under the log-head lock; absent if unknown or revoked."""
    by_key = authenticate_many(session, {r.credential for r in requests})
    return {i: by_key[r.credential] for i, r in enumerate(requests) if r.credential in by_key}


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
        facts = consent_facts_for(session, {(m, purpose) for m in candidates})
        admitted = [
            m
            for m in candidates
            if decide_member(policy, decision, facts.get((m, purpose))).permitted
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
