"""The change feed's acknowledgements: when each overdue one was last reminded.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

Additive only (a nullable column and an index): servers of the previous
revision keep running while it is applied. ``rights_request_recipient``'s
``notified_at`` and ``acknowledged_at`` are left in place, unused: a
request's recipients are now read from the feed's deliveries, and dropping
the columns under running servers of the previous revision (which still
select them) would break them; a later revision drops them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("feed_delivery", sa.Column("reminded_at", UTCDateTime(), nullable=True))
    op.create_index(
        "ix_feed_event_ack_required_created_at", "feed_event", ["ack_required", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_feed_event_ack_required_created_at", table_name="feed_event")
    with op.batch_alter_table("feed_delivery") as batch:
        batch.drop_column("reminded_at")
