"""Rights tables: requests and their history, pending corrections, holds, copies, recipients.

Nothing here holds a member's personal value in clear. A correction's new
values and an access copy are ciphertexts under the member's own data key
(``vault.crypto``), so the crypto-shred that deletes the member makes them
unreadable even in a backup that still holds the rows, and the deletion
removes the rows too. A request keeps field *names*, ids and times; it is the
record of what was asked and done, and stays after the member is deleted.

Free-text reasons (a rejection's, an extension's, a hold's) are written by the
DPO or the member and shown to the member; they are stored as written and
never copied into an audit entry. The README asks that they name case
references, not facts about the member.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, LongBlob, UTCDateTime
from core.ids import ID_LENGTH

REASON_LENGTH = 500
# A relaying system's case or ticket id: opaque to memberguard (README, "Rights requests").
REFERENCE_LENGTH = 64


class RightsRequest(Base):
    __tablename__ = "rights_request"
    __table_args__ = (
        # The DPO queue: filtered by status, sorted by due date (id breaks ties
        # for the keyset cursor).
        Index("ix_rights_request_status_due_at", "status", "due_at", "id"),
        Index("ix_rights_request_due_at", "due_at", "id"),
        # A member's own list, newest first.
        Index("ix_rights_request_member_id", "member_id", "received_at"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    member_id: Mapped[str] = mapped_column(ForeignKey("vault_member.id"))
    status: Mapped[str] = mapped_column(String(16))
    # "member": the member's own API; "relayed": a client with rights:submit.
    channel: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The due instant before the one extension the policy allows; None: not extended.
    extended_from: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deadline_rule: Mapped[str] = mapped_column(String(32))
    deadline_calendar: Mapped[str] = mapped_column(String(64))
    calendar_estimated: Mapped[bool] = mapped_column(Boolean)
    # A correction's field names, space-separated; never values.
    fields: Mapped[str] = mapped_column(Text, default="")
    # Waits for a DPO's approve or reject: a correction of fields that are not
    # self-service, a deletion under [rights.deletion] review.
    awaiting_approval: Mapped[bool] = mapped_column(Boolean)
    relayed_by: Mapped[str | None] = mapped_column(ForeignKey("gate_client.id"))
    verification_method: Mapped[str | None] = mapped_column(String(32))
    verification_reference: Mapped[str | None] = mapped_column(String(REFERENCE_LENGTH))
    # The last deadline notice to the DPO (``gate.rights_jobs.flag_due_requests``):
    # "due_soon" or "overdue", so each threshold is flagged once per due date.
    due_flag: Mapped[str | None] = mapped_column(String(16))
    due_flagged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    events: Mapped[list[RightsRequestEvent]] = relationship(
        back_populates="request", order_by="RightsRequestEvent.id", lazy="selectin"
    )
    recipients: Mapped[list[RightsRequestRecipient]] = relationship(
        back_populates="request", order_by="RightsRequestRecipient.client_id", lazy="selectin"
    )

    @property
    def field_names(self) -> list[str]:
        return self.fields.split() if self.fields else []


class RightsRequestEvent(Base):
    """One line of a request's history: what it became, when, by whom, and why."""

    __tablename__ = "rights_request_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("rights_request.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A status, or "extended".
    status: Mapped[str] = mapped_column(String(16))
    # Who: the actor's id and kind (member, client, staff); None for the
    # system itself (a job, a hold that lapsed).
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_kind: Mapped[str | None] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))

    request: Mapped[RightsRequest] = relationship(back_populates="events")


class RightsCorrection(Base):
    """A correction's values waiting for the DPO: one ciphertext under the member's data key.

    Deleted when the correction is applied, rejected or cancelled, and with
    the member.
    """

    __tablename__ = "rights_correction"

    request_id: Mapped[str] = mapped_column(ForeignKey("rights_request.id"), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("vault_member.id"), index=True)
    values_ct: Mapped[bytes] = mapped_column(LargeBinary)


class RightsHold(Base):
    """A legal hold on a member: while one is active, their deletion waits (``on_hold``).

    Active while not released and ``ends_at`` (the API's ``until``) has not
    passed; a hold that lapses counts as released from that instant.
    """

    __tablename__ = "rights_hold"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("vault_member.id"), index=True)
    reason: Mapped[str] = mapped_column(String(REASON_LENGTH))
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # None with released_at set: the hold lapsed at its end (no one released it).
    released_by: Mapped[str | None] = mapped_column(String(64))

    def active(self, now: datetime) -> bool:
        return self.released_at is None and (self.ends_at is None or now < self.ends_at)


class RightsCopy(Base):
    """An access request's copy: the document, encrypted under the member's data key.

    Downloadable until ``expires_at``; the expiry job and the member's
    deletion destroy it.
    """

    __tablename__ = "rights_copy"

    request_id: Mapped[str] = mapped_column(ForeignKey("rights_request.id"), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("vault_member.id"), index=True)
    copy_ct: Mapped[bytes] = mapped_column(LongBlob)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class RightsRequestRecipient(Base):
    """A client that had to be told of a correction or deletion applied before the change
    feed existed (GDPR Art. 19, PIPL Art. 47).

    No longer written: since the feed, a request's recipients are the clients
    its events were delivered to (``feed_delivery`` through
    ``feed_event.rights_request``), with the times the feed records there; the
    request view joins both (``feed.acks.request_recipients``). ``notified_at``
    and ``acknowledged_at`` were never filled and are not read: kept only
    until a later revision drops them (dropping them under running servers of
    the previous revision would break those).
    """

    __tablename__ = "rights_request_recipient"

    request_id: Mapped[str] = mapped_column(ForeignKey("rights_request.id"), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("gate_client.id"), primary_key=True)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    request: Mapped[RightsRequest] = relationship(back_populates="recipients")
