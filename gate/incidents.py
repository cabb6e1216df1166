"""Breach incidents (role ``dpo``): open, assess, record the authority's notification,
notify the members, close; the affected list and the regulator report.

Each step is one audited unit of work: the incident's new status, its timeline
line and the ``incident.change`` entry commit together. Reads that hand
something out (the affected list, the report) record their entry and commit
it before anything leaves; listing and showing an incident record nothing (ids,
counts and the DPO's own texts).

The affected members are fixed when the incident is opened (``breach.scope``),
under the log-head lock, so the list is exactly what the log held at that
moment and cannot change under the notices. Notices to members are queued by
``notify_members`` and sent by ``gate.incident_jobs.send_queued_notices``
(after the response, and by the worker for whatever is left).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm import Session

from audit import actions
from audit.uow import AuditedUnitOfWork
from breach.clock import authority_deadline
from breach.incidents import (
    BREACH_PURPOSE,
    FAILED,
    QUEUED,
    SHREDDED,
    TRANSPORT,
    UNREACHABLE,
    brief_view,
    canonical,
    contact_decision,
    get_incident,
    incident_view,
    named_ids,
    notice_totals,
    take_step,
)
from breach.models import (
    AUTHORITY_LENGTH,
    REFERENCE_LENGTH,
    TEXT_LENGTH,
    TITLE_LENGTH,
    BreachAffected,
    BreachIncident,
)
from breach.report import (
    FORMATS,
    LOCALES,
    MEDIA_TYPES,
    build_report,
    render_html,
    render_pdf,
    report_filename,
)
from breach.scope import (
    AllScope,
    ClientScope,
    Exposure,
    MembersScope,
    Scope,
    ScopeKind,
    Summary,
    held_by_vault,
    member_batches,
    released_to,
    unknown_members,
)
from breach.states import AuthorityAlreadyNotified, Status, Step, after
from breach.terms import NOTICE_CHANNELS
from core.clock import to_micros
from core.errors import Conflict, InvalidInput
from core.ids import is_valid_id, new_id
from feed.events import EventType, emit
from gate.context import Services
from notify.templates import jurisdiction_locale
from policies.model import SEVERITIES, Severity
from principals.actor import Actor
from principals.clients import actor_names, find_client
from principals.models import GateClient

DPO_ROLE = "dpo"
CHANNELS = NOTICE_CHANNELS
# Members named in one scope of kind "members" (a bigger set is an "all" or a file).
MAX_SCOPE_MEMBERS = 10_000
INSERT_BATCH = 1000

Defer = Callable[[Callable[[], None]], None]


def _send_now(task: Callable[[], None]) -> None:
    task()


class NoBreachPurpose(Conflict):
    """The policy defines no ``breach_notification`` purpose: contacts cannot be read."""

    def __init__(self) -> None:
        super().__init__(
            f"the policy defines no purpose {BREACH_PURPOSE!r} (legal_obligation) to read "
            "members' contacts under",
            slug="breach-purpose-missing",
        )


def _zone(services: Services) -> ZoneInfo:
    return ZoneInfo(services.policy.rights.timezone)


def _invalid(field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{field}: {problem}", errors=[{"field": field, "problem": problem}])


# -- opening -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScopeRequest:
    """A scope as asked for, checked for shape before any lock; the facts it names (the
    client, the members) are checked under it."""

    kind: ScopeKind
    client: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    member_ids: tuple[str, ...] = ()

    @classmethod
    def check(cls, scope: Mapping[str, Any]) -> ScopeRequest:
        try:
            kind = ScopeKind(scope.get("kind"))
        except ValueError:
            raise _invalid("scope.kind", "must be client, members or all") from None
        allowed = {
            ScopeKind.CLIENT: {"kind", "client", "from", "to"},
            ScopeKind.MEMBERS: {"kind", "member_ids"},
            ScopeKind.ALL: {"kind"},
        }[kind]
        extra = sorted(set(scope) - allowed)
        if extra:
            raise _invalid(f"scope.{extra[0]}", f"not allowed for a scope of kind {kind.value}")
        if kind is ScopeKind.CLIENT:
            client, start, end = scope.get("client"), scope.get("from"), scope.get("to")
            if not isinstance(client, str) or not client:
                raise _invalid("scope.client", "the client's id or name is required")
            if not isinstance(start, datetime):
                raise _invalid("scope.from", "a date-time with a time zone is required")
            if end is not None and not isinstance(end, datetime):
                raise _invalid("scope.to", "must be a date-time with a time zone")
            if end is not None and end <= start:
                raise _invalid("scope.to", "must be after from")
            return cls(kind, client=client, start=start, end=end)
        if kind is ScopeKind.MEMBERS:
            ids = scope.get("member_ids")
            if not isinstance(ids, list) or not ids or len(ids) > MAX_SCOPE_MEMBERS:
                raise _invalid("scope.member_ids", f"a list of 1 to {MAX_SCOPE_MEMBERS} member ids")
            if not all(isinstance(item, str) and is_valid_id(item) for item in ids):
                raise _invalid("scope.member_ids", "holds a value that is not a member id")
            return cls(kind, member_ids=tuple(sorted(set(ids))))
        return cls(kind)

    def resolve(self, session: Session, now: datetime) -> Scope:
        """The scope with its facts checked: the client exists, the members do, the
        window is not in the future. An open window ends now."""
        if self.kind is ScopeKind.CLIENT:
            assert self.client is not None and self.start is not None
            client = find_client(session, self.client)
            if client is None:
                raise _invalid("scope.client", "no such client")
            if self.start > now:
                raise _invalid("scope.from", "is in the future")
            end = self.end if self.end is not None else now
            if end > now:
                raise _invalid("scope.to", "is in the future")
            return ClientScope(client_id=client.id, start=self.start, end=end)
        if self.kind is ScopeKind.MEMBERS:
            unknown = unknown_members(session, self.member_ids)
            if unknown:
                raise _invalid("scope.member_ids", f"{len(unknown)} of them are no member")
            return MembersScope(self.member_ids)
        return AllScope()


def _text(field: str, value: str, limit: int) -> str:
    """A DPO's text: not blank, at most ``limit`` characters (the API's schema says the
    same; the CLI and the console come through here too)."""
    if not value.strip():
        raise _invalid(field, "must not be blank")
    if len(value) > limit:
        raise _invalid(field, f"at most {limit} characters")
    return value


def _check_severity(severity: str) -> Severity:
    if severity not in SEVERITIES:
        raise _invalid("severity", f"must be one of {', '.join(SEVERITIES)}")
    return severity  # type: ignore[return-value]  # checked against the Literal's values


def open_incident(
    services: Services,
    *,
    actor: Actor,
    title: str,
    description: str,
    detected_at: datetime,
    severity: str,
    scope: Mapping[str, Any],
    request_id: str | None,
) -> dict[str, Any]:
    """Open an incident and fix its affected members from the log (``breach.scope``).

    ``detected_at``: when the organisation became aware; the authority's
    deadline counts from it, and it cannot be in the future. The DPO keys are
    told on the change feed (``incident.opened``).
    """
    actor.require_role(DPO_ROLE)
    _text("title", title, TITLE_LENGTH)
    _text("description", description, TEXT_LENGTH)
    level = _check_severity(severity)
    asked = ScopeRequest.check(scope)
    with services.uow(actor) as uow:
        now = uow.now
        if detected_at > now:
            raise _invalid("detected_at", "is in the future")
        resolved = asked.resolve(uow.session, now)
        due, rule = authority_deadline(services.policy.breach, level, detected_at)
        incident = BreachIncident(
            id=new_id(),
            title=title,
            description=description,
            severity=level,
            status=Status.OPEN.value,
            scope=canonical(resolved.describe()),
            detected_at=detected_at,
            opened_at=now,
            opened_by=actor.id,
            authority_due_at=due,
            authority_rule=rule,
            affected="{}",
        )
        uow.session.add(incident)
        uow.session.flush()
        summary = _write_affected(uow.session, services, incident.id, resolved)
        incident.affected = canonical(summary.as_dict())
        facts = {"severity": level, "scope": resolved.kind.value, "members": summary.members}
        take_step(
            uow.session,
            incident,
            Step.OPENED,
            at=now,
            actor=actor.id,
            detail={**facts, "authority_due_at": due.astimezone(_zone(services)).isoformat()},
        )
        uow.record(
            actions.incident_changed(
                actor,
                policy=services.policy.version,
                incident_id=incident.id,
                step=Step.OPENED.value,
                status=incident.status,
                detail={**facts, "authority_due_at": to_micros(due)},
                request_id=request_id,
            )
        )
        emit(
            uow.session,
            type=EventType.INCIDENT_OPENED,
            data={"incident_id": incident.id},
            recipients=_staff_recipients(uow.session),
            now=now,
        )
        names = actor_names(uow.session, named_ids(incident))
        shown = incident_view(incident, now=now, zone=_zone(services), names=names)
        uow.commit()
        return shown


def _staff_recipients(session: Session) -> list[str]:
    """The active DPO keys: who runs incidents reads ``incident.opened`` on their feed."""
    return list(
        session.scalars(
            select(GateClient.id).where(
                GateClient.role == DPO_ROLE, GateClient.revoked_at.is_(None)
            )
        )
    )


def _write_affected(
    session: Session, services: Services, incident_id: str, scope: Scope
) -> Summary:
    batches: Iterable[Mapping[str, Exposure]]
    if isinstance(scope, ClientScope):
        batches = [released_to(session, scope.client_id, scope.start, scope.end)]
    elif isinstance(scope, MembersScope):
        batches = [held_by_vault(session, scope.member_ids)]
    else:  # the whole vault, a batch of members at a time
        batches = (held_by_vault(session, ids) for ids in member_batches(session))
    summary = Summary()
    for exposures in batches:
        _insert_affected(session, services, incident_id, exposures, summary)
    return summary


def _insert_affected(
    session: Session,
    services: Services,
    incident_id: str,
    exposures: Mapping[str, Exposure],
    summary: Summary,
) -> None:
    rows = []
    for member_id in sorted(exposures):
        exposure = exposures[member_id]
        summary.add(services.policy, exposure)
        rows.append(
            {
                "incident_id": incident_id,
                "member_id": member_id,
                "fields": exposure.fields_json(),
                "identity": exposure.identity,
                "records": exposure.records,
                "shredded": exposure.shredded,
                # A crypto-shredded member has nothing left to be reached by.
                "notice_status": UNREACHABLE if exposure.shredded else None,
                "failure": SHREDDED if exposure.shredded else None,
            }
        )
    for start in range(0, len(rows), INSERT_BATCH):
        session.execute(insert(BreachAffected), rows[start : start + INSERT_BATCH])


# -- steps -----------------------------------------------------------------------------


def _step(
    services: Services,
    *,
    actor: Actor,
    incident_id: str,
    step: Step,
    request_id: str | None,
    change: Callable[[AuditedUnitOfWork, BreachIncident], Mapping[str, Any]],
) -> dict[str, Any]:
    """One step: lock the incident, let ``change`` apply it (returning the step's facts
    for the timeline and the entry), move the status, record, commit."""
    actor.require_role(DPO_ROLE)
    with services.uow(actor) as uow:
        incident = get_incident(uow.session, incident_id, lock=True)
        after(Status(incident.status), step)  # refuses a step the status does not allow
        facts = dict(change(uow, incident))
        take_step(uow.session, incident, step, at=uow.now, actor=actor.id, detail=facts)
        uow.record(
            actions.incident_changed(
                actor,
                policy=services.policy.version,
                incident_id=incident.id,
                step=step.value,
                status=incident.status,
                detail={k: v for k, v in facts.items() if k in _ENTRY_FACTS},
                request_id=request_id,
            )
        )
        names = actor_names(uow.session, named_ids(incident))
        shown = incident_view(incident, now=uow.now, zone=_zone(services), names=names)
        uow.commit()
        return shown


# Facts of a step that the audit entry repeats: counts, flags, times. The DPO's
# words (the authority's name, its reference, texts) stay with the incident.
_ENTRY_FACTS = frozenset({"queued", "channels", "deadline_met", "revised"})


def assess_incident(
    services: Services,
    *,
    actor: Actor,
    incident_id: str,
    consequences: str,
    measures: str,
    member_advice: str,
    request_id: str | None,
) -> dict[str, Any]:
    """Record (or revise) what the incident likely means for members, what was done about
    it, and what members can do themselves: the report's and the notices' substance."""
    _text("consequences", consequences, TEXT_LENGTH)
    _text("measures", measures, TEXT_LENGTH)
    _text("member_advice", member_advice, TEXT_LENGTH)

    def change(uow: AuditedUnitOfWork, incident: BreachIncident) -> Mapping[str, Any]:
        revised = incident.assessed_at is not None
        incident.consequences = consequences
        incident.measures = measures
        incident.member_advice = member_advice
        incident.assessed_at = uow.now
        return {"revised": revised}

    return _step(
        services,
        actor=actor,
        incident_id=incident_id,
        step=Step.ASSESSED,
        request_id=request_id,
        change=change,
    )


def record_authority_notified(
    services: Services,
    *,
    actor: Actor,
    incident_id: str,
    at: datetime,
    authority: str,
    reference: str | None,
    request_id: str | None,
) -> dict[str, Any]:
    """The authority was told (GDPR Art. 33, PIPL Art. 57), at ``at``: once, not in the
    future, not before the incident was detected."""
    _text("authority", authority, AUTHORITY_LENGTH)
    if reference is not None:
        _text("reference", reference, REFERENCE_LENGTH)

    def change(uow: AuditedUnitOfWork, incident: BreachIncident) -> Mapping[str, Any]:
        if incident.authority_notified_at is not None:
            raise AuthorityAlreadyNotified()
        if at > uow.now:
            raise _invalid("at", "is in the future")
        if at < incident.detected_at:
            raise _invalid("at", "is before the incident was detected")
        incident.authority_notified_at = at
        incident.authority = authority
        incident.authority_reference = reference
        return {
            "notified_at": at.astimezone(_zone(services)).isoformat(),
            "authority": authority,
            "reference": reference,
            "deadline_met": at <= incident.authority_due_at,
        }

    return _step(
        services,
        actor=actor,
        incident_id=incident_id,
        step=Step.AUTHORITY_NOTIFIED,
        request_id=request_id,
        change=change,
    )


def close_incident(
    services: Services, *, actor: Actor, incident_id: str, summary: str, request_id: str | None
) -> dict[str, Any]:
    _text("summary", summary, TEXT_LENGTH)

    def change(uow: AuditedUnitOfWork, incident: BreachIncident) -> Mapping[str, Any]:
        incident.closed_at = uow.now
        incident.summary = summary
        return {}

    return _step(
        services,
        actor=actor,
        incident_id=incident_id,
        step=Step.CLOSED,
        request_id=request_id,
        change=change,
    )


def check_channels(channels: Sequence[str]) -> tuple[str, ...]:
    if not channels or len(set(channels)) != len(channels):
        raise _invalid("channels", "a list of sms and/or email, each once")
    unknown = [channel for channel in channels if channel not in CHANNELS]
    if unknown:
        raise _invalid("channels", "must be sms or email")
    return tuple(channels)


def notify_members(
    services: Services,
    *,
    actor: Actor,
    incident_id: str,
    channels: Sequence[str],
    request_id: str | None,
    defer: Defer = _send_now,
) -> dict[str, int]:
    """Queue one notice per affected member who can be reached (GDPR Art. 34, PIPL Art. 57).

    ``channels``: the ones that may be used, in order of preference: each member
    gets one notice, by the first channel they have a contact for. Asking again
    queues only the members never queued, and those whose transport refused
    their notice: a member is never sent two. The sending runs after the
    commit (``defer``) and in the worker (``breach.notices``); the totals
    returned are those right after queueing.
    """
    wanted = check_channels(channels)
    decision = contact_decision(services.policy)
    if not decision.permitted:
        raise NoBreachPurpose()

    def change(uow: AuditedUnitOfWork, incident: BreachIncident) -> Mapping[str, Any]:
        affected = BreachAffected.__table__.c
        queued = uow.session.execute(
            update(BreachAffected.__table__)
            .where(
                affected.incident_id == incident.id,
                or_(
                    affected.notice_status.is_(None),
                    and_(affected.notice_status == FAILED, affected.failure == TRANSPORT),
                ),
            )
            .values(notice_status=QUEUED, failure=None, notice_at=None)
        ).rowcount
        incident.notice_channels = ",".join(wanted)
        if incident.members_notified_at is None:
            incident.members_notified_at = uow.now
        return {"queued": queued or 0, "channels": list(wanted)}

    _step(
        services,
        actor=actor,
        incident_id=incident_id,
        step=Step.MEMBERS_NOTIFIED,
        request_id=request_id,
        change=change,
    )
    from gate.incident_jobs import send_queued_notices

    defer(
        partial(
            send_queued_notices,
            services,
            actor=actor,
            incident_id=incident_id,
            request_id=request_id,
        )
    )
    return incident_notices(services, actor=actor, incident_id=incident_id)


# -- reads -------------------------------------------------------------------------------


def list_incidents(
    services: Services, *, actor: Actor, status: Status | None = None
) -> list[dict[str, Any]]:
    """Incidents by authority deadline, earliest first (records nothing)."""
    actor.require_role(DPO_ROLE)
    with services.reading() as session:
        statement = select(BreachIncident).order_by(
            BreachIncident.authority_due_at, BreachIncident.id
        )
        if status is not None:
            statement = statement.where(BreachIncident.status == status.value)
        now = services.clock()
        return [
            brief_view(incident, now=now, zone=_zone(services))
            for incident in session.scalars(statement)
        ]


def show_incident(services: Services, *, actor: Actor, incident_id: str) -> dict[str, Any]:
    actor.require_role(DPO_ROLE)
    with services.reading() as session:
        incident = get_incident(session, incident_id)
        names = actor_names(session, named_ids(incident))
        view = incident_view(incident, now=services.clock(), zone=_zone(services), names=names)
        view["notices"] = notice_totals(session, incident.id)
        return view


def incident_notices(services: Services, *, actor: Actor, incident_id: str) -> dict[str, int]:
    actor.require_role(DPO_ROLE)
    with services.reading() as session:
        get_incident(session, incident_id)
        return notice_totals(session, incident_id)


@dataclass(frozen=True, slots=True)
class AffectedList:
    lines: Iterator[dict[str, Any]]
    audit_seq: int


def affected_members(
    services: Services, *, actor: Actor, incident_id: str, request_id: str | None
) -> AffectedList:
    """The affected members, one per line in id order: recorded (``incident.affected``) and
    committed before the first line is read."""
    actor.require_role(DPO_ROLE)
    with services.uow(actor) as uow:
        incident = get_incident(uow.session, incident_id)
        members = json.loads(incident.affected).get("members", 0)
        seq = uow.record(
            actions.incident_affected_read(
                actor,
                policy=services.policy.version,
                incident_id=incident.id,
                members=members,
                request_id=request_id,
            )
        )
        uow.commit()
    return AffectedList(lines=_affected_lines(services, incident_id), audit_seq=seq)


def _affected_lines(services: Services, incident_id: str) -> Iterator[dict[str, Any]]:
    after = ""
    with services.reading() as session:
        while True:
            rows = session.scalars(
                select(BreachAffected)
                .where(BreachAffected.incident_id == incident_id, BreachAffected.member_id > after)
                .order_by(BreachAffected.member_id)
                .limit(INSERT_BATCH)
            ).all()
            if not rows:
                return
            for row in rows:
                views = json.loads(row.fields)
                yield {
                    "member_id": row.member_id,
                    "fields": sorted(views),
                    "views": views,
                    "identity": row.identity,
                    "records": row.records,
                    "shredded": row.shredded,
                    "notice": row.notice_status,
                    "notice_failure": row.failure,
                }
            after = rows[-1].member_id


@dataclass(frozen=True, slots=True)
class Report:
    media_type: str
    body: bytes
    filename: str
    audit_seq: int


def incident_report(
    services: Services,
    *,
    actor: Actor,
    incident_id: str,
    report_format: str,
    locale: str | None,
    request_id: str | None,
) -> Report:
    """The regulator report (GDPR Art. 33(3), PIPL Art. 57) in ``locale`` (zh-CN or en;
    by default the policy jurisdiction's), recorded before it is handed out."""
    actor.require_role(DPO_ROLE)
    if report_format not in FORMATS:
        raise _invalid("format", f"must be one of {', '.join(FORMATS)}")
    if locale is None:
        locale = jurisdiction_locale(services.policy.rights.jurisdiction)
    if locale not in LOCALES:
        raise _invalid("lang", f"must be one of {', '.join(LOCALES)}")
    with services.uow(actor) as uow:
        incident = get_incident(uow.session, incident_id)
        names = actor_names(uow.session, named_ids(incident))
        report = build_report(
            incident_view(incident, now=uow.now, zone=_zone(services), names=names),
            policy=services.policy,
            notices=notice_totals(uow.session, incident.id),
            generated_at=uow.now,
            locale=locale,
        )
        if report_format == "json":
            body = json.dumps(report, ensure_ascii=False, indent=2).encode()
        else:
            html = render_html(report)
            body = render_pdf(html) if report_format == "pdf" else html.encode()
        seq = uow.record(
            actions.incident_reported(
                actor,
                policy=services.policy.version,
                incident_id=incident.id,
                report_format=report_format,
                locale=locale,
                request_id=request_id,
            )
        )
        uow.commit()
    return Report(
        media_type=MEDIA_TYPES[report_format],
        body=body,
        filename=report_filename(incident_id, report_format, locale),
        audit_seq=seq,
    )
