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


def authenticate_bearer(request: Request, services: Services) -> Actor:
    """The caller of a bearer credential: a system's or a person's API key (``mg_``),
    or a signed-in member's session token (``mgm_``), in a short read-only
    transaction of its own. Bound to the request's log lines by id."""
    token = bearer_token(request)
    with services.reading() as session:
        if well_formed_token(token):
            actor = authenticate_member(session, token, now=services.clock())
        else:
            actor = authenticate(session, token)
    request.state.actor_id = actor.id
    structlog.contextvars.bind_contextvars(actor=actor.id)
    return actor


def get_actor(request: Request, services: ServicesDep) -> Actor:
    """The authenticated caller (``authenticate_bearer``); routers then require a role."""
    return authenticate_bearer(request, services)


CurrentActor = Annotated[Actor, Depends(get_actor)]


def require_role(*roles: str) -> Callable[[Actor], Awaitable[Actor]]:
    async def check(actor: CurrentActor) -> Actor:
        actor.require_role(*roles)
        return actor

    return check


async def get_client_address(request: Request) -> str | None:
    """The client's IP address, for rate limits only: use cases hash it, and it is never
    logged or stored. Behind a reverse proxy it is the proxy's, unless the server
    trusts the proxy's X-Forwarded-For (``MEMBERGUARD_TRUSTED_PROXIES``)."""
    return request.client.host if request.client is not None else None


ClientAddress = Annotated[str | None, Depends(get_client_address)]


def preferred_locale(accept_language: str | None) -> str:
    """``en`` when the client prefers English to Chinese, else ``zh-CN`` (the default).

    Only the two languages messages are written in are considered, by their
    quality values (RFC 9110 section 12.5.4); the first listed wins a tie.
    """
    best: tuple[float, int, str] | None = None
    for index, part in enumerate((accept_language or "").split(",")[:32]):
        tag, *params = (piece.strip() for piece in part.split(";"))
        primary = tag.lower().split("-")[0]
        if primary not in ("en", "zh"):
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if not 0 < quality <= 1:  # refused (q=0), or not a quality value at all
            continue
        candidate = (-quality, index, "en" if primary == "en" else "zh-CN")
        if best is None or candidate < best:
            best = candidate
    return best[2] if best is not None else "zh-CN"


async def get_locale(request: Request) -> str:
    return preferred_locale(request.headers.get("accept-language"))


Locale = Annotated[str, Depends(get_locale)]
