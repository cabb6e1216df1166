"""Concurrent writers serialise on the log head: no gaps, no duplicates, a valid chain.

Real commits from separate engines (one per thread, as separate worker
processes would have), so this uses ``fresh_database``, not the savepoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from audit.log import append_entry
from audit.models import AuditCheckpoint, AuditEntry, AuditEntryMember
from audit.notary import Notary
from audit.online import verify_log
from audit.uow import AuditedUnitOfWork
from core.clock import Clock
from core.db import build_engine, session_factory
from tests.conftest import ORIGIN, FreshDatabase
from tests.integration.conftest import POLICY, member_ref, record

WRITERS = 8
APPENDS = 40

# One append by writer ``index`` (its ``n``th), committed: the seqs it wrote.
Append = Callable[[sessionmaker[Session], int, int], list[int]]


def run_writers(fresh_database: FreshDatabase, append: Append) -> list[list[int]]:
    """WRITERS threads, each with an engine of its own, APPENDS commits each, started together."""
    start = threading.Barrier(WRITERS)
    seqs: list[list[int]] = [[] for _ in range(WRITERS)]
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        engine = build_engine(fresh_database.url)
        factory = session_factory(engine)
        try:
            start.wait()
            for n in range(APPENDS):
                seqs[index].extend(append(factory, index, n))
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
    for per_writer in seqs:  # each writer saw its own appends in log order
        assert per_writer == sorted(per_writer)
    return seqs


def check_stored_log(fresh_database: FreshDatabase, total: int, members: int) -> None:
    engine = build_engine(fresh_database.url)
    try:
        with session_factory(engine)() as session:
            stored = session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
            assert stored == list(range(1, total + 1))
            named = session.scalar(select(func.count()).select_from(AuditEntryMember))
            assert named == members
            report = verify_log(session)
            assert report.ok, report.reason
            assert report.size == total
    finally:
        engine.dispose()


def test_concurrent_appends_get_exactly_one_to_n_and_verify(
    fresh_database: FreshDatabase, clock: Clock
) -> None:
    # The clock is shared: each append reads it under the log-head lock.
    def append(factory: sessionmaker[Session], index: int, n: int) -> list[int]:
        with factory() as session:
            appended = append_entry(
                session, record(n, members=(member_ref(index * APPENDS + n),)), clock=clock
            )
            session.commit()  # no retry: a serialisation failure is a failure
        return [appended.seq]

    seqs = run_writers(fresh_database, append)

    total = WRITERS * APPENDS
    returned = sorted(s for per_writer in seqs for s in per_writer)
    assert returned == list(range(1, total + 1))
    check_stored_log(fresh_database, total, members=total)


def test_concurrent_audited_units_of_work_get_the_seqs_they_were_given(
    fresh_database: FreshDatabase, clock: Clock, signer: Ed25519PrivateKey
) -> None:
    """The use cases' path: the lock is taken on entering the unit of work, the
    seq ``record`` promises is the one committed, and the checkpoints cut by
    whichever writer finds one due take the seqs in between."""
    notary = Notary(origin=ORIGIN, private_key=signer, every_entries=50, every_seconds=3600)
    cuts: list[int] = []

    def append(factory: sessionmaker[Session], index: int, n: int) -> list[int]:
        uow = AuditedUnitOfWork(factory, notary=notary, clock=clock, policy_version=POLICY)
        with uow:
            promised = uow.record(record(n, members=(member_ref(index * APPENDS + n),)))
            appended = uow.commit()  # no retry: a serialisation failure is a failure
        assert [a.seq for a in appended] == [promised]
        if uow.checkpoint is None:
            return [promised]
        assert uow.checkpoint.size == promised  # cut over the entry just appended
        cuts.append(promised + 1)  # and recorded by the entry after it
        return [promised, promised + 1]

    seqs = run_writers(fresh_database, append)

    total = WRITERS * APPENDS + len(cuts)
    returned = sorted(s for per_writer in seqs for s in per_writer)
    assert returned == list(range(1, total + 1))
    assert len(cuts) >= 1 + (WRITERS * APPENDS) // 50  # the first commit, then every 50
    check_stored_log(fresh_database, total, members=WRITERS * APPENDS)
    engine = build_engine(fresh_database.url)
    try:
        with session_factory(engine)() as session:
            sizes = session.scalars(select(AuditCheckpoint.size).order_by(AuditCheckpoint.size))
            assert [size + 1 for size in sizes] == sorted(cuts)
    finally:
        engine.dispose()
