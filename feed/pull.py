"""A client's own feed: its deliveries in its own order, marked when handed out, and
acknowledged.

These functions flush only (or not at all); the use cases (``gate.feed``)
commit. A client sees only its deliveries: every query is by its id.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.ids import is_valid_id
from feed.models import FeedDelivery, FeedEvent


@dataclass(frozen=True, slots=True)
class Delivered:
    """One client's copy of an event, with the event."""

    delivery: FeedDelivery
    event: FeedEvent


def client_page(
    session: Session, client_id: str, *, after: int, limit: int, awaiting_ack: bool = False
) -> list[Delivered]:
    """The client's deliveries with ``seq`` > ``after``, in ``seq`` order, at most ``limit``.

    ``awaiting_ack``: only those whose event asks for an acknowledgement the
    client has not given yet (what it still owes, however long ago it was sent).
    The (client_id, seq) unique index serves the query.
    """
    statement = (
        select(FeedDelivery, FeedEvent)
        .join(FeedEvent, FeedEvent.id == FeedDelivery.event_id)
        .where(FeedDelivery.client_id == client_id, FeedDelivery.seq > after)
    )
    if awaiting_ack:
        statement = statement.where(
            FeedEvent.ack_required.is_(True), FeedDelivery.acknowledged_at.is_(None)
        )
    rows = session.execute(statement.order_by(FeedDelivery.seq).limit(limit)).all()
    return [Delivered(delivery, event) for delivery, event in rows]


def last_seq(session: Session, client_id: str) -> int:
    """The client's highest ``seq`` so far (0 before its first event): where a new
    webhook starts, and how far behind one is."""
    last = session.scalar(
        select(func.max(FeedDelivery.seq)).where(FeedDelivery.client_id == client_id)
    )
    return last or 0


def mark_notified(
    session: Session, client_id: str, event_ids: Collection[str], *, now: datetime
) -> int:
    """Set ``notified_at`` on the client's deliveries of these events that have none yet;
    how many were set. Idempotent: a second fetch (or a concurrent one) keeps the first time.
    """
    if not event_ids:
        return 0
    result = session.execute(
        update(FeedDelivery)
        .where(
            FeedDelivery.client_id == client_id,
            FeedDelivery.event_id.in_(sorted(set(event_ids))),
            FeedDelivery.notified_at.is_(None),
        )
        .values(notified_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def delivery_for(session: Session, client_id: str, event_id: str) -> Delivered:
    """The client's delivery of the event; ``NotFound`` for an unknown event and for one the
    client was not sent alike (another client's event is not there for it)."""
    if not is_valid_id(event_id):
        raise NotFound("no such event")
    row = session.execute(
        select(FeedDelivery, FeedEvent)
        .join(FeedEvent, FeedEvent.id == FeedDelivery.event_id)
        .where(FeedDelivery.event_id == event_id, FeedDelivery.client_id == client_id)
    ).first()
    if row is None:
        raise NotFound("no such event")
    return Delivered(row[0], row[1])


def acknowledge(delivered: Delivered, *, now: datetime) -> bool:
    """Record the client's acknowledgement; False if it was given before (the first one's
    time stands). An acknowledgement implies the client had the event: ``notified_at`` is
    set too if nothing set it yet (an event it took from the broker, say)."""
    delivery = delivered.delivery
    if delivery.acknowledged_at is not None:
        return False
    delivery.acknowledged_at = now
    if delivery.notified_at is None:
        delivery.notified_at = now
    return True


def event_item(event: FeedEvent, seq: int | None = None) -> dict[str, Any]:
    """An event as every channel carries it: the pull feed's item (with the delivery's
    state added), a webhook's body, a broker message (with its recipients added).

    ``seq`` is the recipient's own order, given where there is one recipient; the broker's
    shared bus has none. ``data`` is the event's stored JSON (ids, purposes and field names
    only), parsed so that the item is one JSON object rather than JSON in a string. Times
    in UTC, RFC 3339. The keys' order is the webhook body's byte order.
    """
    item: dict[str, Any] = {"id": event.id}
    if seq is not None:
        item["seq"] = seq
    item["type"] = event.type
    item["created_at"] = event.created_at.isoformat()
    item["data"] = json.loads(event.data)
    item["ack_required"] = event.ack_required
    return item


def item_view(delivered: Delivered) -> dict[str, Any]:
    """An event as its recipient sees it in the pull feed (``GET /v1/events``): the item,
    and when the recipient acknowledged it."""
    event, delivery = delivered.event, delivered.delivery
    return {
        **event_item(event, seq=delivery.seq),
        "acknowledged_at": (
            delivery.acknowledged_at.isoformat() if delivery.acknowledged_at else None
        ),
    }
