"""The change feed: events and their deliveries to each recipient.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

New tables only: servers of the previous revision keep running while it is
applied (they write no events).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = 24


def upgrade() -> None:
    op.create_table(
        "feed_event",
        sa.Column("id", sa.String(ID), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("member_id", sa.String(ID), nullable=True),
        sa.Column("rights_request", sa.String(ID), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("ack_required", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_feed_event"),
    )
    op.create_index("ix_feed_event_member_id", "feed_event", ["member_id"])
    op.create_index("ix_feed_event_rights_request", "feed_event", ["rights_request"])
    op.create_index("ix_feed_event_published_at", "feed_event", ["published_at"])
    op.create_table(
        "feed_delivery",
        sa.Column("event_id", sa.String(ID), nullable=False),
        sa.Column("client_id", sa.String(ID), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("notified_at", UTCDateTime(), nullable=True),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["feed_event.id"], name="fk_feed_delivery_event_id_feed_event"
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["gate_client.id"], name="fk_feed_delivery_client_id_gate_client"
        ),
        sa.PrimaryKeyConstraint("event_id", "client_id", name="pk_feed_delivery"),
        sa.UniqueConstraint("client_id", "seq", name="uq_feed_delivery_client_id"),
    )


def downgrade() -> None:
    op.drop_table("feed_delivery")
    op.drop_index("ix_feed_event_published_at", table_name="feed_event")
    op.drop_index("ix_feed_event_rights_request", table_name="feed_event")
    op.drop_index("ix_feed_event_member_id", table_name="feed_event")
    op.drop_table("feed_event")
