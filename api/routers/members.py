"""Endpoints for internal systems (role ``client``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Body, Depends, Query, Response, status
from fastapi.responses import StreamingResponse

from api.deps import CurrentActor, RequestId, ServicesDep, require_role
from api.openapi import AUDITED, problems
from api.schemas import (
    ConsentIn,
    ConsentRecordedOut,
    ConsentStateOut,
    CreatedOut,
    LookupIn,
    LookupOut,
)
from consent.registry import ConsentChange
from core.errors import DomainError
from gate.consents import read_member_consents, record_member_consent
from gate.export import export_members
from gate.lookups import lookup_members
from gate.writes import create_member_record, update_member_record

log = structlog.get_logger("memberguard.export")

router = APIRouter(
    prefix="/v1/members",
    tags=["members"],
    dependencies=[Depends(require_role("client"))],
)

PurposeQuery = Annotated[
    str, Query(min_length=1, max_length=64, description="Purpose id from the policy")
]
MemberFields = Annotated[
    dict[str, Any], Body(description='Field values by field id, e.g. {"name": "张三"}')
]


def _audit_seq(response: Response, seq: int) -> None:
    response.headers["Audit-Seq"] = str(seq)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedOut,
    openapi_extra=problems("scope-required", *AUDITED),
)
def create_member(
    body: MemberFields,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, str]:
    written = create_member_record(
        services=services, actor=actor, values=body, request_id=request_id
    )
    _audit_seq(response, written.audit_seq)
    return {"id": written.id}


@router.patch(
    "/{member_id}",
    response_model=CreatedOut,
    # An update unwraps the member's data key: a tampered one fails its check.
    openapi_extra=problems("scope-required", "not-found", "vault-integrity", *AUDITED),
)
def update_member(
    member_id: str,
    body: MemberFields,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, str]:
    written = update_member_record(
        services=services, actor=actor, member_id=member_id, values=body, request_id=request_id
    )
    _audit_seq(response, written.audit_seq)
    return {"id": written.id}


@router.post(
    "/lookup",
    response_model=LookupOut,
    openapi_extra=problems(
        "purpose-not-allowed", "lookup-not-allowed", "unknown-purpose", "rate-limited", *AUDITED
    ),
)
def lookup(
    body: LookupIn,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, list[str]]:
    field_name, value = ("phone", body.phone) if body.phone is not None else ("email", body.email)
    result = lookup_members(
        services,
        actor=actor,
        field_name=field_name,
        value=value,
        purpose=body.purpose,
        request_id=request_id,
    )
    _audit_seq(response, result.audit_seq)
    return {"ids": result.ids}


@router.get(
    "",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}}, "description": "One member per line"}
    },
    openapi_extra=problems("purpose-not-allowed", "unknown-purpose", "vault-integrity", *AUDITED),
)
def export(
    purpose: PurposeQuery,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
) -> StreamingResponse:
    started = export_members(services, actor=actor, purpose=purpose, request_id=request_id)

    def lines() -> Iterator[bytes]:
        try:
            for item in started.lines:
                yield json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            yield json.dumps(started.trailer, separators=(",", ":")).encode() + b"\n"
        except DomainError as exc:
            # The status line is long gone: the only honest signal left is to
            # cut the stream off before its final chunk, which every HTTP
            # client reports as an incomplete body. Nothing past the last
            # recorded batch was sent.
            log.warning("export.aborted", problem=exc.slug, **started.stats)
            raise

    return StreamingResponse(
        lines(), media_type="application/x-ndjson", headers={"Audit-Seq": str(started.first_seq)}
    )


@router.post(
    "/{member_id}/consents",
    status_code=status.HTTP_201_CREATED,
    response_model=ConsentRecordedOut,
    openapi_extra=problems(
        "scope-required",
        "consent-self-grant",
        "separate-consent-collector-only",
        "not-found",
        "bundled-consent",
        "unknown-purpose",
        *AUDITED,
    ),
)
def record_consent(
    member_id: str,
    body: ConsentIn,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, Any]:
    change = ConsentChange(
        purposes=body.purpose_list,
        status=body.status,
        channel=body.channel,
        collected_at=body.collected_at,
        notice_version=body.notice_version,
    )
    recorded = record_member_consent(
        services,
        actor=actor,
        member_id=member_id,
        change=change,
        request_id=request_id,
    )
    _audit_seq(response, recorded.audit_seq)
    return {"events": recorded.events, "receipt": recorded.receipt, "state": recorded.state}


@router.get(
    "/{member_id}/consents",
    response_model=ConsentStateOut,
    openapi_extra=problems("scope-required", "not-found", *AUDITED),
)
def consents(
    member_id: str,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, Any]:
    states = read_member_consents(
        services=services, actor=actor, member_id=member_id, request_id=request_id
    )
    _audit_seq(response, states.audit_seq)
    return {"purposes": states.purposes}
