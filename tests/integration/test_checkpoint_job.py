"""The ``audit.checkpoint`` job: a quiet log gets the checkpoint no commit came to cut.

The services fixture cuts every 50 entries or 3600 s (at a commit). Entries
committed after a checkpoint, then nothing: only the job cuts, once the hour
is up, and only once (its own entry is no reason for another).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import select

from audit.log import append_entry, read_head
from audit.models import AuditCheckpoint
from gate.context import Services
from gate.operator import cut_overdue_checkpoint
from tests.conftest import NOW, ticking_clock
from tests.integration.conftest import record
from worker.jobs import default_jobs
from worker.runner import Worker


def commit_entries(services: Services, count: int) -> None:
    for n in range(count):
        with services.uow() as uow:
            append_entry(uow.session, record(n), clock=services.clock)
            uow.commit()


def checkpoint_sizes(services: Services) -> list[int]:
    with services.reading() as session:
        return list(session.scalars(select(AuditCheckpoint.size).order_by(AuditCheckpoint.size)))


def head_size(services: Services) -> int:
    with services.reading() as session:
        return read_head(session).size


def at(services: Services, moment: timedelta) -> Services:
    """The same services, their clock ``moment`` after the suite's now."""
    return dataclasses.replace(services, clock=ticking_clock(NOW + moment))


def test_a_quiet_log_gets_its_checkpoint_once_the_interval_is_up(services: Services) -> None:
    commit_entries(services, 3)  # the first commit cuts at 1 (its entry is 2); head 4
    assert checkpoint_sizes(services) == [1]
    assert cut_overdue_checkpoint(at(services, timedelta(minutes=59))) == {"checkpoints": 0}
    assert cut_overdue_checkpoint(at(services, timedelta(hours=1, seconds=1))) == {"checkpoints": 1}
    assert checkpoint_sizes(services) == [1, 4]
    assert head_size(services) == 5  # and the entry that records it


def test_the_entry_recording_a_checkpoint_does_not_make_another_due(services: Services) -> None:
    commit_entries(services, 3)
    cut_overdue_checkpoint(at(services, timedelta(hours=1)))
    for later in (timedelta(hours=3), timedelta(days=30)):
        assert cut_overdue_checkpoint(at(services, later)) == {"checkpoints": 0}
    assert checkpoint_sizes(services) == [1, 4]
    commit_entries(services, 1)  # news: entry 6
    assert cut_overdue_checkpoint(at(services, timedelta(days=31))) == {"checkpoints": 1}
    assert checkpoint_sizes(services) == [1, 4, 6]


def test_a_log_checkpointed_at_its_last_commit_owes_nothing(services: Services) -> None:
    commit_entries(services, 1)  # cut at 1, its entry 2: nothing since
    assert cut_overdue_checkpoint(at(services, timedelta(days=1))) == {"checkpoints": 0}
    assert checkpoint_sizes(services) == [1]


def test_an_empty_log_owes_nothing(services: Services) -> None:
    assert cut_overdue_checkpoint(at(services, timedelta(days=1))) == {"checkpoints": 0}
    assert checkpoint_sizes(services) == []


def test_the_worker_runs_the_checkpoint_job_from_the_registry(services: Services) -> None:
    commit_entries(services, 3)
    later = at(services, timedelta(hours=2))
    jobs = [job for job in default_jobs(services.settings) if job.name == "audit.checkpoint"]
    assert [job.every for job in jobs] == [
        timedelta(seconds=services.settings.checkpoint_job_seconds)
    ]
    (run,) = Worker(later, jobs).run_once(NOW + timedelta(hours=2))
    assert (run.status, run.result) == ("ok", {"checkpoints": 1})
    assert checkpoint_sizes(services) == [1, 4]
