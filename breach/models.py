"""Breach tables: incidents, their timelines, and the members each one affects.

Nothing here holds a member's personal value. An incident's texts (title,
description, the assessment, the summary) are the DPO's, written for the
authority; they are stored as written and never copied into an audit entry.
The affected members are ids with the field names and views the log shows were
released; a notice's recipient address is read when it is sent and kept
nowhere.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, UTCDateTime
from core.ids import ID_LENGTH

TITLE_LENGTH = 200
TEXT_LENGTH = 10_000
AUTHORITY_LENGTH = 200
REFERENCE_LENGTH = 100


class BreachIncident(Base):
    __tablename__ = "breach_incident"
    __table_args__ = (Index("ix_breach_incident_status_due", "status", "authority_due_at"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_LENGTH))
    description: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))
    # The scope as given, canonical JSON: {"kind": "client", "client", "from", "to"},
    # {"kind": "members", "members": N} (the ids are the affected rows) or {"kind": "all"}.
    scope: Mapped[str] = mapped_column(Text)
    # When the organisation became aware: the authority's deadline counts from here.
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime())
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    opened_by: Mapped[str] = mapped_column(String(64))
    authority_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The policy's rule the deadline was computed with ("72 hours").
    authority_rule: Mapped[str] = mapped_column(String(32))
    # The counts computed when the incident was opened (``breach.scope.Summary``), JSON.
    affected: Mapped[str] = mapped_column(Text)
    # The assessment (open → assessed): what it likely means for members, what was
    # done, what members can do. Shown in the report and the members' notices.
    consequences: Mapped[str | None] = mapped_column(Text)
    measures: Mapped[str | None] = mapped_column(Text)
    member_advice: Mapped[str | None] = mapped_column(Text)
    assessed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    authority_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    authority: Mapped[str | None] = mapped_column(String(AUTHORITY_LENGTH))
    authority_reference: Mapped[str | None] = mapped_column(String(REFERENCE_LENGTH))
    # notify-members: when it was first asked for, and the channels, in order of preference.
    members_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    notice_channels: Mapped[str | None] = mapped_column(String(32))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    summary: Mapped[str | None] = mapped_column(Text)
    # The last reminder the DPO was sent (``breach.clock.reminder_due``): hours left
    # at the threshold ("24", "6") or "overdue"; each is sent once.
    reminded: Mapped[str | None] = mapped_column(String(16))

    events: Mapped[list[BreachIncidentEvent]] = relationship(
        back_populates="incident", order_by="BreachIncidentEvent.id", lazy="selectin"
    )


class BreachIncidentEvent(Base):
    """One line of an incident's timeline: a step, who took it, when, and its note."""

    __tablename__ = "breach_incident_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("breach_incident.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    step: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str | None] = mapped_column(String(64))
    # The step's facts as canonical JSON (ids, counts, the authority's reference);
    # never a member's value.
    detail: Mapped[str] = mapped_column(Text)

    incident: Mapped[BreachIncident] = relationship(back_populates="events")


class BreachAffected(Base):
    """A member an incident affects, what of theirs, and their notice.

    ``notice_status``: None (not asked for), ``queued``, ``sending`` (claimed by a
    sender, ``notice_at`` the claim), ``sent``, ``failed`` (``failure``: the
    transport refused, or ``interrupted``: a sender died after claiming it, so
    whether it went is unknown and it is never sent again), ``unreachable`` (the
    member was crypto-shredded, or has no contact on the channels asked for).
    """

    __tablename__ = "breach_affected"
    __table_args__ = (
        Index("ix_breach_affected_notice", "notice_status", "incident_id", "member_id"),
    )

    incident_id: Mapped[str] = mapped_column(ForeignKey("breach_incident.id"), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("vault_member.id"), primary_key=True)
    # {field: [views]} as canonical JSON: what the log shows was released (scope
    # client), or what the vault held (scopes members and all).
    fields: Mapped[str] = mapped_column(Text)
    # The client learnt who the member is from a lookup (their id for a contact it had).
    identity: Mapped[bool] = mapped_column(Boolean)
    # How many releases (or stored values) make up this member's exposure: the
    # "records" the report counts.
    records: Mapped[int] = mapped_column(Integer)
    # The member had been crypto-shredded when the incident was opened: nothing
    # left to reach them with.
    shredded: Mapped[bool] = mapped_column(Boolean)
    notice_status: Mapped[str | None] = mapped_column(String(16))
    notice_channel: Mapped[str | None] = mapped_column(String(8))
    notice_message: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    notice_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failure: Mapped[str | None] = mapped_column(String(32))
