"""Audit tables. ``audit_entry`` and ``audit_entry_member`` are append-only (triggers).

``entry`` holds the canonical bytes exactly as hashed. The other columns of
``audit_entry`` are projections of those bytes for querying; ``audit verify``
checks that they still match, so editing a column to hide an entry from a
filter is detected like any other tampering.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, ForeignKeyConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, LongBlob, UTCDateTime
from core.ids import ID_LENGTH


class AuditHead(Base):
    """The single row appends lock on (SELECT … FOR UPDATE) to serialise the log."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    __tablename__ = "audit_entry"
    __table_args__ = (
        Index("ix_audit_entry_actor_seq", "actor", "seq"),
        Index("ix_audit_entry_purpose_seq", "purpose", "seq"),
        Index("ix_audit_entry_action_seq", "action", "seq"),
        Index("ix_audit_entry_recorded_at", "recorded_at"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(64))
    purpose: Mapped[str | None] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(64))
    entry: Mapped[bytes] = mapped_column(LongBlob)
    leaf_hash: Mapped[str] = mapped_column(String(64))
    chain_hash: Mapped[str] = mapped_column(String(64))


class AuditEntryMember(Base):
    """Which members an entry touches, for the member filter and access history."""

    __tablename__ = "audit_entry_member"
    # Verification walks this table in log order; the primary key serves the
    # per-member history.
    __table_args__ = (Index("ix_audit_entry_member_seq", "seq"),)

    member_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class AuditTruncateGuard(Base):
    """Always empty. Its foreign keys make TRUNCATE of the log tables fail.

    MySQL and MariaDB have no TRUNCATE trigger, but refuse to truncate a table
    that another table's foreign key references; PostgreSQL refuses too
    (besides its trigger). A guardrail like the triggers: the hashes are the proof.
    """

    __tablename__ = "audit_truncate_guard"
    __table_args__ = (
        ForeignKeyConstraint(
            ["member_id", "member_seq"],
            ["audit_entry_member.member_id", "audit_entry_member.seq"],
            name="fk_audit_truncate_guard_member_id_audit_entry_member",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    entry_seq: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("audit_entry.seq"))
    member_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    member_seq: Mapped[int | None] = mapped_column(BigInteger)


class AuditMerkleNode(Base):
    """A complete subtree of the RFC 9162 Merkle tree over the entries' leaf hashes.

    Level 0 holds the leaves; node (level, idx) covers leaves
    [idx * 2**level, (idx + 1) * 2**level). Only complete subtrees are stored,
    and they never change once complete, so the table is append-only and any
    root or proof for any tree size reads O(log n) rows.
    """

    __tablename__ = "audit_merkle_node"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed checkpoint (C2SP tlog-checkpoint in a signed note), as published."""

    __tablename__ = "audit_checkpoint"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    cut_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditTreeTruncateGuard(Base):
    """Always empty; refuses TRUNCATE of the tree and checkpoint tables (see AuditTruncateGuard)."""

    __tablename__ = "audit_tree_truncate_guard"
    __table_args__ = (
        ForeignKeyConstraint(
            ["node_level", "node_idx"],
            ["audit_merkle_node.level", "audit_merkle_node.idx"],
            name="fk_audit_tree_truncate_guard_node_level_audit_merkle_node",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    node_level: Mapped[int | None] = mapped_column(Integer)
    node_idx: Mapped[int | None] = mapped_column(BigInteger)
    checkpoint_size: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("audit_checkpoint.size")
    )
