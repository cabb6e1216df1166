"""Alembic environment: runs against a connection handed in, or the configured URL."""

from __future__ import annotations

from alembic import context

import audit.models  # noqa: F401  (models register with the metadata)
import breach.models  # noqa: F401
import consent.models  # noqa: F401
import feed.models  # noqa: F401
import principals.models  # noqa: F401
import rights.models  # noqa: F401
import vault.models  # noqa: F401
import worker.models  # noqa: F401
from core.db import Base, build_engine

config = context.config
target_metadata = Base.metadata


def run_with(connection) -> None:  # type: ignore[no-untyped-def]
    if connection.dialect.name == "postgresql":
        # Fail fast instead of queueing behind live traffic (forward-compatible
        # steps, as in pypi/warehouse).
        connection.exec_driver_sql("SET lock_timeout = '5s'")
        connection.exec_driver_sql("SET statement_timeout = '300s'")
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    engine = build_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as conn:
            run_with(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
