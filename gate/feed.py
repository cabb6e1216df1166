"""The change feed's use cases: a client pulls its events and acknowledges them; the
worker reminds the DPO of acknowledgements overdue.

- ``read_feed`` (``GET /v1/events``): the caller's deliveries after a ``seq``,
  in order. Reading takes no lock: a client polling an empty feed never queues
  behind the log head. The events handed out for the first time get
  ``notified_at`` in a short unit of work of their own before the page is
  returned (so no event leaves unrecorded), with no audit entry: a fetch
  releases nothing of a member (ids, purposes, field names), and polling must
  not fill the log. The acknowledgement is what is evidence, and it is audited.
- ``acknowledge_event`` (``POST /v1/events/{id}/ack``): idempotent; the first
  acknowledgement is recorded (``feed.ack``).
- ``remind_overdue_acks`` (job ``feed.reminders``): one message to the DPO
  naming the requests whose recipients have not acknowledged an event that
  asks for it within ``MEMBERGUARD_FEED_ACK_REMIND_HOURS``; each delivery is
  reminded of once per that interval (``reminded_at``, ``feed.reminded``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import structlog
from sqlalchemy import select

from audit import actions
from core.errors import InvalidInput, NotFound
from core.ids import is_valid_id
from feed.acks import overdue_acks
from feed.models import FeedDelivery
from feed.pull import acknowledge, client_page, delivery_for, item_view, mark_notified
from gate.context import Services
from gate.rights_jobs import dpo_message, send_dpo_message
from principals.actor import Actor

log = structlog.get_logger("memberguard.feed")

CLIENT_ROLE = "client"
# Who has a feed: clients (changes to apply) and the DPO's keys (``incident.opened``).
FEED_ROLES = (CLIENT_ROLE, "dpo")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Deliveries named in one reminder (the rest wait for the next run, still overdue).
REMIND_BATCH = 1000
REMIND_TEMPLATE = "dpo_acks_overdue"


@dataclass(frozen=True, slots=True)
class FeedPage:
    items: list[dict[str, Any]]
    # The ``after`` of the next call: the last item's seq, or the same ``after``
    # when there was nothing new (a consumer always passes it back).
    next_after: int


def read_feed(
    services: Services,
    *,
    actor: Actor,
    after: int = 0,
    limit: int = DEFAULT_LIMIT,
    awaiting_ack: bool = False,
) -> FeedPage:
    """The caller's events with ``seq`` > ``after``, in ``seq`` order, at most ``limit``.

    ``awaiting_ack``: only the events asking for an acknowledgement the caller
    has not given yet. A consumer that stored the last ``seq`` it applied
    resumes from it; ``seq`` counts 1, 2, 3 … per client without gaps, and a
    page never shows a later ``seq`` without the earlier ones (they are
    allocated under the log-head lock and committed in that order).
    """
    actor.require_role(*FEED_ROLES)
    if after < 0:
        raise InvalidInput(
            "after must be 0 or more", errors=[{"field": "after", "problem": ">= 0"}]
        )
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(
            "limit is out of range", errors=[{"field": "limit", "problem": f"1 to {MAX_LIMIT}"}]
        )
    with services.reading() as session:
        page = client_page(session, actor.id, after=after, limit=limit, awaiting_ack=awaiting_ack)
        items = [item_view(delivered) for delivered in page]
        first_time = [d.event.id for d in page if d.delivery.notified_at is None]
    if first_time:
        with services.uow(actor) as uow:
            mark_notified(uow.session, actor.id, first_time, now=uow.now)
            uow.commit()
    return FeedPage(items=items, next_after=items[-1]["seq"] if items else after)


@dataclass(frozen=True, slots=True)
class Acknowledged:
    item: dict[str, Any]
    # The entry of the first acknowledgement; None for a repeated one (nothing changed).
    audit_seq: int | None


def acknowledge_event(
    services: Services, *, actor: Actor, event_id: str, request_id: str | None
) -> Acknowledged:
    """The caller confirms it applied the event (for a deletion: it erased its copy).

    Only its own delivery: another client's event, or an unknown one, is
    ``NotFound``. A second acknowledgement changes nothing and answers the first's
    ``acknowledged_at``.
    """
    actor.require_role(*FEED_ROLES)
    if not is_valid_id(event_id):
        raise NotFound("no such event")
    with services.uow(actor) as uow:
        delivered = delivery_for(uow.session, actor.id, event_id)
        seq = None
        if acknowledge(delivered, now=uow.now):
            event = delivered.event
            seq = uow.record(
                actions.event_acknowledged(
                    actor,
                    policy=services.policy.version,
                    event_id=event.id,
                    event_type=event.type,
                    member_id=event.member_id,
                    rights_request=event.rights_request,
                    request_id=request_id,
                )
            )
        uow.session.flush()
        uow.commit()
        return Acknowledged(item=item_view(delivered), audit_seq=seq)


@dataclass(frozen=True, slots=True)
class Reminded:
    deliveries: int = 0
    requests: list[str] = field(default_factory=list)
    message_id: str | None = None


def remind_overdue_acks(services: Services) -> Reminded:
    """One message to the DPO about the acknowledgements overdue, and ``reminded_at`` on
    each delivery it names.

    A delivery is overdue once its event (one with ``ack_required``: a
    deletion) is ``MEMBERGUARD_FEED_ACK_REMIND_HOURS`` old without the
    client's acknowledgement, and is named again each time that long has
    passed since its last reminder. Revoked clients are named like the others:
    they cannot acknowledge through the API any more, and the DPO must obtain
    their confirmation by other means. As ``rights_jobs.flag_due_requests``:
    the marks and their entry commit before the message is sent; if sending
    fails, the marks are taken back (the next run tries again) and
    ``NotifierError`` is raised. Nothing is sent when nothing is overdue.
    """
    hours = services.settings.feed_ack_remind_hours
    with services.uow() as uow:
        now = uow.now
        overdue = overdue_acks(
            uow.session, now=now, after=timedelta(hours=hours), limit=REMIND_BATCH
        )
        if not overdue:
            return Reminded()
        for delivered in overdue:
            delivered.delivery.reminded_at = now
        requests = sorted({d.event.rights_request for d in overdue if d.event.rights_request})
        clients = sorted({d.delivery.client_id for d in overdue})
        message = dpo_message(
            services,
            REMIND_TEMPLATE,
            {
                "programme": services.policy.programme.name,
                "requests": requests,
                "deliveries": len(overdue),
                "clients": len(clients),
                "hours": hours,
            },
        )
        uow.record(
            actions.acks_reminded(
                policy=services.policy.version,
                member_ids=[d.event.member_id for d in overdue if d.event.member_id],
                events=[d.event.id for d in overdue],
                clients=clients,
                requests=requests,
                deliveries=len(overdue),
                message_id=message.id,
            )
        )
        uow.session.flush()
        uow.commit()
    marked = [(d.delivery.event_id, d.delivery.client_id) for d in overdue]
    send_dpo_message(
        services,
        message,
        now=now,
        take_back=partial(_take_back, services, marked, reminded_at=now),
    )
    return Reminded(deliveries=len(overdue), requests=requests, message_id=message.id)


def _take_back(services: Services, marked: list[tuple[str, str]], *, reminded_at: datetime) -> None:
    """Unmark what this run marked (and nothing marked since), so the next run retries."""
    wanted = set(marked)
    with services.uow() as uow:
        for delivery in uow.session.scalars(
            select(FeedDelivery).where(
                FeedDelivery.event_id.in_(sorted({event for event, _ in marked})),
                FeedDelivery.reminded_at == reminded_at,
            )
        ):
            if (delivery.event_id, delivery.client_id) in wanted:
                delivery.reminded_at = None
        uow.session.flush()
        uow.commit()
