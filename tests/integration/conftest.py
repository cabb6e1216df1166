"""Helpers shared by the integration tests: appending entries, lifting the guards.

The API fixture ``app_client`` is re-exported from
``tests/api/conftest.py`` so that integration tests can drive the HTTP path
inside the same savepoint-per-test transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from audit.actions import Action, Record
from audit.log import Appended, append_entry
from core.clock import Clock
from core.db import build_engine
from tests.api.conftest import app_client, json_logs  # noqa: F401  (fixtures)
from tests.conftest import NOW, ticking_clock

# The audit tables whose append-only triggers tamper tests have to get past.
AUDIT_TABLES = ("audit_entry", "audit_entry_member")
POLICY = "0" * 64
T0 = NOW


def record(n: int, *, members: tuple[str, ...] = ()) -> Record:
    """An ordinary read record: ids and names only, as the gate writes them."""
    return Record(
        action=Action.MEMBER_READ,
        decision="permit",
        reason="contract",
        policy=POLICY,
        actor=f"client{n % 3}",
        actor_role="client",
        purpose="customer_service",
        members=members,
        fields={"phone": "masked"},
        request_id=f"req-{n:04d}",
    )


def member_ref(n: int) -> str:
    """A syntactically valid member id (24 chars of base32), distinct per n."""
    return f"{n:024d}".translate(str.maketrans("0123456789", "abcdefghij"))


def append_entries(session: Session, count: int, *, clock: Clock | None = None) -> list[Appended]:
    """Append ``count`` entries, each naming two members, and flush them."""
    tick = clock or ticking_clock()
    appended = []
    for n in range(count):
        appended.append(
            append_entry(
                session,
                record(n, members=(member_ref(2 * n), member_ref(2 * n + 1))),
                clock=tick,
            )
        )
    return appended


def lift_guards(conn: Connection, dialect: str, tables: tuple[str, ...] = AUDIT_TABLES) -> None:
    """Take the append-only triggers off the audit tables, as a hostile DBA could.

    SQLite and PostgreSQL do this transactionally (rolled back with the test);
    on MariaDB DROP TRIGGER commits implicitly, so callers use a database of
    their own there.
    """
    for table in tables:
        if dialect == "postgresql":
            conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        else:
            for event in ("update", "delete"):
                conn.exec_driver_sql(f"DROP TRIGGER {table}_no_{event}")


@contextmanager
def unguarded_connection(
    request: pytest.FixtureRequest, backend: str, tables: tuple[str, ...]
) -> Iterator[Connection]:
    """A connection, inside a transaction, on which ``tables`` can be edited."""
    if backend != "mariadb":
        conn: Connection = request.getfixturevalue("connection")
        lift_guards(conn, backend, tables)
        yield conn
        return
    # DROP TRIGGER commits implicitly on MariaDB: use a database of its own.
    engine = build_engine(request.getfixturevalue("fresh_database").url)
    try:
        with engine.connect() as conn:
            lift_guards(conn, "mysql", tables)
            conn.commit()
            outer = conn.begin()
            try:
                yield conn
            finally:
                if outer.is_active:
                    outer.rollback()
    finally:
        engine.dispose()


@pytest.fixture
def unguarded(request: pytest.FixtureRequest, backend: str) -> Iterator[Connection]:
    """A connection, inside a transaction, on which the audit tables can be edited."""
    with unguarded_connection(request, backend, AUDIT_TABLES) as conn:
        yield conn


@pytest.fixture
def unguarded_sessions(unguarded: Connection) -> sessionmaker[Session]:
    return sessionmaker(
        bind=unguarded,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )
