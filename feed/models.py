"""Events and their deliveries: one row per event, one per (event, recipient)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime
from core.ids import ID_LENGTH


class FeedEvent(Base):
    """A change downstream systems must apply.

    ``data`` is canonical JSON of ids, purposes and field names only.
    ``published_at`` is the broker outbox: set once the message broker
    confirmed the event (never set when no broker is configured).
    """

    __tablename__ = "feed_event"
    __table_args__ = (
        # The acknowledgement reminders: events that need one, oldest first.
        Index("ix_feed_event_ack_required_created_at", "ack_required", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    member_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    # The rights request this event completes a step of (a deletion, a correction).
    rights_request: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    data: Mapped[str] = mapped_column(Text)
    ack_required: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class FeedDelivery(Base):
    """One recipient's copy of an event, in that recipient's own order (``seq``).

    ``seq`` counts 1, 2, 3 … per client, without gaps: a consumer that saw
    ``seq`` n and then n + 2 knows it missed one. ``notified_at`` is the first
    time the client had the event (fetched from the pull feed, or a webhook
    answered 2xx); ``acknowledged_at`` is the client's confirmation that it
    applied the change (for a deletion: "we erased our copy"). ``reminded_at`` is
    when the DPO was last told that an acknowledgement the event requires is
    overdue (``gate.feed.remind_overdue_acks``): once per interval.
    """

    __tablename__ = "feed_delivery"
    __table_args__ = (UniqueConstraint("client_id", "seq"),)

    event_id: Mapped[str] = mapped_column(ForeignKey("feed_event.id"), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("gate_client.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
