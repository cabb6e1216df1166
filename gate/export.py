"""Bulk export: every member a purpose admits, streamed batch by batch.

The read path's rule holds per batch: each batch is one audited unit of work
that decides for each member, records one entry naming every member released
in the batch, and commits; only then is anything decrypted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from audit import actions
from consent.registry import consent_facts_for
from gate.context import Services
from gate.reads import FieldRelease, refusal
from policies.decide import decide_member, decide_purpose
from principals.actor import Actor
from vault.members import existing_members_after, load_sealed


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
    A client revoked meanwhile is refused at its next batch (its unit of work
    re-checks the key under the lock).
    """
    policy = services.policy
    purpose_decision = decide_purpose(policy, purpose=purpose, client_purposes=actor.purposes)
    if not purpose_decision.permitted:
        with services.uow(actor) as uow:
            seq = uow.record(
                actions.members_exported(
                    actor,
                    policy=policy.version,
                    decision=purpose_decision,
                    member_ids=[],
                    batch=None,
                    examined=0,
                    request_id=request_id,
                )
            )
            uow.commit()
        raise refusal(policy, purpose_decision, seq)

    stats = {"batches": 0, "examined": 0, "released": 0}
    batch_size = services.settings.export_batch_size
    release = FieldRelease(policy, services.keyring, actor, purpose_decision)
    fields = purpose_decision.views.keys()

    def batch(after: str) -> tuple[str | None, int | None, list[dict[str, Any]]]:
        with services.uow(actor) as uow:
            examined = existing_members_after(uow.session, after, limit=batch_size)
            facts = consent_facts_for(uow.session, {(m, purpose) for m in examined})
            admitted = [
                member_id
                for member_id in examined
                if decide_member(
                    policy, purpose_decision, facts.get((member_id, purpose))
                ).permitted
            ]
            sealed = load_sealed(uow.session, admitted, fields)
            # The entry names only members whose ciphertexts are in hand, so
            # each member named is one released (the scan and this load share
            # the lock, so none should be missing; this keeps it true if not).
            admitted = [member_id for member_id in admitted if member_id in sealed]
            seq = None
            if admitted or stats["batches"] == 0:
                seq = uow.record(
                    actions.members_exported(
                        actor,
                        policy=policy.version,
                        decision=purpose_decision,
                        member_ids=admitted,
                        batch=stats["batches"] + 1,
                        examined=len(examined),
                        request_id=request_id,
                    )
                )
            uow.commit()
        stats["batches"] += 1
        stats["examined"] += len(examined)
        stats["released"] += len(admitted)
        # Committed: only now may anything of these members be decrypted.
        lines = [release.line(sealed[m]) for m in admitted]
        next_after = examined[-1] if len(examined) == batch_size else None
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
