"""What auditors read of the log: pages and exports of entries, and one member's access log.

Read-only (nothing here is recorded) and shaped for people: each entry names
its actor beside the id (``actor_name``, from the client registry), and an
entry shown for one member is that member's line of it (``audit.queries``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from audit.notary import latest_checkpoint
from audit.queries import EntryFilter, page_entries, stream_entries
from core.errors import NotFound
from core.ids import is_valid_id
from gate.context import Services
from principals.clients import actor_names


@dataclass(frozen=True, slots=True)
class EntriesPage:
    entries: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class AccessLog:
    member: str
    entries: list[dict[str, Any]]
    next_cursor: str | None
    checkpoint: str | None


def _named(entries: list[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    for entry in entries:
        entry["actor_name"] = names.get(entry.get("actor") or "")
    return entries


def entries_page(
    services: Services, filters: EntryFilter, *, cursor: str | None, limit: int
) -> EntriesPage:
    with services.reading() as session:
        entries, next_cursor = page_entries(session, filters, cursor=cursor, limit=limit)
        names = actor_names(session, {e["actor"] for e in entries if e.get("actor")})
    return EntriesPage(_named(entries, names), next_cursor)


def entries_stream(services: Services, filters: EntryFilter) -> Iterator[dict[str, Any]]:
    """Every matching entry, in constant memory; actors' names are looked up once each."""
    names: dict[str, str] = {}
    looked_up: set[str] = set()
    for entry in stream_entries(services.read_sessions, filters):
        actor = entry.get("actor")
        if actor and actor not in looked_up:
            with services.reading() as session:
                names.update(actor_names(session, {actor}))
            looked_up.add(actor)
        yield _named([entry], names)[0]


def member_access_log(
    services: Services,
    member_id: str,
    *,
    cursor: str | None,
    limit: int,
    newest_first: bool = False,
) -> AccessLog:
    """Every entry touching the member, each with ``prev``: the member's previous entry as
    named inside the entry's hashed bytes (0 for the first), so that a left-out entry
    breaks the links; and the latest checkpoint, which bounds the history's tail.
    Oldest first, or ``newest_first`` (a person's screen: what happened lately)."""
    if not is_valid_id(member_id):
        raise NotFound("no such member")
    with services.reading() as session:
        entries, next_cursor = page_entries(
            session,
            EntryFilter(member=member_id),
            cursor=cursor,
            limit=limit,
            newest_first=newest_first,
        )
        names = actor_names(session, {e["actor"] for e in entries if e.get("actor")})
        latest = latest_checkpoint(session)
        note = latest.note if latest is not None else None
    for entry in entries:
        entry["prev"] = entry.get("member_prev", {}).get(member_id)
    return AccessLog(
        member=member_id,
        entries=_named(entries, names),
        next_cursor=next_cursor,
        checkpoint=note,
    )
