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
import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
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
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

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


def normalise_url(url: str | URL) -> URL:
    """Pick the supported driver for each dialect, whatever the operator typed."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend in ("mysql", "mariadb"):
        parsed = parsed.set(drivername="mysql+pymysql")
        query = dict(parsed.query)
        query.setdefault("charset", "utf8mb4")
        parsed = parsed.set(query=query)
    return parsed


def build_engine(url: str | URL, *, sqlite_synchronous: str = "FULL", **kwargs: Any) -> Engine:
    """An engine configured for memberguard's transaction model.

    ``hide_parameters`` keeps bound values out of exception messages: even
    though personal values are encrypted before they reach SQL, error text is
    never the place for stored data.
    """
    parsed = normalise_url(url)
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
    parsed = make_url(url)
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
