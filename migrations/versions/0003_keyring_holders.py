"""The running processes and the KEK version each wraps under (safe KEK rotation).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

A new table only: nothing existing changes, so servers of the previous
revision keep running while it is applied (they simply record nothing).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = 24


def upgrade() -> None:
    op.create_table(
        "vault_keyring_holder",
        sa.Column("id", sa.String(ID), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vault_keyring_holder"),
    )


def downgrade() -> None:
    op.drop_table("vault_keyring_holder")
