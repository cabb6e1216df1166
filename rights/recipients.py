"""Who received a member's data, from the audit log: the clients a correction or an
erasure must reach (GDPR Art. 19, PIPL Art. 47), and a breach's affected parties.

One function over the log, so that the rights workflows, the change feed and
breach scoping can never disagree about who "received" something: a client
received the member's data when a permitted entry of a releasing action
(``audit.actions.released``) names the member and the client as its actor.
Refusals release nothing; staff (an auditor, the DPO) and the member
themselves are not recipients to be told.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.actions import Release, released
from audit.entry import parse_entry
from audit.models import AuditEntry, AuditEntryMember

BATCH = 1000


def recipients_of(
    session: Session, member_id: str, fields: Collection[str] | None = None
) -> list[str]:
    """The ids of every client the log shows was released data of ``member_id``, sorted.

    ``fields`` None: any release (field values, identity from a lookup, consent
    state). With ``fields``: only releases of at least one of those fields'
    values (a lookup released who holds a number the client already had, not
    the number). An action this version does not know raises
    ``audit.actions.UnknownAction`` rather than being skipped.
    """
    wanted = set(fields) if fields is not None else None
    found: set[str] = set()
    for entry in _member_entries(session, member_id):
        actor = entry.get("actor")
        if actor is None or actor in found or not _is_client(entry):
            continue
        kind, views = released(entry)
        if kind is Release.NONE:
            continue
        if wanted is not None and (kind is not Release.FIELDS or not wanted & views.keys()):
            continue
        found.add(actor)
    return sorted(found)


def _is_client(entry: dict[str, Any]) -> bool:
    kind = entry.get("actor_kind")
    if kind is None:  # entries written before actor_kind existed: the role says it
        return entry.get("actor_role") == "client"
    return kind == "client"


def _member_entries(session: Session, member_id: str) -> Iterator[dict[str, Any]]:
    """The permitted entries naming the member, in log order, a batch at a time."""
    after = 0
    while True:
        rows = session.execute(
            select(AuditEntry.seq, AuditEntry.entry)
            .join(AuditEntryMember, AuditEntryMember.seq == AuditEntry.seq)
            .where(
                AuditEntryMember.member_id == member_id,
                AuditEntry.seq > after,
                AuditEntry.decision == "permit",
            )
            .order_by(AuditEntry.seq)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            yield parse_entry(bytes(row.entry))
        after = rows[-1].seq
