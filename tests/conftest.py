"""Test fixtures: real databases, built from the migrations.

Every database-backed test runs on each backend: SQLite (always), PostgreSQL
and MariaDB/MySQL (at the URLs below, overridable). A server that is not
reachable skips its tests with the reason, except under ``CI=true``, where it
fails the run: CI must not go green by testing less.

Each run works in databases it creates and drops (``mg_test_<random>``), so
runs never collide. Each test runs inside one outer transaction that is rolled back afterwards;
the code under test commits to savepoints inside it (the pypi/warehouse
pattern), so tests are isolated and fast. Tests that need real commits from
several connections (concurrency, crash) use ``fresh_database`` instead.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hypothesis
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from audit.checkpoint import generate_signer
from audit.notary import Notary
from core.clock import Clock
from core.db import SessionFactory, build_engine
from core.settings import Settings
from gate.clients import register_client
from gate.context import Services
from migrations import upgrade
from notify.outbox import OutboxNotifier
from policies import Policy, load_policy
from principals import OPERATOR_ACTOR
from vault.keys import Keyring, KeyringSource

if TYPE_CHECKING:
    from tests.integration.amqp_listener import Listener

# No per-example deadline: Hypothesis's default (200 ms of wall-clock time per example) is
# an elapsed-time bound, and these machines are shared and noisy.
hypothesis.settings.register_profile("memberguard", deadline=None)
hypothesis.settings.load_profile("memberguard")

BACKENDS = {
    "sqlite": None,
    "postgresql": os.environ.get(
        "MEMBERGUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("MEMBERGUARD_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.backends("postgresql")``: a backend-specific test exists only for its
    backends (deselected, not skipped, elsewhere), so a normal run has no expected skips."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("backends")
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        if marker is not None and backend is not None and backend not in marker.args:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """CI=true: a skipped test fails the run; CI must not go green by testing less."""
    if IN_CI and _SKIPPED and exitstatus == pytest.ExitCode.OK:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"CI=true: {len(_SKIPPED)} test(s) skipped, which fails the run: "
                + ", ".join(_SKIPPED[:10]),
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _unreachable(backend: str, exc: Exception) -> None:
    message = f"{backend} is not reachable ({type(exc).__name__}); set up the server or the URL"
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


@contextmanager
def scratch_database(backend: str) -> Iterator[str]:
    """A database of its own on the server (created and dropped here), so that
    concurrent test runs against the same server never see each other."""
    base = BACKENDS[backend]
    assert base is not None
    name = f"mg_test_{secrets.token_hex(4)}"
    admin = build_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except OperationalError as exc:
        admin.dispose()
        _unreachable(backend, exc)
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if backend == "postgresql" else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


@pytest.fixture(scope="session", params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def migrated_engine(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        else:
            url = stack.enter_context(scratch_database(backend))
        upgrade(url=url)
        engine = build_engine(url)
        yield engine
        engine.dispose()


@pytest.fixture
def connection(migrated_engine: Engine) -> Iterator[Connection]:
    conn = migrated_engine.connect()
    outer = conn.begin()
    try:
        yield conn
    finally:
        if outer.is_active:
            outer.rollback()
        conn.close()


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy()


@pytest.fixture(scope="session")
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    return sessionmaker(
        bind=connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )


ORIGIN = "memberguard.test/audit"


@pytest.fixture(scope="session")
def signer() -> Ed25519PrivateKey:
    return generate_signer(ORIGIN)[0]


# The suite's "now". Every clock the code under test reads is injected, so the
# suite passes whatever the machine's date is (CI runs it under faketime too);
# fixtures' dates (consent collected in November 2026, say) are before this.
NOW = datetime(2026, 11, 22, 8, 0, 0, 123456, tzinfo=UTC)


def ticking_clock(start: datetime = NOW) -> Clock:
    """A clock that advances one millisecond per call, so every entry has its own time."""
    state = {"now": start}

    def clock() -> datetime:
        state["now"] += timedelta(milliseconds=1)
        return state["now"]

    return clock


@pytest.fixture
def clock() -> Clock:
    return ticking_clock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Small export batches, so that exports of a few members span several. A
    # running app records its keyring when it starts; no later beat, which would
    # use the test's connection from another thread while the test does. For
    # the same reason no scheduled jobs in the app: tests of the worker run it
    # themselves (tests/integration/test_worker.py).
    return Settings(
        home=tmp_path / "home",
        export_batch_size=7,
        max_body_bytes=16 * 1024,
        keyring_heartbeat_seconds=24 * 3600,
        keyring_live_seconds=2 * 24 * 3600,
        worker_in_server=False,
    )


ServicesFor = Callable[..., Services]


@pytest.fixture
def services_for(
    policy: Policy, keyring: Keyring, signer: Ed25519PrivateKey, settings: Settings, clock: Clock
) -> Iterator[ServicesFor]:
    """Services on sessions of the test's choosing: ``services_for(sessions, read_sessions=None,
    **fields)``, for tests on a database of their own or on sessions they watch."""
    built: list[Services] = []

    def build(
        sessions: SessionFactory, read_sessions: SessionFactory | None = None, **fields: Any
    ) -> Services:
        services = Services(
            settings=settings,
            policy=policy,
            keys=KeyringSource(lambda: keyring),
            # Checkpoints every 50 entries, so that suites exercise the automatic cut.
            notary=Notary(origin=ORIGIN, private_key=signer, every_entries=50, every_seconds=3600),
            sessions=sessions,
            read_sessions=read_sessions or sessions,
            notifier=OutboxNotifier(settings.resolved_outbox_dir),
            clock=clock,
        )
        built.append(services)
        return dataclasses.replace(services, **fields) if fields else services

    yield build
    # The rate limits' memory storage runs an expiry timer thread, which must
    # not outlive the test: a live thread keeps the offline verifier from
    # forking its workers (and under faketime the timer never ends by itself).
    for services in built:
        services.rate_limits.close()


@pytest.fixture
def services(services_for: ServicesFor, session_factory: sessionmaker[Session]) -> Services:
    return services_for(session_factory)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    s = session_factory()
    try:
        yield s
    finally:
        s.close()


@dataclass(frozen=True)
class Keys:
    crm: str
    sms: str
    analytics: str
    pos: str
    auditor: str
    admin: str
    # Collects consent and reads nothing (the brand app's consent screen).
    app: str
    # Personalised recommendations: a consent-based purpose with member ids.
    recs: str
    ids: dict[str, str]


@pytest.fixture
def keys(services: Services) -> Keys:
    """A realistic set of clients, registered the way the CLI does it."""
    specs = {
        "crm": (
            "client",
            ["membership", "customer_service", "marketing_sms", "delivery"],
            ["members:write", "consents:read", "consents:write"],
        ),
        "sms": ("client", ["marketing_sms"], []),
        "analytics": ("client", ["analytics"], []),
        "pos": (
            "client",
            ["membership", "partner_sharing", "identity_verification"],
            ["consents:write"],
        ),
        "auditor": ("auditor", [], []),
        "admin": ("admin", [], []),
        "app": ("client", [], ["consents:read", "consents:write"]),
        "recs": ("client", ["personalization"], []),
    }
    issued: dict[str, str] = {}
    ids: dict[str, str] = {}
    for name, (role, purposes, scopes) in specs.items():
        result = register_client(
            services,
            actor=OPERATOR_ACTOR,
            name=name,
            role=role,
            purposes=purposes,
            scopes=scopes,
            request_id=None,
        )
        issued[name] = result.key
        ids[name] = result.client["id"]
    return Keys(**issued, ids=ids)


@dataclass(frozen=True)
class FreshDatabase:
    url: str
    backend: str


@pytest.fixture
def fresh_database(backend: str, tmp_path: Path) -> Iterator[FreshDatabase]:
    """An empty, migrated database of its own, for tests that really commit."""
    with ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / 'fresh.db'}"
        else:
            url = stack.enter_context(scratch_database(backend))
        upgrade(url=url)
        yield FreshDatabase(url=url, backend=backend)


# -- RabbitMQ (the change feed's broker) ---------------------------------------------


@pytest.fixture(scope="session")
def amqp_url() -> str:
    from tests.integration.amqp_listener import reachable_amqp_url

    return reachable_amqp_url()


@pytest.fixture
def listener(amqp_url: str) -> Iterator[Listener]:
    """Exclusive queues on a connection of the test's own, gone with it."""
    import pika

    from feed.broker import parse_amqp_url
    from tests.integration.amqp_listener import Listener

    connection = pika.BlockingConnection(parse_amqp_url(amqp_url))
    try:
        yield Listener(connection.channel())
    finally:
        connection.close()  # the exclusive queues go with it


def weasyprint_or_skip() -> Any:
    """The ``weasyprint`` module, or a skip with the reason (``CI=true`` turns it into a
    failure): the ``pdf`` extra is missing, or the system's Pango is (WeasyPrint raises
    ``OSError`` on import then; Debian: ``apt-get install libpango-1.0-0 libpangoft2-1.0-0``)."""
    try:
        import weasyprint
    except ImportError:
        pytest.skip("the pdf extra (WeasyPrint) is not installed")
    except OSError:
        pytest.skip(
            "WeasyPrint cannot load Pango (apt-get install libpango-1.0-0 libpangoft2-1.0-0)"
        )
    return weasyprint
