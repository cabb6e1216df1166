"""Verifying a log that is being written to: no false alarms, no blocked writers."""

from __future__ import annotations

from sqlalchemy import text

from audit.online import verify_log
from core.db import build_engine, session_factory
from tests.conftest import FreshDatabase
from tests.integration.conftest import append_entries, ticking_clock


def test_appends_committed_during_verification_are_not_reported(
    fresh_database: FreshDatabase,
) -> None:
    engine = build_engine(fresh_database.url)
    writer = session_factory(engine)
    clock = ticking_clock()
    try:
        with writer() as session:
            append_entries(session, 6, clock=clock)
            session.commit()

        def append_meanwhile(_done: int, _total: int) -> None:
            with writer() as session:
                append_entries(session, 1, clock=clock)
                session.commit()

        with session_factory(engine, read_only=True)() as reader:
            report = verify_log(reader, batch=2, progress=append_meanwhile)
        assert report.ok, report
        assert report.size == 6
        with session_factory(engine, read_only=True)() as reader:
            assert verify_log(reader).size > 6
    finally:
        engine.dispose()


def test_a_read_only_session_does_not_hold_writers_up(fresh_database: FreshDatabase) -> None:
    engine = build_engine(fresh_database.url)
    try:
        with session_factory(engine, read_only=True)() as reader:
            reader.execute(
                text("SELECT COUNT(*) FROM audit_entry")
            ).scalar_one()  # transaction open
            with session_factory(engine)() as session:
                append_entries(session, 2)
                session.commit()  # would wait for the reader if it held SQLite's write lock
            reader.rollback()
    finally:
        engine.dispose()
