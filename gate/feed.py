"""The change feed's use cases: a client pulls its events and acknowledges them.

- ``read_feed`` (``GET /v1/events``): the caller's deliveries after a ``seq``,
  in order. Reading takes no lock: a client polling an empty feed never queues
  behind the log head. The events handed out for the first time get
  ``notified_at`` in a short unit of work of their own before the page is
  returned (so no event leaves unrecorded), with no audit entry: a fetch
  releases nothing of a member (ids, purposes, field names), and polling must
  not fill the log. The acknowledgement is what is evidence, and it is audited.
- ``acknowledge_event`` (``POST /v1/events/{id}/ack``): idempotent; the first
  acknowledgement is recorded (``feed.ack``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audit import actions
from core.errors import InvalidInput, NotFound
from core.ids import is_valid_id
from feed.pull import acknowledge, client_page, delivery_for, item_view, mark_notified
from gate.context import Services
from principals.actor import Actor

CLIENT_ROLE = "client"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


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
    actor.require_role(CLIENT_ROLE)
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
    actor.require_role(CLIENT_ROLE)
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
