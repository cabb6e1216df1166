"""The online verifier: the whole log recomputed from the database's rows.

``audit.verify.LogVerifier`` checks what the entry bytes alone can prove; this
adds the database's own columns, the member index rows, the stored Merkle
nodes, the checkpoint rows and the head.

It reads in batches of ``batch`` entries, through SQLAlchemy Core on the
session's own connection (same transaction, same snapshot as the session):
the ORM's row loading cost more than verifying the entry. Per batch it reads
the member index rows and the stored Merkle nodes the batch completes by
range, one query per table and tree level, and compares them in bulk; only
when a bulk comparison fails does it walk the rows one by one to name the
node. The first bad sequence number is the smallest one at which anything is
wrong: a stored node is named at the entry whose append completed it, ahead
of a failure at a later entry of the same batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from audit.entry import parse_entries
from audit.log import Head, read_head
from audit.models import AuditCheckpoint, AuditEntry, AuditEntryMember, AuditMerkleNode
from audit.notary import read_published
from audit.tree import tree_root
from audit.verify import (
    CHECKPOINT_ACTION,
    HeldCheckpoint,
    HeldCheckpointError,
    LogVerifier,
    Progress,
    checkpoint_record_failure,
    held_in_order,
)
from core.clock import from_micros


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    size: int
    head_hash: str
    # None when what failed is no entry (a held checkpoint that does not verify).
    first_bad_seq: int | None = None
    reason: str | None = None
    # How many published checkpoints (distinct notes: latest.checkpoint repeats
    # one) and kept checkpoints the log was held to.
    published: int = 0
    kept: int = 0


# The query columns of audit_entry, in the order they are checked and named.
PROJECTIONS = ("action", "actor", "purpose", "decision", "reason")


def verify_log(
    session: Session,
    *,
    batch: int = 5000,
    progress: Progress | None = None,
    verifier_key: str | None = None,
    published: Path | None = None,
    kept: Sequence[tuple[str, str]] = (),
) -> VerifyReport:
    """Recompute the whole log from the stored bytes; name the first bad entry.

    Per entry (``audit.verify.LogVerifier``): contiguous sequence numbers from
    1, canonical bytes naming their own seq, member back-links, leaf and chain
    hashes; here also the stored hashes, the query columns and the member
    index rows against the bytes, every stored Merkle node the entry
    completes, and for an ``audit.checkpoint`` entry the checkpoint row it
    records. Per checkpoint: its root against the root recomputed at its
    size, and its signature when ``verifier_key`` is given. At the end: the
    head, and the stored Merkle tree's root.

    Checkpoints held outside the tables must be ones the log extends (at most
    its size, the root recomputed at theirs): the notes published to the
    directory ``published`` (``Notary.publish``), and ``kept``, (name, note)
    pairs an auditor kept, which must verify under ``verifier_key``.

    The walk is bounded by the head read first, so appends that commit while
    it runs on a live database are neither reported nor waited for; entries
    past the head are looked for separately at the end. The published notes
    are read before the head: a note is published after its checkpoint
    committed, so each one read is within the head.
    """
    try:
        notes = read_published(published) if published is not None else []
        unreadable = None
    except ValueError as exc:
        notes, unreadable = [], str(exc)
    head = read_head(session)
    if unreadable is not None:
        return _bad(head, None, unreadable)
    conn = session.connection()
    verifier = LogVerifier(verifier_key, record_nodes=True)
    stored = conn.execute(
        select(AuditCheckpoint.size, AuditCheckpoint.root_hash, AuditCheckpoint.note)
        .where(AuditCheckpoint.size <= head.size)
        .order_by(AuditCheckpoint.size)
    ).all()
    if stored and stored[0].size < 1:
        # At no entry: met by no step of the walk, it would hold back every
        # checkpoint after it, and the entries recording them would look orphaned.
        return _bad(head, 1, f"checkpoint at size {stored[0].size} is at no entry of the log")
    try:
        held = _held_checkpoints(stored, notes, kept, verifier_key)
    except HeldCheckpointError as exc:
        return _bad(head, None, str(exc))
    walk = _Walk(conn, head, verifier, iter(stored), held)
    counts = {"published": len({note for _path, note in notes}), "kept": len(kept)}
    if walk.held_at == 0:  # a checkpoint of the empty log: the empty tree's root
        failure = walk.check_held(0)
        if failure is not None:
            return _bad(head, 1, failure)
    for rows in _entry_batches(conn, batch, upto=head.size):
        bad = walk.batch(rows)
        if bad is not None:
            return bad
        if progress is not None and walk.last % batch == 0:
            progress(walk.last, head.size)

    last_seq = verifier.size
    unchecked = walk.pending_checkpoint
    if unchecked is not None:
        # A checkpoint row at no entry's size (0 or below, or a gap the walk
        # never met) would otherwise hold back every checkpoint after it.
        return _bad(
            head,
            max(min(unchecked.size, last_seq), 1),
            f"checkpoint at size {unchecked.size} is at no entry of the log",
        )
    stray = conn.execute(
        select(AuditEntryMember.seq)
        .where(AuditEntryMember.seq > last_seq, AuditEntryMember.seq <= head.size)
        .order_by(AuditEntryMember.seq)
        .limit(1)
    ).scalar()
    if stray is not None:
        return _bad(head, stray, "member index row for an entry that does not exist")
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
    if walk.held_next < len(walk.held):
        # Held elsewhere, larger than the log: it was rolled back, or is another log.
        return _bad(head, head.size + 1, walk.held[walk.held_next].beyond(head.size))
    if progress is not None:
        progress(last_seq, head.size)
    return VerifyReport(ok=True, size=head.size, head_hash=head.head_hash, **counts)


def _held_checkpoints(
    stored: Sequence[Any],
    published: Sequence[tuple[Path, str]],
    kept: Sequence[tuple[str, str]],
    verifier_key: str | None,
) -> list[HeldCheckpoint]:
    """The checkpoints held outside the tables, verified, in the order the walk meets them.

    A published note identical to a stored row's (``latest.checkpoint`` is one
    of the others, and every published note normally is a row) is checked once,
    as the row, when signatures are checked: the walk gives the row every
    check a held copy would get. Without a key the copies are kept, since the
    walk then compares only the rows' root column.
    """
    rows = {row.note: row.size for row in stored} if verifier_key is not None else {}
    seen: set[str] = set()
    held: list[HeldCheckpoint] = []
    for path, note in published:
        stem = path.name.removesuffix(".checkpoint")
        named = int(stem) if stem.isdigit() else None
        if note in seen or (note in rows and named in (None, rows[note])):
            continue
        seen.add(note)
        held.append(
            HeldCheckpoint.read(
                f"published checkpoint {path}",
                note,
                verifier_key=verifier_key,
                published=True,
                named_size=named,
            )
        )
    for source, note in kept:
        held.append(HeldCheckpoint.read(f"checkpoint {source}", note, verifier_key=verifier_key))
    return held_in_order(held)


class _Walk:
    """The per-entry checks, one batch of entry rows at a time."""

    def __init__(
        self,
        conn: Connection,
        head: Head,
        verifier: LogVerifier,
        checkpoints: Iterator[Any],
        held: list[HeldCheckpoint],
    ) -> None:
        self.conn = conn
        self.head = head
        self.verifier = verifier
        self.checkpoints = checkpoints
        self.pending_checkpoint = next(checkpoints, None)
        # The stored checkpoints by size: what audit.checkpoint entries must name.
        self.roots: dict[int, str] = {}
        # Checkpoints held elsewhere, by size; held_at is the next one's size (-1: none).
        self.held = held
        self.held_next = 0
        self.held_at = held[0].size if held else -1
        self.last = 0  # the last entry verified, with its member rows and nodes
        # recorded_at is read as the driver returns it and converted only when
        # it or the entry's time changes: a batch of appends shares one time.
        self.to_datetime = _recorded_at_processor(conn)
        self.seen_time: tuple[Any, Any, bool] | None = None

    def batch(self, rows: Sequence[Any]) -> VerifyReport | None:
        """Check the entries of ``rows`` (consecutive by seq); a report if one is bad."""
        head, verifier = self.head, self.verifier
        first = self.last
        upper = rows[-1][0]
        members = self._member_rows(first, upper)
        mcount = len(members)
        mi = 0
        leaves: list[str] = []  # level 0 of the stored tree, as the entries give it
        failure: tuple[int, str] | None = None
        raws = [bytes(row[1]) for row in rows]
        entries = parse_entries(raws)  # all at once when all are canonical
        for index, row in enumerate(rows):
            seq = row[0]
            expected = verifier.size + 1
            if seq != expected:
                failure = (expected, f"entry {expected} is missing (found {seq} next)")
                break
            if entries is None:
                entry, why = verifier.add(raws[index])
            else:
                entry, why = verifier.add_parsed(raws[index], entries[index])
            if why or entry is None:
                failure = (seq, why or "entry is invalid")
                break
            leaf = verifier.leaf.hex()
            why = self._check_columns(entry, leaf, row)
            if why:
                failure = (seq, why)
                break
            if row[4] == CHECKPOINT_ACTION:  # the action column, just checked against the bytes
                why = checkpoint_record_failure(entry.get("detail"), self.roots)
                if why:
                    failure = (seq, why)
                    break
            # The member index rows of this entry: exactly its distinct members.
            names = entry["members"]
            if (
                len(names) == 1
                and mi < mcount
                and members[mi][0] == seq
                and (mi + 1 == mcount or members[mi + 1][0] != seq)
            ):
                if members[mi][1] != names[0]:
                    failure = (seq, "member index rows do not match the entry's members")
                    break
                mi += 1
            else:
                found: list[str] = []
                while mi < mcount and members[mi][0] <= seq:
                    if members[mi][0] < seq:
                        failure = (members[mi][0], "member index row for an unknown entry")
                        break
                    found.append(members[mi][1])
                    mi += 1
                if failure is not None:
                    break
                if sorted(found) != sorted(set(names)):
                    failure = (seq, "member index rows do not match the entry's members")
                    break
            leaves.append(leaf)
            pending = self.pending_checkpoint
            while pending is not None and pending.size == seq:
                if pending.root_hash != verifier.frontier.root().hex():
                    failure = (seq, f"checkpoint at size {seq} does not match the entries")
                    break
                if verifier.verifier_key is not None:
                    why = verifier.check_checkpoint(pending.note)
                    if why:
                        failure = (seq, why)
                        break
                self.roots[seq] = pending.root_hash
                pending = self.pending_checkpoint = next(self.checkpoints, None)
            if failure is not None:
                break
            if seq == self.held_at:
                why = self.check_held(seq)
                if why:
                    failure = (seq, why)
                    break
        # The nodes the verified entries completed, before any failure in
        # this batch is reported: a bad node names an earlier entry.
        node_failure = self._check_nodes(first, leaves)
        if node_failure is not None and (failure is None or node_failure[0] < failure[0]):
            failure = node_failure
        if failure is not None:
            return _bad(head, *failure)
        self.last = verifier.size
        return None

    def check_held(self, size: int) -> str | None:
        """The held checkpoints at ``size`` (the size verified so far) against the
        root recomputed while streaming."""
        root = self.verifier.frontier.root()
        held = self.held
        while self.held_next < len(held) and held[self.held_next].size == size:
            checkpoint = held[self.held_next]
            if checkpoint.root != root:
                return checkpoint.mismatch()
            self.held_next += 1
        self.held_at = held[self.held_next].size if self.held_next < len(held) else -1
        return None

    def _check_columns(self, entry: dict[str, Any], leaf: str, row: Any) -> str | None:
        """The stored hashes and query columns of ``row`` (as ``_entry_batches`` reads
        them) against the entry's bytes."""
        if leaf != row[2]:
            return "leaf hash does not match the entry bytes"
        if self.verifier.chain.hex() != row[3]:
            return "chain hash does not follow from the previous entry"
        get = entry.get
        projected = (get("action"), get("actor"), get("purpose"), get("decision"), get("reason"))
        columns = row[4:9]
        if projected != columns:
            for key, value in zip(PROJECTIONS, columns, strict=True):
                if get(key) != value:
                    return f"column {key!r} does not match the entry bytes"
        at, recorded = get("at"), row[9]
        seen = self.seen_time
        if seen is None or seen[0] != at or seen[1] != recorded:
            try:
                ok = isinstance(at, int) and from_micros(at) == self.to_datetime(recorded)
            except (ValueError, OverflowError, OSError, TypeError):
                ok = False  # a time out of range, or a stored value that is no time
            seen = self.seen_time = (at, recorded, ok)
        if not seen[2]:
            return "column 'recorded_at' does not match the entry bytes"
        return None

    def _member_rows(self, after: int, upto: int) -> list[Any]:
        """Member index rows for entries (after, upto], by seq; the first batch also
        reads rows below seq 1, which no entry can have."""
        query = select(AuditEntryMember.seq, AuditEntryMember.member_id).where(
            AuditEntryMember.seq <= upto
        )
        if after:
            query = query.where(AuditEntryMember.seq > after)
        return self.conn.execute(query.order_by(AuditEntryMember.seq)).all()

    def _check_nodes(self, first: int, leaves: list[str]) -> tuple[int, str] | None:
        """Compare the stored subtrees that entries first+1 .. first+len(leaves) completed
        with the recomputed ones; (the entry that completed the first bad one, why)."""
        levels = self.verifier.levels
        assert levels is not None
        expected: list[tuple[int, int, list[Any]]] = [(0, first, leaves)]
        for level in range(1, len(levels)):
            if levels[level]:
                expected.append((level, first >> level, levels[level]))
        worst: tuple[int, str] | None = None
        for level, start, digests in expected:
            if not digests:
                continue
            end = start + len(digests)  # exclusive
            stored = self.conn.execute(
                select(AuditMerkleNode.idx, AuditMerkleNode.hash)
                .where(
                    AuditMerkleNode.level == level,
                    AuditMerkleNode.idx >= start,
                    AuditMerkleNode.idx < end,
                )
                .order_by(AuditMerkleNode.idx)
            ).all()
            wanted = digests if level == 0 else [digest.hex() for digest in digests]
            # All there (idx is unique, so as many rows as the range holds are the
            # range) and all equal: the usual case, compared in C.
            if len(stored) == len(wanted) and [row[1] for row in stored] == wanted:
                continue
            bad = _first_bad_node(level, start, wanted, stored)
            if bad is not None and (worst is None or bad[0] < worst[0]):
                worst = bad
        for level in range(1, len(levels)):
            levels[level] = []
        return worst


def _first_bad_node(
    level: int, start: int, wanted: list[str], stored: Sequence[Any]
) -> tuple[int, str] | None:
    """The slow path: the first missing or different node of a level, by index.

    A stored hash is compared as the hash it encodes (``bytes.fromhex``, as the
    tree readers decode it), so only a different hash, or text that is not a
    hash, fails."""
    found = {row[0]: row[1] for row in stored}
    for offset, digest in enumerate(wanted):
        idx = start + offset
        seq = (idx + 1) << level  # the entry whose append completed the node
        text = found.get(idx)
        if text is None:
            return seq, f"stored Merkle node ({level}, {idx}) is missing"
        if text != digest:
            try:
                same = bytes.fromhex(text) == bytes.fromhex(digest)
            except (TypeError, ValueError):
                same = False
            if not same:
                return seq, f"stored Merkle node ({level}, {idx}) does not match the entries"
    return None


def _entry_batches(conn: Connection, batch: int, *, upto: int) -> Iterator[Sequence[Any]]:
    """audit_entry rows in seq order, ``batch`` at a time; recorded_at as the driver
    returns it (see ``_recorded_at_processor``)."""
    columns = (
        AuditEntry.seq,
        AuditEntry.entry,
        AuditEntry.leaf_hash,
        AuditEntry.chain_hash,
        *(getattr(AuditEntry, name) for name in PROJECTIONS),
        type_coerce(AuditEntry.recorded_at, NullType()).label("recorded_at"),
    )
    last = 0
    while True:
        rows = conn.execute(
            select(*columns)
            .where(AuditEntry.seq > last, AuditEntry.seq <= upto)
            .order_by(AuditEntry.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _recorded_at_processor(conn: Connection) -> Callable[[Any], datetime | None]:
    """What the ORM does to a stored recorded_at (the column type's result processor)."""
    column_type = AuditEntry.__table__.c.recorded_at.type.dialect_impl(conn.dialect)
    process = column_type.result_processor(conn.dialect, None)
    return process if process is not None else (lambda value: value)


def _bad(head: Head, seq: int | None, reason: str) -> VerifyReport:
    return VerifyReport(
        ok=False, size=head.size, head_hash=head.head_hash, first_bad_seq=seq, reason=reason
    )
