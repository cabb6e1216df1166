"""Breach incidents: the incident, its timeline, and the members it affects.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

New tables only: servers of the previous revision keep running while it is
applied (they know no incidents).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.db import BigId, UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ID = 24


def upgrade() -> None:
    op.create_table(
        "breach_incident",
        sa.Column("id", sa.String(ID), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("detected_at", UTCDateTime(), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("opened_by", sa.String(64), nullable=False),
        sa.Column("authority_due_at", UTCDateTime(), nullable=False),
        sa.Column("authority_rule", sa.String(32), nullable=False),
        sa.Column("affected", sa.Text(), nullable=False),
        sa.Column("consequences", sa.Text(), nullable=True),
        sa.Column("measures", sa.Text(), nullable=True),
        sa.Column("member_advice", sa.Text(), nullable=True),
        sa.Column("assessed_at", UTCDateTime(), nullable=True),
        sa.Column("authority_notified_at", UTCDateTime(), nullable=True),
        sa.Column("authority", sa.String(200), nullable=True),
        sa.Column("authority_reference", sa.String(100), nullable=True),
        sa.Column("members_notified_at", UTCDateTime(), nullable=True),
        sa.Column("notice_channels", sa.String(32), nullable=True),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("reminded", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_breach_incident"),
    )
    op.create_index(
        "ix_breach_incident_status_due", "breach_incident", ["status", "authority_due_at"]
    )
    op.create_table(
        "breach_incident_event",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(ID), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("step", sa.String(24), nullable=False),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["breach_incident.id"],
            name="fk_breach_incident_event_incident_id_breach_incident",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_breach_incident_event"),
    )
    op.create_index(
        "ix_breach_incident_event_incident_id", "breach_incident_event", ["incident_id"]
    )
    op.create_table(
        "breach_affected",
        sa.Column("incident_id", sa.String(ID), nullable=False),
        sa.Column("member_id", sa.String(ID), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("identity", sa.Boolean(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("shredded", sa.Boolean(), nullable=False),
        sa.Column("notice_status", sa.String(16), nullable=True),
        sa.Column("notice_channel", sa.String(8), nullable=True),
        sa.Column("notice_message", sa.String(ID), nullable=True),
        sa.Column("notice_at", UTCDateTime(), nullable=True),
        sa.Column("failure", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["breach_incident.id"],
            name="fk_breach_affected_incident_id_breach_incident",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["vault_member.id"], name="fk_breach_affected_member_id_vault_member"
        ),
        sa.PrimaryKeyConstraint("incident_id", "member_id", name="pk_breach_affected"),
    )
    op.create_index(
        "ix_breach_affected_notice",
        "breach_affected",
        ["notice_status", "incident_id", "member_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_breach_affected_notice", table_name="breach_affected")
    op.drop_table("breach_affected")
    op.drop_index("ix_breach_incident_event_incident_id", table_name="breach_incident_event")
    op.drop_table("breach_incident_event")
    op.drop_index("ix_breach_incident_status_due", table_name="breach_incident")
    op.drop_table("breach_incident")
