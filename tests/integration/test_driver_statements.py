"""Statements run on the DB-API cursor (``audit.driver.DriverStatement``, ``insert_rows``).

The audit append path skips SQLAlchemy's per-execution work, so these check
what SQLAlchemy would otherwise guarantee: each dialect's SQL and parameter
style, defaults bound at compile time, rows back in the transaction, and
failures surfacing as errors the log turns into ``AuditUnavailable``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from audit.driver import DriverStatement, driver_errors, driver_pipeline, insert_rows
from audit.log import AuditUnavailable, lock_head
from audit.models import AuditEntryMember, AuditHead
from core.db import build_engine, session_factory
from tests.conftest import scratch_database
from tests.integration.conftest import member_ref

HEAD = DriverStatement(
    select(AuditHead.id, AuditHead.size).where(AuditHead.id == bindparam("id")).limit(1)
)
SET_SIZE = DriverStatement(
    update(AuditHead).where(AuditHead.id == 1).values(size=bindparam("size"))
)


def test_a_statement_binds_by_name_with_compiled_defaults(session: Session) -> None:
    # The LIMIT is a default bound at compile time; "id" is given.
    assert HEAD.execute(session, {"id": 1}) == [(1, 0)]
    assert HEAD.execute(session, {"id": 2}) == []


def test_a_statement_runs_in_the_sessions_transaction(session: Session) -> None:
    assert SET_SIZE.execute(session, {"size": 7}) == []
    assert session.scalar(select(AuditHead.size)) == 7  # seen by the ORM, same transaction
    session.rollback()
    assert session.scalar(select(AuditHead.size)) == 0


def test_insert_rows_takes_one_row_or_many(session: Session) -> None:
    table = AuditEntryMember.__table__
    insert_rows(session, table, ("member_id", "seq"), [(member_ref(1), 1)])
    insert_rows(session, table, ("member_id", "seq"), [(member_ref(n), n) for n in (2, 3, 4)])
    insert_rows(session, table, ("member_id", "seq"), [])
    rows = session.execute(select(AuditEntryMember.member_id, AuditEntryMember.seq)).all()
    assert sorted(tuple(r) for r in rows) == [(member_ref(n), n) for n in (1, 2, 3, 4)]


def test_insert_rows_refuses_a_column_the_table_does_not_have(session: Session) -> None:
    with pytest.raises(KeyError):
        insert_rows(session, AuditEntryMember.__table__, ("member_id", "nope"), [("a", 1)])


@pytest.fixture
def empty_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database without memberguard's schema: every audit statement fails."""
    with ExitStack() as stack:
        if backend == "sqlite":
            yield f"sqlite:///{tmp_path / 'empty.db'}"
        else:
            yield stack.enter_context(scratch_database(backend))


def test_a_driver_error_is_caught_and_the_lock_fails_closed(empty_database: str) -> None:
    engine = build_engine(empty_database)
    try:
        with session_factory(engine)() as session:
            with pytest.raises(driver_errors(session)):
                HEAD.execute(session, {"id": 1})
            session.rollback()
            with pytest.raises(AuditUnavailable) as raised:
                lock_head(session)
            assert isinstance(raised.value.__cause__, engine.dialect.loaded_dbapi.Error)
    finally:
        engine.dispose()


def test_a_missing_head_row_fails_the_lock_closed(session: Session) -> None:
    session.execute(delete(AuditHead))
    with pytest.raises(AuditUnavailable, match="no head row"):
        lock_head(session)


def test_an_error_in_a_pipeline_block_is_raised_by_the_block(session: Session) -> None:
    # On PostgreSQL the statements are only sent at the block's end: the error
    # of the last one must still surface, and nothing of the block survive.
    twice = [(member_ref(1), 1), (member_ref(1), 1)]  # the same primary key
    with pytest.raises(driver_errors(session)), driver_pipeline(session):
        SET_SIZE.execute(session, {"size": 5})
        insert_rows(session, AuditEntryMember.__table__, ("member_id", "seq"), twice)
    session.rollback()
    assert session.scalar(select(AuditHead.size)) == 0
    assert session.scalar(select(AuditEntryMember.seq)) is None
