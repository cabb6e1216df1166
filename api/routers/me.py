"""Endpoints for members (role ``member``, a session token), and their sign-in.

Signing in is the only thing here that takes no credential: it is how a member
gets one (``signin_router``). Everything else needs a member token; a client's
or staff's key gets ``403 role-required``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Response, status

from api.deps import ClientAddress, CurrentActor, Locale, RequestId, ServicesDep, require_role
from api.openapi import AUDITED, problems
from api.schemas import (
    AccessLogOut,
    ConsentRecordedOut,
    LoginIn,
    OwnConsentIn,
    OwnConsentsOut,
    OwnRecordOut,
    SessionOut,
    SignInChallengeOut,
    VerifyIn,
)
from gate.me import (
    prove_own_entry,
    read_own_access_log,
    read_own_consents,
    read_own_record,
    record_own_consent,
)
from gate.signin import request_sign_in_code, sign_out, verify_sign_in_code
from principals.members import MEMBER_ROLE

signin_router = APIRouter(prefix="/v1/me", tags=["members' own"])
router = APIRouter(
    prefix="/v1/me", tags=["members' own"], dependencies=[Depends(require_role(MEMBER_ROLE))]
)


@signin_router.post(
    "/login",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SignInChallengeOut,
    summary="Ask for a one-time sign-in code (no credential)",
    description="Always 202 with a challenge, whether or not a member holds the contact; the "
    "code goes to the contact only if exactly one member does. `Accept-Language: en` for "
    "English messages (default zh-CN).",
    openapi_extra=problems("rate-limited", *AUDITED, public=True),
)
def login(
    body: LoginIn,
    services: ServicesDep,
    request_id: RequestId,
    client_address: ClientAddress,
    locale: Locale,
    background: BackgroundTasks,
) -> dict[str, str]:
    field_name, value = ("phone", body.phone) if body.phone is not None else ("email", body.email)
    started = request_sign_in_code(
        services,
        field_name=field_name,
        value=value,
        locale=locale,
        client_address=client_address,
        request_id=request_id,
        # The code is sent once the answer has gone: how long the transport takes
        # must not tell a member's contact from anyone else's.
        defer=background.add_task,
    )
    return {"challenge": started.challenge, "expires_at": started.expires_at.isoformat()}


@signin_router.post(
    "/login/verify",
    response_model=SessionOut,
    summary="Answer the challenge with the code: a member token (no credential)",
    openapi_extra=problems(
        "invalid-code", "challenge-closed", "rate-limited", *AUDITED, public=True
    ),
)
def verify(
    body: VerifyIn,
    services: ServicesDep,
    request_id: RequestId,
    client_address: ClientAddress,
) -> dict[str, str]:
    opened = verify_sign_in_code(
        services,
        challenge=body.challenge,
        code=body.code,
        client_address=client_address,
        request_id=request_id,
    )
    return {"token": opened.token, "expires_at": opened.expires_at.isoformat()}


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="End this member token's session",
    openapi_extra=problems(*AUDITED),
)
def logout(services: ServicesDep, actor: CurrentActor, request_id: RequestId) -> Response:
    sign_out(services, actor=actor, request_id=request_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "",
    response_model=OwnRecordOut,
    summary="All of the member's own fields, in clear (audited)",
    openapi_extra=problems("vault-integrity", *AUDITED),
)
def me(
    services: ServicesDep, actor: CurrentActor, request_id: RequestId, response: Response
) -> dict[str, Any]:
    record = read_own_record(services, actor=actor, request_id=request_id)
    response.headers["Audit-Seq"] = str(record.audit_seq)
    return {"id": record.id, "fields": record.fields}


@router.get(
    "/consents",
    response_model=OwnConsentsOut,
    summary="The member's consent per purpose that rests on consent",
)
def consents(services: ServicesDep, actor: CurrentActor) -> dict[str, Any]:
    return {"purposes": read_own_consents(services, actor=actor)}


@router.post(
    "/consents",
    status_code=status.HTTP_201_CREATED,
    response_model=ConsentRecordedOut,
    summary="Grant or withdraw consents (channel web); a separate consent alone",
    openapi_extra=problems("separate-consent-alone", "unknown-purpose", *AUDITED),
)
def record_consents(
    body: OwnConsentIn,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, Any]:
    recorded = record_own_consent(
        services, actor=actor, purposes=body.purposes, status=body.status, request_id=request_id
    )
    response.headers["Audit-Seq"] = str(recorded.audit_seq)
    return {"events": recorded.events, "receipt": recorded.receipt, "state": recorded.state}


@router.get(
    "/access-log",
    response_model=AccessLogOut,
    summary="Who received what of the member's data, and every other entry about them",
    openapi_extra=problems("invalid-cursor"),
)
def access_log(
    services: ServicesDep,
    actor: CurrentActor,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    page = read_own_access_log(services, actor=actor, cursor=cursor, limit=limit)
    return {"items": page.items, "next_cursor": page.next_cursor}


@router.get(
    "/access-log/{seq}/proof",
    summary="Inclusion proof of one of the member's entries, with the log's verifier key",
    openapi_extra=problems("not-found", "no-checkpoint"),
)
def access_log_proof(
    seq: Annotated[int, Path(ge=1, le=2**62)], services: ServicesDep, actor: CurrentActor
) -> dict[str, Any]:
    """`{leaf_index, tree_size, entry, leaf_hash, hashes, checkpoint, verifier_key, shared}`
    against the latest signed checkpoint: check it as an auditor would (RFC 9162, C2SP
    signed note). `entry` is null (`shared`) for an entry that names other members too;
    an entry newer than the latest checkpoint is `404 no-checkpoint` until the next."""
    return prove_own_entry(services, actor=actor, seq=seq)
