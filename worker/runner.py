"""Running the jobs: ``Worker.run_once`` claims and runs every due job; ``run_forever`` loops.

A run is three short steps, none of which holds anything while the next one
runs: the claim (a transaction that commits the lease, ``worker.leases``),
the job (its own audited units of work), and the record of how it went (a
transaction that releases the lease). A job that raises is logged (its name
and the exception's class: an exception's text may quote data), recorded as
a failure and put off (``leases.backoff``); the other due jobs still run.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

import structlog
from sqlalchemy.orm import Session

from core.clock import Clock
from gate.context import Services
from worker import leases
from worker.jobs import Job, JobResult

log = structlog.get_logger("memberguard.worker")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JobRun:
    """One run of one job, as ``run_once`` returns it and the CLI prints it."""

    job: str
    status: Literal["ok", "failed"]
    started_at: datetime
    finished_at: datetime
    # The job's counts (ok), or the exception's class (failed).
    result: dict[str, int]
    error: str | None
    # When the job is due again (None if the lease was lost meanwhile: the
    # run outlived it and another worker took the job over).
    next_due_at: datetime | None


class InvalidJobResult(TypeError):
    """A job returned something other than counts (names to integers)."""


# What a count may be called: a word of the code's, never a value (an id, a phone).
COUNT_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _counts(result: JobResult) -> dict[str, int]:
    """The result as stored and logged: counts only, named by the code, so that no value
    of a member can reach the lease table or a log line through it."""
    if not isinstance(result, Mapping) or not all(
        isinstance(name, str)
        and COUNT_NAME.fullmatch(name) is not None
        and isinstance(count, int)
        and not isinstance(count, bool)
        for name, count in result.items()
    ):
        raise InvalidJobResult("a job returns counts: {lower_case_name: integer}")
    return dict(result)


class Worker:
    """Runs ``jobs`` with ``services``; any number of workers may share a database.

    ``clock`` is the time the worker claims by (``run_once`` without a time
    reads it). ``on_run`` is told of each run as it ends (the CLI prints it).
    """

    def __init__(
        self,
        services: Services,
        jobs: Sequence[Job],
        clock: Clock | None = None,
        *,
        on_run: Callable[[JobRun], None] | None = None,
    ) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names repeat: {sorted(names)}")
        self.services = services
        self.jobs = list(jobs)
        self.clock = clock or services.clock
        self.on_run = on_run
        settings = services.settings
        self.tick = settings.worker_tick_seconds
        self.max_backoff = timedelta(seconds=settings.worker_max_backoff_seconds)

    def run_once(
        self, now: datetime | None = None, *, stop: threading.Event | None = None
    ) -> list[JobRun]:
        """Claim and run every job that is due; returns the runs.

        Without ``now``, each claim reads the clock, so that a job claimed
        after a long run of another still gets its whole lease; with it (tests),
        every claim is made at ``now``. With ``stop``, no further job starts
        once it is set (the one running finishes). A job another worker holds,
        or that is not due, is passed by. Errors of the database itself (the
        claim, the record) propagate.
        """
        fixed = now
        now = fixed if fixed is not None else self.clock()
        with self.services.reading() as session:
            states = leases.read_states(session)
        missing = [job.name for job in self.jobs if job.name not in states]
        if missing:
            with self._scheduling() as session:
                leases.add_missing(session, missing, now=now)
        runs = []
        for job in self.jobs:
            if stop is not None and stop.is_set():
                break
            state = states.get(job.name)
            # A look without a lock spares a write transaction (SQLite's write
            # lock) per job per tick; the claim decides.
            if state is not None and not state.due(now):
                continue
            at = fixed if fixed is not None else self.clock()
            run = self._claim_and_run(job, at, state)
            if run is not None:
                runs.append(run)
                if self.on_run is not None:
                    self.on_run(run)
        return runs

    def run_forever(self, stop: threading.Event) -> None:
        """Run due jobs every ``worker_tick_seconds`` until ``stop`` is set.

        Setting ``stop`` ends the loop once the job running (if any) finishes.
        A failing database is logged and tried again at the next tick.
        """
        while not stop.is_set():
            try:
                self.run_once(stop=stop)
            except Exception as exc:  # the database, most likely: try again next tick
                log.error("worker.tick_failed", error=type(exc).__name__)
            stop.wait(self.tick)

    def _claim_and_run(
        self, job: Job, now: datetime, state: leases.JobState | None
    ) -> JobRun | None:
        owner = leases.lease_owner()
        with self._scheduling() as session:
            if not leases.claim(session, job, now=now, owner=owner):
                return None
        if state is not None and state.abandoned:
            # What the claim counted as a failure: the run before never ended.
            log.warning("worker.lease_expired", job=job.name)
        started = time.monotonic()
        try:
            result = _counts(job.run(self.services))
        except BaseException as exc:
            finished = now + timedelta(seconds=time.monotonic() - started)
            error = type(exc).__name__
            log.error("worker.job_failed", job=job.name, error=error)
            next_due = self._record(
                lambda session: leases.record_failure(
                    session,
                    job,
                    owner=owner,
                    finished_at=finished,
                    error=error,
                    max_backoff=self.max_backoff,
                ),
                job,
            )
            if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: not ours
                raise
            return JobRun(job.name, "failed", now, finished, {}, error, next_due)
        finished = now + timedelta(seconds=time.monotonic() - started)
        recorded = self._record(
            lambda session: leases.record_success(
                session, job, owner=owner, finished_at=finished, result=result
            ),
            job,
        )
        # A run that found nothing to do (most runs of most jobs) is no news at INFO.
        (log.info if any(result.values()) else log.debug)(
            "worker.job_ran",
            job=job.name,
            counts=result,
            duration_ms=round((finished - now) / timedelta(milliseconds=1)),
        )
        next_due = now + job.every if recorded else None
        return JobRun(job.name, "ok", now, finished, result, None, next_due)

    def _record(self, step: Callable[[Session], T], job: Job) -> T | None:
        """Record how a run went. Failing that, the lease expires on its own; a lost lease
        (the run outlived it and another worker took over) is only logged."""
        try:
            with self._scheduling() as session:
                outcome = step(session)
        except Exception as exc:
            log.error("worker.record_failed", job=job.name, error=type(exc).__name__)
            return None
        if not outcome:
            log.warning("worker.lease_lost", job=job.name)
            return None
        return outcome

    @contextmanager
    def _scheduling(self) -> Iterator[Session]:
        """A short transaction for the lease table alone (not an audited unit of work:
        see ``worker.leases``); committed when the block ends without an exception."""
        session = self.services.sessions()
        try:
            yield session
            session.commit()
        finally:
            session.rollback()
            session.close()


class BackgroundWorker:
    """The worker as a thread of a server process (``api.app``'s lifespan).

    ``start`` returns at once (the first jobs run in the thread, not before
    the server takes requests); ``stop`` lets the running job finish and
    joins the thread, so nothing of it outlives the app.
    """

    def __init__(self, services: Services, jobs: Sequence[Job]) -> None:
        self.worker = Worker(services, jobs)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.worker.run_forever,
            args=(self._stopping,),
            name="memberguard-worker",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job as ``memberguard worker status`` shows it."""

    name: str
    every_seconds: int | None  # None: a row of a job this version no longer runs
    status: str  # "never run", running, ok, failed
    last_started_at: datetime | None
    last_finished_at: datetime | None
    next_due_at: datetime | None  # None: never run, so due at the first look
    lease_owner: str | None
    lease_expires_at: datetime | None
    runs: int
    failures: int
    consecutive_failures: int
    last_result: dict[str, int] | None
    last_error: str | None


def job_statuses(services: Services, jobs: Sequence[Job]) -> list[JobStatus]:
    """The registered jobs in order, then rows of jobs no longer registered."""
    with services.reading() as session:
        states = leases.read_states(session)
    every = {job.name: int(job.every.total_seconds()) for job in jobs}
    names = [job.name for job in jobs] + [name for name in states if name not in every]
    shown = []
    for name in names:
        state = states.get(name)
        if state is None:
            shown.append(
                JobStatus(name, every.get(name), "never run", *(None,) * 5, 0, 0, 0, None, None)
            )
            continue
        shown.append(
            JobStatus(
                name=name,
                every_seconds=every.get(name),
                status=state.last_status or "never run",
                last_started_at=state.last_started_at,
                last_finished_at=state.last_finished_at,
                next_due_at=state.next_due_at,
                lease_owner=state.lease_owner,
                lease_expires_at=state.lease_expires_at,
                runs=state.runs,
                failures=state.failures,
                consecutive_failures=state.consecutive_failures,
                last_result=state.last_result,
                last_error=state.last_error,
            )
        )
    return shown
