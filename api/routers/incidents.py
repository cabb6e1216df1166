"""Breach incidents (role ``dpo``): ``DESIGN-workflows.md``, "Breach incidents"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Response, status
from fastapi.responses import StreamingResponse

from api.deps import CurrentActor, RequestId, ServicesDep, require_role
from api.openapi import AUDITED, problems
from api.schemas import (
    AssessIn,
    AuthorityNotifiedIn,
    CloseIn,
    IncidentIn,
    IncidentOut,
    IncidentsOut,
    NoticeTotalsOut,
    NotifyMembersIn,
)
from breach.states import Status
from gate.incidents import (
    DPO_ROLE,
    affected_members,
    assess_incident,
    close_incident,
    incident_notices,
    incident_report,
    list_incidents,
    notify_members,
    open_incident,
    record_authority_notified,
    show_incident,
)

router = APIRouter(
    prefix="/v1/incidents", tags=["incidents"], dependencies=[Depends(require_role(DPO_ROLE))]
)

_STEP = ("not-found", "incident-closed", *AUDITED)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=IncidentOut,
    openapi_extra=problems(*AUDITED),
)
def open_(
    body: IncidentIn, services: ServicesDep, actor: CurrentActor, request_id: RequestId
) -> dict[str, Any]:
    """Open an incident; its affected members are computed from the audit log now."""
    return open_incident(
        services,
        actor=actor,
        title=body.title,
        description=body.description,
        detected_at=body.detected_at,
        severity=body.severity,
        scope=body.scope.as_mapping(),
        request_id=request_id,
    )


@router.get("", response_model=IncidentsOut)
def list_(
    services: ServicesDep,
    actor: CurrentActor,
    status_is: Annotated[Status | None, Query(alias="status")] = None,
) -> dict[str, Any]:
    """Incidents by the authority's deadline, earliest first."""
    return {"items": list_incidents(services, actor=actor, status=status_is)}


@router.get("/{incident_id}", response_model=IncidentOut, openapi_extra=problems("not-found"))
def show(incident_id: str, services: ServicesDep, actor: CurrentActor) -> dict[str, Any]:
    return show_incident(services, actor=actor, incident_id=incident_id)


@router.get(
    "/{incident_id}/affected",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/x-ndjson": {}},
            "description": "One affected member per line: "
            '{"member_id", "fields", "views", "identity", "records", "shredded", "notice", '
            '"notice_failure"}',
        }
    },
    openapi_extra=problems("not-found", *AUDITED),
)
def affected(
    incident_id: str, services: ServicesDep, actor: CurrentActor, request_id: RequestId
) -> StreamingResponse:
    """The affected members (recorded as ``incident.affected`` before the first line)."""
    listed = affected_members(services, actor=actor, incident_id=incident_id, request_id=request_id)

    def lines() -> Iterator[bytes]:
        for item in listed.lines:
            yield json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    return StreamingResponse(
        lines(), media_type="application/x-ndjson", headers={"Audit-Seq": str(listed.audit_seq)}
    )


@router.get(
    "/{incident_id}/report",
    response_class=Response,
    responses={
        200: {
            "content": {"application/json": {}, "text/html": {}, "application/pdf": {}},
            "description": "The regulator report (GDPR Art. 33(3), PIPL Art. 57)",
        }
    },
    openapi_extra=problems("not-found", "report-format-unavailable", *AUDITED),
)
def report(
    incident_id: str,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    report_format: Annotated[Literal["json", "html", "pdf"], Query(alias="format")] = "json",
    lang: Annotated[Literal["zh-CN", "en"] | None, Query()] = None,
) -> Response:
    """``lang``: zh-CN or en; by default the policy jurisdiction's language."""
    made = incident_report(
        services,
        actor=actor,
        incident_id=incident_id,
        report_format=report_format,
        locale=lang,
        request_id=request_id,
    )
    disposition = "inline" if report_format == "html" else "attachment"
    return Response(
        made.body,
        media_type=made.media_type,
        headers={
            "Audit-Seq": str(made.audit_seq),
            "Content-Disposition": f'{disposition}; filename="{made.filename}"',
        },
    )


@router.post(
    "/{incident_id}/assess",
    response_model=IncidentOut,
    openapi_extra=problems(*_STEP),
)
def assess(
    incident_id: str,
    body: AssessIn,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
) -> dict[str, Any]:
    """Record (or revise) the likely consequences, the measures and the advice to members."""
    return assess_incident(
        services,
        actor=actor,
        incident_id=incident_id,
        consequences=body.consequences,
        measures=body.measures,
        member_advice=body.member_advice,
        request_id=request_id,
    )


@router.post(
    "/{incident_id}/authority-notified",
    response_model=IncidentOut,
    openapi_extra=problems(*_STEP, "incident-not-assessed", "authority-notified"),
)
def authority_notified(
    incident_id: str,
    body: AuthorityNotifiedIn,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
) -> dict[str, Any]:
    return record_authority_notified(
        services,
        actor=actor,
        incident_id=incident_id,
        at=body.at,
        authority=body.authority,
        reference=body.reference,
        request_id=request_id,
    )


@router.post(
    "/{incident_id}/notify-members",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=NoticeTotalsOut,
    openapi_extra=problems(*_STEP, "incident-not-assessed", "breach-purpose-missing"),
)
def notify(
    incident_id: str,
    body: NotifyMembersIn,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    background: BackgroundTasks,
) -> dict[str, int]:
    """Queue one notice per affected member; they are sent after this answer (and by the
    worker). Asking again sends no one a second notice."""
    return notify_members(
        services,
        actor=actor,
        incident_id=incident_id,
        channels=body.channels,
        request_id=request_id,
        defer=background.add_task,
    )


@router.get(
    "/{incident_id}/notices",
    response_model=NoticeTotalsOut,
    openapi_extra=problems("not-found"),
)
def notices(incident_id: str, services: ServicesDep, actor: CurrentActor) -> dict[str, int]:
    """The notices' totals; each member's status is in the affected list (``notice``)."""
    return incident_notices(services, actor=actor, incident_id=incident_id)


@router.post(
    "/{incident_id}/close",
    response_model=IncidentOut,
    openapi_extra=problems(*_STEP),
)
def close(
    incident_id: str,
    body: CloseIn,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
) -> dict[str, Any]:
    return close_incident(
        services, actor=actor, incident_id=incident_id, summary=body.summary, request_id=request_id
    )
