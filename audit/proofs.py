"""Proof answers for auditors, in a form any RFC 9162 implementation can check.

Every proof is tied to a signed checkpoint: an inclusion proof is against the
root of a checkpointed tree size, a consistency proof between two checkpointed
sizes, and the signed notes come with them. An auditor who holds the log's
public key needs nothing else from memberguard to check them.
"""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.models import AuditCheckpoint, AuditEntry
from audit.notary import checkpoint_at, latest_checkpoint
from audit.tree import prove_consistency, prove_inclusion
from core.errors import InvalidInput, NotFound


class NoCheckpoint(NotFound):
    slug = "no-checkpoint"
    title = "No checkpoint at that size"


def _checkpoint(session: Session, size: int | None) -> AuditCheckpoint:
    found = latest_checkpoint(session) if size is None else checkpoint_at(session, size)
    if found is None:
        if size is None:
            raise NoCheckpoint("no checkpoint has been cut yet (memberguard audit checkpoint)")
        raise NoCheckpoint(
            "no checkpoint was cut at that size; ask for the size of a published checkpoint"
        )
    return found


def checkpoint_view(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    return {
        "size": checkpoint.size,
        "root_hash": checkpoint.root_hash,
        "cut_at": checkpoint.cut_at.isoformat(),
        "checkpoint": checkpoint.note,
    }


def get_checkpoint(session: Session, size: int | None) -> dict[str, Any]:
    return checkpoint_view(_checkpoint(session, size))


def inclusion(session: Session, *, seq: int, size: int | None) -> dict[str, Any]:
    if seq < 1:
        raise InvalidInput("seq must be 1 or more")
    checkpoint = _checkpoint(session, size)
    if seq > checkpoint.size:
        raise InvalidInput(f"entry {seq} is not in a tree of size {checkpoint.size}")
    row = session.execute(
        select(AuditEntry.entry, AuditEntry.leaf_hash).where(AuditEntry.seq == seq)
    ).one_or_none()
    if row is None:
        raise NotFound("no such entry")
    hashes = prove_inclusion(session, seq - 1, checkpoint.size)
    return {
        "leaf_index": seq - 1,
        "tree_size": checkpoint.size,
        "entry": base64.b64encode(bytes(row.entry)).decode("ascii"),
        "leaf_hash": row.leaf_hash,
        "hashes": [h.hex() for h in hashes],
        "checkpoint": checkpoint.note,
    }


def consistency(session: Session, *, old: int, new: int) -> dict[str, Any]:
    if old < 1 or new < 1:
        raise InvalidInput("sizes must be 1 or more")
    if old > new:
        raise InvalidInput("'from' must not be larger than 'to'")
    first = _checkpoint(session, old)
    second = _checkpoint(session, new)
    hashes = prove_consistency(session, old, new)
    return {
        "from": old,
        "to": new,
        "hashes": [h.hex() for h in hashes],
        "checkpoint_from": first.note,
        "checkpoint_to": second.note,
    }
