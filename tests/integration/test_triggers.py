"""The database itself refuses to change or remove rows of the append-only tables.

Each rejected statement runs in a savepoint (``connection.begin_nested()``),
so the test's outer transaction survives and can check the rows are intact.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from consent.registry import ConsentChange
from core.db import build_engine
from gate.consents import record_member_consent
from gate.context import Services
from gate.writes import create_member_record
from principals.clients import authenticate
from tests.conftest import FreshDatabase, Keys

# A column each table may not have changed, and the value an edit would set.
APPEND_ONLY = {
    "audit_entry": ("reason", "'edited'"),
    "audit_entry_member": ("member_id", "'edited'"),
    "consent_event": ("status", "'withdrawn'"),
    "consent_receipt": ("body", "'{}'"),
}


@pytest.fixture
def logged_grant(services: Services, keys: Keys) -> str:
    """One granted consent: an audit entry, its member row, a consent event, a receipt."""
    with services.reading() as session:
        crm = authenticate(session, keys.crm)
        app = authenticate(session, keys.app)
    member = create_member_record(
        services, actor=crm, values={"name": "王芳", "phone": "13912345678"}, request_id=None
    ).id
    record_member_consent(
        services,
        actor=app,
        member_id=member,
        change=ConsentChange(
            purposes=["marketing_sms"],
            status="granted",
            channel="app",
            collected_at=datetime(2026, 11, 1, 2, 0, tzinfo=UTC),
        ),
        request_id=None,
    )
    return member


def snapshot(connection: Connection, table: str) -> list[tuple[object, ...]]:
    column = APPEND_ONLY[table][0]
    rows = connection.execute(text(f"SELECT {column} FROM {table} ORDER BY {column}")).all()
    return [tuple(r) for r in rows]


def assert_rejected(connection: Connection, statement: str) -> None:
    with pytest.raises(DBAPIError) as caught, connection.begin_nested():
        connection.exec_driver_sql(statement)
    assert "append-only" in str(caught.value.orig)


@pytest.mark.parametrize("table", list(APPEND_ONLY))
def test_update_of_an_append_only_table_is_rejected(
    connection: Connection, logged_grant: str, table: str
) -> None:
    before = snapshot(connection, table)
    assert before, f"{table} has no row for the trigger to guard"
    column, value = APPEND_ONLY[table]
    assert_rejected(connection, f"UPDATE {table} SET {column} = {value}")
    assert snapshot(connection, table) == before


@pytest.mark.parametrize("table", list(APPEND_ONLY))
def test_delete_from_an_append_only_table_is_rejected(
    connection: Connection, logged_grant: str, table: str
) -> None:
    before = snapshot(connection, table)
    assert before, f"{table} has no row for the trigger to guard"
    assert_rejected(connection, f"DELETE FROM {table}")
    assert snapshot(connection, table) == before


@pytest.mark.backends("postgresql")  # TRUNCATE ends the test transaction elsewhere
@pytest.mark.parametrize("table", list(APPEND_ONLY))
def test_truncate_of_an_append_only_table_is_rejected_on_postgresql(
    backend: str, connection: Connection, logged_grant: str, table: str
) -> None:
    before = snapshot(connection, table)
    assert before, f"{table} has no row for the trigger to guard"
    # CASCADE gets past the truncate-guard foreign key, so the trigger itself answers.
    assert_rejected(connection, f"TRUNCATE {table} CASCADE")
    with pytest.raises(DBAPIError, match="foreign key"), connection.begin_nested():
        connection.exec_driver_sql(f"TRUNCATE {table}")
    assert snapshot(connection, table) == before


@pytest.mark.backends("mariadb")  # SQLite has no TRUNCATE; PostgreSQL is covered above
def test_truncate_of_every_append_only_table_is_rejected_on_mariadb(
    backend: str, fresh_database: FreshDatabase
) -> None:
    """MySQL/MariaDB have no TRUNCATE trigger; the truncate-guard foreign keys refuse it.

    TRUNCATE commits implicitly there, hence a database of its own.
    """
    engine = build_engine(fresh_database.url)
    try:
        for table in APPEND_ONLY:
            with engine.connect() as conn, pytest.raises(DBAPIError, match="foreign key"):
                conn.exec_driver_sql(f"TRUNCATE TABLE {table}")
    finally:
        engine.dispose()
