"""The migrations are the schema: what they build must be what the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, select

import audit.models
import breach.models  # noqa: F401
import consent.models  # noqa: F401  (the models register with the metadata)
import feed.models
import feed.webhook_models  # noqa: F401
import principals.models  # noqa: F401
import rights.models  # noqa: F401
import vault.models  # noqa: F401
import worker.models  # noqa: F401
from core.db import Base, build_engine
from migrations import upgrade
from tests.conftest import FreshDatabase


def schema_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    # No dialect noise needs filtering: the models and the migration use the
    # same shared column types (UTCDateTime, BigId, LongBlob), so types,
    # nullability, indexes and constraint names compare equal on all three.
    return list(compare_metadata(context, Base.metadata))


def test_migrated_schema_matches_the_models(connection: Connection) -> None:
    assert schema_differences(connection) == []


def test_migrations_build_every_model_table(connection: Connection) -> None:
    # Guards the comparison above: it must have had the models to compare.
    tables = set(inspect(connection).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "audit_entry" in Base.metadata.tables


def test_running_the_migrations_again_changes_nothing(fresh_database: FreshDatabase) -> None:
    upgrade(url=fresh_database.url)  # `memberguard init` is idempotent
    engine = build_engine(fresh_database.url)
    try:
        with engine.connect() as conn:
            assert schema_differences(conn) == []
            heads = conn.execute(select(audit.models.AuditHead)).all()
            assert [(h.id, h.size, h.head_hash) for h in heads] == [(1, 0, "0" * 64)]
    finally:
        engine.dispose()
