"""FastAPI dependencies, as ``Annotated`` aliases.

Transactions never span two threadpool hops. FastAPI runs each sync
dependency and the endpoint in separate threadpool calls; a transaction left
open between them holds SQLite's write lock (or a pooled connection) while
waiting for a free thread, and under load every thread ends up waiting for the
one that holds it. So the key is checked in its own short read-only
transaction, the use case's transaction begins inside the endpoint, and
``in_transaction`` (applied to every route by ``TransactionalRoute``) rolls it
back there if the endpoint fails before committing.
Read-only endpoints use ``services.read_uow()`` inside the endpoint.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any, ParamSpec, TypeVar

import structlog
from fastapi import Depends, Request
from fastapi.routing import APIRoute

from core.db import UnitOfWork
from gate.clients import Actor, authenticate
from gate.context import Services

# Dependencies that do no I/O are ``async``: FastAPI runs every sync
# dependency in a threadpool call of its own, and each hop costs latency.


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_uow(request: Request, services: ServicesDep) -> Iterator[UnitOfWork]:
    # The session begins lazily, at the endpoint's first statement.
    with services.uow() as uow:
        yield uow


RequestUoW = Annotated[UnitOfWork, Depends(get_uow)]


async def get_request_id(request: Request) -> str:
    return request.state.request_id


RequestId = Annotated[str, Depends(get_request_id)]


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def get_actor(request: Request, services: ServicesDep) -> Actor:
    with services.read_uow() as uow:
        actor = authenticate(uow.session, bearer_token(request))
    request.state.actor_id = actor.id
    structlog.contextvars.bind_contextvars(actor=actor.id)
    return actor


CurrentActor = Annotated[Actor, Depends(get_actor)]


def require_role(*roles: str) -> Callable[[Actor], Awaitable[Actor]]:
    async def check(actor: CurrentActor) -> Actor:
        actor.require_role(*roles)
        return actor

    return check


P = ParamSpec("P")
R = TypeVar("R")


def in_transaction(endpoint: Callable[P, R]) -> Callable[P, R]:
    """Roll the request's unit of work back in the endpoint's own thread if it fails."""

    @functools.wraps(endpoint)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return endpoint(*args, **kwargs)
        except BaseException:
            uow = kwargs.get("uow")
            if isinstance(uow, UnitOfWork):
                uow.rollback()
            raise

    return run


class TransactionalRoute(APIRoute):
    """Every sync endpoint of a router runs ``in_transaction``, so none can forget it."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = in_transaction(endpoint)
        super().__init__(path, endpoint, **kwargs)
