"""Appending to the log and verifying it.

Appends serialise on the single ``audit_head`` row: ``SELECT … FOR UPDATE``
on PostgreSQL and MySQL (READ COMMITTED), and ``BEGIN IMMEDIATE`` on SQLite
(see ``core.db``), with the primary key on ``seq`` as the backstop. The append
only flushes: the caller's unit of work commits it together with the change or
decision it records, and nothing is released before that commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from audit.entry import (
    ENTRY_VERSION,
    canonical_bytes,
    chain_hash,
    leaf_hash,
)
from audit.models import AuditEntry, AuditEntryMember, AuditHead
from audit.tree import PendingNodes
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
class Record:
    """What an entry says. Ids, names and decisions only, never personal values."""

    action: str
    decision: str
    reason: str
    policy: str
    actor: str | None = None
    actor_role: str | None = None
    purpose: str | None = None
    members: Sequence[str] = ()
    fields: dict[str, str] | None = None
    request_id: str | None = None
    detail: dict[str, Any] | None = None


def lock_head(session: Session) -> AuditHead:
    """Take the log-head lock for the rest of the transaction.

    Use cases call this *before* reading the facts a decision rests on
    (consent, membership), so that decisions are serialised in log order: an
    entry's decision saw every change recorded by the entries before it.
    Locking again later in the same transaction is free.
    """
    try:
        return session.execute(
            select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update()
        ).scalar_one()
    except SQLAlchemyError as exc:
        raise AuditUnavailable("the audit log could not be locked; nothing was released") from exc


def append_entry(session: Session, record: Record, *, clock: Clock) -> Appended:
    return append_entries(session, [record], clock=clock)[0]


def append_entries(session: Session, records: Sequence[Record], *, clock: Clock) -> list[Appended]:
    """Append records in order under one head lock, with one statement per table.

    Flushes only: the caller's transaction commits them with whatever they
    record. A batch costs about as many round trips as a single entry, which
    is what makes bulk paths (imports, group commit) cheap.
    """
    head = lock_head(session)
    try:
        all_members = list(dict.fromkeys(m for record in records for m in record.members))
        # Each member's previous entry: a back-link inside the hashed bytes,
        # so a member's history cannot be shown with an entry left out.
        last_seen = _previous_entries(session, all_members) if all_members else {}
        nodes = PendingNodes(session)
        previous = bytes.fromhex(head.head_hash)
        seq = head.size
        now = clock()
        at = to_micros(now)
        appended: list[Appended] = []
        entry_rows: list[dict[str, Any]] = []
        member_rows: list[dict[str, Any]] = []
        for record in records:
            seq += 1
            members = list(dict.fromkeys(record.members))
            body: dict[str, Any] = {
                "v": ENTRY_VERSION,
                "seq": seq,
                "at": at,
                "action": record.action,
                "actor": record.actor,
                "actor_role": record.actor_role,
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
                    member_rows.append({"member_id": member, "seq": seq})
            raw = canonical_bytes(body)
            leaf = leaf_hash(raw)
            previous = chain_hash(previous, leaf)
            nodes.add_leaf(seq - 1, leaf)
            entry_rows.append(
                {
                    "seq": seq,
                    "recorded_at": now,
                    "action": record.action,
                    "actor": record.actor,
                    "purpose": record.purpose,
                    "decision": record.decision,
                    "reason": record.reason,
                    "entry": raw,
                    "leaf_hash": leaf.hex(),
                    "chain_hash": previous.hex(),
                }
            )
            appended.append(Appended(seq=seq, leaf_hash=leaf, chain_hash=previous))
        if not entry_rows:
            return []
        session.execute(insert(AuditEntry.__table__), entry_rows)
        if member_rows:
            session.execute(insert(AuditEntryMember.__table__), member_rows)
        nodes.flush()
        head.size = seq
        head.head_hash = previous.hex()
        head.updated_at = now
        session.flush()
    except SQLAlchemyError as exc:
        raise AuditUnavailable("the audit log could not be written; nothing was released") from exc
    return appended


def _previous_entries(session: Session, members: list[str]) -> dict[str, int]:
    """The latest seq naming each member (0 for none), read under the head lock."""
    found: dict[str, int] = {}
    for start in range(0, len(members), 500):
        chunk = members[start : start + 500]
        rows = session.execute(
            select(AuditEntryMember.member_id, func.max(AuditEntryMember.seq))
            .where(AuditEntryMember.member_id.in_(chunk))
            .group_by(AuditEntryMember.member_id)
        )
        found.update({member: last for member, last in rows})
    return {member: found.get(member, 0) for member in members}


@dataclass(frozen=True, slots=True)
class Head:
    size: int
    head_hash: str


def read_head(session: Session) -> Head:
    head = session.execute(select(AuditHead).where(AuditHead.id == HEAD_ID)).scalar_one()
    return Head(size=head.size, head_hash=head.head_hash)
