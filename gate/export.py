"""Bulk export: every member a purpose admits, streamed batch by batch.

The read path's rule holds per batch: decide for each member, record one
entry naming every member released in the batch, commit, then decrypt.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from audit.log import Record, lock_head
from consent.registry import consent_facts
from gate.clients import Actor, ensure_active
from gate.context import Services
from gate.reads import record_and_commit, refusal, release_fields
from policies.decide import decide_member, decide_purpose
from vault.masking import pseudonym
from vault.members import load_sealed
from vault.models import VaultMember


def member_label(services: Services, actor: Actor, purpose: str, member_id: str) -> str:
    if services.policy.purposes[purpose].member_id == "pseudonym":
        return pseudonym(services.keyring.pseudonym_key_for(actor.id), member_id)
    return member_id


@dataclass
class Export:
    """A started export: the first batch is decided and recorded already."""

    first_seq: int
    lines: Iterator[dict[str, Any]]
    stats: dict[str, int] = field(default_factory=dict)


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

    def batch(after: str) -> tuple[str | None, int | None, list[dict[str, Any]]]:
        with services.uow() as uow:
            session = uow.session
            lock_head(session)
            ensure_active(session, actor)  # a revoked client's export stops here
            ids = list(
                session.scalars(
                    select(VaultMember.id)
                    .where(VaultMember.id > after)
                    .order_by(VaultMember.id)
                    .limit(services.export_batch_size)
                )
            )
            facts = consent_facts(session, ids, purpose)
            admitted = [
                m for m in ids if decide_member(policy, purpose_decision, facts.get(m)).permitted
            ]
            sealed = load_sealed(session, admitted, purpose_decision.views.keys())
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
                            "examined": len(ids),
                            "released": len(admitted),
                        },
                    ),
                )
        stats["batches"] += 1
        stats["examined"] += len(ids)
        stats["released"] += len(admitted)
        lines = [
            {
                (
                    "pseudonym" if policy.purposes[purpose].member_id == "pseudonym" else "id"
                ): member_label(services, actor, purpose, m),
                "fields": release_fields(services, actor, purpose_decision, sealed[m]),
            }
            for m in admitted
        ]
        next_after = ids[-1] if len(ids) == services.export_batch_size else None
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
