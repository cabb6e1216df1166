"""Database URLs as operators type them, and failed connects explained, without I/O.

What the drivers raise is reproduced from what psycopg 3 and PyMySQL say
(their messages are quoted from real failed connects); the integration tests
in ``test_cli_setup_errors.py`` run the real ones.
"""

from __future__ import annotations

import sys

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from core.db import (
    DatabaseURLError,
    build_engine,
    display_url,
    explain_connect_error,
    normalise_url,
)
from core.errors import SetupError
from core.settings import SettingsError, load_settings

PASSWORD = "hunter2-s3cret"


@pytest.mark.parametrize(
    ("typed", "driver"),
    [
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg"),
        ("mysql://u@h/db", "mysql+pymysql"),
        ("mariadb://u@h/db", "mysql+pymysql"),
        ("sqlite:///var/x.db", "sqlite"),
    ],
)
def test_each_spelling_of_a_supported_database_gets_its_driver(typed: str, driver: str) -> None:
    assert normalise_url(typed).drivername == driver


@pytest.mark.parametrize(
    "url",
    [PASSWORD, "", f"postgresql://u:{PASSWORD}@h:port/db", f"://u:{PASSWORD}@h/db"],
)
def test_a_string_that_is_not_a_url_is_refused_without_being_repeated(url: str) -> None:
    with pytest.raises(DatabaseURLError) as raised:
        normalise_url(url)
    message = str(raised.value)
    assert "MEMBERGUARD_DATABASE_URL is not a database URL" in message
    assert PASSWORD not in message


def test_an_unsupported_database_is_named_with_the_supported_ones() -> None:
    with pytest.raises(DatabaseURLError, match="'oracle', which memberguard does not run on"):
        normalise_url(f"oracle://scott:{PASSWORD}@h/orcl")


def test_a_missing_driver_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now fails
    with pytest.raises(DatabaseURLError) as raised:
        build_engine(f"postgresql://u:{PASSWORD}@h/db")
    assert "pip install 'memberguard[postgres]'" in str(raised.value)
    assert PASSWORD not in str(raised.value)


def test_display_url_hides_the_password_and_the_query_and_keeps_the_dialect_typed() -> None:
    shown = display_url(normalise_url(f"postgres://u:{PASSWORD}@h:5433/db?password={PASSWORD}"))
    assert shown == "postgresql://u:***@h:5433/db"
    assert display_url(normalise_url("mysql://u@h/db")) == "mysql://u@h/db"


class FakePsycopgError(Exception):
    """psycopg 3: one message argument."""


class FakePyMySQLError(Exception):
    """PyMySQL: (code, message)."""


def failed(orig: Exception) -> OperationalError:
    return OperationalError("connect", None, orig)


PG = make_url(f"postgresql+psycopg://memberguard:{PASSWORD}@db.internal:5432/gate")
MY = make_url(f"mysql+pymysql://memberguard:{PASSWORD}@db.internal:3306/gate?charset=utf8mb4")


@pytest.mark.parametrize(
    ("url", "orig", "says"),
    [
        (
            PG,
            FakePsycopgError(
                'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
                "Connection refused\n\tIs the server running on that host and accepting "
                "TCP/IP connections?"
            ),
            "cannot reach the database server at db.internal:5432",
        ),
        (
            PG,
            FakePsycopgError(
                'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
                'FATAL:  database "gate" does not exist'
            ),
            "the database 'gate' does not exist on db.internal:5432",
        ),
        (
            PG,
            FakePsycopgError(
                'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
                'FATAL:  role "memberguard" does not exist'
            ),
            "the role 'memberguard' does not exist on db.internal:5432",
        ),
        (
            PG,
            FakePsycopgError(
                'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
                'FATAL:  password authentication failed for user "memberguard"'
            ),
            "refused user 'memberguard'",
        ),
        (
            MY,
            FakePyMySQLError(
                2003, "Can't connect to MySQL server on 'db.internal' ([Errno 111] refused)"
            ),
            "cannot reach the database server at db.internal:3306",
        ),
        (
            MY,
            FakePyMySQLError(1049, "Unknown database 'gate'"),
            "the database 'gate' does not exist on db.internal:3306",
        ),
        (
            MY,
            FakePyMySQLError(
                1045, "Access denied for user 'memberguard'@'10.0.0.9' (using password: YES)"
            ),
            "refused user 'memberguard'",
        ),
        (
            PG,
            FakePsycopgError(f"something new went wrong near {PASSWORD}"),
            "cannot connect to the database (postgresql://memberguard:***@db.internal:5432/gate)",
        ),
    ],
    ids=[
        "pg-refused",
        "pg-no-database",
        "pg-no-role",
        "pg-bad-password",
        "mysql-refused",
        "mysql-no-database",
        "mysql-denied",
        "anything-else",
    ],
)
def test_a_failed_connect_is_explained_in_one_line_without_the_password(
    url: object, orig: Exception, says: str
) -> None:
    message = explain_connect_error(failed(orig), url)  # type: ignore[arg-type]
    assert says in message
    assert "\n" not in message
    assert PASSWORD not in message
    assert "MEMBERGUARD_DATABASE_URL" in message


def test_setup_errors_are_one_family() -> None:
    from audit.signer import SignerError
    from migrations import SchemaNotReady
    from vault.keys import KeyringError

    for error in (DatabaseURLError, SettingsError, SignerError, KeyringError, SchemaNotReady):
        assert issubclass(error, SetupError)


def test_a_refused_setting_is_named_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBERGUARD_KEY_PROVIDER", f"kms-{PASSWORD}")
    monkeypatch.setenv("MEMBERGUARD_CHECKPOINT_EVERY_ENTRIES", "0")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert "MEMBERGUARD_KEY_PROVIDER: input should be 'local' or 'env'" in message
    assert "MEMBERGUARD_CHECKPOINT_EVERY_ENTRIES: input should be greater than" in message
    assert PASSWORD not in message


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        (f"nope://user:{PASSWORD}@cache.internal", "not a storage scheme"),
        # limits knows redis, but its client package is not a dependency.
        (f"redis://user:{PASSWORD}@cache.internal:6379", "client package is not installed"),
    ],
)
def test_an_unusable_rate_limit_storage_fails_at_start_without_its_password(
    monkeypatch: pytest.MonkeyPatch, uri: str, why: str
) -> None:
    monkeypatch.setenv("MEMBERGUARD_RATE_LIMIT_STORAGE", uri)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith("MEMBERGUARD_RATE_LIMIT_STORAGE: ")
    assert why in message
    assert PASSWORD not in message


def test_a_heartbeat_slower_than_half_the_live_window_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A server beating once per window would drop out of it between beats,
    # and `keys rewrap` would pass a server still on the old KEK.
    monkeypatch.setenv("MEMBERGUARD_KEYRING_HEARTBEAT_SECONDS", "60")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "MEMBERGUARD_KEYRING_LIVE_SECONDS must be at least twice" in str(raised.value)
    monkeypatch.setenv("MEMBERGUARD_KEYRING_LIVE_SECONDS", "120")
    assert load_settings().keyring_live_seconds == 120
