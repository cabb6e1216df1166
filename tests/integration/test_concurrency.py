"""Concurrent writers serialise on the log head: no gaps, no duplicates, a valid chain.

Real commits from separate engines (one per thread, as separate worker
processes would have), so this uses ``fresh_database``, not the savepoint.
"""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from audit.log import append_entry
from audit.models import AuditEntry, AuditEntryMember
from audit.online import verify_log
from core.clock import utc_now
from core.db import UnitOfWork, build_engine, session_factory
from tests.conftest import FreshDatabase
from tests.integration.conftest import member_ref, record

WRITERS = 8
APPENDS = 40


def test_concurrent_appends_get_exactly_one_to_n_and_verify(
    fresh_database: FreshDatabase,
) -> None:
    start = threading.Barrier(WRITERS)
    seqs: list[list[int]] = [[] for _ in range(WRITERS)]
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        engine = build_engine(fresh_database.url)
        factory = session_factory(engine)
        try:
            start.wait()
            for n in range(APPENDS):
                with UnitOfWork(factory) as uow:
                    appended = append_entry(
                        uow.session,
                        record(n, members=(member_ref(index * APPENDS + n),)),
                        clock=utc_now,
                    )
                    uow.commit()  # no retry: a serialisation failure is a failure
                seqs[index].append(appended.seq)
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)
            start.abort()
        finally:
            engine.dispose()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert errors == [], errors

    total = WRITERS * APPENDS
    returned = sorted(s for per_writer in seqs for s in per_writer)
    assert returned == list(range(1, total + 1))
    for per_writer in seqs:  # each writer saw its own appends in log order
        assert per_writer == sorted(per_writer)

    engine = build_engine(fresh_database.url)
    try:
        with session_factory(engine)() as session:
            stored = session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
            assert stored == list(range(1, total + 1))
            members = session.scalar(select(func.count()).select_from(AuditEntryMember))
            assert members == total
            report = verify_log(session)
            assert report.ok, report.reason
            assert report.size == total
    finally:
        engine.dispose()
