"""Webhooks: one per client (URL and secrets encrypted), and their delivery attempts.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

New tables only: servers of the previous revision keep running while it is
applied (they deliver no webhooks).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.db import BigId, LongBlob, UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ID = 24


def upgrade() -> None:
    op.create_table(
        "feed_webhook",
        sa.Column("client_id", sa.String(ID), nullable=False),
        sa.Column("origin", sa.String(300), nullable=False),
        sa.Column("url_ct", LongBlob, nullable=False),
        sa.Column("secret_ct", LongBlob, nullable=False),
        sa.Column("previous_secret_ct", LongBlob, nullable=True),
        sa.Column("previous_secret_expires_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("rotated_at", UTCDateTime(), nullable=True),
        sa.Column("cursor_seq", sa.Integer(), nullable=False),
        sa.Column("head_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("claim_expires_at", UTCDateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["gate_client.id"], name="fk_feed_webhook_client_id_gate_client"
        ),
        sa.PrimaryKeyConstraint("client_id", name="pk_feed_webhook"),
    )
    op.create_index("ix_feed_webhook_next_attempt_at", "feed_webhook", ["next_attempt_at"])
    op.create_table(
        "feed_webhook_attempt",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("client_id", sa.String(ID), nullable=False),
        sa.Column("event_id", sa.String(ID), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("attempted_at", UTCDateTime(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(32), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id", "client_id"],
            ["feed_delivery.event_id", "feed_delivery.client_id"],
            name="fk_feed_webhook_attempt_event_id_feed_delivery",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_feed_webhook_attempt"),
    )
    op.create_index(
        "ix_feed_webhook_attempt_client_id_id", "feed_webhook_attempt", ["client_id", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_feed_webhook_attempt_client_id_id", table_name="feed_webhook_attempt")
    op.drop_table("feed_webhook_attempt")
    op.drop_index("ix_feed_webhook_next_attempt_at", table_name="feed_webhook")
    op.drop_table("feed_webhook")
