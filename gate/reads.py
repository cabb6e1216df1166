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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from sqlalchemy.orm import Session

from audit import actions
from consent.registry import consent_facts_for
from core.errors import Forbidden, NotFound, Unauthenticated
from core.ids import is_valid_id
from gate.context import Services
from policies.decide import (
    Decision,
    UnknownPurpose,
    decide_member,
    decide_purpose,
    deny,
)
from policies.model import Policy
from principals.actor import Actor
from principals.clients import authenticate_many
from vault.keys import Keyring
from vault.masking import Pseudonymiser, field_view
from vault.members import SealedMember, load_sealed


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


class UnknownPurposeRecorded(UnknownPurpose):
    def __init__(self, detail: str, *, audit_seq: int, known: list[str]) -> None:
        super().__init__(detail, known_purposes=known)
        self.audit_seq = audit_seq


_REFUSAL_TEXT = {
    "purpose-not-allowed": "this client is not granted the purpose",
    "consent-required": "the member has not given consent for this purpose",
    "consent-outdated": "the member consented under a notice this policy no longer accepts",
    "lookup-not-allowed": "this purpose may not find members by that field",
}


def refusal(policy: Policy, decision: Decision, seq: int) -> Exception:
    """The error a recorded refusal raises; ``audit_seq`` names its entry."""
    if decision.reason == "unknown-purpose":
        return UnknownPurposeRecorded(
            "the purpose is not in the policy",
            audit_seq=seq,
            known=sorted(policy.purposes),
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


class FieldRelease:
    """What a permitted decision releases of a member: the fields in their views.

    Views and the client's pseudonym key are resolved once per decision, so
    an export applies them to thousands of members at the cost of one; a
    single read is a release of one.
    """

    def __init__(self, policy: Policy, keyring: Keyring, actor: Actor, decision: Decision) -> None:
        if decision.purpose is None or not decision.permitted:
            raise ValueError("only a permitted decision releases anything")
        self._keyring = keyring
        pseudonymous = policy.purposes[decision.purpose].member_id == "pseudonym"
        views = decision.views.items()
        self._pseudonym: Callable[[str], str] | None = None
        if pseudonymous or any(view == "pseudonym" for _name, view in views):
            self._pseudonym = Pseudonymiser(keyring.pseudonym_key_for(actor.id))
        self.label_key = "pseudonym" if pseudonymous else "id"
        # None stands for the pseudonym view, which shows the member id's
        # pseudonym rather than anything of the value.
        self._views = [
            (name, None if view == "pseudonym" else field_view(policy.fields[name], view))
            for name, view in views
        ]

    def label(self, member_id: str) -> str:
        if self.label_key == "id":
            return member_id
        if self._pseudonym is None:  # never the id in place of a pseudonym
            raise RuntimeError("a pseudonymous release has no pseudonymiser")
        return self._pseudonym(member_id)

    def fields(self, sealed: SealedMember) -> dict[str, Any]:
        """Decrypt and show; call only once the decision's entry is committed."""
        values = sealed.open(self._keyring)
        released: dict[str, Any] = {}
        for name, show in self._views:
            if name not in values:
                continue
            if show is None:
                assert self._pseudonym is not None
                released[name] = self._pseudonym(sealed.member_id)
            else:
                released[name] = show(values[name])
        return released

    def line(self, sealed: SealedMember) -> dict[str, Any]:
        """An export's line: the member under its label (id or pseudonym) and the fields."""
        return {self.label_key: self.label(sealed.member_id), "fields": self.fields(sealed)}


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
        release = FieldRelease(services.policy, services.keyring, self.actor, self.decision)
        return MemberRelease(
            id=self.member_id,
            purpose=self.purpose,
            fields=release.fields(self.sealed),
            withheld=self.decision.withheld,
            audit_seq=self.audit_seq,
        )


@dataclass(frozen=True, slots=True)
class Refused:
    """A request that releases nothing: ``error`` says why (recorded if it has an ``audit_seq``)."""

    error: Exception
    actor: Actor | None = None


Outcome = Decided | Refused


def decide_reads(services: Services, requests: Sequence[ReadRequest]) -> list[Outcome]:
    """Decide, record and commit a batch of reads in one unit of work (group commit).

    Every request is decided under the log-head lock on the facts committed
    before the batch, each gets its own entry, and one commit makes them all
    durable; nothing is decrypted here. The statements are per batch, not per
    request, which is what makes a busy server cheaper per read than an idle
    one. If the append or the commit fails, ``AuditUnavailable`` is raised and
    no request of the batch releases anything.
    """
    with services.uow() as uow:
        outcomes = _decide(uow.session, services.policy, requests, record=uow.record)
        uow.commit()
    return outcomes


def _decide(
    session: Session,
    policy: Policy,
    requests: Sequence[ReadRequest],
    *,
    record: Callable[[actions.Record], int],
) -> list[Outcome]:
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
    # member a permitted purpose names (a member exists while they have a data
    # key: ``vault.members``), then their consent for those purposes.
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

    for index in sorted(decisions):
        request, decision, actor = requests[index], decisions[index], actors[index]
        member_sealed = sealed.get(request.member_id) if decision.permitted else None
        seq = record(
            actions.member_read(
                actor,
                policy=policy.version,
                decision=decision,
                member_id=request.member_id if is_valid_id(request.member_id) else None,
                released_views=_released_views(decision, member_sealed),
                request_id=request.request_id,
            )
        )
        if member_sealed is None:
            outcomes[index] = Refused(refusal(policy, decision, seq), actor)
            continue
        if member_sealed.fields.keys() - decision.views.keys():
            # Loaded for another read of the batch: never opened for this one.
            member_sealed = replace(
                member_sealed,
                fields={n: ct for n, ct in member_sealed.fields.items() if n in decision.views},
            )
        outcomes[index] = Decided(
            actor=actor,
            decision=decision,
            sealed=member_sealed,
            member_id=request.member_id,
            purpose=request.purpose,
            audit_seq=seq,
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
