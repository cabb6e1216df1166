"""The breach workflow's background work: sending the queued member notices, and
reminding the DPO of the authority's deadline.

**Notices, at most once each.** ``send_queued_notices`` takes a batch of
queued notices in a unit of work that reads the members' contacts through the
gate (the purpose ``breach_notification``, recorded as ``incident.contacts``),
composes each message and marks it ``sending`` (with its message id), and
commits; only then are the messages handed to the transport, and a second
unit of work marks them ``sent`` (``incident.notices``) or ``failed``. A
process that dies between the two leaves notices ``sending``: whether they
went is unknown, so they are never sent again; once older than the worker's
lease they are marked ``failed`` (``interrupted``) for the DPO to see. So a
crash, a second sender, or ``notify-members`` asked twice never sends a
member two notices; a crash may leave a batch unsent and says so.

**Reminders.** ``remind_incident_deadlines`` tells the DPO, once per
threshold, that the authority has not been told of an incident and the
deadline is near (``[breach] remind_before``) or past.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from audit import actions
from breach.clock import OVERDUE, reminder_due
from breach.incidents import (
    FAILED,
    INTERRUPTED,
    NO_CONTACT,
    QUEUED,
    SENDING,
    SENT,
    TRANSPORT,
    UNREACHABLE,
    VAULT_INTEGRITY,
    authority_clock,
    contact_decision,
)
from breach.models import BreachAffected, BreachIncident
from breach.states import Status
from gate.context import Services
from gate.rights_jobs import dpo_message, send_dpo_message
from notify import Message, NotifierError, compose
from notify.templates import jurisdiction_locale
from policies.decide import Decision
from principals.actor import Actor
from principals.signin import CHANNEL_BY_FIELD
from vault.crypto import DecryptionFailed
from vault.members import load_sealed

log = structlog.get_logger("memberguard.breach")

NOTICE_TEMPLATE = "breach_notice"
REMIND_TEMPLATE = "dpo_incident_due"
# Notices claimed per unit of work: a crash leaves at most this many unsent.
NOTICE_BATCH = 50
FIELD_BY_CHANNEL = {channel: name for name, channel in CHANNEL_BY_FIELD.items()}


@dataclass(slots=True)
class NoticeRun:
    sent: int = 0
    failed: int = 0
    unreachable: int = 0
    interrupted: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "unreachable": self.unreachable,
            "interrupted": self.interrupted,
        }


@dataclass(frozen=True, slots=True)
class _Claimed:
    incident_id: str
    member_id: str
    message: Message


def send_queued_notices(
    services: Services,
    *,
    actor: Actor | None = None,
    incident_id: str | None = None,
    request_id: str | None = None,
    time_budget: float | None = None,
    batch: int = NOTICE_BATCH,
) -> NoticeRun:
    """Send queued breach notices (of one incident, or of all), a batch at a time.

    ``actor``: the DPO whose ``notify-members`` this runs after (None: the
    worker). ``time_budget``: seconds after which no new batch is started.
    """
    run = NoticeRun(interrupted=_mark_interrupted(services))
    decision = contact_decision(services.policy)
    started = time.monotonic()
    while time_budget is None or time.monotonic() - started < time_budget:
        claimed = _claim(services, decision, actor, incident_id, request_id, batch, run)
        if claimed is None:
            break
        sent: list[_Claimed] = []
        refused: list[_Claimed] = []
        for notice in claimed:
            try:
                services.notifier.send(notice.message, now=services.clock())
            except Exception as exc:  # any transport failure: this notice did not go
                log.error(
                    "breach.notice_not_sent",
                    incident=notice.incident_id,
                    message_id=notice.message.id,
                    error_type=type(exc).__name__,
                )
                refused.append(notice)
            else:
                sent.append(notice)
        _settle(services, actor, request_id, sent, refused)
        run.sent += len(sent)
        run.failed += len(refused)
    return run


def _any_notice(services: Services, *conditions: ColumnElement[bool]) -> bool:
    """Is there a notice in this state? Asked without the log-head lock, so that a job run
    (every few minutes, usually with nothing to do) does not queue behind every writer;
    the unit of work that acts asks again under it."""
    with services.reading() as session:
        found = session.scalar(select(BreachAffected.member_id).where(*conditions).limit(1))
    return found is not None


def _mark_interrupted(services: Services) -> int:
    """Notices claimed longer ago than a run may last: their sender died. Never resent."""
    lease = timedelta(seconds=services.settings.worker_max_runtime_seconds)
    affected = BreachAffected.__table__.c
    stale = (affected.notice_status == SENDING, affected.notice_at < services.clock() - lease)
    if not _any_notice(services, *stale):
        return 0
    with services.uow() as uow:
        marked = uow.session.execute(
            update(BreachAffected.__table__)
            .where(affected.notice_status == SENDING, affected.notice_at < uow.now - lease)
            .values(notice_status=FAILED, failure=INTERRUPTED)
        ).rowcount
        uow.commit()
    if marked:
        log.warning("breach.notices_interrupted", notices=marked)
    return marked or 0


def _claim(
    services: Services,
    decision: Decision,
    actor: Actor | None,
    incident_id: str | None,
    request_id: str | None,
    batch: int,
    run: NoticeRun,
) -> list[_Claimed] | None:
    """Claim up to ``batch`` queued notices: read their contacts, compose, mark ``sending``,
    commit. None when nothing is queued."""
    queued = [BreachAffected.notice_status == QUEUED]
    if incident_id is not None:
        queued.append(BreachAffected.incident_id == incident_id)
    if not _any_notice(services, *queued):
        return None
    with services.uow() as uow:
        rows = uow.session.scalars(
            select(BreachAffected)
            .where(*queued)
            .order_by(BreachAffected.incident_id, BreachAffected.member_id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return None
        if not decision.permitted:
            # notify-members refuses without the purpose; a policy changed since leaves
            # the notices queued for the DPO to see, rather than reading contacts unchecked.
            log.error("breach.notices_refused", reason=decision.reason)
            return None
        incidents = {
            incident.id: incident
            for incident in uow.session.scalars(
                select(BreachIncident).where(
                    BreachIncident.id.in_({row.incident_id for row in rows})
                )
            )
        }
        by_incident: dict[str, list[BreachAffected]] = defaultdict(list)
        for row in rows:
            by_incident[row.incident_id].append(row)
        claimed: list[_Claimed] = []
        for incident_key, members in by_incident.items():
            incident = incidents[incident_key]
            channels = (incident.notice_channels or "").split(",")
            wanted = [
                FIELD_BY_CHANNEL[channel]
                for channel in channels
                if decision.views.get(FIELD_BY_CHANNEL.get(channel, "")) == "clear"
            ]
            uow.record(
                actions.incident_contacts_read(
                    actor,
                    policy=services.policy.version,
                    decision=_released(decision, wanted),
                    incident_id=incident.id,
                    member_ids=[row.member_id for row in members],
                    request_id=request_id,
                )
            )
            contacts = _contacts(services, uow.session, [row.member_id for row in members], wanted)
            for row in members:
                found = contacts.get(row.member_id)
                if found is None:
                    row.notice_status = UNREACHABLE
                    row.failure = VAULT_INTEGRITY if row.member_id in contacts else NO_CONTACT
                    run.unreachable += 1
                    continue
                channel, to = found
                message = compose(
                    NOTICE_TEMPLATE,
                    channel=channel,
                    to=to,
                    locale=jurisdiction_locale(services.policy.rights.jurisdiction),
                    context=_notice_context(services, incident, row),
                )
                row.notice_status = SENDING
                row.notice_channel = channel
                row.notice_message = message.id
                row.notice_at = uow.now
                claimed.append(_Claimed(incident.id, row.member_id, message))
        uow.session.flush()
        uow.commit()
    return claimed


def _released(decision: Decision, fields: Sequence[str]) -> Decision:
    """The decision narrowed to the contact fields actually read."""
    return Decision(
        outcome=decision.outcome,
        reason=decision.reason,
        purpose=decision.purpose,
        views={name: decision.views[name] for name in fields},
    )


def _contacts(
    services: Services, session: Session, member_ids: list[str], fields: list[str]
) -> dict[str, tuple[str, str] | None]:
    """Each member's first contact in ``fields`` order, (channel, address); None for a
    member whose stored contact fails its integrity check. Members with neither are left
    out."""
    found: dict[str, tuple[str, str] | None] = {}
    for member_id, sealed in load_sealed(session, member_ids, fields).items():
        try:
            values = sealed.open(services.keyring)
        except DecryptionFailed:
            log.error("breach.notice_contact_unreadable", member=member_id)
            found[member_id] = None
            continue
        for name in fields:
            value = values.get(name)
            if isinstance(value, str) and value:
                found[member_id] = (CHANNEL_BY_FIELD[name], value)
                break
    return found


def _notice_context(
    services: Services, incident: BreachIncident, row: BreachAffected
) -> dict[str, object]:
    zone = ZoneInfo(services.policy.rights.timezone)
    return {
        "programme": services.policy.programme.name,
        "incident_id": incident.id,
        "detected_date": incident.detected_at.astimezone(zone).date().isoformat(),
        "fields": sorted(json.loads(row.fields)),
        "consequences": incident.consequences or "",
        "measures": incident.measures or "",
        "member_advice": incident.member_advice or "",
        "contact": services.policy.programme.dpo,
    }


def _settle(
    services: Services,
    actor: Actor | None,
    request_id: str | None,
    sent: list[_Claimed],
    refused: list[_Claimed],
) -> None:
    """Mark what the transport took ``sent`` (recorded) and what it refused ``failed``."""
    if not sent and not refused:
        return
    with services.uow() as uow:
        for notices, status, failure in ((sent, SENT, None), (refused, FAILED, TRANSPORT)):
            for notice in notices:
                uow.session.execute(
                    update(BreachAffected)
                    .where(
                        BreachAffected.incident_id == notice.incident_id,
                        BreachAffected.member_id == notice.member_id,
                        BreachAffected.notice_message == notice.message.id,
                    )
                    .values(notice_status=status, failure=failure, notice_at=uow.now)
                )
        by_incident: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        failed_by_incident: dict[str, int] = defaultdict(int)
        for notice in sent:
            by_incident[notice.incident_id][notice.message.channel].append(notice.member_id)
        for notice in refused:
            failed_by_incident[notice.incident_id] += 1
        for incident_id in sorted(set(by_incident) | set(failed_by_incident)):
            uow.record(
                actions.incident_notices_sent(
                    actor,
                    policy=services.policy.version,
                    incident_id=incident_id,
                    template=NOTICE_TEMPLATE,
                    sent=by_incident.get(incident_id, {}),
                    failed=failed_by_incident.get(incident_id, 0),
                    request_id=request_id,
                )
            )
        uow.commit()


# -- the authority's deadline ------------------------------------------------------------


@dataclass(slots=True)
class Reminded:
    incidents: list[str] = field(default_factory=list)
    failed: int = 0


def remind_incident_deadlines(services: Services) -> Reminded:
    """One message to the DPO per incident that newly crossed a reminder threshold.

    The reminder is marked and recorded before it is sent; a send that fails
    is taken back, so the next run tries again.
    """
    rules = services.policy.breach
    thresholds = rules.reminder_hours
    ahead = timedelta(hours=thresholds[0] if thresholds else 0)
    due: list[tuple[str, str | None, Message]] = []

    def pending(now: datetime) -> tuple[ColumnElement[bool], ...]:
        return (
            BreachIncident.status != Status.CLOSED.value,
            BreachIncident.authority_notified_at.is_(None),
            BreachIncident.authority_due_at <= now + ahead,
        )

    # Asked first without the log-head lock: most runs find nothing near its deadline.
    with services.reading() as session:
        if (
            session.scalar(select(BreachIncident.id).where(*pending(services.clock())).limit(1))
            is None
        ):
            return Reminded()
    with services.uow() as uow:
        now = uow.now
        incidents = uow.session.scalars(
            select(BreachIncident)
            .where(*pending(now))
            .order_by(BreachIncident.authority_due_at, BreachIncident.id)
            .with_for_update(skip_locked=True)
        ).all()
        for incident in incidents:
            level = reminder_due(authority_clock(incident, now), thresholds, incident.reminded)
            if level is None:
                continue
            message = dpo_message(
                services,
                REMIND_TEMPLATE,
                {
                    "programme": services.policy.programme.name,
                    "incident_id": incident.id,
                    "due_at": _local_time(services, incident.authority_due_at),
                    "hours_left": 0 if level == OVERDUE else int(level),
                    "overdue": level == OVERDUE,
                },
            )
            due.append((incident.id, incident.reminded, message))
            incident.reminded = level
            uow.record(
                actions.incident_reminded(
                    policy=services.policy.version,
                    incident_id=incident.id,
                    level=level,
                    message_id=message.id,
                )
            )
        if not due:
            return Reminded()
        uow.session.flush()
        uow.commit()
    result = Reminded()
    for incident_id, previous, message in due:
        try:
            send_dpo_message(
                services,
                message,
                now=now,
                take_back=partial(_take_back, services, incident_id, previous),
            )
        except NotifierError:
            result.failed += 1
            continue
        result.incidents.append(incident_id)
    return result


def _local_time(services: Services, moment: datetime) -> str:
    zone = ZoneInfo(services.policy.rights.timezone)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _take_back(services: Services, incident_id: str, previous: str | None) -> None:
    with services.uow() as uow:
        incident = uow.session.get(BreachIncident, incident_id, with_for_update=True)
        if incident is not None:
            incident.reminded = previous
        uow.session.flush()
        uow.commit()
