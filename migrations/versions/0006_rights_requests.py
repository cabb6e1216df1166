"""Members' rights requests: requests and history, pending corrections, holds, copies, recipients.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

New tables only: servers of the previous revision keep running while it is
applied (they serve no rights endpoints).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.db import BigId, LongBlob, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = 24
REASON = 500


def _member_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["member_id"], ["vault_member.id"], name=f"fk_{table}_member_id_vault_member"
    )


def _request_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["request_id"], ["rights_request.id"], name=f"fk_{table}_request_id_rights_request"
    )


def upgrade() -> None:
    op.create_table(
        "rights_request",
        sa.Column("id", sa.String(ID), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("member_id", sa.String(ID), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("extended_from", UTCDateTime(), nullable=True),
        sa.Column("deadline_rule", sa.String(32), nullable=False),
        sa.Column("deadline_calendar", sa.String(64), nullable=False),
        sa.Column("calendar_estimated", sa.Boolean(), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("awaiting_approval", sa.Boolean(), nullable=False),
        sa.Column("relayed_by", sa.String(ID), nullable=True),
        sa.Column("verification_method", sa.String(32), nullable=True),
        sa.Column("verification_reference", sa.String(64), nullable=True),
        sa.Column("due_flag", sa.String(16), nullable=True),
        sa.Column("due_flagged_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _member_fk("rights_request"),
        sa.ForeignKeyConstraint(
            ["relayed_by"], ["gate_client.id"], name="fk_rights_request_relayed_by_gate_client"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rights_request"),
    )
    op.create_index("ix_rights_request_status_due_at", "rights_request", ["status", "due_at", "id"])
    op.create_index("ix_rights_request_due_at", "rights_request", ["due_at", "id"])
    op.create_index("ix_rights_request_member_id", "rights_request", ["member_id", "received_at"])

    op.create_table(
        "rights_request_event",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(ID), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=True),
        sa.Column("actor_kind", sa.String(8), nullable=True),
        sa.Column("reason", sa.String(REASON), nullable=True),
        _request_fk("rights_request_event"),
        sa.PrimaryKeyConstraint("id", name="pk_rights_request_event"),
    )
    op.create_index("ix_rights_request_event_request_id", "rights_request_event", ["request_id"])

    op.create_table(
        "rights_correction",
        sa.Column("request_id", sa.String(ID), nullable=False),
        sa.Column("member_id", sa.String(ID), nullable=False),
        sa.Column("values_ct", sa.LargeBinary(), nullable=False),
        _request_fk("rights_correction"),
        _member_fk("rights_correction"),
        sa.PrimaryKeyConstraint("request_id", name="pk_rights_correction"),
    )
    op.create_index("ix_rights_correction_member_id", "rights_correction", ["member_id"])

    op.create_table(
        "rights_hold",
        sa.Column("id", sa.String(ID), nullable=False),
        sa.Column("member_id", sa.String(ID), nullable=False),
        sa.Column("reason", sa.String(REASON), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("released_at", UTCDateTime(), nullable=True),
        sa.Column("released_by", sa.String(64), nullable=True),
        _member_fk("rights_hold"),
        sa.PrimaryKeyConstraint("id", name="pk_rights_hold"),
    )
    op.create_index("ix_rights_hold_member_id", "rights_hold", ["member_id"])

    op.create_table(
        "rights_copy",
        sa.Column("request_id", sa.String(ID), nullable=False),
        sa.Column("member_id", sa.String(ID), nullable=False),
        sa.Column("copy_ct", LongBlob, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        _request_fk("rights_copy"),
        _member_fk("rights_copy"),
        sa.PrimaryKeyConstraint("request_id", name="pk_rights_copy"),
    )
    op.create_index("ix_rights_copy_member_id", "rights_copy", ["member_id"])
    op.create_index("ix_rights_copy_expires_at", "rights_copy", ["expires_at"])

    op.create_table(
        "rights_request_recipient",
        sa.Column("request_id", sa.String(ID), nullable=False),
        sa.Column("client_id", sa.String(ID), nullable=False),
        sa.Column("notified_at", UTCDateTime(), nullable=True),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
        _request_fk("rights_request_recipient"),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["gate_client.id"],
            name="fk_rights_request_recipient_client_id_gate_client",
        ),
        sa.PrimaryKeyConstraint("request_id", "client_id", name="pk_rights_request_recipient"),
    )


def downgrade() -> None:
    op.drop_table("rights_request_recipient")
    op.drop_index("ix_rights_copy_expires_at", table_name="rights_copy")
    op.drop_index("ix_rights_copy_member_id", table_name="rights_copy")
    op.drop_table("rights_copy")
    op.drop_index("ix_rights_hold_member_id", table_name="rights_hold")
    op.drop_table("rights_hold")
    op.drop_index("ix_rights_correction_member_id", table_name="rights_correction")
    op.drop_table("rights_correction")
    op.drop_index("ix_rights_request_event_request_id", table_name="rights_request_event")
    op.drop_table("rights_request_event")
    op.drop_index("ix_rights_request_member_id", table_name="rights_request")
    op.drop_index("ix_rights_request_due_at", table_name="rights_request")
    op.drop_index("ix_rights_request_status_due_at", table_name="rights_request")
    op.drop_table("rights_request")
