"""Client registration and revocation (role ``admin``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response, status

from api.deps import CurrentActor, RequestId, ServicesDep, require_role
from api.openapi import AUDITED, problems
from api.schemas import ClientCreatedOut, ClientIn, ClientOut
from gate.clients import list_clients, register_client, revoke_client

router = APIRouter(
    prefix="/v1/clients",
    tags=["clients"],
    dependencies=[Depends(require_role("admin"))],
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ClientCreatedOut,
    openapi_extra=problems("client-exists", "conflict", *AUDITED),
)
def create(
    body: ClientIn,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, Any]:
    issued = register_client(
        services,
        actor=actor,
        name=body.name,
        role=body.role,
        purposes=body.purposes,
        scopes=body.scopes,
        request_id=request_id,
    )
    response.headers["Audit-Seq"] = str(issued.audit_seq)
    response.headers["Cache-Control"] = "no-store"
    return {**issued.client, "key": issued.key}


@router.get("", response_model=list[ClientOut])
def list_all(services: ServicesDep) -> list[dict[str, Any]]:
    return list_clients(services)


@router.delete(
    "/{client_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    openapi_extra=problems("not-found", "already-revoked", *AUDITED),
)
def revoke(
    client_id: str, services: ServicesDep, actor: CurrentActor, request_id: RequestId
) -> Response:
    seq = revoke_client(services, actor=actor, client=client_id, request_id=request_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"Audit-Seq": str(seq)})
