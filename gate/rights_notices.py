"""Members are told about their rights requests: received, completed, rejected, on hold.

A use case that moves a member's request composes the member's message inside
its unit of work and hands it to the notifier only after the commit:

- **Which message.** One per request per unit of work, for the state the
  request is in when it commits: ``completed`` → ``request_completed``,
  ``rejected`` → ``request_rejected``, ``on_hold`` → ``request_on_hold``,
  still ``submitted`` or ``in_progress`` → ``request_received``. A request that
  completes (or waits on a hold) as it is submitted gets that one message, not
  a "received" a moment before it. ``cancelled`` tells nothing: the member
  withdrew it, or their deletion superseded it (and that deletion's message
  says it is done). An extension has no template yet, so it tells nothing.
- **Where to.** The member's e-mail address if they have one, else an SMS to
  their phone; no message if they have neither. The contact is read through
  the vault in the use case's unit of work, before it changes anything (so a
  correction of the address is confirmed to the address it replaced, and a
  deletion's confirmation reaches the address it destroyed), and is held only
  in memory, in the composed message, until the notifier has it.
- **What it says.** Only what ``notify.templates.TEMPLATE_VARIABLES`` names:
  the programme, the request's id and type, its due date (its last day, in the
  policy's time zone) and, for an access copy, the last day it can be
  downloaded. A rejection carries the DPO's reason, which the member also reads
  in the request's history (``POST /v1/requests/{id}/reject``: written for the
  member); a hold's reason is the DPO's own and is never sent.
- **Recorded after sending.** ``notice.sent`` (template, channel, message id,
  the request; never the address or the body) is recorded once the transport
  has taken the message, in a small unit of work of its own, as
  ``gate.rights_jobs.flag_due_requests`` does: the entry says the message went.
  A send that fails is logged by template and message id, nothing is recorded,
  and the member's request stays as it was committed.

Nothing here may fail the member's request: a contact that cannot be read, a
message that cannot be composed or sent, or an entry that cannot be recorded
is logged (never with the address, the body or the error's text) and skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from zoneinfo import ZoneInfo

import structlog
from jinja2 import TemplateError
from sqlalchemy.orm import Session

from audit import actions
from gate.context import Services
from notify import Message, compose
from notify.message import Channel
from notify.templates import DEFAULT_LOCALE
from principals.actor import Actor
from principals.signin import CHANNEL_BY_FIELD
from rights.models import RightsCopy, RightsRequest
from rights.states import RequestType, Status
from vault.crypto import DecryptionFailed
from vault.members import load_sealed

log = structlog.get_logger("memberguard.rights")

RECEIVED = "request_received"
COMPLETED = "request_completed"
REJECTED = "request_rejected"
ON_HOLD = "request_on_hold"

TEMPLATE_BY_STATUS: dict[Status, str] = {
    Status.SUBMITTED: RECEIVED,
    Status.IN_PROGRESS: RECEIVED,
    Status.COMPLETED: COMPLETED,
    Status.REJECTED: REJECTED,
    Status.ON_HOLD: ON_HOLD,
}

# The member's contact fields, the preferred first: an e-mail has room for the
# whole explanation (the SMS templates are shorter), and costs nothing to send.
CONTACT_FIELDS = ("email", "phone")

Defer = Callable[[Callable[[], None]], None]


def send_now(task: Callable[[], None]) -> None:
    task()


@dataclass(frozen=True, slots=True)
class Contact:
    channel: Channel
    to: str = field(repr=False)


def member_contact(session: Session, services: Services, member_id: str) -> Contact | None:
    """The member's e-mail address, else their phone; None for neither (or no member)."""
    sealed = load_sealed(session, [member_id], CONTACT_FIELDS).get(member_id)
    if sealed is None:  # crypto-shredded: nothing left to read
        return None
    values = sealed.open(services.keyring)
    for name in CONTACT_FIELDS:
        value = values.get(name)
        if isinstance(value, str) and value:
            return Contact(channel=CHANNEL_BY_FIELD[name], to=value)
    return None


@dataclass(frozen=True, slots=True)
class Notice:
    """A composed message to a member about one of their requests."""

    message: Message
    member_id: str
    rights_request: str


class RequestNotices:
    """The messages one unit of work owes members about their requests.

    ``remember_contact`` reads a member's contact before the unit of work
    changes it; ``tell`` composes a request's message (once per request).
    ``pending`` is what to hand to ``deliver`` after the commit.
    """

    def __init__(self, services: Services, *, locale: str = DEFAULT_LOCALE) -> None:
        self._services = services
        self._locale = locale
        self._contacts: dict[str, Contact | None] = {}
        self.pending: list[Notice] = []

    def remember_contact(self, session: Session, member_id: str) -> None:
        if member_id in self._contacts:
            return
        try:
            self._contacts[member_id] = member_contact(session, self._services, member_id)
        except DecryptionFailed:
            # The gated reads report a bad ciphertext; a notice must not block the
            # request (least of all a deletion), so this member goes untold.
            log.error("rights.notice_contact_unreadable")
            self._contacts[member_id] = None

    def tell(
        self, session: Session, request: RightsRequest, *, template: str | None = None
    ) -> None:
        """Compose the member's message for the state ``request`` is in (or ``template``).

        A request already told in this unit of work is not told again: a
        deletion's confirmation is composed before the shred (``run_deletion``),
        and the use case's own call afterwards finds it done.
        """
        if any(notice.rights_request == request.id for notice in self.pending):
            return
        template = template or TEMPLATE_BY_STATUS.get(Status(request.status))
        if template is None:
            return
        self.remember_contact(session, request.member_id)
        contact = self._contacts[request.member_id]
        if contact is None:
            log.warning(
                "rights.notice_skipped",
                template=template,
                rights_request=request.id,
                reason="no-contact",
            )
            return
        try:
            message = compose(
                template,
                channel=contact.channel,
                to=contact.to,
                locale=self._locale,
                context=self._context(session, request, template),
            )
        except TemplateError as exc:
            log.error(
                "rights.notice_not_composed", template=template, error_type=type(exc).__name__
            )
            return
        self.pending.append(Notice(message, request.member_id, request.id))

    def _context(
        self, session: Session, request: RightsRequest, template: str
    ) -> dict[str, object]:
        """Only the variables ``TEMPLATE_VARIABLES`` declares for ``template``."""
        zone = ZoneInfo(self._services.policy.rights.timezone)
        context: dict[str, object] = {
            "programme": self._services.policy.programme.name,
            "request_id": request.id,
        }
        if template != ON_HOLD:
            context["request_type"] = request.type
        if template in (RECEIVED, ON_HOLD):
            # due_at is the end of the last day in the policy's zone: that day.
            context["due_date"] = request.due_at.astimezone(zone).date().isoformat()
        if template == COMPLETED and request.type == RequestType.ACCESS:
            copy = session.get(RightsCopy, request.id)
            if copy is not None:
                # The last whole day before it expires (it expires during the day
                # after): a member who comes on the day named still finds it.
                last_day = copy.expires_at.astimezone(zone).date() - timedelta(days=1)
                context["copy_until"] = last_day.isoformat()
        if template == REJECTED:
            context["reason"] = request.events[-1].reason or ""
        return context

    def schedule(self, defer: Defer, *, actor: Actor | None, request_id: str | None) -> None:
        """Hand the pending messages to ``defer``, to be sent after the commit."""
        if self.pending:
            defer(
                partial(
                    deliver, self._services, list(self.pending), actor=actor, request_id=request_id
                )
            )


def deliver(
    services: Services,
    notices: Sequence[Notice],
    *,
    actor: Actor | None,
    request_id: str | None,
) -> None:
    """Send committed notices, then record ``notice.sent`` for those the transport took.

    ``actor``: whoever caused the change (the member, the relaying client, the
    DPO; None for a job), as ``notice.sent`` names them. Its unit of work takes
    no actor to check again: recording that a message went decides nothing,
    and a member who was just deleted has no session left to check.
    """
    sent: list[Notice] = []
    for notice in notices:
        try:
            services.notifier.send(notice.message, now=services.clock())
        except Exception as exc:  # any transport failure, after the commit
            # By template and message id only: a transport's error text may hold the address.
            log.error(
                "rights.notice_not_sent",
                template=notice.message.template,
                message_id=notice.message.id,
                error_type=type(exc).__name__,
            )
        else:
            sent.append(notice)
    if not sent:
        return
    try:
        with services.uow() as uow:
            for notice in sent:
                uow.record(
                    actions.notice_sent(
                        actor,
                        policy=services.policy.version,
                        member_id=notice.member_id,
                        template=notice.message.template,
                        channel=notice.message.channel,
                        message_id=notice.message.id,
                        rights_request=notice.rights_request,
                        request_id=request_id,
                    )
                )
            uow.commit()
    except Exception as exc:  # the messages went; the request stands either way
        log.error(
            "rights.notice_not_recorded",
            message_ids=[notice.message.id for notice in sent],
            error_type=type(exc).__name__,
        )
