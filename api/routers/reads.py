"""The gated single-member read, the hot path: ``GET /v1/members/{member_id}``.

The route is ``async`` and does no blocking work itself: the key is
authenticated, the read decided and its entry committed by the group-commit
thread (``gate.batching.ReadBatcher``), in the same transaction, under the
log-head lock. Only then are the released fields decrypted and masked, here.
No threadpool hop, no separate authentication transaction.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import RequestId, authenticate_bearer, bearer_token
from api.openapi import AUDITED, problems
from api.routers.members import PurposeQuery
from api.schemas import MemberOut
from core.errors import Unauthenticated
from gate.batching import ReadBatcher
from gate.reads import ReadRequest, Refused
from principals.clients import well_formed_key
from principals.members import well_formed_token

router = APIRouter(prefix="/v1/members", tags=["members"])


@router.get(
    "/{member_id}",
    response_model=MemberOut,
    summary="Read one member's fields for a purpose (role client)",
    openapi_extra=problems(
        "purpose-not-allowed",
        "consent-required",
        "consent-outdated",
        "not-found",
        "unknown-purpose",
        "vault-integrity",
        *AUDITED,
    ),
)
async def read(
    member_id: str, purpose: PurposeQuery, request: Request, request_id: RequestId
) -> JSONResponse:
    token = bearer_token(request)
    if well_formed_token(token):
        # A member's session: authenticated (401 if it is not live), then refused
        # by role like on every client endpoint. Off the hot path: members never
        # read here.
        actor = await run_in_threadpool(authenticate_bearer, request, request.app.state.services)
        actor.require_role("client")
    if not well_formed_key(token):
        raise Unauthenticated("missing or malformed API key")
    batcher: ReadBatcher = request.app.state.reads
    outcome = await batcher.read(
        ReadRequest(
            credential=token,
            member_id=member_id,
            purpose=purpose,
            request_id=request_id,
            roles=("client",),
        )
    )
    if outcome.actor is not None:
        request.state.actor_id = outcome.actor.id
        structlog.contextvars.bind_contextvars(actor=outcome.actor.id)
    if isinstance(outcome, Refused):
        raise outcome.error
    release = outcome.release(batcher.services)
    # The body is built here rather than validated against MemberOut: it has
    # that shape by construction, and validation would cost more than the read.
    return JSONResponse(
        {
            "id": release.id,
            "purpose": release.purpose,
            "fields": release.fields,
            "withheld": release.withheld,
        },
        headers={"Audit-Seq": str(release.audit_seq)},
    )
