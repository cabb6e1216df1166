"""FastAPI dependencies, as ``Annotated`` aliases.

One unit of work per request: the key is resolved and the use case runs in the
same transaction (rolled back at the end unless the use case committed).
Streaming endpoints end it after authentication and run one short
transaction per batch instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

import structlog
from fastapi import Depends, Request

from core.db import UnitOfWork
from gate.clients import Actor, authenticate
from gate.context import Services


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_uow(request: Request, services: ServicesDep) -> Iterator[UnitOfWork]:
    with services.uow() as uow:
        yield uow


RequestUoW = Annotated[UnitOfWork, Depends(get_uow)]


def get_request_id(request: Request) -> str:
    return request.state.request_id


RequestId = Annotated[str, Depends(get_request_id)]


def get_actor(request: Request, uow: RequestUoW) -> Actor:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    actor = authenticate(uow.session, token.strip() if scheme.lower() == "bearer" else None)
    request.state.actor_id = actor.id
    structlog.contextvars.bind_contextvars(actor=actor.id)
    return actor


CurrentActor = Annotated[Actor, Depends(get_actor)]


def require_role(*roles: str) -> Callable[[Actor], Actor]:
    def check(actor: CurrentActor) -> Actor:
        actor.require_role(*roles)
        return actor

    return check
