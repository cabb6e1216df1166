"""Database plumbing: engine per dialect, declarative base, unit of work.

The schema is created only by the alembic migrations in ``migrations/``; the
models here describe it for the ORM. Three dialects are supported: SQLite (the
embedded default), PostgreSQL 15+ (psycopg 3) and MySQL 8 / MariaDB 10.11+
(PyMySQL).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, closing, nullcontext
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    create_engine,
    event,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.base import Executable
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


SQLITE_WRITER_WAIT_SECONDS = 30
_HOLDS_WRITER = "memberguard_holds_sqlite_writer"


SessionFactory = Callable[[], Session]
READ_ONLY_OPTION = "memberguard_read_only"


def session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions for the use cases; ``read_only`` ones never take SQLite's write lock."""
    bind = engine.execution_options(**{READ_ONLY_OPTION: True}) if read_only else engine
    return sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)


class UnitOfWork:
    """One use case, one transaction. Rolls back unless ``commit()`` is called.

    Services receive ``uow.session`` and only ``flush()``; the use case decides
    when the transaction commits (for reads: after the audit entry is written
    and before any data is released).
    """

    def __init__(self, factory: SessionFactory) -> None:
        self._factory = factory
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._session

    def __enter__(self) -> UnitOfWork:
        self._session = self._factory()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        try:
            session.rollback()
        finally:
            session.close()
            self._session = None

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()


def driver_errors(session: Session) -> tuple[type[BaseException], ...]:
    """What a statement run on the driver raises: its DB-API errors, and SQLAlchemy's."""
    return (session.get_bind().dialect.loaded_dbapi.Error, SQLAlchemyError)


def driver_pipeline(session: Session) -> AbstractContextManager[Any]:
    """Send the statements of the block without waiting for each result, where the driver can.

    psycopg's pipeline mode: the block costs one round trip to PostgreSQL
    instead of one per statement, and an error is raised at the block's end
    at the latest (the transaction is then aborted, so nothing after it
    commits). Other drivers run the block statement by statement.
    """
    connection = session.connection()
    if connection.dialect.driver == "psycopg":
        return cast(AbstractContextManager[Any], connection.connection.dbapi_connection.pipeline())
    return nullcontext()


# SQL text, the parameter names in order (None for a named style), and the defaults.
_Compiled = tuple[str, tuple[str, ...] | None, dict[str, Any]]


class DriverStatement:
    """A Core statement compiled once per dialect and run on the DB-API cursor.

    For the handful of statements on the audit append path, which runs in
    every audited transaction: there SQLAlchemy's per-execution work (cache
    lookup, parameter processing, result set-up, events) cost several times
    what the database spends on them. The statement is still written in Core,
    so each dialect gets its own SQL (``FOR UPDATE``, parameter style, casts).
    Parameters must already be what the driver takes (``stored_value``), rows
    come back as the driver's tuples (no type processing), and errors are the
    driver's own: catch ``driver_errors(session)``.
    """

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        # Per dialect instance (an engine's), dropped with its engine.
        self._compiled: weakref.WeakKeyDictionary[Any, _Compiled] = weakref.WeakKeyDictionary()

    def _compile(self, dialect: Any) -> _Compiled:
        compiled = self._compiled.get(dialect)
        if compiled is None:
            sql = self.statement.compile(dialect=dialect)
            positions = tuple(sql.positiontup) if sql.positiontup is not None else None
            compiled = self._compiled[dialect] = (sql.string, positions, dict(sql.params))
        return compiled

    def execute(self, session: Session, params: dict[str, Any] | None = None) -> list[Any]:
        """Run the statement in the session's transaction; returns its rows (none for DML)."""
        connection = session.connection()
        sql, positions, defaults = self._compile(connection.dialect)
        values = {**defaults, **params} if params else defaults
        with closing(connection.connection.dbapi_connection.cursor()) as cursor:
            if positions is None:
                cursor.execute(sql, values)
            else:
                cursor.execute(sql, tuple(values[name] for name in positions))
            return list(cursor.fetchall()) if cursor.description is not None else []


def insert_rows(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """INSERT rows given as plain tuples, straight to the driver's executemany.

    For the append path's rows, where SQLAlchemy's per-row parameter
    processing costs more than the insert. Values must already be what the
    driver takes: ``stored_value`` converts a typed value (a datetime) once.
    Errors are the driver's own, as for ``DriverStatement``.
    """
    if not rows:
        return
    connection = session.connection()
    by_statement = _INSERTS.setdefault(connection.dialect, {})
    key = (table.name, tuple(columns))
    sql = by_statement.get(key)
    if sql is None:
        sql = by_statement[key] = _insert_sql(connection.dialect, table, key[1])
    with closing(connection.connection.dbapi_connection.cursor()) as cursor:
        if len(rows) == 1:
            cursor.execute(sql, tuple(rows[0]))
        else:
            cursor.executemany(sql, [tuple(row) for row in rows])


# Per dialect instance (an engine's), dropped with its engine, as for DriverStatement.
_INSERTS: weakref.WeakKeyDictionary[Any, dict[tuple[str, tuple[str, ...]], str]] = (
    weakref.WeakKeyDictionary()
)


def _insert_sql(dialect: Any, table: Table, columns: tuple[str, ...]) -> str:
    marker = _PARAM_MARKERS[dialect.paramstyle]
    quote = dialect.identifier_preparer.quote
    names = [quote(table.c[c].name) for c in columns]  # KeyError for a name not in the table
    # Only the schema's own, quoted identifiers and parameter markers: no value is in the text.
    return (
        f"INSERT INTO {quote(table.name)} ({', '.join(names)}) "  # noqa: S608
        f"VALUES ({', '.join([marker] * len(columns))})"
    )


_PARAM_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def stored_value(session: Session, column: Column[Any], value: Any) -> Any:
    """``value`` as the driver receives it for ``column`` (its type's bind processing)."""
    dialect = session.get_bind().dialect
    process = column.type.bind_processor(dialect)
    return process(value) if process is not None else value


# Column types shared by the models of every area.
BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER only
LongBlob = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql")
