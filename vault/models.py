"""Vault tables: one row per member, their wrapped data key, encrypted fields, blind indexes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime
from core.ids import ID_LENGTH


class VaultMember(Base):
    __tablename__ = "vault_member"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class VaultDataKey(Base):
    """The member's data key, wrapped by the KEK version named here.

    Deleting this row is the crypto-shred: without it no ciphertext of the
    member can be decrypted, backups included.
    """

    __tablename__ = "vault_data_key"

    member_id: Mapped[str] = mapped_column(
        ForeignKey("vault_member.id", ondelete="CASCADE"), primary_key=True
    )
    kek_version: Mapped[int] = mapped_column(Integer)
    data_key_ct: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class VaultField(Base):
    __tablename__ = "vault_field"

    member_id: Mapped[str] = mapped_column(
        ForeignKey("vault_member.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value_ct: Mapped[bytes] = mapped_column(LargeBinary)


class VaultBlindIndex(Base):
    """HMAC of a normalised searchable value; several members may share one."""

    __tablename__ = "vault_blind_index"
    __table_args__ = (Index("ix_vault_blind_index_member_id", "member_id"),)

    field: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(
        ForeignKey("vault_member.id", ondelete="CASCADE"), primary_key=True
    )


class VaultKeyringHolder(Base):
    """A running server process and the KEK version it wraps new data keys under.

    Each process writes its own row when it starts and every
    ``keyring_heartbeat_seconds`` (``seen_at``), and deletes it when it stops;
    ``memberguard keys rewrap`` refuses while a process seen within
    ``keyring_live_seconds`` wraps under an older KEK (``gate.keyholders``).
    """

    __tablename__ = "vault_keyring_holder"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    kek_version: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
