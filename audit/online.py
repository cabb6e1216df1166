"""The online verifier: the whole log recomputed from the database's rows.

``audit.verify.LogVerifier`` checks what the entry bytes alone can prove; this
adds the database's own columns, the member index rows, the stored Merkle
nodes, the checkpoint rows and the head.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.log import Head, read_head
from audit.models import AuditCheckpoint, AuditEntry, AuditEntryMember
from audit.tree import DbNodes, tree_root
from audit.verify import LogVerifier
from core.clock import from_micros


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    size: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None


Progress = Callable[[int, int], None]


def verify_log(
    session: Session,
    *,
    batch: int = 5000,
    progress: Progress | None = None,
    verifier_key: str | None = None,
) -> VerifyReport:
    """Recompute the whole log from the stored bytes; name the first bad entry.

    Per entry (``audit.verify.LogVerifier``): contiguous sequence numbers from
    1, canonical bytes naming their own seq, member back-links, leaf and chain
    hashes; here also the stored hashes, the query columns and the member
    index rows against the bytes. Per checkpoint: its root against the root
    recomputed at its size, and its signature when ``verifier_key`` is given.
    At the end: the head, and the stored Merkle tree's root.

    The walk is bounded by the head read first, so appends that commit while
    it runs on a live database are neither reported nor waited for; entries
    past the head are looked for separately at the end.
    """
    head = read_head(session)
    verifier = LogVerifier(verifier_key)
    checkpoints = iter(
        session.execute(
            select(AuditCheckpoint.size, AuditCheckpoint.root_hash, AuditCheckpoint.note)
            .where(AuditCheckpoint.size <= head.size)
            .order_by(AuditCheckpoint.size)
        ).all()
    )
    pending_checkpoint = next(checkpoints, None)
    members = _member_rows(session, batch, upto=head.size)
    pending_member: tuple[int, str] | None = next(members, None)
    # Subtrees the entries complete, checked against audit_merkle_node in
    # chunks: proofs are served from those rows.
    expected_nodes: list[tuple[int, int, bytes, int]] = []

    for row in _entries(session, batch, upto=head.size):
        seq = row.seq
        expected = verifier.size + 1
        if seq != expected:
            return _bad(head, expected, f"entry {expected} is missing (found {seq} next)")
        entry, failure = verifier.add(bytes(row.entry))
        if failure or entry is None:
            return _bad(head, seq, failure or "entry is invalid")
        failure = _check_columns(row, entry, verifier)
        if failure:
            return _bad(head, seq, failure)
        found_members: list[str] = []
        while pending_member is not None and pending_member[0] <= seq:
            if pending_member[0] < seq:
                return _bad(head, pending_member[0], "member index row for an unknown entry")
            found_members.append(pending_member[1])
            pending_member = next(members, None)
        if sorted(found_members) != sorted(set(entry["members"])):
            return _bad(head, seq, "member index rows do not match the entry's members")
        expected_nodes.extend((lv, idx, digest, seq) for lv, idx, digest in verifier.completed)
        if len(expected_nodes) >= 2000:
            failure_at = _check_nodes(session, expected_nodes)
            if failure_at:
                return _bad(head, failure_at[0], failure_at[1])
            expected_nodes = []
        while pending_checkpoint is not None and pending_checkpoint.size == seq:
            if pending_checkpoint.root_hash != verifier.frontier.root().hex():
                return _bad(head, seq, f"checkpoint at size {seq} does not match the entries")
            if verifier_key is not None:
                failure = verifier.check_checkpoint(pending_checkpoint.note)
                if failure:
                    return _bad(head, seq, failure)
            pending_checkpoint = next(checkpoints, None)
        if progress is not None and seq % batch == 0:
            progress(seq, head.size)

    failure_at = _check_nodes(session, expected_nodes)
    if failure_at:
        return _bad(head, failure_at[0], failure_at[1])
    last_seq = verifier.size
    if pending_member is not None:
        return _bad(head, pending_member[0], "member index row for an entry that does not exist")
    if last_seq < head.size:
        return _bad(head, last_seq + 1, f"log ends at {last_seq} but the head says {head.size}")
    # An entry past the head that no head covers was not appended by memberguard.
    # Highest seq first, head second: a genuine append that commits in between
    # moves the head too, so it can never look forged.
    highest = session.scalar(select(func.max(AuditEntry.seq))) or 0
    highest_member = session.scalar(select(func.max(AuditEntryMember.seq))) or 0
    now_size = read_head(session).size
    if max(highest, highest_member) > now_size:
        return _bad(head, now_size + 1, f"entries beyond the head size {now_size}")
    if verifier.chain.hex() != head.head_hash:
        return _bad(head, last_seq, "head hash does not match the last chain hash")
    if head.size:
        try:
            stored_root = tree_root(session, head.size)
        except LookupError as exc:
            return _bad(head, head.size, f"stored Merkle tree is incomplete: {exc}")
        if stored_root != verifier.frontier.root():
            return _bad(head, head.size, "stored Merkle tree does not match the entries")
    if progress is not None:
        progress(last_seq, head.size)
    return VerifyReport(ok=True, size=head.size, head_hash=head.head_hash)


def _check_nodes(
    session: Session, expected: list[tuple[int, int, bytes, int]]
) -> tuple[int, str] | None:
    """Compare stored subtrees with recomputed ones; (seq that completed it, why) on mismatch."""
    if not expected:
        return None
    stored = DbNodes(session).stored([(lv, idx) for lv, idx, _digest, _seq in expected])
    for level, idx, digest, seq in expected:
        found = stored.get((level, idx))
        if found is None:
            return seq, f"stored Merkle node ({level}, {idx}) is missing"
        if found != digest:
            return seq, f"stored Merkle node ({level}, {idx}) does not match the entries"
    return None


def _check_columns(row: Any, entry: dict[str, Any], verifier: LogVerifier) -> str | None:
    if verifier.leaf.hex() != row.leaf_hash:
        return "leaf hash does not match the entry bytes"
    if verifier.chain.hex() != row.chain_hash:
        return "chain hash does not follow from the previous entry"
    projections = {
        "action": row.action,
        "actor": row.actor,
        "purpose": row.purpose,
        "decision": row.decision,
        "reason": row.reason,
    }
    for key, value in projections.items():
        if entry.get(key) != value:
            return f"column {key!r} does not match the entry bytes"
    if not isinstance(entry.get("at"), int) or from_micros(entry["at"]) != row.recorded_at:
        return "column 'recorded_at' does not match the entry bytes"
    return None


def _entries(session: Session, batch: int, *, upto: int) -> Iterable[Any]:
    last = 0
    columns = (
        AuditEntry.seq,
        AuditEntry.entry,
        AuditEntry.leaf_hash,
        AuditEntry.chain_hash,
        AuditEntry.action,
        AuditEntry.actor,
        AuditEntry.purpose,
        AuditEntry.decision,
        AuditEntry.reason,
        AuditEntry.recorded_at,
    )
    while True:
        rows = session.execute(
            select(*columns)
            .where(AuditEntry.seq > last, AuditEntry.seq <= upto)
            .order_by(AuditEntry.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def _member_rows(session: Session, batch: int, *, upto: int) -> Any:
    last: tuple[int, str] = (0, "")
    while True:
        rows = session.execute(
            select(AuditEntryMember.seq, AuditEntryMember.member_id)
            .where(
                (AuditEntryMember.seq > last[0])
                | ((AuditEntryMember.seq == last[0]) & (AuditEntryMember.member_id > last[1])),
                AuditEntryMember.seq <= upto,
            )
            .order_by(AuditEntryMember.seq, AuditEntryMember.member_id)
            .limit(batch)
        ).all()
        if not rows:
            return
        for row in rows:
            yield (row.seq, row.member_id)
        last = (rows[-1].seq, rows[-1].member_id)


def _bad(head: Head, seq: int, reason: str) -> VerifyReport:
    return VerifyReport(
        ok=False, size=head.size, head_hash=head.head_hash, first_bad_seq=seq, reason=reason
    )
