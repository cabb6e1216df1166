"""``memberguard worker``: --once for cron and tests, --job, and ``worker status``.

On the embedded default (SQLite and a local key file), with the registry
replaced by test doubles of the domains' jobs.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner, Result

from cli.main import main, run_init
from core.settings import Settings
from gate.context import Services
from worker import jobs as registry
from worker.jobs import Job, JobResult


class Jobs:
    """The registry the CLI finds: a job that counts its runs and, if asked, one that fails."""

    def __init__(self) -> None:
        self.calls = 0
        self.broken = False

    def count(self, _services: Services) -> JobResult:
        self.calls += 1
        return {"done": self.calls}

    def fail(self, _services: Services) -> JobResult:
        raise RuntimeError("down")

    def __call__(self, _settings: Settings) -> list[Job]:
        jobs = [Job("test.count", self.count, timedelta(seconds=60), timedelta(seconds=300))]
        if self.broken:
            jobs.insert(
                0, Job("test.broken", self.fail, timedelta(seconds=60), timedelta(seconds=300))
            )
        return jobs


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "home"
    monkeypatch.setenv("MEMBERGUARD_HOME", str(target))
    for name in ("DATABASE_URL", "KEY_PROVIDER", "LOG_FORMAT"):
        monkeypatch.delenv(f"MEMBERGUARD_{name}", raising=False)
    return target


@pytest.fixture
def jobs(home: Path, monkeypatch: pytest.MonkeyPatch) -> Jobs:
    run_init(Settings(home=home), echo=False)
    doubles = Jobs()
    monkeypatch.setattr(registry, "default_jobs", doubles)
    return doubles


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """The command configures logging on the runner's stderr; put it back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    yield
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    structlog.reset_defaults()


def worker(*args: str) -> Result:
    return CliRunner().invoke(main, ["worker", *args])


def test_once_runs_the_due_jobs_prints_a_line_each_and_exits(jobs: Jobs) -> None:
    result = worker("--once")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("test.count: ok, done=1 (")
    assert len(result.stdout.splitlines()) == 1
    again = worker("--once")
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("test.count: not due until 20")
    assert jobs.calls == 1


def test_once_exits_1_after_a_failed_run_and_still_runs_the_other_jobs(jobs: Jobs) -> None:
    jobs.broken = True
    result = worker("--once")
    assert result.exit_code == 1, result.output
    broken, count = result.stdout.splitlines()
    assert broken.startswith("test.broken: failed (RuntimeError); next try 20")
    assert count.startswith("test.count: ok, done=1")
    assert "Traceback" not in result.output


def test_job_runs_only_the_jobs_named(jobs: Jobs) -> None:
    jobs.broken = True
    result = worker("--once", "--job", "test.count")
    assert result.exit_code == 0, result.output
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["test.count"]


def test_an_unknown_job_is_a_usage_error_naming_the_jobs(jobs: Jobs) -> None:
    result = worker("--once", "--job", "test.nope")
    assert result.exit_code == 2
    assert "no job 'test.nope'; the jobs are: test.count" in result.stderr
    assert jobs.calls == 0


def test_status_shows_each_jobs_last_run_next_due_time_and_failures(jobs: Jobs) -> None:
    jobs.broken = True
    worker("--once")
    result = worker("status", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert list(rows) == ["test.broken", "test.count"]
    count, broken = rows["test.count"], rows["test.broken"]
    assert (count["status"], count["runs"], count["failures"]) == ("ok", 1, 0)
    assert count["last_result"] == {"done": 1} and count["every_seconds"] == 60
    assert count["next_due_at"].endswith("Z") and count["lease_owner"] is None
    assert (broken["status"], broken["last_error"], broken["failures"]) == (
        "failed",
        "RuntimeError",
        1,
    )
    text = worker("status")
    assert text.exit_code == 0, text.output
    shown = dict(line.split(None, 1) for line in text.stdout.splitlines())
    assert shown["test.count"].startswith("every 60 s")
    assert "; runs 1, failures 0" in shown["test.count"]
    assert "failed (RuntimeError, 1 in a row)" in shown["test.broken"]


def test_status_before_any_run_says_so(jobs: Jobs) -> None:
    result = worker("status")
    assert result.exit_code == 0, result.output
    assert "never run" in result.stdout and "next due at the first look" in result.stdout


def test_the_signal_handlers_are_put_back_after_a_run(jobs: Jobs) -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert worker("--once").exit_code == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_an_uninitialised_home_fails_with_the_fix(home: Path) -> None:
    result = worker("--once")
    assert result.exit_code == 2
    assert "run `memberguard init`" in result.stderr
