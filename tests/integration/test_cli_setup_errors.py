"""A new operator's first mistakes end in one line naming the problem and the fix.

Every case: exit status 2, one line on stderr starting ``memberguard: error:``,
no traceback, and no password from the database URL anywhere in the output.
The commands that would serve if the check were missing run as a subprocess
with a timeout, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from cli.main import main
from core.db import build_engine
from tests.conftest import BACKENDS, _unreachable, scratch_database

PASSWORD = "hunter2-s3cret"
ENTRY_POINT = Path(sys.executable).with_name("memberguard")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "home"
    monkeypatch.setenv("MEMBERGUARD_HOME", str(target))
    for name in ("MEMBERGUARD_DATABASE_URL", "MEMBERGUARD_KEY_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    return target


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def run_process(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The installed ``memberguard`` command, as an operator runs it."""
    command = (
        [str(ENTRY_POINT)]
        if ENTRY_POINT.exists()
        else [sys.executable, "-c", "from cli.main import main; main()"]
    )
    done = subprocess.run(  # noqa: S603  (our own entry point, fixed arguments)
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def assert_one_line_error(code: int, stderr: str, *needles: str) -> str:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("memberguard: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    assert PASSWORD not in line
    return line


def free_port() -> int:
    """A port nothing listens on (bound and released; the kernel does not hand it out again
    at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


# -- an uninitialised home, a key file others can read --------------------------------


def test_serve_before_init_says_to_run_init(home: Path) -> None:
    code, stdout, stderr = run_process("serve", "--port", str(free_port()))
    assert_one_line_error(code, stderr, "memberguard init")
    assert stdout == ""


def test_audit_verify_outside_an_initialised_home_says_to_run_init(home: Path) -> None:
    code, stdout, stderr = run("audit", "verify")
    assert_one_line_error(code, stderr, "not initialised", "memberguard init")
    assert stdout == ""
    assert not home.exists()  # nothing was created on the way


@pytest.mark.parametrize("key_file", ["keys/keyring.json", "keys/audit-signer.key"])
def test_serve_with_a_key_file_others_can_read_says_chmod_600(home: Path, key_file: str) -> None:
    assert run("init")[0] == 0
    path = home / key_file
    path.chmod(0o644)
    code, stdout, stderr = run_process("serve", "--port", str(free_port()))
    assert_one_line_error(code, stderr, f"chmod 600 {path}")
    assert stdout == ""


def test_a_command_on_an_unmigrated_database_says_to_run_init(home: Path) -> None:
    assert run("init")[0] == 0
    (home / "memberguard.db").unlink()
    (home / "memberguard.db").touch()  # an empty database: no schema
    code, _stdout, stderr = run("clients", "list")
    assert_one_line_error(code, stderr, "has no memberguard schema", "memberguard init")


@pytest.mark.parametrize(
    ("revision", "needle"),
    [
        ("0001", "run `memberguard init` to migrate it"),  # the first: behind any later head
        ("9999", "a newer version migrated it"),
    ],
    ids=["behind", "ahead"],
)
def test_a_database_at_another_schema_version_is_named_with_the_fix(
    home: Path, revision: str, needle: str
) -> None:
    assert run("init")[0] == 0
    with closing(sqlite3.connect(home / "memberguard.db")) as db, db:
        db.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    code, _stdout, stderr = run("clients", "list")
    assert_one_line_error(code, stderr, f"is at schema {revision}", needle)


# -- bad database URLs --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "needles"),
    [
        (f"{PASSWORD}", ["is not a database URL", "postgresql://"]),
        (f"postgresql://memberguard:{PASSWORD}@db.internal:port/x", ["is not a database URL"]),
        (f"oracle://scott:{PASSWORD}@db.internal/orcl", ["'oracle'", "postgresql://"]),
    ],
    ids=["not-a-url", "port-not-a-number", "unsupported-database"],
)
def test_a_database_url_that_cannot_be_used_is_named_without_its_password(
    home: Path, monkeypatch: pytest.MonkeyPatch, url: str, needles: list[str]
) -> None:
    monkeypatch.setenv("MEMBERGUARD_DATABASE_URL", url)
    code, stdout, stderr = run("init")
    assert_one_line_error(code, stderr, "MEMBERGUARD_DATABASE_URL", *needles)
    assert PASSWORD not in stdout
    assert not (home / "keys").exists()  # init checks the URL before it creates anything


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "mysql"])
def test_a_database_server_on_the_wrong_port_is_named_with_the_fix(
    home: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    port = free_port()
    monkeypatch.setenv(
        "MEMBERGUARD_DATABASE_URL", f"{scheme}://memberguard:{PASSWORD}@127.0.0.1:{port}/x"
    )
    code, _stdout, stderr = run("init")
    assert_one_line_error(
        code, stderr, f"cannot reach the database server at 127.0.0.1:{port}", "memberguard:***@"
    )


@pytest.mark.backends("postgresql", "mariadb")
def test_an_unknown_database_is_named_with_the_fix(
    backend: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = reachable(backend)
    monkeypatch.setenv(
        "MEMBERGUARD_DATABASE_URL", server.set(database="mg_no_such_db").render_as_string(False)
    )
    code, _stdout, stderr = run("init")
    assert_one_line_error(code, stderr, "'mg_no_such_db' does not exist", "CREATE DATABASE")


@pytest.mark.backends("postgresql", "mariadb")
def test_an_unknown_role_is_named_with_the_fix(
    backend: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = reachable(backend)
    url = server.set(username="mg_no_such_role", password=PASSWORD)
    monkeypatch.setenv("MEMBERGUARD_DATABASE_URL", url.render_as_string(hide_password=False))
    code, _stdout, stderr = run("init")
    assert_one_line_error(code, stderr, "'mg_no_such_role'", "MEMBERGUARD_DATABASE_URL")


def reachable(backend: str) -> URL:
    """The test server's URL, once it has answered (unreachable: skipped, or failed in CI)."""
    url = BACKENDS[backend]
    assert url is not None
    engine = build_engine(url)
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        _unreachable(backend, exc)
    finally:
        engine.dispose()
    return make_url(url)


@pytest.mark.backends("postgresql")
def test_the_postgres_spelling_is_postgresql(
    backend: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with scratch_database(backend) as url:
        spelled = make_url(url).set(drivername="postgres").render_as_string(False)
        assert spelled.startswith("postgres://")
        monkeypatch.setenv("MEMBERGUARD_DATABASE_URL", spelled)
        code, stdout, stderr = run("init")
        assert code == 0, stderr
        code, stdout, stderr = run("audit", "verify")
        assert code == 0, stderr
        assert stdout.startswith("OK: 0 entries")


def test_a_bad_setting_is_named_without_its_value(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMBERGUARD_KEY_PROVIDER", f"kms-{PASSWORD}")
    code, _stdout, stderr = run("init")
    assert_one_line_error(code, stderr, "MEMBERGUARD_KEY_PROVIDER", "'local' or 'env'")


def test_serve_with_a_bad_database_url_fails_before_serving(home: Path) -> None:
    assert run("init")[0] == 0
    url = f"postgresql://memberguard:{PASSWORD}@127.0.0.1:{free_port()}/x"
    code, _stdout, stderr = run_process(
        "serve", "--port", str(free_port()), env={"MEMBERGUARD_DATABASE_URL": url}
    )
    assert_one_line_error(code, stderr, "cannot reach the database server")


# -- the demo on a busy port, --version ------------------------------------------------


def test_demo_on_a_busy_port_fails_before_loading_anything(home: Path, busy_port: int) -> None:
    code, stdout, stderr = run_process("demo", "--members", "5", "--port", str(busy_port))
    assert_one_line_error(code, stderr, f"127.0.0.1:{busy_port}", "--port")
    assert stdout == ""  # no keys, no tour
    assert not home.exists()


def test_serve_on_a_busy_port_fails_before_anything_else(home: Path, busy_port: int) -> None:
    code, _stdout, stderr = run_process("serve", "--port", str(busy_port))
    assert_one_line_error(code, stderr, f"127.0.0.1:{busy_port}", "--port")


def test_version_is_the_installed_package_version() -> None:
    code, stdout, _stderr = run("--version")
    assert code == 0
    assert stdout == f"memberguard, version {importlib.metadata.version('memberguard')}\n"
