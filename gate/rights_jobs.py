"""The rights workflows' scheduled jobs, as plain use cases for a worker to run.

- ``expire_copies``: destroys access copies past their expiry, one entry each;
- ``release_lapsed_holds``: records holds whose ``until`` has passed and runs
  the deletions that waited only on them (each member told once the batch
  has committed: ``gate.rights_notices``);
- ``flag_due_requests``: tells the DPO, in one message, of open requests due
  within 3 working days and of overdue ones.

Each run is one or more audited units of work, and safe with several
workers: every unit of work takes the log-head lock first, so runs never
overlap, and on PostgreSQL and MySQL the rows are also taken with ``FOR
UPDATE SKIP LOCKED`` (SQLite serialises writers anyway). Nothing reads the
wall clock: each unit of work's ``now`` comes from the services' clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

import structlog
from sqlalchemy import select

from audit import actions
from gate.context import Services
from gate.rights import resume_deletions
from gate.rights_notices import RequestNotices, deliver
from notify import Message, NotifierError, compose
from notify.templates import jurisdiction_locale
from rights.copy import expired_copies
from rights.deadlines import working_days_left
from rights.holds import lapsed_holds, record_lapse
from rights.models import RightsRequest
from rights.states import OPEN
from vault.members import member_exists

log = structlog.get_logger("memberguard.rights")

BATCH = 100
DUE_SOON_WORKING_DAYS = 3
DUE_TEMPLATE = "dpo_requests_due"
# No span of 3 working days is longer than this, Spring Festival included: the
# query's bound, before each request's working days are counted exactly.
_SCAN_AHEAD = timedelta(days=31)
DUE_SOON, OVERDUE = "due_soon", "overdue"


def expire_copies(services: Services) -> int:
    """Destroy every copy whose time is up; how many were destroyed."""
    destroyed = 0
    while True:
        with services.uow() as uow:
            rows = expired_copies(uow.session, now=uow.now, limit=BATCH)
            if not rows:
                return destroyed
            for row in rows:
                uow.record(
                    actions.copy_changed(
                        None,
                        policy=services.policy.version,
                        member_id=row.member_id,
                        rights_request=row.request_id,
                        event="expired",
                        expires_at=row.expires_at,
                        request_id=None,
                    )
                )
                uow.session.delete(row)
            uow.session.flush()
            uow.commit()
        destroyed += len(rows)


def release_lapsed_holds(services: Services) -> list[str]:
    """Record every hold whose end has passed; run the deletions no hold blocks any more.

    Returns the ids of the deletion requests that ran.
    """
    resumed: list[str] = []
    while True:
        notices = RequestNotices(services)
        with services.uow() as uow:
            holds = lapsed_holds(uow.session, now=uow.now, limit=BATCH)
            if not holds:
                return resumed
            for hold in holds:
                record_lapse(hold)
                uow.record(
                    actions.hold_changed(
                        None,
                        policy=services.policy.version,
                        member_id=hold.member_id,
                        hold=hold.id,
                        event="lapsed",
                        ends_at=hold.ends_at,
                        request_id=None,
                    )
                )
            uow.session.flush()
            for member_id in sorted({hold.member_id for hold in holds}):
                if member_exists(uow.session, member_id):
                    resumed += resume_deletions(
                        uow, services, member_id, None, notices=notices, request_id=None
                    )
            uow.commit()
        deliver(services, notices.pending, actor=None, request_id=None)


@dataclass(frozen=True, slots=True)
class Flagged:
    due_soon: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)
    message_id: str | None = None


def flag_due_requests(services: Services) -> Flagged:
    """One notice to the DPO naming the open requests that newly crossed a threshold.

    Each request is flagged once per threshold and due date: ``due_soon`` (3
    working days or fewer left, on the policy's calendar) and then
    ``overdue``; an extension moves the due date and starts over. The flags
    and their entry commit before the message is sent; if sending fails, the
    flags are taken back (so the next run tries again) and ``NotifierError``
    is raised. Nothing is sent when nothing newly crossed.
    """
    rights = services.policy.rights
    with services.uow() as uow:
        now = uow.now
        rows = uow.session.scalars(
            select(RightsRequest)
            .where(
                RightsRequest.status.in_([s.value for s in OPEN]),
                RightsRequest.due_at <= now + _SCAN_AHEAD,
            )
            .order_by(RightsRequest.due_at, RightsRequest.id)
            .with_for_update(skip_locked=True)
        ).all()
        flagged = Flagged()
        for request in rows:
            if now > request.due_at:
                level = OVERDUE
            elif (
                working_days_left(
                    now,
                    request.due_at,
                    timezone=rights.timezone,
                    jurisdiction=rights.jurisdiction,
                    public_holidays=rights.public_holidays,
                )
                <= DUE_SOON_WORKING_DAYS
            ):
                level = DUE_SOON
            else:
                continue
            if request.due_flag in (level, OVERDUE):
                continue
            request.due_flag, request.due_flagged_at = level, now
            (flagged.overdue if level == OVERDUE else flagged.due_soon).append(request.id)
        if not (flagged.due_soon or flagged.overdue):
            return flagged
        message = dpo_message(
            services,
            DUE_TEMPLATE,
            {
                "programme": services.policy.programme.name,
                "due_soon": flagged.due_soon,
                "overdue": flagged.overdue,
                "working_days": DUE_SOON_WORKING_DAYS,
            },
        )
        uow.record(
            actions.requests_flagged(
                policy=services.policy.version,
                due_soon=flagged.due_soon,
                overdue=flagged.overdue,
                message_id=message.id,
            )
        )
        uow.session.flush()
        uow.commit()
    send_dpo_message(
        services,
        message,
        now=now,
        take_back=partial(
            _take_back, services, [*flagged.due_soon, *flagged.overdue], flagged_at=now
        ),
    )
    return Flagged(flagged.due_soon, flagged.overdue, message.id)


def dpo_message(services: Services, template: str, context: dict[str, object]) -> Message:
    """A message to the DPO: ``MEMBERGUARD_DPO_CONTACT``, else the policy's
    ``programme.dpo_contact`` (or its ``controller_contact``); by e-mail to an address,
    else by SMS; in Chinese under the CN profile, else in English."""
    contact = services.settings.dpo_contact or services.policy.programme.dpo
    return compose(
        template,
        channel="email" if "@" in contact else "sms",
        to=contact,
        locale=jurisdiction_locale(services.policy.rights.jurisdiction),
        context=context,
    )


def send_dpo_message(
    services: Services, message: Message, *, now: datetime, take_back: Callable[[], None]
) -> None:
    """Send a message to the DPO whose job committed what it tells (flags, reminders),
    then record ``notice.sent`` (no actor: a job sent it).

    If the transport refuses, ``take_back`` undoes the job's marks, so that its
    next run tries again, and ``NotifierError`` is raised.
    """
    try:
        services.notifier.send(message, now=now)
    except NotifierError:
        log.error("dpo.notice_not_sent", template=message.template, message=message.id)
        take_back()
        raise
    with services.uow() as uow:
        uow.record(
            actions.notice_sent(
                None,
                policy=services.policy.version,
                member_id=None,
                template=message.template,
                channel=message.channel,
                message_id=message.id,
                request_id=None,
            )
        )
        uow.commit()


def _take_back(services: Services, request_ids: list[str], *, flagged_at: datetime) -> None:
    """Unflag what this run flagged (and nothing flagged since), so the next run retries."""
    with services.uow() as uow:
        for request in uow.session.scalars(
            select(RightsRequest).where(RightsRequest.id.in_(request_ids)).with_for_update()
        ):
            if request.due_flagged_at == flagged_at:
                request.due_flag, request.due_flagged_at = None, None
        uow.session.flush()
        uow.commit()
