"""/readyz: read-only, bounded, and cheap under a flood.

The probe is public, so it must cost the service nothing it needs for real
work: no write transaction and no log-head lock (a SQLite write lock held
elsewhere must not delay it), no wait behind the writers for a pooled
connection (writers queued for the log-head lock hold theirs while they
wait), a bounded answer time, and one check at a time however many probes
arrive (a flood of probes once slowed lookups twentyfold).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import api.routers.health
import audit.uow
from api.app import create_app
from audit.log import HEAD_ID
from audit.models import AuditHead
from cli.main import run_init
from core.db import build_engine
from core.settings import Settings
from gate.clients import register_client
from gate.context import Services, build_services
from principals import OPERATOR_ACTOR
from tests.api.conftest import MEMBER, auth
from tests.conftest import FreshDatabase, ticking_clock

# How long the test waits for something it expects to happen at once; far less
# than the 30 s a connection or lock wait would take.
PROMPTLY = 10.0


@contextmanager
def head_locked_elsewhere(database: FreshDatabase) -> Iterator[Callable[[], bool]]:
    """Another connection holds the log-head lock (SQLite: the write lock, by BEGIN
    IMMEDIATE). Yields a check that a write attempt with a short timeout now fails."""
    if database.backend == "sqlite":
        path = make_url(database.url).database
        assert path is not None
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")

        def write_fails() -> bool:
            probe = sqlite3.connect(path, timeout=0.1, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # database is locked
                return True
            finally:
                probe.close()
            return False

        try:
            yield write_fails
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = build_engine(database.url)
    holder_conn = engine.connect()
    holder_conn.execute(select(AuditHead.size).where(AuditHead.id == HEAD_ID).with_for_update())

    def row_lock_held() -> bool:
        with engine.connect() as conn:
            if database.backend == "postgresql":
                conn.exec_driver_sql("SET lock_timeout = '100ms'")
            else:
                conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
            try:
                conn.execute(
                    select(AuditHead.size).where(AuditHead.id == HEAD_ID).with_for_update()
                )
            except OperationalError:
                return True
            finally:
                conn.rollback()
        return False

    try:
        yield row_lock_held
    finally:
        holder_conn.rollback()
        holder_conn.close()
        engine.dispose()


@dataclasses.dataclass
class Deployed:
    database: FreshDatabase
    services: Services
    client: TestClient
    crm: str

    def writers_engine(self) -> Engine:
        return self.services.sessions.kw["bind"]  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def deployed(fresh_database: FreshDatabase, tmp_path: Path) -> Iterator[Deployed]:
    """The app as `memberguard serve` builds it (build_services), on a database of its own."""
    # No job thread: the tests count who waits for the log-head lock.
    settings = Settings(
        home=tmp_path / "home", database_url=fresh_database.url, worker_in_server=False
    )
    run_init(settings, echo=False)
    services = build_services(settings, clock=ticking_clock())
    crm = register_client(
        services,
        actor=OPERATOR_ACTOR,
        name="crm",
        role="client",
        purposes=["customer_service"],
        scopes=[],
        request_id=None,
    ).key
    try:
        with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
            yield Deployed(fresh_database, services, client, crm)
    finally:
        services.dispose()


def assert_ready(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "keys": "ok"}}


def test_readyz_answers_while_another_connection_holds_the_write_lock(
    deployed: Deployed,
) -> None:
    with head_locked_elsewhere(deployed.database) as write_fails:
        assert write_fails()  # the lock is really held: a write would not get through
        assert_ready(deployed.client.get("/readyz"))
        assert write_fails()  # and the probe did not wait for its release


def test_readyz_answers_while_writers_queued_behind_the_lock_hold_every_pooled_connection(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first-day trial's 11 s: writers waiting for the log-head lock hold their
    pooled connections; a probe that needed one of them waited as long as they did."""
    pool = deployed.writers_engine().pool
    capacity = pool.size() + pool._max_overflow  # type: ignore[attr-defined]
    waiting = []
    real_lock_head = audit.uow.lock_head

    def counted_lock_head(session: Session) -> Any:
        waiting.append(1)  # list.append is atomic: no lock needed
        return real_lock_head(session)

    monkeypatch.setattr(audit.uow, "lock_head", counted_lock_head)
    lookup = {"phone": MEMBER["phone"], "purpose": "customer_service"}
    with ThreadPoolExecutor(capacity) as executor:
        with head_locked_elsewhere(deployed.database):
            queued = [
                executor.submit(
                    deployed.client.post,
                    "/v1/members/lookup",
                    json=lookup,
                    headers=auth(deployed.crm),
                )
                for _ in range(capacity)
            ]
            # Every lookup has passed its key check and is in its unit of work, waiting
            # for the lock with a connection of the writers' pool: the pool is exhausted.
            deadline = time.monotonic() + PROMPTLY
            while time.monotonic() < deadline and (
                len(waiting) < capacity or pool.checkedout() < capacity  # type: ignore[attr-defined]
            ):
                time.sleep(0.01)
            assert len(waiting) == capacity
            assert pool.checkedout() == capacity  # type: ignore[attr-defined]
            assert_ready(deployed.client.get("/readyz"))
            assert not any(f.done() for f in queued)  # they were still waiting
        assert [f.result().status_code for f in queued] == [200] * capacity


class GatedReads:
    """Read-only sessions that each wait at a gate before they are handed out."""

    def __init__(self, factory: Callable[[], Session]) -> None:
        self.factory = factory
        self.gate = threading.Event()
        self.entered = 0
        self._lock = threading.Lock()

    def __call__(self) -> Session:
        with self._lock:
            self.entered += 1
        self.gate.wait(PROMPTLY)
        return self.factory()


@pytest.fixture
def gated(services: Services) -> Iterator[tuple[GatedReads, TestClient]]:
    reads = GatedReads(services.read_sessions)
    app = create_app(services=dataclasses.replace(services, read_sessions=reads))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield reads, client
    finally:
        reads.gate.set()


def test_a_flood_of_probes_runs_one_check_at_a_time(
    gated: tuple[GatedReads, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    reads, client = gated
    arrived: list[int] = []
    checks = api.routers.health.Readiness.checks

    async def counted(self: Any, *, within: float) -> dict[str, str]:
        arrived.append(1)  # list.append is atomic
        return await checks(self, within=within)

    monkeypatch.setattr(api.routers.health.Readiness, "checks", counted)
    with ThreadPoolExecutor(8) as executor:
        probes = [executor.submit(client.get, "/readyz") for _ in range(8)]
        # Wait until every probe has asked for a check (not for a while): each
        # one had its chance to start a check of its own while the first hangs.
        deadline = time.monotonic() + PROMPTLY
        while (len(arrived) < 8 or reads.entered == 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(arrived) == 8
        assert reads.entered == 1
        reads.gate.set()
        answers = [probe.result() for probe in probes]
    for answer in answers:
        assert_ready(answer)


def test_a_probe_answers_not_ready_within_its_bound_when_the_check_hangs(
    gated: tuple[GatedReads, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    reads, client = gated
    monkeypatch.setattr(api.routers.health, "READY_WITHIN_SECONDS", 0.2)
    for _ in range(2):  # the second probe waits on the same stuck check, not a new one
        response = client.get("/readyz")
        assert response.status_code == 503, response.text
        assert response.json()["status"] == "not-ready"
        assert not reads.gate.is_set()  # it answered while the check was still stuck
    assert reads.entered == 1
    reads.gate.set()
    deadline = time.monotonic() + PROMPTLY
    while time.monotonic() < deadline:  # the stuck check ends; the next probe starts afresh
        response = client.get("/readyz")
        if response.status_code == 200:
            break
        time.sleep(0.01)
    assert_ready(response)
