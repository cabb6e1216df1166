"""A signed-in member's own rights requests (role ``member``: an ``mgm_`` session token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, BackgroundTasks, Depends, Response, status

from api.deps import CurrentActor, Locale, RequestId, ServicesDep, require_role
from api.openapi import AUDITED, problems
from api.schemas import RightsRequestIn, RightsRequestOut, RightsRequestsOut
from gate.rights import (
    cancel_own_request,
    download_copy,
    list_own_requests,
    show_own_request,
    submit_own_request,
)
from principals.members import MEMBER_ROLE

router = APIRouter(
    prefix="/v1/me/requests",
    tags=["me"],
    dependencies=[Depends(require_role(MEMBER_ROLE))],
)


def _audit_seq(response: Response, seq: int | None) -> None:
    if seq is not None:
        response.headers["Audit-Seq"] = str(seq)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RightsRequestOut,
    # An access request opens the member's fields to build the copy.
    openapi_extra=problems("not-found", "request-open", "vault-integrity", *AUDITED),
)
def submit(
    body: RightsRequestIn,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
    locale: Locale,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Ask for a copy (access), a correction, or the deletion of your data.

    An access request completes at once: download the copy from
    ``/v1/me/requests/{id}/copy`` while it is available. Self-service fields of
    a correction are applied at once; others wait for the DPO. A deletion runs
    at once unless a legal hold blocks it (``on_hold``) or the policy has the
    DPO review deletions. You are sent a message (e-mail, else SMS) saying so,
    in English with ``Accept-Language: en`` (default zh-CN).
    """
    shown = submit_own_request(
        services,
        actor=actor,
        request_type=body.type,
        changes=body.changes,
        request_id=request_id,
        locale=locale,
        # The member's message goes once the answer has: the transport's time is not
        # in the answer, and its failure does not change it.
        defer=background.add_task,
    )
    _audit_seq(response, shown.audit_seq)
    return shown.request


@router.get("", response_model=RightsRequestsOut)
def list_requests(services: ServicesDep, actor: CurrentActor) -> dict[str, Any]:
    """Your requests, newest first."""
    return {"items": list_own_requests(services, actor=actor), "next_cursor": None}


@router.get(
    "/{rights_request}", response_model=RightsRequestOut, openapi_extra=problems("not-found")
)
def show(rights_request: str, services: ServicesDep, actor: CurrentActor) -> dict[str, Any]:
    return show_own_request(services, actor=actor, rights_request=rights_request)


@router.post(
    "/{rights_request}/cancel",
    response_model=RightsRequestOut,
    openapi_extra=problems("not-found", "request-state", *AUDITED),
)
def cancel(
    rights_request: str,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, Any]:
    """Withdraw a request that is not completed, rejected or cancelled yet."""
    shown = cancel_own_request(
        services, actor=actor, rights_request=rights_request, request_id=request_id
    )
    _audit_seq(response, shown.audit_seq)
    return shown.request


@router.get(
    "/{rights_request}/copy",
    openapi_extra=problems("not-found", "copy-expired", "vault-integrity", *AUDITED),
    responses={200: {"description": "The copy (format memberguard.copy/1; see the README)"}},
)
def copy(
    rights_request: str,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, Any]:
    """Your access copy, while it is available (410 ``copy-expired`` after). Audited."""
    download = download_copy(
        services, actor=actor, rights_request=rights_request, request_id=request_id
    )
    _audit_seq(response, download.audit_seq)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="memberguard-copy-{rights_request}.json"'
    )
    return download.document
