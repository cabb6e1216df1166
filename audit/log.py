"""Appending to the log (``audit.online`` and ``audit.offline`` verify it).

Appends serialise on the single ``audit_head`` row: ``SELECT … FOR UPDATE``
on PostgreSQL and MySQL (READ COMMITTED), and ``BEGIN IMMEDIATE`` on SQLite
(see ``core.db``), with the primary key on ``seq`` as the backstop. The append
only flushes: the audited unit of work (``audit.uow``) calls it at commit, so
the entries are committed together with the change or decision they record,
and nothing is released before that commit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from audit.actions import Record
from audit.driver import (
    DriverStatement,
    driver_errors,
    driver_pipeline,
    insert_rows,
    stored_value,
)
from audit.entry import (
    ENTRY_VERSION,
    canonical_bytes,
    chain_hash,
    leaf_hash,
)
from audit.models import AuditEntry, AuditEntryMember, AuditHead
from audit.tree import LogEdge, MissingNode
from core.clock import Clock, to_micros
from core.errors import Unavailable

HEAD_ID = 1


class AuditUnavailable(Unavailable):
    """The entry could not be written, so nothing may be released (fail closed)."""

    slug = "audit-unavailable"
    title = "Audit log unavailable"


@dataclass(frozen=True, slots=True)
class Appended:
    seq: int
    leaf_hash: bytes
    chain_hash: bytes


@dataclass(frozen=True, slots=True)
class Head:
    size: int
    head_hash: str


_LOCKED_HEAD = "memberguard_locked_head"


@dataclass(slots=True)
class _HeldLock:
    """Kept in ``session.info`` for the transaction that holds the log-head lock."""

    transaction: Any
    found: Head  # as read under the lock
    head: Head  # as this transaction's appends have moved it

    @classmethod
    def of(cls, session: Session) -> _HeldLock | None:
        held = session.info.get(_LOCKED_HEAD)
        return held if held is not None and held.transaction is session.get_transaction() else None


# The append path runs in every audited transaction, so its statements go
# straight to the driver (``audit.driver.DriverStatement``), compiled once per dialect.
_LOCK_HEAD = DriverStatement(
    select(AuditHead.size, AuditHead.head_hash).where(AuditHead.id == HEAD_ID).with_for_update()
)
_MOVE_HEAD = DriverStatement(
    update(AuditHead)
    .where(AuditHead.id == HEAD_ID)
    .values(
        size=bindparam("size"),
        head_hash=bindparam("head_hash"),
        updated_at=bindparam("updated_at"),
    )
)
# Members per back-link query: lists are padded to a power of two up to this,
# so that a handful of statements serve every batch.
_MEMBERS_PER_QUERY = 512


@functools.cache
def _latest_per_member(count: int) -> DriverStatement:
    """The latest seq naming each of ``count`` members (bound as m0, m1, …)."""
    return DriverStatement(
        select(AuditEntryMember.member_id, func.max(AuditEntryMember.seq))
        .where(AuditEntryMember.member_id.in_([bindparam(f"m{i}") for i in range(count)]))
        .group_by(AuditEntryMember.member_id)
    )


def lock_head(session: Session) -> Head:
    """Take the log-head lock for the rest of the transaction; returns the head.

    The audited unit of work (``audit.uow``) calls this when it opens, before
    a use case reads the facts a decision rests on (consent, membership), so
    that decisions are serialised in log order: an entry's decision saw every
    change recorded by the entries before it.
    Locking again later in the same transaction is free: the head read under
    the lock is kept for the transaction (and moved on by each append in it).
    """
    held = locked_head(session)
    if held is not None:
        return held
    try:
        rows = _LOCK_HEAD.execute(session)
    except driver_errors(session) as exc:
        raise AuditUnavailable("the audit log could not be locked; nothing was released") from exc
    if len(rows) != 1:  # the migrations create it; only tampering removes it
        raise AuditUnavailable("the audit log has no head row; nothing was released")
    head = Head(size=rows[0][0], head_hash=rows[0][1])
    session.info[_LOCKED_HEAD] = _HeldLock(session.get_transaction(), head, head)
    return head


def locked_head(session: Session) -> Head | None:
    """The head as this transaction locked and extended it, or None if it holds no lock."""
    held = _HeldLock.of(session)
    return held.head if held is not None else None


def head_at_lock(session: Session) -> Head | None:
    """The head as this transaction found it when it took the lock (before its own appends)."""
    held = _HeldLock.of(session)
    return held.found if held is not None else None


def append_entry(session: Session, record: Record, *, clock: Clock) -> Appended:
    return append_entries(session, [record], clock=clock)[0]


def append_entries(session: Session, records: Sequence[Record], *, clock: Clock) -> list[Appended]:
    """Append records in order under one head lock, with one statement per table.

    Flushes only: the caller's transaction commits them with whatever they
    record. A batch costs about as many statements as a single entry, which
    is what makes bulk paths (imports, group commit) cheap. The rows go to the
    driver as plain tuples (``audit.driver.insert_rows``): per-row ORM work was
    most of the cost of a large batch.
    """
    if not records:
        return []
    head = lock_head(session)
    try:
        all_members = list(dict.fromkeys(m for record in records for m in record.members))
        # Each member's previous entry: a back-link inside the hashed bytes,
        # so a member's history cannot be shown with an entry left out.
        last_seen = _previous_entries(session, all_members) if all_members else {}
        edge = LogEdge.resume(session, head.size, head.head_hash)
        previous = bytes.fromhex(head.head_hash)
        seq = head.size
        now = clock()
        at = to_micros(now)
        recorded_at = stored_value(session, AuditEntry.__table__.c.recorded_at, now)
        appended: list[Appended] = []
        entry_rows: list[tuple[Any, ...]] = []
        member_rows: list[tuple[str, int]] = []
        for record in records:
            seq += 1
            members = list(dict.fromkeys(record.members))
            body: dict[str, Any] = {
                "v": ENTRY_VERSION,
                "seq": seq,
                "at": at,
                "action": str(record.action),
                "actor": record.actor,
                "actor_role": record.actor_role,
                "actor_kind": record.actor_kind,
                "purpose": record.purpose,
                "members": list(record.members),
                "fields": record.fields or {},
                "decision": record.decision,
                "reason": record.reason,
                "policy": record.policy,
                "request_id": record.request_id,
            }
            if record.detail:
                body["detail"] = record.detail
            if members:
                body["member_prev"] = {m: last_seen[m] for m in members}
                for member in members:
                    last_seen[member] = seq
                    member_rows.append((member, seq))
            raw = canonical_bytes(body)
            leaf = leaf_hash(raw)
            previous = chain_hash(previous, leaf)
            edge.add_leaf(leaf)
            entry_rows.append(
                (
                    seq,
                    recorded_at,
                    str(record.action),
                    record.actor,
                    record.purpose,
                    record.decision,
                    record.reason,
                    raw,
                    leaf.hex(),
                    previous.hex(),
                )
            )
            appended.append(Appended(seq=seq, leaf_hash=leaf, chain_hash=previous))
        with driver_pipeline(session):
            insert_rows(session, AuditEntry.__table__, ENTRY_COLUMNS, entry_rows)
            if member_rows:
                insert_rows(session, AuditEntryMember.__table__, ("member_id", "seq"), member_rows)
            edge.flush(session)
            _MOVE_HEAD.execute(
                session,
                {
                    "size": seq,
                    "head_hash": previous.hex(),
                    "updated_at": stored_value(session, AuditHead.__table__.c.updated_at, now),
                },
            )
    except (*driver_errors(session), MissingNode) as exc:
        raise AuditUnavailable("the audit log could not be written; nothing was released") from exc
    session.info[_LOCKED_HEAD].head = Head(seq, previous.hex())
    edge.remember(session, previous.hex())
    return appended


ENTRY_COLUMNS = (
    "seq",
    "recorded_at",
    "action",
    "actor",
    "purpose",
    "decision",
    "reason",
    "entry",
    "leaf_hash",
    "chain_hash",
)


def _previous_entries(session: Session, members: list[str]) -> dict[str, int]:
    """The latest seq naming each member (0 for none), read under the head lock."""
    found: dict[str, int] = {}
    for start in range(0, len(members), _MEMBERS_PER_QUERY):
        chunk = members[start : start + _MEMBERS_PER_QUERY]
        count = 1 << (len(chunk) - 1).bit_length()
        padded = chunk + [chunk[-1]] * (count - len(chunk))  # a repeat changes no IN
        rows = _latest_per_member(count).execute(
            session, {f"m{i}": member for i, member in enumerate(padded)}
        )
        found.update({member: last for member, last in rows})
    return {member: found.get(member, 0) for member in members}


def read_head(session: Session) -> Head:
    row = session.execute(
        select(AuditHead.size, AuditHead.head_hash).where(AuditHead.id == HEAD_ID)
    ).one()
    return Head(size=row.size, head_hash=row.head_hash)
