"""The scheduler: due jobs run once per interval across workers, failures are kept and put off.

The jobs here are test doubles of the domains' jobs (defined in this file,
never in the product). Every test drives ``Worker.run_once`` with the time it
chooses: nothing here waits on a clock (the suite also runs under libfaketime,
where timed waits may never return), and no thread outlives its test.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from api.app import create_app
from core.db import build_engine, session_factory
from core.settings import Settings
from gate.context import Services
from tests.conftest import NOW, FreshDatabase, ServicesFor
from worker import leases
from worker.jobs import Job, JobResult
from worker.leases import JobState
from worker.runner import BackgroundWorker, Worker

EVERY = timedelta(seconds=60)
LEASE = timedelta(seconds=300)


class Counting:
    """A job that counts its runs; ``fail`` makes it raise instead."""

    def __init__(
        self, result: JobResult | None = None, *, fail: BaseException | None = None
    ) -> None:
        self.calls = 0
        self.result = {"done": 1} if result is None else result
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, services: Services) -> JobResult:
        with self.lock:
            self.calls += 1
        if self.fail is not None:
            raise self.fail
        return self.result


def job(name: str, run: Callable[[Services], JobResult], **timing: timedelta) -> Job:
    return Job(
        name=name,
        run=run,
        every=timing.get("every", EVERY),
        max_runtime=timing.get("max_runtime", LEASE),
    )


def state(services: Services, name: str) -> JobState:
    with services.reading() as session:
        return leases.read_states(session)[name]


def crashed_claim(services: Services, target: Job, *, at: Any) -> None:
    """What a worker that died mid-run leaves behind: a committed lease, no record of an end."""
    session = services.sessions()
    try:
        leases.add_missing(session, [target.name], now=at)
        assert leases.claim(session, target, now=at, owner="gone pid 1 x")
        session.commit()
    finally:
        session.close()


# -- one worker -----------------------------------------------------------------


def test_a_due_job_runs_and_its_lease_records_the_run(services: Services) -> None:
    count = Counting({"expired": 3})
    runs = Worker(services, [job("test.count", count)]).run_once(NOW)
    assert count.calls == 1
    assert [(run.job, run.status, run.result) for run in runs] == [
        ("test.count", "ok", {"expired": 3})
    ]
    row = state(services, "test.count")
    assert row.last_status == "ok" and row.last_result == {"expired": 3}
    assert row.runs == 1 and row.failures == 0
    assert row.last_started_at == NOW and row.last_finished_at is not None
    assert row.last_finished_at >= NOW
    assert row.next_due_at == NOW + EVERY == runs[0].next_due_at
    assert row.lease_expires_at is None and row.lease_owner is None


def test_a_job_runs_again_once_its_interval_has_passed_and_not_before(
    services: Services,
) -> None:
    count = Counting()
    worker = Worker(services, [job("test.count", count)])
    worker.run_once(NOW)
    assert worker.run_once(NOW + EVERY - timedelta(microseconds=1)) == []
    assert count.calls == 1
    assert [run.job for run in worker.run_once(NOW + EVERY)] == ["test.count"]
    assert count.calls == 2
    assert state(services, "test.count").runs == 2


def test_each_job_keeps_its_own_interval(services: Services) -> None:
    fast, slow = Counting(), Counting()
    worker = Worker(
        services,
        [job("test.fast", fast), job("test.slow", slow, every=timedelta(hours=1))],
    )
    for minute in range(0, 61, 10):
        worker.run_once(NOW + timedelta(minutes=minute))
    assert (fast.calls, slow.calls) == (7, 2)


def test_a_failing_job_is_recorded_and_the_jobs_after_it_still_run(
    services: Services,
) -> None:
    broken, fine = Counting(fail=RuntimeError("boom")), Counting()
    runs = Worker(services, [job("test.broken", broken), job("test.fine", fine)]).run_once(NOW)
    assert [(run.job, run.status, run.error) for run in runs] == [
        ("test.broken", "failed", "RuntimeError"),
        ("test.fine", "ok", None),
    ]
    assert fine.calls == 1
    failed = state(services, "test.broken")
    assert failed.last_status == "failed" and failed.last_error == "RuntimeError"
    assert failed.last_result is None
    assert (failed.runs, failed.failures, failed.consecutive_failures) == (1, 1, 1)
    assert failed.lease_expires_at is None and failed.lease_owner is None
    # Put off: twice the interval after the failed run ended, not one interval.
    assert failed.last_finished_at is not None
    assert failed.next_due_at == failed.last_finished_at + 2 * EVERY == runs[0].next_due_at
    assert state(services, "test.fine").last_status == "ok"


def test_a_failing_job_waits_longer_after_each_failure_until_it_succeeds(
    services: Services,
) -> None:
    flaky = Counting(fail=RuntimeError("down"))
    worker = Worker(services, [job("test.flaky", flaky)])
    delays = []
    now = NOW
    for _ in range(3):
        (run,) = worker.run_once(now)
        assert run.status == "failed" and run.next_due_at is not None
        delays.append(run.next_due_at - run.finished_at)
        assert worker.run_once(run.next_due_at - timedelta(microseconds=1)) == []
        now = run.next_due_at
    assert delays == [2 * EVERY, 4 * EVERY, 8 * EVERY]
    flaky.fail = None
    (run,) = worker.run_once(now)
    assert run.status == "ok" and run.next_due_at == now + EVERY
    row = state(services, "test.flaky")
    assert (row.runs, row.failures, row.consecutive_failures) == (4, 3, 0)


def test_a_failure_logs_the_job_and_the_exception_class_and_nothing_of_its_message(
    services: Services, json_logs: Callable[[], str]
) -> None:
    # Text no scrubbing pattern would catch: only leaving the message out keeps it out.
    canary = "canary-zhang-san-of-nanshan"
    Worker(services, [job("test.leaky", Counting(fail=ValueError(canary)))]).run_once(NOW)
    logged = json_logs()
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    failed = [line for line in lines if line["event"] == "worker.job_failed"]
    assert [(line["job"], line["error"]) for line in failed] == [("test.leaky", "ValueError")]
    assert canary not in logged
    assert state(services, "test.leaky").last_error == "ValueError"


@pytest.mark.parametrize(
    "result",
    [{"member": "13812345678"}, {"13812345678": 1}, {"done": True}, [("done", 1)]],
    ids=["a-value", "a-value-as-name", "not-a-number", "not-a-mapping"],
)
def test_a_job_that_returns_anything_but_counts_fails_and_stores_nothing_of_it(
    services: Services, result: Any
) -> None:
    (run,) = Worker(services, [job("test.leaky", Counting(result))]).run_once(NOW)
    assert (run.status, run.error) == ("failed", "InvalidJobResult")
    row = state(services, "test.leaky")
    assert row.last_result is None and row.last_error == "InvalidJobResult"


def test_no_job_starts_once_stop_is_set_and_the_running_one_finishes(
    services: Services,
) -> None:
    stop = threading.Event()
    after = Counting()

    def stopping(_services: Services) -> JobResult:
        stop.set()  # SIGTERM arrives while this job runs
        return {"done": 1}

    runs = Worker(services, [job("test.first", stopping), job("test.second", after)]).run_once(
        NOW, stop=stop
    )
    assert [(run.job, run.status) for run in runs] == [("test.first", "ok")]
    assert after.calls == 0
    assert state(services, "test.first").lease_owner is None


def test_run_forever_returns_once_stopped_after_the_job_running_ends(
    services: Services,
) -> None:
    stop = threading.Event()
    seen = []

    def stopping(_services: Services) -> JobResult:
        stop.set()
        return {"done": 1}

    worker = Worker(services, [job("test.first", stopping)], on_run=seen.append)
    worker.run_forever(stop)  # returns: the wait after the run ends at once, stop being set
    assert [(run.job, run.status) for run in seen] == [("test.first", "ok")]


def test_a_failing_database_does_not_end_the_loop(services: Services) -> None:
    stop = threading.Event()
    calls = 0

    def broken_sessions() -> Session:
        nonlocal calls
        calls += 1
        if calls == 2:  # the loop went on after the first failure: enough
            stop.set()
        raise ConnectionError("database gone")

    broken = dataclasses.replace(services, read_sessions=broken_sessions)
    worker = Worker(broken, [job("test.count", Counting())])
    worker.tick = 0  # no wait between ticks (a timed wait may never return under libfaketime)
    worker.run_forever(stop)
    assert calls == 2


def test_job_names_must_not_repeat(services: Services) -> None:
    with pytest.raises(ValueError, match="repeat"):
        Worker(services, [job("test.count", Counting()), job("test.count", Counting())])


# -- several workers, crashes ---------------------------------------------------------


def test_two_workers_on_one_database_run_a_due_job_once(services: Services) -> None:
    count = Counting()
    jobs = [job("test.count", count)]
    first, second = Worker(services, jobs), Worker(services, jobs)
    assert len(first.run_once(NOW)) == 1
    assert second.run_once(NOW) == []
    assert second.run_once(NOW + EVERY / 2) == []
    assert count.calls == 1
    assert len(second.run_once(NOW + EVERY)) == 1
    assert first.run_once(NOW + EVERY) == []
    assert count.calls == 2


def test_a_job_running_in_one_worker_is_passed_by_in_another(services: Services) -> None:
    count = Counting()
    target = job("test.count", count)
    inner: list[Any] = []

    def outer_run(_services: Services) -> JobResult:
        # While this run holds the lease, a second worker looks (later, even).
        inner.extend(Worker(services, [target]).run_once(NOW + EVERY))
        return {"done": 1}

    (run,) = Worker(services, [job("test.count", outer_run)]).run_once(NOW)
    assert run.status == "ok" and inner == [] and count.calls == 0


def claim_at(services: Services, target: Job, at: Any) -> bool:
    """A claim as a worker whose look at the table is stale makes it: the claim alone decides."""
    session = services.sessions()
    try:
        won = leases.claim(session, target, now=at, owner="stale pid 2 y")
        session.commit()
        return won
    finally:
        session.close()


def test_a_claim_is_refused_while_another_lease_holds_though_the_job_is_due(
    services: Services,
) -> None:
    target = job("test.count", Counting())
    crashed_claim(services, target, at=NOW)
    assert not claim_at(services, target, NOW + EVERY)  # due again, but leased
    assert claim_at(services, target, NOW + LEASE)


def test_a_claim_is_refused_before_the_job_is_due_though_no_lease_holds(
    services: Services,
) -> None:
    target = job("test.count", Counting())
    Worker(services, [target]).run_once(NOW)
    assert not claim_at(services, target, NOW + EVERY - timedelta(microseconds=1))
    assert claim_at(services, target, NOW + EVERY)


def test_a_lease_left_by_a_crashed_worker_is_taken_over_once_it_expires(
    services: Services,
) -> None:
    count = Counting()
    target = job("test.count", count)
    crashed_claim(services, target, at=NOW)
    worker = Worker(services, [target])
    # Due again by its interval, but the dead run's lease still holds.
    assert worker.run_once(NOW + EVERY) == []
    assert worker.run_once(NOW + LEASE - timedelta(microseconds=1)) == []
    (run,) = worker.run_once(NOW + LEASE)
    assert run.status == "ok" and count.calls == 1
    row = state(services, "test.count")
    # The run that never ended counts as a failure, once; this one as a success.
    assert (row.runs, row.failures, row.consecutive_failures) == (2, 1, 0)
    assert row.lease_owner is None and row.last_status == "ok"


def test_a_run_that_outlived_its_lease_leaves_its_successors_lease_alone(
    services: Services,
) -> None:
    calls = 0

    def slow(_services: Services) -> JobResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            # The lease runs out while this run goes on; another worker takes the job.
            Worker(services, [target]).run_once(NOW + LEASE + timedelta(seconds=1))
        return {"done": calls}

    target = job("test.slow", slow)
    (run,) = Worker(services, [target]).run_once(NOW)
    assert calls == 2
    # Its own record was refused: the lease was no longer its own.
    assert run.status == "ok" and run.next_due_at is None
    row = state(services, "test.slow")
    assert row.last_result == {"done": 2}
    assert row.last_started_at == NOW + LEASE + timedelta(seconds=1)
    assert row.lease_owner is None


def services_on(engine: Engine, services_for: ServicesFor) -> Services:
    return services_for(session_factory(engine), session_factory(engine, read_only=True))


def test_workers_in_several_processes_claiming_at_once_run_the_job_once(
    fresh_database: FreshDatabase, services_for: ServicesFor
) -> None:
    """Each worker with its own engine (as its own process would have), all at once."""
    count = Counting()
    jobs = [job("test.count", count)]
    workers = 6
    engines = [build_engine(fresh_database.url) for _ in range(workers)]
    started = threading.Barrier(workers)
    ran: list[int] = []
    errors: list[BaseException] = []

    def run(engine: Engine) -> None:
        worker = Worker(services_on(engine, services_for), jobs)
        started.wait()
        try:
            ran.append(len(worker.run_once(NOW)))
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for engine in engines:
            engine.dispose()
    assert errors == []
    assert sorted(ran) == [0] * (workers - 1) + [1]
    assert count.calls == 1


def _waiting_for_a_lock(probe: Engine, backend: str, other: int) -> bool:
    with probe.connect() as conn:
        if backend == "postgresql":
            query = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = :id"
            return conn.execute(text(query), {"id": other}).scalar() == "Lock"
        query = (
            "SELECT trx_state FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = :id"
        )
        return conn.execute(text(query), {"id": other}).scalar() == "LOCK WAIT"


@pytest.mark.backends("postgresql", "mariadb")
def test_a_claim_that_meets_an_uncommitted_claim_waits_for_it_and_then_loses(
    fresh_database: FreshDatabase, backend: str
) -> None:
    """The race the conditional UPDATE must win on databases with row locks: the second
    claim reaches the row while the first is not yet committed."""
    target = job("test.count", Counting())
    engines = [build_engine(fresh_database.url) for _ in range(3)]
    first, second = (Session(engine) for engine in engines[:2])
    outcome: list[bool] = []
    try:
        leases.add_missing(first, [target.name], now=NOW)
        first.commit()
        assert leases.claim(first, target, now=NOW, owner="first")  # not committed yet
        connection = second.connection()
        other = connection.exec_driver_sql(
            "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT CONNECTION_ID()"
        ).scalar()
        thread = threading.Thread(
            target=lambda: outcome.append(leases.claim(second, target, now=NOW, owner="second"))
        )
        thread.start()
        try:
            waited = 0
            while not _waiting_for_a_lock(engines[2], backend, int(other)):
                waited += 1
                assert waited < 10_000, "the second claim never waited for the first"
                assert thread.is_alive(), "the second claim did not wait for the first"
            first.commit()
        finally:
            thread.join()
        second.commit()
        assert outcome == [False]
        with engines[2].connect() as conn:
            owner = conn.execute(text("SELECT lease_owner FROM worker_job")).scalar()
        assert owner == "first"
    finally:
        first.close()
        second.close()
        for engine in engines:
            engine.dispose()


# -- in the server ----------------------------------------------------------------------


@pytest.fixture
def own_engine(fresh_database: FreshDatabase) -> Iterator[Engine]:
    """An engine of the test's own: the app's worker thread uses it beside the test."""
    engine = build_engine(fresh_database.url)
    yield engine
    engine.dispose()


def worker_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "memberguard-worker"]


def test_a_running_app_runs_the_jobs_in_a_thread_that_is_gone_after_shutdown(
    own_engine: Engine, services_for: ServicesFor, settings: Settings
) -> None:
    services = services_for(
        session_factory(own_engine),
        session_factory(own_engine, read_only=True),
        settings=settings.model_copy(update={"worker_in_server": True}),
    )
    ran = threading.Event()
    where: list[str] = []

    def probe(_services: Services) -> JobResult:
        where.append(threading.current_thread().name)
        ran.set()
        return {"done": 1}

    app = create_app(services=services, jobs=[job("test.probe", probe)])
    with TestClient(app) as client:
        background = app.state.worker
        assert isinstance(background, BackgroundWorker) and background.running
        ran.wait()  # no timeout: a timed wait may never return under libfaketime
        assert client.get("/healthz").status_code == 200
    assert where == ["memberguard-worker"]
    assert not background.running
    assert worker_threads() == []
    assert state(services, "test.probe").runs == 1


def test_an_app_with_the_worker_turned_off_starts_no_thread(services: Services) -> None:
    assert services.settings.worker_in_server is False  # the suite's settings
    app = create_app(services=services, jobs=[job("test.count", Counting())])
    with TestClient(app) as client:
        assert app.state.worker is None
        assert worker_threads() == []
        assert client.get("/healthz").status_code == 200
