"""Alembic migrations: the only source of the schema.

``upgrade(url)`` is what ``memberguard init`` and the test fixtures call.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from core.db import READ_ONLY_OPTION, display_url, open_connection
from core.errors import SetupError

SCRIPT_LOCATION = str(Path(__file__).parent)
VERSION_TABLE = "alembic_version"


class SchemaNotReady(SetupError):
    """The database has no memberguard schema, or not this version's."""


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        # ConfigParser treats % as interpolation.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(
    *, url: str | None = None, connection: Connection | None = None, revision: str = "head"
) -> None:
    command.upgrade(alembic_config(url, connection), revision)


def require_current(engine: Engine) -> None:
    """Refuse a database that ``memberguard init`` has not migrated to this version's head.

    Commands other than ``init`` call this before they work, so that an
    uninitialised home or an unmigrated database fails at once with the fix,
    not on the first missing table. A SQLite file that does not exist is not
    created (connecting would create an empty one): it is the same refusal.
    """
    url = engine.url
    sqlite_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if sqlite_file and not Path(str(url.database)).exists():
        raise SchemaNotReady(
            f"no database at {url.database}: this home is not initialised; run "
            "`memberguard init` (or set MEMBERGUARD_HOME to the home you initialised)"
        )
    # Read-only: on SQLite it must not queue behind (or hold up) a running server's writers.
    # The version table is read directly: alembic's MigrationContext would log at INFO.
    with open_connection(engine.execution_options(**{READ_ONLY_OPTION: True})) as connection:
        found = inspect(connection).has_table(VERSION_TABLE)
        versions = (
            connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608
            .scalars()
            .all()
            if found
            else []
        )
        connection.rollback()
    current = ", ".join(sorted(versions))  # one revision: the history is linear
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    if current == head:
        return
    shown = display_url(url)
    if not versions:
        raise SchemaNotReady(
            f"the database {shown} has no memberguard schema; run `memberguard init`"
        )
    if current not in {script.revision for script in scripts.walk_revisions()}:
        raise SchemaNotReady(
            f"the database {shown} is at schema {current}, which this memberguard does not "
            f"know (a newer version migrated it); run the newer version"
        )
    raise SchemaNotReady(
        f"the database {shown} is at schema {current}, this memberguard needs {head}; "
        "run `memberguard init` to migrate it"
    )
