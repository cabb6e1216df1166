"""Pure rules of the scheduler: job declarations and the back-off of a failing job."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.settings import Settings
from worker.jobs import Job, default_jobs
from worker.leases import backoff

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def noop(_services: object) -> dict[str, int]:
    return {}


def test_backoff_doubles_from_twice_the_interval_up_to_the_cap() -> None:
    assert [backoff(MINUTE, n, HOUR) for n in range(1, 8)] == [
        2 * MINUTE,
        4 * MINUTE,
        8 * MINUTE,
        16 * MINUTE,
        32 * MINUTE,
        HOUR,
        HOUR,
    ]


def test_backoff_is_never_shorter_than_the_interval() -> None:
    assert backoff(timedelta(days=1), 1, HOUR) == timedelta(days=1)


@given(
    every=st.integers(min_value=1, max_value=7 * 86_400),
    failures=st.integers(min_value=1, max_value=10_000),
    cap=st.integers(min_value=1, max_value=7 * 86_400),
)
def test_backoff_stays_between_the_interval_and_the_larger_of_it_and_the_cap(
    every: int, failures: int, cap: int
) -> None:
    wait = backoff(timedelta(seconds=every), failures, timedelta(seconds=cap))
    assert timedelta(seconds=every) <= wait <= timedelta(seconds=max(every, cap))
    assert wait <= backoff(timedelta(seconds=every), failures + 1, timedelta(seconds=cap))


@pytest.mark.parametrize("name", ["count", "Test.count", "test.", "test count", "t." + "x" * 70])
def test_a_job_name_is_area_dot_what_in_lower_case(name: str) -> None:
    with pytest.raises(ValueError, match="job name"):
        Job(name, noop, MINUTE, MINUTE)


def test_a_job_needs_a_positive_interval_and_runtime() -> None:
    with pytest.raises(ValueError, match="> 0"):
        Job("test.count", noop, timedelta(0), MINUTE)
    with pytest.raises(ValueError, match="> 0"):
        Job("test.count", noop, MINUTE, timedelta(0))


def test_the_registry_takes_intervals_and_leases_from_the_settings() -> None:
    # No broker, whatever the environment says (with one, feed.broker joins the list).
    settings = Settings(
        amqp_url=None,
        checkpoint_job_seconds=90,
        rights_job_seconds=240,
        webhook_job_seconds=7,
        feed_reminders_job_seconds=1800,
        breach_job_seconds=600,
        worker_max_runtime_seconds=120,
    )
    lease = timedelta(seconds=120)
    assert [(job.name, job.every, job.max_runtime) for job in default_jobs(settings)] == [
        ("audit.checkpoint", timedelta(seconds=90), lease),
        ("notify.outbox", timedelta(seconds=3600), lease),
        ("rights.copies", timedelta(seconds=240), lease),
        ("rights.holds", timedelta(seconds=240), lease),
        ("rights.deadlines", timedelta(seconds=240), lease),
        ("breach.notices", timedelta(seconds=600), lease),
        ("breach.deadlines", timedelta(seconds=600), lease),
        ("feed.webhooks", timedelta(seconds=7), lease),
        ("feed.reminders", timedelta(seconds=1800), lease),
    ]
