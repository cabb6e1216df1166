"""The jobs the worker runs, and the registry that lists them.

A job is a named use case run on a schedule: ``run(services)`` does its work
in its own audited units of work (which record what it changed) and returns
counts for the log and ``memberguard worker status`` (``{"expired": 3}``):
numbers only, never ids or values. Its interval and maximum runtime come from
settings that belong to the domain that owns the job.

The worker depends on the domains, not the other way round: a domain provides
the use case (``gate.operator.cut_overdue_checkpoint``, the rights domain's
``expire_copies`` …) and its settings; ``default_jobs`` plugs it in here, by
import. Code that needs other jobs passes its own list to ``Worker``
(``[*default_jobs(settings), extra]``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from pydantic import SecretStr

from core.settings import Settings
from worker.models import JOB_NAME_LENGTH

if TYPE_CHECKING:
    from gate.context import Services

# What a run reports: counts by what they count.
JobResult = Mapping[str, int]

# "area.what": lower case, as it appears in logs, the CLI and the lease table.
JOB_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    run: Callable[[Services], JobResult]
    # At most one run starts per interval, across every worker process.
    every: timedelta
    # The lease: a run that has not finished after this long is taken for
    # dead and the job is claimed again. Longer than the longest real run: a
    # slow run overtaken by its successor overlaps with it (jobs are written
    # to be idempotent, and their units of work serialise on the log head).
    max_runtime: timedelta

    def __post_init__(self) -> None:
        if len(self.name) > JOB_NAME_LENGTH or JOB_NAME.fullmatch(self.name) is None:
            raise ValueError(f"job name {self.name!r}: expected 'area.what', lower case")
        if self.every <= timedelta(0) or self.max_runtime <= timedelta(0):
            raise ValueError(f"job {self.name}: the interval and the maximum runtime must be > 0")


def default_jobs(settings: Settings) -> list[Job]:
    """Every job the domains define, with their intervals from ``settings``."""
    from gate.operator import cut_overdue_checkpoint

    lease = timedelta(seconds=settings.worker_max_runtime_seconds)
    rights_every = timedelta(seconds=settings.rights_job_seconds)
    jobs = [
        Job(
            name="audit.checkpoint",
            run=cut_overdue_checkpoint,
            every=timedelta(seconds=settings.checkpoint_job_seconds),
            max_runtime=lease,
        ),
        Job(
            name="notify.outbox",
            run=_purge_outbox,
            every=timedelta(seconds=settings.outbox_job_seconds),
            max_runtime=lease,
        ),
        Job(name="rights.copies", run=_expire_copies, every=rights_every, max_runtime=lease),
        Job(name="rights.holds", run=_release_lapsed_holds, every=rights_every, max_runtime=lease),
        Job(name="rights.deadlines", run=_flag_due_requests, every=rights_every, max_runtime=lease),
        Job(
            name="breach.notices",
            # Half the lease per run, as the broker's: the rest waits for the next run.
            run=partial(_send_breach_notices, time_budget=lease.total_seconds() / 2),
            every=timedelta(seconds=settings.breach_job_seconds),
            max_runtime=lease,
        ),
        Job(
            name="breach.deadlines",
            run=_remind_incident_deadlines,
            every=timedelta(seconds=settings.breach_job_seconds),
            max_runtime=lease,
        ),
        Job(
            name="feed.webhooks",
            run=_deliver_webhooks,
            every=timedelta(seconds=settings.webhook_job_seconds),
            max_runtime=lease,
        ),
        Job(
            name="feed.reminders",
            run=_remind_overdue_acks,
            every=timedelta(seconds=settings.feed_reminders_job_seconds),
            max_runtime=lease,
        ),
    ]
    if settings.amqp_url is not None:
        # Only with a broker: without one there is nothing to relay, and a job that always
        # reports 0 would only clutter `worker status`.
        jobs.append(
            Job(
                name="feed.broker",
                # Half the lease per run: what is left waits for the next run (an interval
                # later) rather than this one outliving its lease and being overtaken.
                run=partial(
                    _publish_to_broker,
                    url=settings.amqp_url,
                    time_budget=lease.total_seconds() / 2,
                ),
                every=timedelta(seconds=settings.broker_job_seconds),
                max_runtime=lease,
            )
        )
    return jobs


def _purge_outbox(services: Services) -> JobResult:
    # A transport's spool, not a fact about members: nothing to record in the log.
    from notify.outbox import purge_outbox

    keep = timedelta(days=services.settings.outbox_keep_days)
    directory = services.settings.resolved_outbox_dir
    return {"purged": purge_outbox(directory, sent_before=services.clock() - keep)}


# The rights domain's jobs, as counts (a job reports numbers, never ids).


def _expire_copies(services: Services) -> JobResult:
    from gate.rights_jobs import expire_copies

    return {"expired": expire_copies(services)}


def _release_lapsed_holds(services: Services) -> JobResult:
    from gate.rights_jobs import release_lapsed_holds

    return {"deletions_resumed": len(release_lapsed_holds(services))}


def _flag_due_requests(services: Services) -> JobResult:
    from gate.rights_jobs import flag_due_requests

    flagged = flag_due_requests(services)
    return {
        "due_soon": len(flagged.due_soon),
        "overdue": len(flagged.overdue),
        "notices": int(flagged.message_id is not None),
    }


# The breach workflow's jobs.


def _send_breach_notices(services: Services, *, time_budget: float) -> JobResult:
    from gate.incident_jobs import send_queued_notices

    return send_queued_notices(services, time_budget=time_budget).as_dict()


def _remind_incident_deadlines(services: Services) -> JobResult:
    from gate.incident_jobs import remind_incident_deadlines

    reminded = remind_incident_deadlines(services)
    return {"reminded": len(reminded.incidents), "failed": reminded.failed}


def _publish_to_broker(services: Services, *, url: SecretStr, time_budget: float) -> JobResult:
    # The URL is the one the job was made with (default_jobs' settings), so that the job
    # and its broker come and go together.
    from feed.broker import parse_amqp_url, publish_events

    return publish_events(
        parameters=parse_amqp_url(url.get_secret_value()),
        units=services.uow,
        read_sessions=services.read_sessions,
        time_budget=time_budget,
    ).counts()


def _deliver_webhooks(services: Services) -> JobResult:
    # A run stops claiming once half the worker's lease has passed, so that it
    # ends well before the scheduler would take it for dead.
    from worker.webhooks import Courier

    budget = timedelta(seconds=services.settings.worker_max_runtime_seconds / 2)
    return Courier.of(services).run(budget=budget)


# The change feed's: acknowledgements overdue, told to the DPO.


def _remind_overdue_acks(services: Services) -> JobResult:
    from gate.feed import remind_overdue_acks

    reminded = remind_overdue_acks(services)
    return {
        "reminded": reminded.deliveries,
        "requests": len(reminded.requests),
        "notices": int(reminded.message_id is not None),
    }
