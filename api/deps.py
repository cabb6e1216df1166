"""FastAPI dependencies, as ``Annotated`` aliases.

Transactions never span two threadpool hops. FastAPI runs each sync
dependency and the endpoint in separate threadpool calls; a transaction left
open between them holds SQLite's write lock (or a pooled connection) while
waiting for a free thread, and under load every thread ends up waiting for the
one that holds it. So the key is checked here in its own short read-only
transaction, and each endpoint calls one use case, which opens, commits and
closes its own unit of work inside the endpoint's thread (re-checking the
key under the log-head lock).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import structlog
from fastapi import Depends, Request

from gate.context import Services
from principals.actor import Actor
from principals.clients import authenticate
from principals.members import authenticate_member, well_formed_token

# Dependencies that do no I/O are ``async``: FastAPI runs every sync
# dependency in a threadpool call of its own, and each hop costs latency.


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_request_id(request: Request) -> str:
    return request.state.request_id


RequestId = Annotated[str, Depends(get_request_id)]


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def get_actor(request: Request, services: ServicesDep) -> Actor:
    """The caller of a bearer credential: a system's or a person's API key (``mg_``),
    or a signed-in member's session token (``mgm_``). Routers then require a role."""
    token = bearer_token(request)
    with services.reading() as session:
        if well_formed_token(token):
            actor = authenticate_member(session, token, now=services.clock())
        else:
            actor = authenticate(session, token)
    request.state.actor_id = actor.id
    structlog.contextvars.bind_contextvars(actor=actor.id)
    return actor


CurrentActor = Annotated[Actor, Depends(get_actor)]


def require_role(*roles: str) -> Callable[[Actor], Awaitable[Actor]]:
    async def check(actor: CurrentActor) -> Actor:
        actor.require_role(*roles)
        return actor

    return check
