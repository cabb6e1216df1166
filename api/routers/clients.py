"""Client registration and revocation (role ``admin``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response, status

from api.deps import (
    CurrentActor,
    RequestId,
    RequestUoW,
    ServicesDep,
    TransactionalRoute,
    require_role,
)
from api.schemas import ClientCreatedOut, ClientIn, ClientOut
from gate.clients import add_client, list_clients, revoke_client

router = APIRouter(
    route_class=TransactionalRoute,
    prefix="/v1/clients",
    tags=["clients"],
    dependencies=[Depends(require_role("admin"))],
)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ClientCreatedOut)
def create(
    body: ClientIn,
    uow: RequestUoW,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, Any]:
    issued = add_client(
        uow.session,
        policy=services.policy,
        name=body.name,
        role=body.role,
        purposes=body.purposes,
        scopes=body.scopes,
        actor=actor,
        request_id=request_id,
        clock=services.clock,
    )
    services.commit(uow)
    response.headers["Audit-Seq"] = str(issued.audit_seq)
    response.headers["Cache-Control"] = "no-store"
    return {**issued.client, "key": issued.key}


@router.get("", response_model=list[ClientOut])
def list_all(services: ServicesDep) -> list[dict[str, Any]]:
    with services.read_uow() as uow:
        return list_clients(uow.session)


@router.delete("/{client_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke(
    client_id: str,
    uow: RequestUoW,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
) -> Response:
    seq = revoke_client(
        uow.session,
        policy=services.policy,
        client_id=client_id,
        actor=actor,
        request_id=request_id,
        clock=services.clock,
    )
    services.commit(uow)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"Audit-Seq": str(seq)})
