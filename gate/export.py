"""Bulk export: every member a purpose admits, streamed batch by batch.

The read path's rule holds per batch: decide for each member, record one
entry naming every member released in the batch, commit, then decrypt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from audit.log import Record, lock_head
from consent.models import ConsentState
from gate.clients import Actor, ensure_active
from gate.context import Services
from gate.reads import record_and_commit, refusal
from policies.decide import ConsentFact, Decision, decide_member, decide_purpose
from policies.model import Policy
from vault.keys import Keyring
from vault.masking import Pseudonymiser, view_function
from vault.members import SealedMember, load_sealed
from vault.models import VaultMember


@dataclass
class Export:
    """A started export: the first batch is decided and recorded already."""

    first_seq: int
    lines: Iterator[dict[str, Any]]
    stats: dict[str, int] = field(default_factory=dict)


class _Release:
    """What a released member becomes: ``gate.reads.release_fields`` under an id
    or pseudonym label, with the views and the client's pseudonym key resolved
    once per export instead of once per value.

    A line is exactly what ``release_fields`` and the label would give (same
    keys, same order, same values); tests/integration/test_export.py holds the
    two to that, byte for byte.
    """

    def __init__(self, policy: Policy, keyring: Keyring, actor: Actor, decision: Decision) -> None:
        assert decision.purpose is not None  # a permitted decision names its purpose
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
            (name, None if view == "pseudonym" else view_function(policy.fields[name].type, view))
            for name, view in views
        ]

    def label(self, member_id: str) -> str:
        if self.label_key == "pseudonym":
            assert self._pseudonym is not None
            return self._pseudonym(member_id)
        return member_id

    def fields(self, sealed: SealedMember) -> dict[str, Any]:
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
        return {self.label_key: self.label(sealed.member_id), "fields": self.fields(sealed)}


class _Examiner:
    """Reads the next members of the export, each with their current consent.

    One statement for both, built once per export, on the tables rather than
    ORM entities: an export examines every member, and two statements with
    ORM row processing cost more than deciding did. It runs in the batch's
    transaction after the log-head lock, as ``consent.registry.consent_facts_for``
    does, so the consent read is the consent the batch's entry records a
    decision on. Nothing is kept between batches.
    """

    def __init__(self, purpose: str, limit: int) -> None:
        member = VaultMember.__table__.c
        consent = ConsentState.__table__.c
        self._statement = (
            select(member.id, consent.status, consent.notice_version)
            .select_from(
                VaultMember.__table__.outerjoin(
                    ConsentState.__table__,
                    and_(consent.member_id == member.id, consent.purpose == purpose),
                )
            )
            .where(member.id > bindparam("after"))
            .order_by(member.id)
            .limit(limit)
        )

    def __call__(self, session: Session, after: str) -> list[tuple[str, ConsentFact | None]]:
        """The members after ``after`` in id order; None: never asked for consent."""
        rows = session.execute(self._statement, {"after": after}).all()
        # Equal facts share one (immutable) ConsentFact within the batch: a
        # batch holds a handful of distinct (status, notice) pairs.
        facts: dict[tuple[str, str | None], ConsentFact] = {}
        examined: list[tuple[str, ConsentFact | None]] = []
        for member_id, status, notice_version in rows:
            fact = None
            if status is not None:
                fact = facts.get((status, notice_version))
                if fact is None:
                    fact = facts[status, notice_version] = ConsentFact(status, notice_version)
            examined.append((member_id, fact))
        return examined


def export_members(
    services: Services, *, actor: Actor, purpose: str, request_id: str | None
) -> Export:
    """Stream every member the purpose admits, batch by batch.

    Each batch is its own transaction: decide for each member, append one
    entry naming every member released in the batch, commit, then decrypt and
    yield. Memory is bounded by the batch size whatever the number of members.
    """
    policy = services.policy
    purpose_decision = decide_purpose(policy, purpose=purpose, client_purposes=actor.purposes)
    if not purpose_decision.permitted:
        with services.uow() as uow:
            seq = record_and_commit(
                uow,
                services,
                Record(
                    action="member.export",
                    decision="deny",
                    reason=purpose_decision.reason,
                    policy=policy.version,
                    actor=actor.id,
                    actor_role=actor.role,
                    purpose=purpose_decision.purpose,
                    request_id=request_id,
                ),
            )
        raise refusal(services, purpose_decision, seq)

    stats = {"batches": 0, "examined": 0, "released": 0}
    batch_size = services.export_batch_size
    examine = _Examiner(purpose, batch_size)
    release = _Release(policy, services.keyring, actor, purpose_decision)

    def batch(after: str) -> tuple[str | None, int | None, list[dict[str, Any]]]:
        with services.uow() as uow:
            session = uow.session
            lock_head(session)
            ensure_active(session, actor)  # a revoked client's export stops here
            examined = examine(session, after)
            admitted = [
                member_id
                for member_id, consent in examined
                if decide_member(policy, purpose_decision, consent).permitted
            ]
            sealed = load_sealed(session, admitted, purpose_decision.views.keys())
            # A member without a data key was crypto-shredded: nothing of
            # theirs can be released, so the entry does not name them.
            admitted = [member_id for member_id in admitted if member_id in sealed]
            seq = None
            if admitted or stats["batches"] == 0:
                seq = record_and_commit(
                    uow,
                    services,
                    Record(
                        action="member.export",
                        decision="permit",
                        reason=purpose_decision.reason,
                        policy=policy.version,
                        actor=actor.id,
                        actor_role=actor.role,
                        purpose=purpose,
                        members=admitted,
                        fields=dict(purpose_decision.views),
                        request_id=request_id,
                        detail={
                            "batch": stats["batches"] + 1,
                            "examined": len(examined),
                            "released": len(admitted),
                        },
                    ),
                )
        stats["batches"] += 1
        stats["examined"] += len(examined)
        stats["released"] += len(admitted)
        # Committed: only now may anything of these members be decrypted.
        lines = [release.line(sealed[m]) for m in admitted]
        next_after = examined[-1][0] if len(examined) == batch_size else None
        return next_after, seq, lines

    after, first_seq, first_lines = batch("")
    assert first_seq is not None  # the first batch is always recorded

    def stream() -> Iterator[dict[str, Any]]:
        yield from first_lines
        cursor = after
        while cursor is not None:
            cursor, _seq, lines = batch(cursor)
            yield from lines

    return Export(first_seq=first_seq, lines=stream(), stats=stats)
