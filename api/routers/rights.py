"""Rights requests relayed by clients (``rights:submit``), the DPO's queue, and legal holds."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Response, status

from api.deps import CurrentActor, RequestId, ServicesDep, require_role
from api.openapi import AUDITED, problems
from api.schemas import (
    CreatedOut,
    ExtendIn,
    HoldIn,
    HoldOut,
    HoldsOut,
    RejectIn,
    RelayedRequestIn,
    RightsRequestOut,
    RightsRequestsOut,
)
from gate.holds import list_member_holds, place_member_hold, release_member_hold
from gate.rights import (
    DPO_ROLE,
    approve_request,
    extend_request_deadline,
    reject_request,
    request_queue,
    show_request,
    submit_relayed_request,
)
from rights.requests import QueueFilter, Verification
from rights.states import RequestType, Status


def _audit_seq(response: Response, seq: int | None) -> None:
    if seq is not None:
        response.headers["Audit-Seq"] = str(seq)


# -- relayed by a client --------------------------------------------------------------

relayed_router = APIRouter(
    prefix="/v1/members", tags=["rights"], dependencies=[Depends(require_role("client"))]
)


@relayed_router.post(
    "/{member_id}/requests",
    status_code=status.HTTP_201_CREATED,
    response_model=RightsRequestOut,
    openapi_extra=problems(
        "scope-required", "not-found", "request-open", "vault-integrity", *AUDITED
    ),
)
def relay_request(
    member_id: str,
    body: RelayedRequestIn,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """A member's request, received and verified by this client (scope ``rights:submit``).

    ``received_at`` (optional, not in the future) is when the member made it:
    the deadline counts from then.
    """
    shown = submit_relayed_request(
        services,
        actor=actor,
        member_id=member_id,
        request_type=body.type,
        changes=body.changes,
        verification=Verification(
            method=body.verification.method.value, reference=body.verification.reference
        ),
        received_at=body.received_at,
        request_id=request_id,
        defer=background.add_task,
    )
    _audit_seq(response, shown.audit_seq)
    return shown.request


# -- the DPO's queue ---------------------------------------------------------------------

queue_router = APIRouter(
    prefix="/v1/requests", tags=["rights"], dependencies=[Depends(require_role(DPO_ROLE))]
)


@queue_router.get("", response_model=RightsRequestsOut, openapi_extra=problems("invalid-cursor"))
def queue(
    services: ServicesDep,
    actor: CurrentActor,
    status_is: Annotated[Status | None, Query(alias="status")] = None,
    type_is: Annotated[RequestType | None, Query(alias="type")] = None,
    overdue: Annotated[bool | None, Query()] = None,
    awaiting_ack: Annotated[bool | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Requests by due date, earliest first; ``overdue=true`` for those past it;
    ``awaiting_ack=true`` for those with a recipient that has not acknowledged an event
    asking for it (a deletion's ``member.deleted``), whatever their status."""
    page = request_queue(
        services,
        actor=actor,
        filters=QueueFilter(
            status=status_is, request_type=type_is, overdue=overdue, awaiting_ack=awaiting_ack
        ),
        cursor=cursor,
        limit=limit,
    )
    return {"items": page.items, "next_cursor": page.next_cursor}


@queue_router.get(
    "/{rights_request}", response_model=RightsRequestOut, openapi_extra=problems("not-found")
)
def show(rights_request: str, services: ServicesDep, actor: CurrentActor) -> dict[str, Any]:
    return show_request(services, actor=actor, rights_request=rights_request)


@queue_router.post(
    "/{rights_request}/approve",
    response_model=RightsRequestOut,
    openapi_extra=problems(
        "not-found", "not-awaiting-approval", "validation-failed", "vault-integrity", *AUDITED
    ),
)
def approve(
    rights_request: str,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Apply a waiting correction, or run a reviewed deletion (a hold still blocks it)."""
    shown = approve_request(
        services,
        actor=actor,
        rights_request=rights_request,
        request_id=request_id,
        defer=background.add_task,
    )
    _audit_seq(response, shown.audit_seq)
    return shown.request


@queue_router.post(
    "/{rights_request}/reject",
    response_model=RightsRequestOut,
    openapi_extra=problems("not-found", "request-state", *AUDITED),
)
def reject(
    rights_request: str,
    body: RejectIn,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Refuse the request; ``reason`` is written for the member, who reads it in the
    request and in the message they are sent."""
    shown = reject_request(
        services,
        actor=actor,
        rights_request=rights_request,
        reason=body.reason,
        request_id=request_id,
        defer=background.add_task,
    )
    _audit_seq(response, shown.audit_seq)
    return shown.request


@queue_router.post(
    "/{rights_request}/extend",
    response_model=RightsRequestOut,
    openapi_extra=problems(
        "not-found",
        "request-state",
        "extension-not-allowed",
        "already-extended",
        "extension-out-of-range",
        *AUDITED,
    ),
)
def extend(
    rights_request: str,
    body: ExtendIn,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, Any]:
    """Move the due date to the end of ``until``'s day: once, within the policy's
    ``extension_max`` (none in the CN profile)."""
    shown = extend_request_deadline(
        services,
        actor=actor,
        rights_request=rights_request,
        reason=body.reason,
        until=body.until,
        request_id=request_id,
    )
    _audit_seq(response, shown.audit_seq)
    return shown.request


# -- legal holds -------------------------------------------------------------------------

holds_router = APIRouter(
    prefix="/v1/members", tags=["rights"], dependencies=[Depends(require_role(DPO_ROLE))]
)


@holds_router.post(
    "/{member_id}/holds",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedOut,
    openapi_extra=problems("not-found", *AUDITED),
)
def place_hold(
    member_id: str,
    body: HoldIn,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, str]:
    """A legal hold: the member's deletion waits while it is active."""
    changed = place_member_hold(
        services,
        actor=actor,
        member_id=member_id,
        reason=body.reason,
        until=body.until,
        request_id=request_id,
    )
    _audit_seq(response, changed.audit_seq)
    return {"id": changed.hold["id"]}


@holds_router.get(
    "/{member_id}/holds", response_model=HoldsOut, openapi_extra=problems("not-found")
)
def holds(member_id: str, services: ServicesDep, actor: CurrentActor) -> dict[str, Any]:
    return {"items": list_member_holds(services, actor=actor, member_id=member_id)}


@holds_router.delete(
    "/{member_id}/holds/{hold_id}",
    response_model=HoldOut,
    openapi_extra=problems("not-found", "hold-ended", *AUDITED),
)
def release_hold(
    member_id: str,
    hold_id: str,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Release a hold; releasing the member's last active one runs their waiting deletion."""
    changed = release_member_hold(
        services,
        actor=actor,
        member_id=member_id,
        hold_id=hold_id,
        request_id=request_id,
        defer=background.add_task,
    )
    _audit_seq(response, changed.audit_seq)
    return changed.hold
