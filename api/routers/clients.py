"""Client registration and revocation (role ``admin``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status

from api.deps import CurrentActor, RequestId, ServicesDep, require_role
from api.openapi import AUDITED, problems
from api.schemas import (
    ClientCreatedOut,
    ClientIn,
    ClientOut,
    DeliveryAttemptsOut,
    WebhookIn,
    WebhookOut,
    WebhookSecretOut,
    WebhookSetOut,
)
from gate.clients import list_clients, register_client, revoke_client
from gate.webhooks import (
    delivery_attempts,
    remove_webhook,
    rotate_webhook_secret,
    set_webhook,
    webhook_state,
)

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


# -- webhooks -----------------------------------------------------------------------


@router.post(
    "/{client_id}/webhook",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookSetOut,
    summary="Register (or replace) the client's webhook; the secret is shown once",
    openapi_extra=problems("not-found", "webhook-url-refused", *AUDITED),
)
def put_webhook(
    client_id: str,
    body: WebhookIn,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, Any]:
    issued = set_webhook(
        services, actor=actor, client=client_id, url=body.url, request_id=request_id
    )
    response.headers["Audit-Seq"] = str(issued.audit_seq)
    response.headers["Cache-Control"] = "no-store"
    return {
        "client_id": issued.client_id,
        "url": issued.url,
        "origin": issued.origin,
        "secret": issued.secret,
    }


@router.get("/{client_id}/webhook", response_model=WebhookOut, openapi_extra=problems("not-found"))
def get_webhook(client_id: str, services: ServicesDep) -> dict[str, Any]:
    return webhook_state(services, client_id)


@router.post(
    "/{client_id}/webhook/rotate",
    response_model=WebhookSecretOut,
    summary="A new signing secret, shown once; the old one signs too for the overlap window",
    openapi_extra=problems("not-found", *AUDITED),
)
def rotate_webhook(
    client_id: str,
    services: ServicesDep,
    actor: CurrentActor,
    request_id: RequestId,
    response: Response,
) -> dict[str, Any]:
    rotated = rotate_webhook_secret(services, actor=actor, client=client_id, request_id=request_id)
    response.headers["Audit-Seq"] = str(rotated.audit_seq)
    response.headers["Cache-Control"] = "no-store"
    return {
        "client_id": rotated.client_id,
        "secret": rotated.secret,
        "previous_secret_valid_until": rotated.previous_valid_until.isoformat(),
    }


@router.delete(
    "/{client_id}/webhook",
    status_code=status.HTTP_204_NO_CONTENT,
    openapi_extra=problems("not-found", *AUDITED),
)
def delete_webhook(
    client_id: str, services: ServicesDep, actor: CurrentActor, request_id: RequestId
) -> Response:
    seq = remove_webhook(services, actor=actor, client=client_id, request_id=request_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"Audit-Seq": str(seq)})


@router.get(
    "/{client_id}/deliveries",
    response_model=DeliveryAttemptsOut,
    summary="The client's webhook delivery attempts, newest first",
    openapi_extra=problems("not-found", "invalid-cursor"),
)
def deliveries(
    client_id: str,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    page = delivery_attempts(services, client_id, cursor=cursor, limit=limit)
    return {"items": page.items, "next_cursor": page.next_cursor}
