"""Members' one-time sign-in codes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

A new table only: servers of the previous revision keep running while it is
applied (they serve no sign-in).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = 24


def upgrade() -> None:
    op.create_table(
        "member_login_challenge",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(ID), nullable=True),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["vault_member.id"],
            name="fk_member_login_challenge_member_id_vault_member",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_member_login_challenge"),
    )
    op.create_index("ix_member_login_challenge_member_id", "member_login_challenge", ["member_id"])
    op.create_index(
        "ix_member_login_challenge_expires_at", "member_login_challenge", ["expires_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_member_login_challenge_expires_at", table_name="member_login_challenge")
    op.drop_index("ix_member_login_challenge_member_id", table_name="member_login_challenge")
    op.drop_table("member_login_challenge")
