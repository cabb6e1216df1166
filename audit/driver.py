"""Statements run straight on the DB-API driver, for the audit append path only.

The append runs in every audited transaction, and there SQLAlchemy's
per-execution work (cache lookup, parameter processing, result set-up,
events) cost several times what the database spends on the statements. Only
the log uses these, so they live with it rather than in ``core.db``.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from contextlib import AbstractContextManager, closing, nullcontext
from typing import Any, cast

from sqlalchemy import Column, Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import Executable


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
