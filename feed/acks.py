"""Acknowledgements as the DPO sees them: each rights request's recipients, the
requests still waiting for one, and those overdue for a reminder.

A request's recipients are the clients its events were delivered to
(``feed_event.rights_request``): one source for who must be told and what
they have had, filled in the request's own transaction by ``feed.events``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from feed.models import FeedDelivery, FeedEvent
from feed.pull import Delivered


@dataclass(frozen=True, slots=True)
class RecipientState:
    """What one client has had of a request's events.

    A request may have several events (a correction applied in two steps):
    ``notified_at`` and ``acknowledged_at`` are the latest of the client's
    deliveries, and None while any of them has none: a recipient counts as
    told only once it has had everything.
    """

    client_id: str
    notified_at: datetime | None
    acknowledged_at: datetime | None


def request_recipients(
    session: Session, request_ids: Collection[str]
) -> dict[str, list[RecipientState]]:
    """For each request, its recipients by client id (requests without events: absent)."""
    if not request_ids:
        return {}
    rows = session.execute(
        select(
            FeedEvent.rights_request,
            FeedDelivery.client_id,
            FeedDelivery.notified_at,
            FeedDelivery.acknowledged_at,
        )
        .join(FeedEvent, FeedEvent.id == FeedDelivery.event_id)
        .where(FeedEvent.rights_request.in_(sorted(set(request_ids))))
    ).all()
    times: dict[tuple[str, str], list[tuple[datetime | None, datetime | None]]] = defaultdict(list)
    for request_id, client_id, notified_at, acknowledged_at in rows:
        times[request_id, client_id].append((notified_at, acknowledged_at))
    found: dict[str, list[RecipientState]] = defaultdict(list)
    for (request_id, client_id), seen in sorted(times.items()):
        found[request_id].append(
            RecipientState(
                client_id,
                _all_or_none(n for n, _ in seen),
                _all_or_none(a for _, a in seen),
            )
        )
    return dict(found)


def _all_or_none(moments: Iterable[datetime | None]) -> datetime | None:
    listed = list(moments)
    if not listed or any(moment is None for moment in listed):
        return None
    return max(m for m in listed if m is not None)


def awaiting_ack(request_id: ColumnElement[str]) -> ColumnElement[bool]:
    """True for a request with an event that asks for an acknowledgement some recipient
    has not given (the DPO queue's ``awaiting_ack``)."""
    return (
        select(FeedDelivery.event_id)
        .join(FeedEvent, FeedEvent.id == FeedDelivery.event_id)
        .where(
            FeedEvent.rights_request == request_id,
            FeedEvent.ack_required.is_(True),
            FeedDelivery.acknowledged_at.is_(None),
        )
        .exists()
    )


def overdue_acks(
    session: Session, *, now: datetime, after: timedelta, limit: int
) -> list[Delivered]:
    """Deliveries whose event asks for an acknowledgement that has not come ``after`` its
    event was written, and that were not reminded of within ``after``: oldest first.

    Taken ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MySQL (the caller's unit
    of work holds the log-head lock anyway; SQLite serialises writers).
    """
    cutoff = now - after
    rows = session.execute(
        select(FeedDelivery, FeedEvent)
        .join(FeedEvent, FeedEvent.id == FeedDelivery.event_id)
        .where(
            FeedEvent.ack_required.is_(True),
            FeedEvent.created_at <= cutoff,
            FeedDelivery.acknowledged_at.is_(None),
            or_(FeedDelivery.reminded_at.is_(None), FeedDelivery.reminded_at <= cutoff),
        )
        .order_by(FeedEvent.created_at, FeedDelivery.event_id, FeedDelivery.client_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [Delivered(delivery, event) for delivery, event in rows]
