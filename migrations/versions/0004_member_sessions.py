"""Members' sign-in sessions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

A new table only: servers of the previous revision keep running while it is
applied (they accept no member tokens).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = 24


def upgrade() -> None:
    op.create_table(
        "member_session",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(ID), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["vault_member.id"], name="fk_member_session_member_id_vault_member"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_member_session"),
    )
    op.create_index("ix_member_session_member_id", "member_session", ["member_id"])


def downgrade() -> None:
    op.drop_index("ix_member_session_member_id", table_name="member_session")
    op.drop_table("member_session")
