"""The change feed, pulled by a client: its events in its own order, and acknowledgements."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from api.deps import CurrentActor, RequestId, ServicesDep, require_role
from api.openapi import AUDITED, problems
from api.schemas import FeedEventOut, FeedEventsOut
from gate.feed import DEFAULT_LIMIT, FEED_ROLES, MAX_LIMIT, acknowledge_event, read_feed

router = APIRouter(
    prefix="/v1/events", tags=["events"], dependencies=[Depends(require_role(*FEED_ROLES))]
)


@router.get("", response_model=FeedEventsOut, openapi_extra=problems(*AUDITED))
def events(
    services: ServicesDep,
    actor: CurrentActor,
    after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    awaiting_ack: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    """The caller's events with ``seq`` > ``after``, in ``seq`` order (1, 2, 3 … without
    gaps, per client). Pass ``next_after`` back as ``after`` for the next page; it stays
    the same when nothing is new. ``awaiting_ack=true``: only the events whose
    acknowledgement the caller still owes. The first fetch of an event sets its
    ``notified_at``."""
    page = read_feed(services, actor=actor, after=after, limit=limit, awaiting_ack=awaiting_ack)
    return {"items": page.items, "next_after": page.next_after}


@router.post(
    "/{event_id}/ack",
    response_model=FeedEventOut,
    openapi_extra=problems("not-found", *AUDITED),
)
def acknowledge(
    event_id: str,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, Any]:
    """Confirm the caller applied the event (for ``member.deleted``: it erased its copy of
    the member's data). Idempotent: again, the same ``acknowledged_at``. Another client's
    event is ``404``."""
    acknowledged = acknowledge_event(
        services, actor=actor, event_id=event_id, request_id=request_id
    )
    if acknowledged.audit_seq is not None:
        response.headers["Audit-Seq"] = str(acknowledged.audit_seq)
    return acknowledged.item
