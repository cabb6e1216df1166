"""Members' rights requests: submit, approve, reject, extend, cancel, show, download the copy.

Each change is one audited unit of work: the request's new state, its history
line and the audit entry that records it commit together, and whatever the
request does (a correction written into the vault, a crypto-shred, a sealed
copy) commits with them. Who may do what:

- the member (their own requests, ``/v1/me/requests``): submit, cancel, show,
  download their copy;
- a client with ``rights:submit`` (the brand app, customer service): submit
  on a member's behalf, saying how it verified them;
- the DPO (role ``dpo``; the operator at the CLI acts in that role): the
  queue, approve, reject, extend, holds (``gate.holds``).

Listing and showing record nothing: a request holds ids, field names and
times, never a member's value.

The member is told of their request's new state (received, completed,
rejected, on hold) by a message composed inside the unit of work and sent
after it commits (``gate.rights_notices``); a send that fails leaves the
request as it was committed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from audit import actions
from audit.queries import EARLIEST
from audit.uow import AuditedUnitOfWork
from core.errors import Conflict, Gone, InvalidInput, NotFound
from core.ids import is_valid_id
from feed.acks import request_recipients
from feed.events import member_corrected, member_deleted, recipients_of_event
from gate.context import Services
from gate.me import access_log_item
from gate.rights_notices import COMPLETED, Defer, RequestNotices, send_now
from notify.templates import DEFAULT_LOCALE
from principals.actor import Actor
from principals.clients import actor_names
from principals.members import MEMBER_ROLE
from rights import copy as copies
from rights.corrections import (
    check_changes,
    discard_changes,
    open_changes,
    seal_changes,
    split_changes,
)
from rights.deadlines import extend_request, request_deadline
from rights.erasure import erase_member
from rights.holds import active_holds
from rights.models import RightsCopy, RightsRequest
from rights.requests import (
    CHANNEL_MEMBER,
    CHANNEL_RELAYED,
    QueueFilter,
    Verification,
    deadline_of,
    extend_deadline,
    get_request,
    member_request,
    member_requests,
    move,
    new_request,
    on_hold_deletions,
    open_requests,
    page_queue,
    request_recipients_of,
    request_view,
)
from rights.states import OPEN, Event, RequestType, Status, advance
from vault.members import Value, member_exists, update_member

DPO_ROLE = "dpo"


class RequestOpen(Conflict):
    """The member already has an open request that this one would duplicate or race."""

    def __init__(self, detail: str, *, existing: str) -> None:
        super().__init__(detail, slug="request-open", existing_request=existing)


class NotAwaitingApproval(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "the request is not waiting for a DPO's approval", slug="not-awaiting-approval"
        )


class CopyExpired(Gone):
    """The access copy existed and has expired (or been destroyed): ask again."""

    slug = "copy-expired"
    title = "Copy expired"


@dataclass(frozen=True, slots=True)
class Shown:
    """A request as the API shows it, and the entry that recorded the change (if any)."""

    request: dict[str, Any]
    audit_seq: int | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


# -- submitting ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submission:
    """What the member asks, checked before any lock: a bad type, a change the policy
    refuses or a value that does not validate is a 422, and nothing is stored."""

    request_type: RequestType
    changes: dict[str, Value | None]

    @classmethod
    def check(
        cls, services: Services, request_type: str, changes: Mapping[str, Any] | None
    ) -> Submission:
        try:
            kind = RequestType(request_type)
        except ValueError:
            raise InvalidInput(
                "unknown request type",
                errors=[{"field": "type", "problem": "must be access, correction or deletion"}],
            ) from None
        if kind is not RequestType.CORRECTION:
            if changes is not None:
                raise InvalidInput(
                    "only a correction has changes",
                    errors=[{"field": "changes", "problem": f"not allowed for {kind.value}"}],
                )
            return cls(kind, {})
        clean = check_changes(services.policy, changes or {}, today=services.clock().date())
        return cls(kind, clean)


def submit_own_request(
    services: Services,
    *,
    actor: Actor,
    request_type: str,
    changes: Mapping[str, Any] | None,
    request_id: str | None,
    locale: str = DEFAULT_LOCALE,
    defer: Defer = send_now,
) -> Shown:
    """A signed-in member's request about themselves (``POST /v1/me/requests``).

    ``locale``: the language of the member's message (``gate.rights_notices``),
    the one they asked in; ``defer`` runs its sending once the answer is on its
    way (by default at once, after the commit).
    """
    actor.require_role(MEMBER_ROLE)
    submission = Submission.check(services, request_type, changes)
    return _submit(
        services,
        actor=actor,
        member_id=actor.id,
        submission=submission,
        channel=CHANNEL_MEMBER,
        verification=None,
        received_at=None,
        request_id=request_id,
        notices=RequestNotices(services, locale=locale),
        defer=defer,
    )


def submit_relayed_request(
    services: Services,
    *,
    actor: Actor,
    member_id: str,
    request_type: str,
    changes: Mapping[str, Any] | None,
    verification: Verification,
    received_at: datetime | None,
    request_id: str | None,
    defer: Defer = send_now,
) -> Shown:
    """A request a client relays for a member it verified (``POST /v1/members/{id}/requests``).

    ``received_at``: when the member made it (a letter that arrived last week is
    due from last week); never in the future. The member is told in the
    default language: the client's is not necessarily theirs.
    """
    actor.require_scope("rights:submit")
    if not is_valid_id(member_id):
        raise NotFound("no such member")
    submission = Submission.check(services, request_type, changes)
    if received_at is not None:
        if received_at.tzinfo is None:
            raise InvalidInput("received_at needs a time zone")
        if received_at > services.clock():
            raise InvalidInput(
                "received_at is in the future",
                errors=[{"field": "received_at", "problem": "must not be in the future"}],
            )
        if received_at < EARLIEST:
            raise InvalidInput(
                "received_at is too far in the past",
                errors=[{"field": "received_at", "problem": "must be after 2000-01-01"}],
            )
    return _submit(
        services,
        actor=actor,
        member_id=member_id,
        submission=submission,
        channel=CHANNEL_RELAYED,
        verification=verification,
        received_at=received_at,
        request_id=request_id,
        notices=RequestNotices(services),
        defer=defer,
    )


def _submit(
    services: Services,
    *,
    actor: Actor,
    member_id: str,
    submission: Submission,
    channel: str,
    verification: Verification | None,
    received_at: datetime | None,
    request_id: str | None,
    notices: RequestNotices,
    defer: Defer,
) -> Shown:
    policy = services.policy
    kind = submission.request_type
    with services.uow(actor) as uow:
        session = uow.session
        if not member_exists(session, member_id):
            raise NotFound("no such member")
        notices.remember_contact(session, member_id)  # before a correction or deletion
        received = received_at if received_at is not None else uow.now
        _refuse_duplicates(session, member_id, submission, now=uow.now)
        request = new_request(
            session,
            request_type=kind,
            member_id=member_id,
            channel=channel,
            received_at=received,
            deadline=request_deadline(policy.rights, kind.value, received_at=received),
            fields=list(submission.changes),
            relayed_by=actor.id if channel == CHANNEL_RELAYED else None,
            verification=verification,
            actor=actor,
            now=uow.now,
        )
        seq = _record_state(
            uow,
            services,
            request,
            actor,
            channel=channel,
            verification=verification.method if verification else None,
            request_id=request_id,
        )
        if kind is RequestType.ACCESS:
            _answer_access(uow, services, request, actor, request_id=request_id)
        elif kind is RequestType.CORRECTION:
            _correct(uow, services, request, actor, submission.changes, request_id=request_id)
        else:
            review = services.policy.rights.deletion.review
            _delete_unless_held(
                uow,
                services,
                request,
                actor,
                review=review,
                notices=notices,
                request_id=request_id,
            )
        notices.tell(session, request)
        uow.commit()
        shown = Shown(_view(session, services, request, uow.now), seq)
    notices.schedule(defer, actor=actor, request_id=request_id)
    return shown


def _refuse_duplicates(
    session: Session, member_id: str, submission: Submission, *, now: datetime
) -> None:
    """One open deletion per member; no two open corrections of the same field; no new
    copy while one is still downloadable.

    A second deletion changes nothing the first does not (409, naming the open
    one, so the member can follow it). Two corrections waiting on one field
    would make the outcome depend on the order the DPO approves them in. A copy
    is built under the log-head lock (the member's whole history is read and
    sealed), so one session or one relaying client asking again and again
    would hold up every read of the gate: the member downloads the copy they
    have, which is at most ``copy_days`` old.
    """
    if submission.request_type is RequestType.ACCESS:
        existing = copies.available_copy(session, member_id, now=now)
        if existing is not None:
            raise RequestOpen("a copy of this member's data is still available", existing=existing)
        return
    for other in open_requests(session, member_id, submission.request_type):
        if submission.request_type is RequestType.DELETION:
            raise RequestOpen("a deletion of this member is already open", existing=other.id)
        clash = set(other.field_names) & set(submission.changes)
        if clash:
            raise RequestOpen(
                f"an open correction already changes {', '.join(sorted(clash))}",
                existing=other.id,
            )


# -- what each type does -----------------------------------------------------------------


def _answer_access(
    uow: AuditedUnitOfWork,
    services: Services,
    request: RightsRequest,
    actor: Actor | None,
    *,
    request_id: str | None,
) -> None:
    """Build the copy now, seal it under the member's key, complete the request."""
    expires_at = uow.now + timedelta(days=services.policy.rights.copy_days)
    document = copies.build_copy(
        uow.session,
        log_item=access_log_item,
        policy=services.policy,
        keyring=services.keyring,
        member_id=request.member_id,
        request_id=request.id,
        now=uow.now,
        expires_at=expires_at,
    )
    copies.seal_copy(
        uow.session,
        keyring=services.keyring,
        member_id=request.member_id,
        request_id=request.id,
        document=document,
        now=uow.now,
        expires_at=expires_at,
    )
    uow.record(
        actions.copy_changed(
            actor,
            policy=services.policy.version,
            member_id=request.member_id,
            rights_request=request.id,
            event="built",
            expires_at=expires_at,
            request_id=request_id,
        )
    )
    _advance(uow, services, request, Event.COMPLETE, actor, request_id=request_id)


def _correct(
    uow: AuditedUnitOfWork,
    services: Services,
    request: RightsRequest,
    actor: Actor,
    changes: Mapping[str, Value | None],
    *,
    request_id: str | None,
) -> None:
    """Apply the self-service fields now; seal the rest for the DPO."""
    now_fields, later = split_changes(services.policy, changes)
    if now_fields:
        _apply_correction(
            uow, services, request, actor, now_fields, approved=False, request_id=request_id
        )
    if not later:
        _advance(uow, services, request, Event.COMPLETE, actor, request_id=request_id)
        return
    seal_changes(
        uow.session,
        keyring=services.keyring,
        member_id=request.member_id,
        request_id=request.id,
        changes=later,
    )
    request.awaiting_approval = True
    if now_fields:
        _advance(uow, services, request, Event.BEGIN, actor, request_id=request_id)


def _apply_correction(
    uow: AuditedUnitOfWork,
    services: Services,
    request: RightsRequest,
    actor: Actor | None,
    values: Mapping[str, Value | None],
    *,
    approved: bool,
    request_id: str | None,
) -> None:
    """Re-encrypt the fields, record the entry, and tell every client the log shows was
    released any of those fields of the member (GDPR Art. 19): a ``member.corrected``
    event, which makes them the request's recipients."""
    session = uow.session
    update_member(
        session,
        policy=services.policy,
        keyring=services.keyring,
        member_id=request.member_id,
        values=values,
        now=uow.now,
    )
    uow.record(
        actions.member_corrected(
            actor,
            policy=services.policy.version,
            member_id=request.member_id,
            changes=values,
            rights_request=request.id,
            approved=approved,
            request_id=request_id,
        )
    )
    member_corrected(
        session,
        member_id=request.member_id,
        fields=list(values),
        now=uow.now,
        rights_request=request.id,
    )


def _delete_unless_held(
    uow: AuditedUnitOfWork,
    services: Services,
    request: RightsRequest,
    actor: Actor | None,
    *,
    review: bool,
    notices: RequestNotices,
    request_id: str | None,
) -> int | None:
    """Run the deletion now, unless it waits for a DPO's ``review`` or a hold blocks it.

    The seq of the last entry recorded, if any.
    """
    if review:
        request.awaiting_approval = True
        return None
    if active_holds(uow.session, request.member_id, now=uow.now):
        return _advance(
            uow,
            services,
            request,
            Event.HOLD,
            actor,
            reason="a legal hold on the member's data is active",
            request_id=request_id,
        )
    return run_deletion(uow, services, request, actor, notices=notices, request_id=request_id)


def run_deletion(
    uow: AuditedUnitOfWork,
    services: Services,
    request: RightsRequest,
    actor: Actor | None,
    *,
    notices: RequestNotices,
    request_id: str | None,
) -> int:
    """Crypto-shred the member (``rights.erasure``), tell every client that was ever
    released any of their data (a ``member.deleted`` event asking each to acknowledge:
    they are the request's recipients), close the member's other open requests (nothing
    of theirs is left to act on), and complete.

    The member's confirmation is composed first, while their contact still
    exists: after the shred no key opens it. It waits in ``notices``, in
    memory only, until it is sent after the commit.

    The request must be ``submitted`` or ``in_progress`` (one on hold is resumed first).
    Returns the seq of the completing entry.
    """
    session = uow.session
    member_id = request.member_id
    notices.tell(session, request, template=COMPLETED)
    for other in open_requests(session, member_id):
        if other.id == request.id:
            continue
        # Its sealed values go with the member's other secrets (erase_member).
        _advance(
            uow,
            services,
            other,
            Event.CANCEL,
            actor,
            reason=f"superseded by the member's deletion ({request.id})",
            request_id=request_id,
        )
    destroyed = erase_member(session, member_id)
    # The recipients come from the log alone (``rights.recipients``), which the
    # shred leaves as it was: computed after it, in its transaction.
    event = member_deleted(session, member_id=member_id, rights_request=request.id, now=uow.now)
    recipients = recipients_of_event(session, event)
    uow.record(
        actions.member_deleted(
            actor,
            policy=services.policy.version,
            member_id=member_id,
            rights_request=request.id,
            destroyed=destroyed,
            recipients=len(recipients),
            request_id=request_id,
        )
    )
    return _advance(uow, services, request, Event.COMPLETE, actor, request_id=request_id)


def resume_deletions(
    uow: AuditedUnitOfWork,
    services: Services,
    member_id: str,
    actor: Actor | None,
    *,
    notices: RequestNotices,
    request_id: str | None,
) -> list[str]:
    """Run the member's deletion that waits on holds, once none is active any more.

    A member has one open deletion at most (``_refuse_duplicates``, under the
    log-head lock). Its confirmation waits in ``notices``. Returns the ids of the
    requests that ran.
    """
    session = uow.session
    if active_holds(session, member_id, now=uow.now):
        return []
    waiting = on_hold_deletions(session, member_id)
    for request in waiting:
        _advance(
            uow,
            services,
            request,
            Event.RESUME,
            actor,
            reason="no legal hold on the member's data is active any more",
            request_id=request_id,
        )
        run_deletion(uow, services, request, actor, notices=notices, request_id=request_id)
    return [request.id for request in waiting]


def _advance(
    uow: AuditedUnitOfWork,
    services: Services,
    request: RightsRequest,
    event: Event,
    actor: Actor | None,
    *,
    reason: str | None = None,
    request_id: str | None,
) -> int:
    move(uow.session, request, event, actor=actor, reason=reason, now=uow.now)
    return _record_state(uow, services, request, actor, request_id=request_id)


def _record_state(
    uow: AuditedUnitOfWork,
    services: Services,
    request: RightsRequest,
    actor: Actor | None,
    *,
    channel: str | None = None,
    verification: str | None = None,
    request_id: str | None,
) -> int:
    """The entry for the request's latest history line."""
    return uow.record(
        actions.rights_request_changed(
            actor,
            policy=services.policy.version,
            rights_request=request.id,
            member_id=request.member_id,
            request_type=request.type,
            status=request.events[-1].status,
            due_at=request.due_at,
            fields=request.field_names,
            channel=channel,
            verification=verification,
            request_id=request_id,
        )
    )


# -- the DPO's decisions -----------------------------------------------------------------


def approve_request(
    services: Services,
    *,
    actor: Actor,
    rights_request: str,
    request_id: str | None,
    defer: Defer = send_now,
) -> Shown:
    """Approve a request waiting for the DPO: apply a correction's sealed values, or run a
    reviewed deletion (which a hold still blocks: it then waits ``on_hold``).

    The member is told (``gate.rights_notices``) after the commit, through ``defer``.
    """
    actor.require_role(DPO_ROLE)
    notices = RequestNotices(services)
    with services.uow(actor) as uow:
        session = uow.session
        request = get_request(session, rights_request, for_update=True)
        if not request.awaiting_approval or Status(request.status) not in OPEN:
            raise NotAwaitingApproval()
        request.awaiting_approval = False
        notices.remember_contact(session, request.member_id)  # before it is changed
        seq: int | None = None
        if request.type == RequestType.CORRECTION:
            values = open_changes(
                session,
                keyring=services.keyring,
                member_id=request.member_id,
                request_id=request.id,
            )
            # Checked when submitted; checked again against the policy in force now
            # (a field made not correctable since, a rule tightened).
            clean = check_changes(services.policy, values, today=uow.now.date())
            discard_changes(session, request.id)
            _apply_correction(
                uow, services, request, actor, clean, approved=True, request_id=request_id
            )
            seq = _advance(
                uow,
                services,
                request,
                Event.COMPLETE,
                actor,
                reason="approved",
                request_id=request_id,
            )
        else:
            seq = _delete_unless_held(
                uow, services, request, actor, review=False, notices=notices, request_id=request_id
            )
        notices.tell(session, request)
        uow.commit()
        shown = Shown(_view(session, services, request, uow.now), seq)
    notices.schedule(defer, actor=actor, request_id=request_id)
    return shown


def reject_request(
    services: Services,
    *,
    actor: Actor,
    rights_request: str,
    reason: str,
    request_id: str | None,
    defer: Defer = send_now,
) -> Shown:
    """Refuse an open request, saying why (the member reads the reason, in the request and
    in their message, sent after the commit through ``defer``); a correction's sealed
    values are destroyed."""
    actor.require_role(DPO_ROLE)
    notices = RequestNotices(services)
    with services.uow(actor) as uow:
        request = get_request(uow.session, rights_request, for_update=True)
        seq = _advance(
            uow, services, request, Event.REJECT, actor, reason=reason, request_id=request_id
        )
        discard_changes(uow.session, request.id)
        notices.tell(uow.session, request)
        uow.commit()
        shown = Shown(_view(uow.session, services, request, uow.now), seq)
    notices.schedule(defer, actor=actor, request_id=request_id)
    return shown


def extend_request_deadline(
    services: Services,
    *,
    actor: Actor,
    rights_request: str,
    reason: str,
    until: date | datetime,
    request_id: str | None,
) -> Shown:
    """Move an open request's due date to the end of ``until``'s day, once, within the
    policy's ``extension_max`` (``rights.deadlines.extend_request``)."""
    actor.require_role(DPO_ROLE)
    with services.uow(actor) as uow:
        request = get_request(uow.session, rights_request, for_update=True)
        # The move is allowed (open, with a reason) before the new date is judged.
        advance(RequestType(request.type), Status(request.status), Event.EXTEND, reason=reason)
        extended = extend_request(services.policy.rights, deadline_of(request), until)
        extend_deadline(uow.session, request, extended, actor=actor, reason=reason, now=uow.now)
        seq = _record_state(uow, services, request, actor, request_id=request_id)
        uow.commit()
        return Shown(_view(uow.session, services, request, uow.now), seq)


# -- the member's own requests -------------------------------------------------------------


def cancel_own_request(
    services: Services, *, actor: Actor, rights_request: str, request_id: str | None
) -> Shown:
    """The member withdraws a request that is not completed, rejected or cancelled yet."""
    actor.require_role(MEMBER_ROLE)
    with services.uow(actor) as uow:
        request = member_request(uow.session, rights_request, actor.id)
        seq = _advance(uow, services, request, Event.CANCEL, actor, request_id=request_id)
        discard_changes(uow.session, request.id)
        uow.commit()
        return Shown(_view(uow.session, services, request, uow.now), seq)


@dataclass(frozen=True, slots=True)
class Download:
    document: dict[str, Any]
    audit_seq: int


def download_copy(
    services: Services, *, actor: Actor, rights_request: str, request_id: str | None
) -> Download:
    """The member's access copy, opened and recorded (a release of every field it holds,
    to the member) before it leaves: the entry commits first."""
    actor.require_role(MEMBER_ROLE)
    with services.uow(actor) as uow:
        session = uow.session
        request = member_request(session, rights_request, actor.id)
        if request.type != RequestType.ACCESS:
            raise NotFound("this request has no copy")
        row = session.get(RightsCopy, request.id)
        if row is None or uow.now >= row.expires_at:
            raise CopyExpired(
                "the copy is no longer available; submit a new access request for a fresh one"
            )
        document = copies.open_copy(session, keyring=services.keyring, row=row)
        seq = uow.record(
            actions.copy_downloaded(
                actor,
                policy=services.policy.version,
                member_id=request.member_id,
                rights_request=request.id,
                fields=list(document.get("fields", {})),
                request_id=request_id,
            )
        )
        uow.commit()
    return Download(document=document, audit_seq=seq)


def list_own_requests(services: Services, *, actor: Actor) -> list[dict[str, Any]]:
    actor.require_role(MEMBER_ROLE)
    with services.reading() as session:
        now = services.clock()
        return [_view(session, services, r, now) for r in member_requests(session, actor.id)]


def show_own_request(services: Services, *, actor: Actor, rights_request: str) -> dict[str, Any]:
    actor.require_role(MEMBER_ROLE)
    with services.reading() as session:
        request = member_request(session, rights_request, actor.id)
        return _view(session, services, request, services.clock())


# -- the DPO's queue -------------------------------------------------------------------------


def request_queue(
    services: Services,
    *,
    actor: Actor,
    filters: QueueFilter,
    cursor: str | None,
    limit: int,
) -> Page:
    """Requests by due date, earliest first; ``overdue`` computed with the caller's now."""
    actor.require_role(DPO_ROLE)
    now = services.clock()
    with services.reading() as session:
        rows, next_cursor = page_queue(session, filters, now=now, cursor=cursor, limit=limit)
        items = _views(session, services, rows, now)
    return Page(items=items, next_cursor=next_cursor)


def show_request(services: Services, *, actor: Actor, rights_request: str) -> dict[str, Any]:
    actor.require_role(DPO_ROLE)
    with services.reading() as session:
        return _view(session, services, get_request(session, rights_request), services.clock())


def _views(
    session: Session, services: Services, requests: Sequence[RightsRequest], now: datetime
) -> list[dict[str, Any]]:
    """The requests as shown, each with its recipients and what the feed says they have had
    (one query for the lot)."""
    told = request_recipients(session, [r.id for r in requests])
    recipients = {r.id: request_recipients_of(r, told.get(r.id, [])) for r in requests}
    names = actor_names(session, {s.client_id for listed in recipients.values() for s in listed})
    return [
        request_view(
            r,
            now=now,
            timezone=services.policy.rights.timezone,
            names=names,
            recipients=recipients[r.id],
        )
        for r in requests
    ]


def _view(
    session: Session, services: Services, request: RightsRequest, now: datetime
) -> dict[str, Any]:
    return _views(session, services, [request], now)[0]
