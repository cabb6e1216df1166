"""Auditor queries over the log: filters, keyset pages, and constant-memory exports."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from audit.entry import parse_entry
from audit.models import AuditEntry, AuditEntryMember
from core.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class EntryFilter:
    member: str | None = None
    actor: str | None = None
    purpose: str | None = None
    action: str | None = None
    decision: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind != "seq" or not value.isdigit() or len(value) > 18:
            raise ValueError
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "cursor is not valid; use the next_cursor of a previous page", slug="invalid-cursor"
        ) from None


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, tzinfo=UTC)


def time_bound(value: datetime | None, name: str) -> datetime | None:
    """A filter time: timezone-aware and within the years the log can hold."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidInput(f"{name} needs a time zone (RFC 3339, e.g. 2026-11-22T10:00:00Z)")
    if not EARLIEST <= value <= LATEST:
        raise InvalidInput(f"{name} must be between 2000 and 2999")
    return value


def _statement(filters: EntryFilter, after: int, *, newest_first: bool = False) -> Select[Any]:
    """Entries matching ``filters`` past the cursor's ``after``: seq above it, oldest first,
    or (``newest_first``) seq below it (0: from the newest), newest first."""
    stmt = select(AuditEntry.seq, AuditEntry.entry, AuditEntry.leaf_hash, AuditEntry.chain_hash)
    if filters.member is not None:
        stmt = stmt.join(AuditEntryMember, AuditEntryMember.seq == AuditEntry.seq).where(
            AuditEntryMember.member_id == filters.member
        )
    for column, value in (
        (AuditEntry.actor, filters.actor),
        (AuditEntry.purpose, filters.purpose),
        (AuditEntry.action, filters.action),
        (AuditEntry.decision, filters.decision),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if filters.since is not None:
        stmt = stmt.where(AuditEntry.recorded_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(AuditEntry.recorded_at < filters.until)
    if newest_first:
        if after:
            stmt = stmt.where(AuditEntry.seq < after)
        return stmt.order_by(AuditEntry.seq.desc())
    return stmt.where(AuditEntry.seq > after).order_by(AuditEntry.seq)


def entry_view(row: Any, *, member: str | None = None) -> dict[str, Any]:
    """The stored entry with its hashes; for ``member``, that member's line of it.

    A bulk entry (an import batch, an export batch) names up to thousands of
    members, each with a back-link: shown for one member, ``members`` and
    ``member_prev`` keep that member only and ``members_in_entry`` says how
    many the entry names. ``seq`` and the hashes are the stored entry's, so
    its inclusion proof (which carries the whole entry) still proves it.
    """
    entry = parse_entry(bytes(row.entry))
    view = {**entry, "leaf_hash": row.leaf_hash, "chain_hash": row.chain_hash}
    if member is not None:
        members = entry.get("members", [])
        view["members"] = [m for m in members if m == member]
        view["members_in_entry"] = len(members)
        links = entry.get("member_prev")
        if links is not None:
            view["member_prev"] = {m: seq for m, seq in links.items() if m == member}
    return view


def page_entries(
    session: Session,
    filters: EntryFilter,
    *,
    cursor: str | None,
    limit: int,
    newest_first: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """A keyset page; its cursor continues in the same direction (``newest_first`` or not)."""
    stmt = _statement(filters, decode_cursor(cursor), newest_first=newest_first)
    rows = session.execute(stmt.limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    views = [entry_view(r, member=filters.member) for r in rows]
    return views, (encode_cursor(rows[-1].seq) if more and rows else None)


def stream_entries(
    session_factory: Any, filters: EntryFilter, *, batch: int = 1000
) -> Iterator[dict[str, Any]]:
    """Every matching entry, a batch per short transaction, so memory stays flat."""
    after = 0
    while True:
        session: Session = session_factory()
        try:
            rows = session.execute(_statement(filters, after).limit(batch)).all()
        finally:
            session.rollback()
            session.close()
        if not rows:
            return
        for row in rows:
            yield entry_view(row, member=filters.member)
        after = rows[-1].seq
