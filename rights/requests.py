"""Rights requests in the database: create, move through the state machine, find, page, show.

These functions only ``flush()``: the use case's unit of work (``gate.rights``)
commits, with the audit entry that records the change.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from core.clock import from_micros, to_micros
from core.errors import InvalidInput, NotFound
from core.ids import is_valid_id, new_id
from feed.acks import RecipientState, awaiting_ack
from principals.actor import Actor
from rights.deadlines import Deadline
from rights.models import RightsRequest, RightsRequestEvent
from rights.states import (
    FINAL,
    OPEN,
    Event,
    RequestType,
    Status,
    advance,
    history_status,
    is_overdue,
)

CHANNEL_MEMBER = "member"
CHANNEL_RELAYED = "relayed"


class VerificationMethod(StrEnum):
    """How a relaying client verified that the member asked (``verification.method``).

    A closed list, because the method is copied into the request's audit entry
    and the log is append-only: a free-form slug would let whatever a client
    typed there (an agent's note, a name, a phone number) become personal data
    the log keeps for good. Anything of the case itself belongs in the
    client's ``reference``, which stays with the request.
    """

    # Asked from the client's app, signed in to the member's account there.
    APP_SESSION = "app_session"
    # Read back a one-time code sent to the member's registered phone.
    SMS_CODE = "sms_code"
    # The client called the member back on the registered phone number.
    PHONE_CALLBACK = "phone_callback"
    # Confirmed by a link or code sent to the registered e-mail address.
    EMAIL_CONFIRMATION = "email_confirmation"
    # Showed an identity document in person (a store, a service desk).
    IN_PERSON_ID = "in_person_id"
    # A signed letter, checked against the registered postal address.
    POSTAL_LETTER = "postal_letter"
    # None of these: the client's case file (``reference``) says how.
    OTHER = "other"


VERIFICATION_METHODS: tuple[str, ...] = tuple(method.value for method in VerificationMethod)


@dataclass(frozen=True, slots=True)
class Verification:
    """How a relaying client verified that the member asked: a method (one of
    ``VERIFICATION_METHODS``, recorded in the audit entry) and optionally its own case
    reference (opaque, kept with the request only)."""

    method: str
    reference: str | None = None

    def __post_init__(self) -> None:
        if self.method not in VERIFICATION_METHODS:
            # Never echoed: an unknown method may be just the free text the list keeps out.
            raise InvalidInput(
                "verification.method is not a known method",
                errors=[
                    {
                        "field": "verification.method",
                        "problem": "must be one of " + ", ".join(VERIFICATION_METHODS),
                    }
                ],
            )


def new_request(
    session: Session,
    *,
    request_type: RequestType,
    member_id: str,
    channel: str,
    received_at: datetime,
    deadline: Deadline,
    fields: Sequence[str],
    relayed_by: str | None,
    verification: Verification | None,
    actor: Actor,
    now: datetime,
) -> RightsRequest:
    """A new request, ``submitted``, with the first line of its history."""
    request = RightsRequest(
        id=new_id(),
        type=request_type.value,
        member_id=member_id,
        status=Status.SUBMITTED.value,
        channel=channel,
        received_at=received_at,
        due_at=deadline.due_at,
        extended_from=deadline.extended_from,
        deadline_rule=deadline.rule,
        deadline_calendar=deadline.calendar,
        calendar_estimated=deadline.calendar_estimated,
        fields=" ".join(sorted(fields)),
        awaiting_approval=False,
        relayed_by=relayed_by,
        verification_method=verification.method if verification else None,
        verification_reference=verification.reference if verification else None,
        completed_at=None,
        created_at=now,
        updated_at=now,
    )
    session.add(request)
    session.flush()
    _history(session, request, Status.SUBMITTED.value, actor=actor, reason=None, at=now)
    return request


def move(
    session: Session,
    request: RightsRequest,
    event: Event,
    *,
    actor: Actor | None,
    reason: str | None = None,
    now: datetime,
) -> Status:
    """Apply ``event`` (``rights.states.advance``) and append it to the history."""
    status = advance(RequestType(request.type), Status(request.status), event, reason=reason)
    request.status = status.value
    request.updated_at = now
    if status is Status.COMPLETED:
        request.completed_at = now
    if status in FINAL:
        request.awaiting_approval = False
    _history(session, request, history_status(status, event), actor=actor, reason=reason, at=now)
    return status


def extend_deadline(
    session: Session,
    request: RightsRequest,
    extended: Deadline,
    *,
    actor: Actor,
    reason: str,
    now: datetime,
) -> None:
    """Record an extension (``rights.deadlines.extend_request`` computed it) and move
    ``due_at``; the deadline notices start over for the new date."""
    move(session, request, Event.EXTEND, actor=actor, reason=reason, now=now)
    request.due_at = extended.due_at
    request.extended_from = extended.extended_from
    request.calendar_estimated = extended.calendar_estimated
    request.due_flag = None
    request.due_flagged_at = None
    session.flush()


def deadline_of(request: RightsRequest) -> Deadline:
    return Deadline(
        due_at=request.due_at,
        rule=request.deadline_rule,
        calendar=request.deadline_calendar,
        calendar_estimated=request.calendar_estimated,
        extended_from=request.extended_from,
    )


def _history(
    session: Session,
    request: RightsRequest,
    status: str,
    *,
    actor: Actor | None,
    reason: str | None,
    at: datetime,
) -> None:
    session.add(
        RightsRequestEvent(
            request_id=request.id,
            at=at,
            status=status,
            actor_id=actor.id if actor is not None else None,
            actor_kind=actor.kind if actor is not None else None,
            reason=reason,
        )
    )
    session.flush()
    session.refresh(request, ["events"])


def get_request(session: Session, request_id: str, *, for_update: bool = False) -> RightsRequest:
    """The request, or ``NotFound``; ``for_update`` locks its row for the use case."""
    if not is_valid_id(request_id):
        raise NotFound("no such request")
    statement = select(RightsRequest).where(RightsRequest.id == request_id)
    if for_update:
        statement = statement.with_for_update()
    request = session.scalar(statement)
    if request is None:
        raise NotFound("no such request")
    return request


def member_request(session: Session, request_id: str, member_id: str) -> RightsRequest:
    """The member's own request: another member's id is ``NotFound``, as an unknown one."""
    request = get_request(session, request_id)
    if request.member_id != member_id:
        raise NotFound("no such request")
    return request


def open_requests(
    session: Session, member_id: str, request_type: RequestType | None = None
) -> list[RightsRequest]:
    statement = select(RightsRequest).where(
        RightsRequest.member_id == member_id,
        RightsRequest.status.in_([s.value for s in OPEN]),
    )
    if request_type is not None:
        statement = statement.where(RightsRequest.type == request_type.value)
    return list(session.scalars(statement.order_by(RightsRequest.received_at)))


def on_hold_deletions(session: Session, member_id: str) -> list[RightsRequest]:
    return list(
        session.scalars(
            select(RightsRequest)
            .where(
                RightsRequest.member_id == member_id,
                RightsRequest.type == RequestType.DELETION.value,
                RightsRequest.status == Status.ON_HOLD.value,
            )
            .order_by(RightsRequest.received_at)
            .with_for_update()
        )
    )


# -- shown to members, clients and the DPO ---------------------------------------------


def request_recipients_of(
    request: RightsRequest, told: Sequence[RecipientState]
) -> list[RecipientState]:
    """The request's recipients: the clients its change-feed events went to (``told``,
    ``feed.acks.request_recipients``), and for a request applied before the feed existed
    the clients listed then (``rights_request_recipient``), never notified by memberguard.
    By client id."""
    found = {state.client_id: state for state in told}
    for legacy in request.recipients:
        found.setdefault(legacy.client_id, RecipientState(legacy.client_id, None, None))
    return [found[client_id] for client_id in sorted(found)]


def request_view(
    request: RightsRequest,
    *,
    now: datetime,
    timezone: str,
    names: dict[str, str],
    recipients: Sequence[RecipientState] = (),
) -> dict[str, Any]:
    """The request as the API shows it (DESIGN-workflows, "Rights requests").

    Times are RFC 3339 in the policy's time zone: the days a deadline counts
    are that zone's, and ``due_at`` is the end of its last day there.
    ``names``: client names by id, for the ``recipients`` (``request_recipients_of``).
    """
    zone = ZoneInfo(timezone)

    def shown(moment: datetime | None) -> str | None:
        return moment.astimezone(zone).isoformat() if moment is not None else None

    return {
        "id": request.id,
        "type": request.type,
        "member_id": request.member_id,
        "status": request.status,
        "received_at": shown(request.received_at),
        "due_at": shown(request.due_at),
        "deadline": {
            "rule": request.deadline_rule,
            "calendar": request.deadline_calendar,
            "calendar_estimated": request.calendar_estimated,
        },
        "overdue": is_overdue(Status(request.status), request.due_at, now),
        "channel": request.channel,
        "fields": request.field_names,
        "history": [
            {
                "at": shown(event.at),
                "status": event.status,
                "by": (
                    {"kind": event.actor_kind, "id": event.actor_id}
                    if event.actor_id is not None
                    else {"kind": "system", "id": None}
                ),
                "reason": event.reason,
            }
            for event in request.events
        ],
        "completed_at": shown(request.completed_at),
        "recipients": [
            {
                "client": recipient.client_id,
                "name": names.get(recipient.client_id),
                "notified_at": shown(recipient.notified_at),
                "acknowledged_at": shown(recipient.acknowledged_at),
            }
            for recipient in recipients
        ],
    }


# -- pages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueFilter:
    status: Status | None = None
    request_type: RequestType | None = None
    overdue: bool | None = None
    member_id: str | None = None
    # Requests with an event whose acknowledgement some recipient still owes (a
    # deletion: change feed); False: those with none owed.
    awaiting_ack: bool | None = None


def page_queue(
    session: Session,
    filters: QueueFilter,
    *,
    now: datetime,
    cursor: str | None,
    limit: int,
) -> tuple[list[RightsRequest], str | None]:
    """Requests by due date (earliest first), keyset-paged on (due_at, id)."""
    statement = _filtered(select(RightsRequest), filters, now)
    after = decode_cursor(cursor)
    if after is not None:
        due, request_id = after
        statement = statement.where(
            or_(
                RightsRequest.due_at > due,
                and_(RightsRequest.due_at == due, RightsRequest.id > request_id),
            )
        )
    rows = list(
        session.scalars(statement.order_by(RightsRequest.due_at, RightsRequest.id).limit(limit + 1))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].due_at, rows[-1].id) if more and rows else None)


def _filtered(statement: Select[Any], filters: QueueFilter, now: datetime) -> Select[Any]:
    if filters.status is not None:
        statement = statement.where(RightsRequest.status == filters.status.value)
    if filters.request_type is not None:
        statement = statement.where(RightsRequest.type == filters.request_type.value)
    if filters.member_id is not None:
        statement = statement.where(RightsRequest.member_id == filters.member_id)
    if filters.overdue is not None:
        open_statuses = [s.value for s in OPEN]
        overdue = and_(RightsRequest.status.in_(open_statuses), RightsRequest.due_at < now)
        statement = statement.where(overdue if filters.overdue else ~overdue)
    if filters.awaiting_ack is not None:
        owed = awaiting_ack(RightsRequest.id)
        statement = statement.where(owed if filters.awaiting_ack else ~owed)
    return statement


def member_requests(session: Session, member_id: str) -> list[RightsRequest]:
    """Every request of the member, newest first (a member has a handful)."""
    return list(
        session.scalars(
            select(RightsRequest)
            .where(RightsRequest.member_id == member_id)
            .order_by(RightsRequest.received_at.desc(), RightsRequest.id.desc())
        )
    )


def encode_cursor(due_at: datetime, request_id: str) -> str:
    raw = f"due:{to_micros(due_at)}:{request_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, micros, request_id = text.split(":")
        if kind != "due" or not micros.isdigit() or len(micros) > 18 or not is_valid_id(request_id):
            raise ValueError
        return from_micros(int(micros)), request_id
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, OSError):
        raise InvalidInput(
            "cursor is not valid; use the next_cursor of a previous page", slug="invalid-cursor"
        ) from None
