"""Staff console sessions.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

A new table only: servers of the previous revision keep running while it is
applied (they serve no console).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ID = 24


def upgrade() -> None:
    op.create_table(
        "staff_session",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(ID), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["gate_client.id"], name="fk_staff_session_client_id_gate_client"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_staff_session"),
    )
    op.create_index("ix_staff_session_client_id", "staff_session", ["client_id"])


def downgrade() -> None:
    op.drop_index("ix_staff_session_client_id", table_name="staff_session")
    op.drop_table("staff_session")
