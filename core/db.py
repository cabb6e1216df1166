"""Database plumbing: engine per dialect, declarative base, session factories.

The audited unit of work that every use case runs in is ``audit.uow``: it
needs the log, and ``core`` sits below every other package.

The schema is created only by the alembic migrations in ``migrations/``; the
models here describe it for the ORM. Three dialects are supported: SQLite (the
embedded default), PostgreSQL 15+ (psycopg 3) and MySQL 8 / MariaDB 10.11+
(PyMySQL).
"""

from __future__ import annotations

import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    create_engine,
    event,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from core.errors import SetupError

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every dialect.

    MySQL's DATETIME and SQLite have no time zone, so values are stored as
    naive UTC there and re-tagged on the way out; microseconds are kept
    (DATETIME(6) on MySQL).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store timezone-aware UTC only")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DatabaseURLError(SetupError):
    """The database URL cannot be used: not a URL, an unsupported database, a driver missing."""


class DatabaseUnavailable(SetupError):
    """The database named by the URL cannot be reached or refuses the login."""


URL_SETTING = "MEMBERGUARD_DATABASE_URL"
URL_FORMS = "postgresql://USER@HOST:5432/DB, mysql://USER@HOST:3306/DB or sqlite:///PATH"
# Which extra of the package installs each dialect's driver.
DRIVER_EXTRAS = {"postgresql": ("psycopg", "postgres"), "mysql": ("pymysql", "mysql")}


def display_url(url: str | URL) -> str:
    """The URL as it may be printed or logged: the dialect as the operator names it, the
    password hidden, and no query string (libpq and PyMySQL accept a password there too)."""
    parsed = make_url(url)
    return URL.create(
        parsed.get_backend_name(),
        username=parsed.username,
        password=parsed.password,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
    ).render_as_string(hide_password=True)


def normalise_url(url: str | URL) -> URL:
    """Pick the supported driver for each dialect, whatever the operator typed.

    ``postgres://`` (Heroku's and libpq's spelling) is PostgreSQL. A string that
    is not a URL, or names a database memberguard does not run on, is a
    ``DatabaseURLError`` whose message never repeats the string: it may hold a
    password.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise DatabaseURLError(
            f"{URL_SETTING} is not a database URL; expected {URL_FORMS}"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend in ("mysql", "mariadb"):
        parsed = parsed.set(drivername="mysql+pymysql")
        query = dict(parsed.query)
        query.setdefault("charset", "utf8mb4")
        parsed = parsed.set(query=query)
    elif backend != "sqlite":
        raise DatabaseURLError(
            f"{URL_SETTING} names {backend!r}, which memberguard does not run on; use {URL_FORMS}"
        )
    return parsed


def _require_driver(url: URL) -> None:
    """A dialect whose driver is an optional extra needs it installed."""
    backend = url.get_backend_name()
    if backend not in DRIVER_EXTRAS:
        return
    module, extra = DRIVER_EXTRAS[backend]
    try:
        __import__(module)
    except ImportError:
        raise DatabaseURLError(
            f"{display_url(url)} needs the {module} driver, which is not installed; install "
            f"it with pip install 'memberguard[{extra}]' (in a clone: pip install '.[{extra}]')"
        ) from None


def build_engine(url: str | URL, *, sqlite_synchronous: str = "FULL", **kwargs: Any) -> Engine:
    """An engine configured for memberguard's transaction model.

    ``hide_parameters`` keeps bound values out of exception messages: even
    though personal values are encrypted before they reach SQL, error text is
    never the place for stored data.
    """
    parsed = normalise_url(url)
    _require_driver(parsed)
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {"hide_parameters": True, "future": True}
    if backend == "sqlite":
        options["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        # READ COMMITTED: each statement sees what committed before it, so a
        # consent withdrawal is seen by the very next read; the audit head row
        # is serialised by SELECT ... FOR UPDATE.
        options["isolation_level"] = "READ COMMITTED"
        options["pool_pre_ping"] = True
    options.update(kwargs)
    engine = create_engine(parsed, **options)
    if backend == "sqlite":
        _configure_sqlite(engine, synchronous=sqlite_synchronous)
    return engine


def _configure_sqlite(engine: Engine, *, synchronous: str) -> None:
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError("sqlite synchronous must be FULL or NORMAL")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when a transaction begins, so
        # that it can be BEGIN IMMEDIATE (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # One writer at a time is SQLite's rule. Queue this process's writers on a
    # lock, which wakes the next one when the previous transaction ends;
    # left to SQLite's busy handler, waiting writers poll with sleeps of up to
    # 100 ms, which is what made the tail latency seconds long under load.
    writers = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Every memberguard transaction that decides writes an audit entry.
        # Taking the write lock at BEGIN serialises appends on the log head and
        # avoids the deadlock-prone upgrade from a read to a write lock.
        # Long read-only work (verification, audit exports) begins deferred so
        # that it never holds the writers up (WAL readers see a snapshot).
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
            return
        if not writers.acquire(timeout=SQLITE_WRITER_WAIT_SECONDS):
            raise OperationalError("BEGIN IMMEDIATE", None, TimeoutError("writer queue timed out"))
        connection.info[_HOLDS_WRITER] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(connection)
            raise

    def _release(connection: Any) -> None:
        if connection.info.pop(_HOLDS_WRITER, False):
            writers.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)


def make_sqlite_file_private(url: str | URL) -> tuple[Path, bool] | None:
    """Create the SQLite database file of ``url`` with mode 0600, or tighten an existing one.

    Left to SQLite, the file would be created under the process's umask
    (usually 0644): readable by every local user, and it holds the wrapped
    data keys, the ciphertexts, the blind indexes and the log. SQLite gives its
    ``-wal`` and ``-shm`` files the database file's mode, so they follow.
    Returns (path, whether its mode was changed), or None when ``url`` is no
    SQLite file (another database, or in memory).
    """
    parsed = normalise_url(url)  # a bad URL is a DatabaseURLError, never the URL repeated
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return path, False
    except FileExistsError:
        pass
    if stat.S_IMODE(path.stat().st_mode) & (stat.S_IRWXG | stat.S_IRWXO):
        os.chmod(path, 0o600)
        return path, True
    return path, False


SQLITE_WRITER_WAIT_SECONDS = 30
_HOLDS_WRITER = "memberguard_holds_sqlite_writer"


SessionFactory = Callable[[], Session]
READ_ONLY_OPTION = "memberguard_read_only"


def session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions for the use cases' units of work (``audit.uow``); ``read_only`` ones,
    for work that records nothing, never take SQLite's write lock."""
    bind = engine.execution_options(**{READ_ONLY_OPTION: True}) if read_only else engine
    return sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)


# Column types shared by the models of every area.
BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER only
LongBlob = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql")


# -- connecting, with the fix named -------------------------------------------


@contextmanager
def open_connection(engine: Engine) -> Iterator[Connection]:
    """A connection, or ``DatabaseUnavailable`` naming what is wrong and how to fix it.

    Only the connect is explained: an error in the caller's work on the
    connection propagates as it is.
    """
    try:
        connection = engine.connect()
    except DBAPIError as exc:
        raise DatabaseUnavailable(explain_connect_error(exc, engine.url)) from None
    with connection:
        yield connection


_PG_MISSING_DATABASE = re.compile(r'database "([^"]*)" does not exist')
_PG_MISSING_ROLE = re.compile(r'role "([^"]*)" does not exist')
_PG_LOGIN = ("password authentication failed", "no pg_hba.conf entry", "authentication failed")
_PG_UNREACHABLE = ("connection refused", "could not translate host name", "timeout expired")
_MYSQL_UNREACHABLE = {2002, 2003, 2005, 2006, 2013}
_MYSQL_LOGIN = {1044, 1045, 1698}
_MYSQL_MISSING_DATABASE = 1049


def explain_connect_error(exc: DBAPIError, url: URL) -> str:
    """One line for a failed connect: the problem, where, and the fix.

    The URL is shown with its password hidden, and the driver's own text (which
    names host, user and database, never the password) is scrubbed of the
    password all the same.
    """
    shown = display_url(url)
    where = f"{url.host or 'localhost'}:{url.port}" if url.port else (url.host or "localhost")
    backend = url.get_backend_name()
    orig = exc.orig
    args = getattr(orig, "args", ())
    # PyMySQL's errors are (code, message); psycopg's and sqlite3's are (message,).
    code = args[0] if len(args) == 2 and isinstance(args[0], int) else None
    text = str(args[1]) if code is not None else str(orig if orig is not None else exc)
    if url.password:
        text = text.replace(str(url.password), "***")
    first_line = text.strip().splitlines()[0].strip() if text.strip() else type(orig).__name__
    lowered = text.lower()
    if backend == "sqlite":
        return (
            f"cannot open the SQLite database {url.database}: {first_line}; "
            f"its directory must exist and be writable (run `memberguard init`, or set "
            f"MEMBERGUARD_HOME or {URL_SETTING})"
        )
    unreachable = (
        code in _MYSQL_UNREACHABLE
        if backend == "mysql"
        else any(marker in lowered for marker in _PG_UNREACHABLE)
    )
    if unreachable:
        return (
            f"cannot reach the database server at {where} ({shown}); check that the server "
            f"is running and the host and port in {URL_SETTING} are right"
        )
    missing = _PG_MISSING_DATABASE.search(text) if backend == "postgresql" else None
    if missing is not None or code == _MYSQL_MISSING_DATABASE:
        name = missing.group(1) if missing is not None else url.database
        return (
            f"the database {name!r} does not exist on {where} ({shown}); create it "
            f"(CREATE DATABASE {name}) or fix the database name in {URL_SETTING}"
        )
    role = _PG_MISSING_ROLE.search(text) if backend == "postgresql" else None
    if role is not None:
        return (
            f"the role {role.group(1)!r} does not exist on {where} ({shown}); create it "
            f"(CREATE ROLE {role.group(1)} LOGIN) or fix the user name in {URL_SETTING}"
        )
    login = (
        code in _MYSQL_LOGIN
        if backend == "mysql"
        else any(marker in lowered for marker in _PG_LOGIN)
    )
    if login:
        return (
            f"the database server at {where} refused user {url.username!r} ({shown}): "
            f"{first_line}; fix the user or password in {URL_SETTING}, or grant the user access"
        )
    return f"cannot connect to the database ({shown}): {first_line}; check {URL_SETTING}"
