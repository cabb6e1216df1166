"""Webhooks: one per client, and the record of every delivery attempt.

A client's webhook is delivered in the client's ``seq`` order, one event at a
time (``feed.webhooks``): the row itself is the cursor (``cursor_seq``, the
last event settled, delivered or given up), the retry state of the event
after it (the *head*), and the claim a worker holds while it sends.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, ForeignKeyConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId, LongBlob, UTCDateTime
from core.ids import ID_LENGTH


class FeedWebhook(Base):
    """Where a client's events are pushed, and how far the push has got.

    The URL and the signing secrets are stored encrypted (``*_ct``,
    ``feed.webhooks.seal``): the URL may carry the receiver's token, and the
    secret must be usable to sign, so it cannot be hashed. ``origin`` (scheme,
    host and port) is what may be shown and recorded.

    ``previous_secret_ct`` is the secret a rotation replaced: deliveries are
    signed by both until ``previous_secret_expires_at``, then by the new one alone.

    ``cursor_seq``: every event of the client with ``seq`` up to it is settled
    (delivered, or given up once 24 hours had passed since it was written, after
    at least one try); the next to deliver is
    ``cursor_seq + 1``. Set, when the webhook is registered, to the client's
    last ``seq``: a webhook pushes the events written after it (the earlier ones
    stay in the pull feed).

    ``claim_expires_at`` / ``claimed_by``: the lease of the worker sending for this
    client. Only the holder sends, so no event of the client is sent twice at
    once; a worker that dies leaves the lease to expire, and the event is sent
    again (same ``webhook-id``).
    """

    __tablename__ = "feed_webhook"
    __table_args__ = (Index("ix_feed_webhook_next_attempt_at", "next_attempt_at"),)

    client_id: Mapped[str] = mapped_column(ForeignKey("gate_client.id"), primary_key=True)
    origin: Mapped[str] = mapped_column(String(300))
    url_ct: Mapped[bytes] = mapped_column(LongBlob)
    secret_ct: Mapped[bytes] = mapped_column(LongBlob)
    previous_secret_ct: Mapped[bytes | None] = mapped_column(LongBlob)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cursor_seq: Mapped[int] = mapped_column(Integer)
    # The head event's tries: how many so far, and when the next may start (also:
    # when the client's next event may go, after a success). Its tries end 24 hours
    # after the event was written (``feed_event.created_at``), not after the first try.
    head_attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(64))


class FeedWebhookAttempt(Base):
    """One try to deliver one event to one client's webhook.

    ``status_code`` is the receiver's HTTP status, or null when no answer came
    (``error`` then names why: ``timeout``, ``connect-error``,
    ``address-refused`` …, never a message that could hold the URL).
    ``outcome``: ``delivered`` (2xx), ``retry`` (tried again at
    ``next_attempt_at``) or ``failed`` (given up: it failed 24 hours or more after
    the event was written).
    """

    __tablename__ = "feed_webhook_attempt"
    __table_args__ = (
        ForeignKeyConstraint(
            ["event_id", "client_id"],
            ["feed_delivery.event_id", "feed_delivery.client_id"],
            name="fk_feed_webhook_attempt_event_id_feed_delivery",
        ),
        Index("ix_feed_webhook_attempt_client_id_id", "client_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    event_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    attempt: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
