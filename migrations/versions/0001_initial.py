"""Initial schema: vault, consent, audit log, clients; append-only triggers.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.db import BigId, LongBlob, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = 24
# Log tables: rows are written once and never changed or removed. The
# triggers are guardrails against mistakes and casual edits; the hash chain is
# what proves the log intact.
APPEND_ONLY = ("audit_entry", "audit_entry_member", "consent_event", "consent_receipt")


def upgrade() -> None:
    op.create_table(
        "vault_member",
        sa.Column("id", sa.String(ID), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vault_member"),
    )
    op.create_table(
        "vault_data_key",
        sa.Column("member_id", sa.String(ID), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("data_key_ct", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["vault_member.id"],
            ondelete="CASCADE",
            name="fk_vault_data_key_member_id_vault_member",
        ),
        sa.PrimaryKeyConstraint("member_id", name="pk_vault_data_key"),
    )
    op.create_table(
        "vault_field",
        sa.Column("member_id", sa.String(ID), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value_ct", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["vault_member.id"],
            ondelete="CASCADE",
            name="fk_vault_field_member_id_vault_member",
        ),
        sa.PrimaryKeyConstraint("member_id", "name", name="pk_vault_field"),
    )
    op.create_table(
        "vault_blind_index",
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("member_id", sa.String(ID), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["vault_member.id"],
            ondelete="CASCADE",
            name="fk_vault_blind_index_member_id_vault_member",
        ),
        sa.PrimaryKeyConstraint("field", "digest", "member_id", name="pk_vault_blind_index"),
    )
    op.create_index("ix_vault_blind_index_member_id", "vault_blind_index", ["member_id"])

    op.create_table(
        "consent_state",
        sa.Column("member_id", sa.String(ID), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("notice_version", sa.String(64), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["vault_member.id"],
            ondelete="CASCADE",
            name="fk_consent_state_member_id_vault_member",
        ),
        sa.PrimaryKeyConstraint("member_id", "purpose", name="pk_consent_state"),
    )
    op.create_table(
        "consent_event",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("member_id", sa.String(ID), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("collected_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(64), nullable=False),
        sa.Column("notice_version", sa.String(64), nullable=True),
        sa.Column("notice_sha256", sa.String(64), nullable=True),
        sa.Column("receipt_id", sa.String(36), nullable=True),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consent_event"),
    )
    op.create_index(
        "ix_consent_event_member_purpose", "consent_event", ["member_id", "purpose", "id"]
    )
    op.create_table(
        "consent_receipt",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("member_id", sa.String(ID), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consent_receipt"),
    )
    op.create_index("ix_consent_receipt_member_id", "consent_receipt", ["member_id"])

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    op.create_table(
        "audit_entry",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("purpose", sa.String(64), nullable=True),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("entry", LongBlob, nullable=False),
        sa.Column("leaf_hash", sa.String(64), nullable=False),
        sa.Column("chain_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_entry"),
    )
    op.create_index("ix_audit_entry_actor_seq", "audit_entry", ["actor", "seq"])
    op.create_index("ix_audit_entry_purpose_seq", "audit_entry", ["purpose", "seq"])
    op.create_index("ix_audit_entry_action_seq", "audit_entry", ["action", "seq"])
    op.create_index("ix_audit_entry_recorded_at", "audit_entry", ["recorded_at"])
    op.create_table(
        "audit_entry_member",
        sa.Column("member_id", sa.String(ID), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("member_id", "seq", name="pk_audit_entry_member"),
    )
    op.create_index("ix_audit_entry_member_seq", "audit_entry_member", ["seq"])

    op.create_table(
        "gate_client",
        sa.Column("id", sa.String(ID), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("scopes", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_gate_client"),
        sa.UniqueConstraint("name", name="uq_gate_client_name"),
    )
    op.create_table(
        "gate_client_purpose",
        sa.Column("client_id", sa.String(ID), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["gate_client.id"], name="fk_gate_client_purpose_client_id_gate_client"
        ),
        sa.PrimaryKeyConstraint("client_id", "purpose", name="pk_gate_client_purpose"),
    )
    op.create_table(
        "gate_api_key",
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(ID), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["gate_client.id"], name="fk_gate_api_key_client_id_gate_client"
        ),
        sa.PrimaryKeyConstraint("key_hash", name="pk_gate_api_key"),
    )
    op.create_index("ix_gate_api_key_client_id", "gate_api_key", ["client_id"])

    head = sa.table(
        "audit_head",
        sa.column("id", sa.Integer()),
        sa.column("size", sa.BigInteger()),
        sa.column("head_hash", sa.String()),
        sa.column("updated_at", UTCDateTime()),
    )
    from datetime import UTC, datetime

    op.bulk_insert(
        head, [{"id": 1, "size": 0, "head_hash": "0" * 64, "updated_at": datetime.now(UTC)}]
    )

    for table in APPEND_ONLY:
        create_append_only_triggers(table)
    create_truncate_guards()


def create_truncate_guards() -> None:
    """Empty tables whose foreign keys make TRUNCATE of the log tables fail.

    MySQL/MariaDB have no TRUNCATE trigger but refuse to truncate a table that
    a foreign key references; created on every dialect so the schema is one.
    """
    op.create_table(
        "audit_truncate_guard",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("entry_seq", sa.BigInteger(), nullable=True),
        sa.Column("member_id", sa.String(ID), nullable=True),
        sa.Column("member_seq", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["entry_seq"], ["audit_entry.seq"], name="fk_audit_truncate_guard_entry_seq_audit_entry"
        ),
        sa.ForeignKeyConstraint(
            ["member_id", "member_seq"],
            ["audit_entry_member.member_id", "audit_entry_member.seq"],
            name="fk_audit_truncate_guard_member_id_audit_entry_member",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_audit_truncate_guard"),
    )
    op.create_table(
        "consent_truncate_guard",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("event_id", BigId, nullable=True),
        sa.Column("receipt_id", sa.String(36), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["consent_event.id"],
            name="fk_consent_truncate_guard_event_id_consent_event",
        ),
        sa.ForeignKeyConstraint(
            ["receipt_id"],
            ["consent_receipt.id"],
            name="fk_consent_truncate_guard_receipt_id_consent_receipt",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_consent_truncate_guard"),
    )


def create_append_only_triggers(table: str) -> None:
    dialect = op.get_bind().dialect.name
    message = f"{table} is append-only"
    if dialect == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            """
            CREATE OR REPLACE FUNCTION memberguard_reject_change() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
            END;
            $$
            """
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION memberguard_reject_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION memberguard_reject_change()"
        )
    elif dialect == "mysql":
        # MySQL has no TRUNCATE trigger; the truncate-guard tables' foreign
        # keys refuse TRUNCATE instead (see create_truncate_guards).
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{message}'"
            )
    else:
        raise NotImplementedError(f"no append-only triggers for dialect {dialect}")


def downgrade() -> None:
    # The audit log is evidence: there is no downgrade that drops it.
    raise NotImplementedError("the initial schema cannot be downgraded")
