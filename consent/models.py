"""Consent tables: current state per (member, purpose) and the append-only history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId, UTCDateTime
from core.ids import ID_LENGTH


class ConsentState(Base):
    __tablename__ = "consent_state"

    member_id: Mapped[str] = mapped_column(
        ForeignKey("vault_member.id", ondelete="CASCADE"), primary_key=True
    )
    purpose: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    notice_version: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsentEvent(Base):
    """One consent change as collected. Append-only (database triggers)."""

    __tablename__ = "consent_event"
    __table_args__ = (Index("ix_consent_event_member_purpose", "member_id", "purpose", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    purpose: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(32))
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by: Mapped[str] = mapped_column(String(64))
    notice_version: Mapped[str | None] = mapped_column(String(64))
    notice_sha256: Mapped[str | None] = mapped_column(String(64))
    receipt_id: Mapped[str | None] = mapped_column(String(36))
    audit_seq: Mapped[int] = mapped_column(BigInteger)


class ConsentReceipt(Base):
    """The Kantara-shaped receipt issued for a grant, kept as issued. Append-only."""

    __tablename__ = "consent_receipt"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    body: Mapped[str] = mapped_column(Text)


class ConsentTruncateGuard(Base):
    """Always empty; its foreign keys make TRUNCATE of the history fail (see AuditTruncateGuard)."""

    __tablename__ = "consent_truncate_guard"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    event_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("consent_event.id"))
    receipt_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("consent_receipt.id"))
