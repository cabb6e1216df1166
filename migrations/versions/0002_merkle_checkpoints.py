"""Merkle tree nodes and signed checkpoints (RFC 9162, C2SP tlog-checkpoint).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Existing entries get their tree nodes here, so a log created before this
revision becomes provable up to its current size.
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

initial = importlib.import_module("migrations.versions.0001_initial")


def upgrade() -> None:
    op.create_table(
        "audit_merkle_node",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_audit_merkle_node"),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("cut_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("size", name="pk_audit_checkpoint"),
    )
    for table in ("audit_merkle_node", "audit_checkpoint"):
        initial.create_append_only_triggers(table)
    op.create_table(
        "audit_tree_truncate_guard",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("node_level", sa.Integer(), nullable=True),
        sa.Column("node_idx", sa.BigInteger(), nullable=True),
        sa.Column("checkpoint_size", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["node_level", "node_idx"],
            ["audit_merkle_node.level", "audit_merkle_node.idx"],
            name="fk_audit_tree_truncate_guard_node_level_audit_merkle_node",
        ),
        sa.ForeignKeyConstraint(
            ["checkpoint_size"],
            ["audit_checkpoint.size"],
            name="fk_audit_tree_truncate_guard_checkpoint_size_audit_checkpoint",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_audit_tree_truncate_guard"),
    )
    _backfill_nodes()


def _backfill_nodes() -> None:
    from audit.merkle import MemoryTree

    bind = op.get_bind()
    tree = MemoryTree()
    rows: list[dict[str, object]] = []
    node = sa.table("audit_merkle_node", sa.column("level"), sa.column("idx"), sa.column("hash"))
    for (leaf,) in bind.execute(sa.text("SELECT leaf_hash FROM audit_entry ORDER BY seq")):
        for level, idx, digest in tree.append(bytes.fromhex(leaf)):
            rows.append({"level": level, "idx": idx, "hash": digest.hex()})
        if len(rows) >= 10_000:
            op.bulk_insert(node, rows)
            rows = []
    if rows:
        op.bulk_insert(node, rows)


def downgrade() -> None:
    raise NotImplementedError("the audit tables cannot be downgraded")
