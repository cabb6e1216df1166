"""Claiming a due job, so that each run happens once however many workers ask.

Several ``memberguard worker`` processes, and a thread in each server process,
may look for the same due job at the same moment. Each claims it with one
conditional UPDATE of the job's row::

    UPDATE worker_job SET lease_expires_at = :now + max_runtime, lease_owner = :me, ...
     WHERE name = :job AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
       AND next_due_at <= :now

and whoever's statement changed the row (rowcount 1) runs the job. That is
correct on all three databases, with one code path, which is why it is used
rather than ``SELECT … FOR UPDATE SKIP LOCKED`` (which SQLite does not have):

- SQLite has one writer at a time: the UPDATEs run one after the other, and
  the second finds the lease taken.
- PostgreSQL, under READ COMMITTED, makes a second UPDATE of the row wait for
  the first transaction, then evaluates its WHERE again on the row as that
  one left it, which no longer matches.
- InnoDB (MySQL, MariaDB), under READ COMMITTED, likewise waits for the row
  lock and evaluates the WHERE again on the row it then locks (an UPDATE
  reads the latest row, never a snapshot).

SKIP LOCKED would only spare the loser that wait, and the wait is short: the
winner's claim is a transaction of one statement, committed before the job
starts; the run itself holds no lock on the row.

The claim, and the record of how the run went, are not audited units of
work: they are scheduling metadata (when a job last ran, who holds it), not
facts about members or clients, and an entry per job per interval would
bury the log. What a job changes is recorded by the job's own use cases. So
they take no log-head lock either, and never wait behind the gate's writers
on PostgreSQL or MySQL.

These functions only execute statements; ``worker.runner`` commits each claim
and each finish in a short transaction of its own. Times are the workers'
clocks: hosts that run workers must keep their clocks close (NTP), well
within a job's interval.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.ids import new_id
from worker.jobs import Job, JobResult
from worker.models import WorkerJob

RUNNING = "running"
OK = "ok"
FAILED = "failed"

_JOB = WorkerJob.__table__.c


def lease_owner() -> str:
    """This claim's owner: the host and process, for people, and a random id, for the row."""
    return f"{socket.gethostname()[:255]} pid {os.getpid()} {new_id()}"


@dataclass(frozen=True, slots=True)
class JobState:
    """A job's row, as read (for the worker's look before it claims, and for status)."""

    name: str
    next_due_at: datetime
    lease_expires_at: datetime | None
    lease_owner: str | None
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_status: str | None
    last_result: dict[str, int] | None
    last_error: str | None
    runs: int
    failures: int
    consecutive_failures: int

    def leased(self, now: datetime) -> bool:
        return self.lease_expires_at is not None and self.lease_expires_at > now

    def due(self, now: datetime) -> bool:
        """Claimable at ``now``: the claim's condition, read without a lock (it may be
        overtaken; the claim decides)."""
        return self.next_due_at <= now and not self.leased(now)

    @property
    def abandoned(self) -> bool:
        """The last run started and never finished (its worker died, or it outlived its lease)."""
        return self.last_status == RUNNING


def read_states(session: Session) -> dict[str, JobState]:
    rows = session.execute(select(WorkerJob.__table__).order_by(_JOB.name)).mappings()
    return {row["name"]: JobState(**row) for row in rows}


def add_missing(session: Session, names: Iterable[str], *, now: datetime) -> None:
    """A row for each job that has none, due ``now``; a row another worker added meanwhile
    is left as it is (an insert that ignores the duplicate, in each dialect's words)."""
    rows: list[dict[str, Any]] = [
        {
            "name": name,
            "next_due_at": now,
            "runs": 0,
            "failures": 0,
            "consecutive_failures": 0,
        }
        for name in names
    ]
    if not rows:
        return
    table = WorkerJob.__table__
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = postgresql_insert(table).on_conflict_do_nothing(index_elements=["name"])
    elif dialect == "sqlite":
        statement = sqlite_insert(table).on_conflict_do_nothing(index_elements=["name"])
    else:
        # INSERT IGNORE, not ON DUPLICATE KEY UPDATE: InnoDB takes a shared lock
        # on the duplicate either way, and two workers upgrading theirs to
        # update it deadlock each other. (IGNORE would also turn other errors
        # into warnings; every value here is given and checked.)
        statement = insert(table).prefix_with("IGNORE", dialect="mysql")
    session.execute(statement, rows)


def claim(session: Session, job: Job, *, now: datetime, owner: str) -> bool:
    """Take ``job``'s lease if it is due and free at ``now``; True if this call won it.

    A lease that expired on a run that never finished counts that run as a
    failure. The SET clauses are ordered: MySQL evaluates them left to right,
    each seeing the columns set before it, so the failure counts read
    ``last_status`` before it becomes ``running``.
    """
    was_running = _JOB.last_status == RUNNING
    statement = (
        update(WorkerJob.__table__)
        .where(
            _JOB.name == job.name,
            or_(_JOB.lease_expires_at.is_(None), _JOB.lease_expires_at <= now),
            _JOB.next_due_at <= now,
        )
        .ordered_values(
            (_JOB.failures, _JOB.failures + case((was_running, 1), else_=0)),
            (
                _JOB.consecutive_failures,
                case((was_running, _JOB.consecutive_failures + 1), else_=_JOB.consecutive_failures),
            ),
            (_JOB.runs, _JOB.runs + 1),
            (_JOB.last_status, RUNNING),
            (_JOB.last_started_at, now),
            (_JOB.next_due_at, now + job.every),
            (_JOB.lease_expires_at, now + job.max_runtime),
            (_JOB.lease_owner, owner),
        )
    )
    return session.execute(statement).rowcount == 1


def record_success(
    session: Session, job: Job, *, owner: str, finished_at: datetime, result: JobResult
) -> bool:
    """End ``owner``'s run: release the lease and keep the counts. False if the lease was
    no longer ``owner``'s (it expired and another worker took the job over)."""
    statement = (
        update(WorkerJob.__table__)
        .where(_JOB.name == job.name, _JOB.lease_owner == owner)
        .values(
            lease_expires_at=None,
            lease_owner=None,
            last_finished_at=finished_at,
            last_status=OK,
            last_result=dict(result),
            last_error=None,
            consecutive_failures=0,
        )
    )
    return session.execute(statement).rowcount == 1


def record_failure(
    session: Session,
    job: Job,
    *,
    owner: str,
    finished_at: datetime,
    error: str,
    max_backoff: timedelta,
) -> datetime | None:
    """End ``owner``'s failed run: release the lease and put the next try off.

    Returns when the job is next due, or None if the lease was no longer
    ``owner``'s. The next try waits ``backoff``; the run's claim had set the
    ordinary interval, which a failure only lengthens.
    """
    consecutive = session.scalar(
        select(_JOB.consecutive_failures).where(_JOB.name == job.name, _JOB.lease_owner == owner)
    )
    if consecutive is None:
        return None
    next_due_at = finished_at + backoff(job.every, consecutive + 1, max_backoff)
    statement = (
        update(WorkerJob.__table__)
        .where(_JOB.name == job.name, _JOB.lease_owner == owner)
        .values(
            lease_expires_at=None,
            lease_owner=None,
            last_finished_at=finished_at,
            last_status=FAILED,
            last_result=None,
            last_error=error[:128],
            failures=_JOB.failures + 1,
            consecutive_failures=consecutive + 1,
            next_due_at=next_due_at,
        )
    )
    return next_due_at if session.execute(statement).rowcount == 1 else None


def backoff(every: timedelta, consecutive_failures: int, max_backoff: timedelta) -> timedelta:
    """How long a job that failed ``consecutive_failures`` times in a row waits to try again.

    Twice its interval after one failure, doubling with each further one, up
    to ``max_backoff``; never less than the interval itself (a failing job is
    not tried more often than a healthy one).
    """
    ceiling = max(every, max_backoff)
    wait = every
    for _ in range(consecutive_failures):  # stops at the ceiling: no overflow, few turns
        wait *= 2
        if wait >= ceiling:
            return ceiling
    return wait
