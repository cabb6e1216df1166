"""Writing events: the recipients are fixed when the change is made, in its transaction.

Each function here flushes only; the use case that made the change commits
it with its audit entries (the use case holds the log-head lock, which also
makes the per-client sequence safe to allocate: no other writer runs).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.ids import new_id
from feed.models import FeedDelivery, FeedEvent
from principals.models import GateClient, GateClientPurpose
from rights.recipients import recipients_of


class EventType(StrEnum):
    CONSENT_CHANGED = "consent.changed"
    MEMBER_CORRECTED = "member.corrected"
    MEMBER_DELETED = "member.deleted"
    INCIDENT_OPENED = "incident.opened"


def emit(
    session: Session,
    *,
    type: EventType,
    data: dict[str, Any],
    recipients: Iterable[str],
    now: datetime,
    member_id: str | None = None,
    rights_request: str | None = None,
    ack_required: bool = False,
) -> FeedEvent | None:
    """Write one event and a delivery for each recipient (client id), each with the
    client's next sequence number. No recipient: no event (nobody must be told)."""
    clients = sorted(set(recipients))
    if not clients:
        return None
    event = FeedEvent(
        id=new_id(),
        type=type.value,
        member_id=member_id,
        rights_request=rights_request,
        data=json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        ack_required=ack_required,
        created_at=now,
    )
    session.add(event)
    last = dict(
        session.execute(
            select(FeedDelivery.client_id, func.max(FeedDelivery.seq))
            .where(FeedDelivery.client_id.in_(clients))
            .group_by(FeedDelivery.client_id)
        ).all()
    )
    session.flush()
    session.add_all(
        FeedDelivery(event_id=event.id, client_id=client, seq=(last.get(client) or 0) + 1)
        for client in clients
    )
    session.flush()
    return event


def consent_changed(
    session: Session,
    *,
    member_id: str,
    purposes: Collection[str],
    status: str,
    now: datetime,
    exclude: str | None = None,
) -> list[FeedEvent]:
    """One event per purpose, to the active clients granted that purpose.

    ``exclude``: the client that recorded the change, which its own answer told
    (a client is not told of its own change).
    """
    events = []
    for purpose in sorted(set(purposes)):
        granted = session.scalars(
            select(GateClientPurpose.client_id)
            .join(GateClient, GateClient.id == GateClientPurpose.client_id)
            .where(GateClientPurpose.purpose == purpose, GateClient.revoked_at.is_(None))
        ).all()
        event = emit(
            session,
            type=EventType.CONSENT_CHANGED,
            data={"member_id": member_id, "purpose": purpose, "status": status},
            recipients=[client for client in granted if client != exclude],
            member_id=member_id,
            now=now,
        )
        if event is not None:
            events.append(event)
    return events


def member_corrected(
    session: Session,
    *,
    member_id: str,
    fields: Collection[str],
    now: datetime,
    rights_request: str | None = None,
    exclude: str | None = None,
) -> FeedEvent | None:
    """To every client the log shows was released any of these fields of the member
    (GDPR Art. 19).

    ``exclude``: the client whose own update this is (``PATCH /v1/members/{id}``);
    a correction a member asked for (``rights_request``) excludes no one.
    """
    data: dict[str, Any] = {"member_id": member_id, "fields": sorted(set(fields))}
    if rights_request is not None:
        data["request_id"] = rights_request
    recipients = recipients_of(session, member_id, fields=fields)
    return emit(
        session,
        type=EventType.MEMBER_CORRECTED,
        data=data,
        recipients=[client for client in recipients if client != exclude],
        member_id=member_id,
        rights_request=rights_request,
        now=now,
    )


def member_deleted(
    session: Session, *, member_id: str, rights_request: str | None, now: datetime
) -> FeedEvent | None:
    """To every client the log shows was ever released any data of the member (reads,
    lookups, exports, consent), each asked to acknowledge the erasure of its copy."""
    return emit(
        session,
        type=EventType.MEMBER_DELETED,
        data={"member_id": member_id, "request_id": rights_request},
        recipients=recipients_of(session, member_id),
        member_id=member_id,
        rights_request=rights_request,
        ack_required=True,
        now=now,
    )


def recipients_of_event(session: Session, event: FeedEvent | None) -> list[str]:
    """The clients ``event`` was written for, sorted (none when no event was needed)."""
    if event is None:
        return []
    return list(
        session.scalars(
            select(FeedDelivery.client_id)
            .where(FeedDelivery.event_id == event.id)
            .order_by(FeedDelivery.client_id)
        )
    )
