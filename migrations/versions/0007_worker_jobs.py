"""The scheduler's jobs: leases and the record of their runs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

A new table only: servers of the previous revision keep running while it is
applied (they run no scheduled jobs).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_job",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("next_due_at", UTCDateTime(), nullable=False),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(320), nullable=True),
        sa.Column("last_started_at", UTCDateTime(), nullable=True),
        sa.Column("last_finished_at", UTCDateTime(), nullable=True),
        sa.Column("last_status", sa.String(16), nullable=True),
        sa.Column("last_result", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.String(128), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_worker_job"),
    )


def downgrade() -> None:
    op.drop_table("worker_job")
