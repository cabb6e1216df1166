"""The application factory. Nothing is built at import time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from api import problems
from api.deps import get_actor
from api.middleware import BodyLimit, RequestContext
from api.routers import audit, clients, health, members, reads
from core.settings import Settings
from gate.batching import ReadBatcher
from gate.context import Services, build_services


def _add_docs(app: FastAPI, *, public: bool) -> None:
    """OpenAPI and Swagger UI: any valid key (any role) may read them."""
    dependencies = [] if public else [Depends(get_actor)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=dependencies)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=dependencies)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="memberguard API")


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """The app for ``services`` (built from ``settings`` when not given: one or the other)."""
    if services is None:
        services = build_services(settings or Settings())
    elif settings is not None and settings is not services.settings:
        raise ValueError("pass settings or services (which carry their settings), not both")
    settings = services.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A fresh batcher per run of the app: a closed one refuses every read.
        app.state.reads = ReadBatcher(services)
        app.state.readiness = health.Readiness(services)
        yield
        # Decides and answers whatever is still queued, off the event loop.
        await asyncio.to_thread(app.state.reads.close)

    app = FastAPI(
        lifespan=lifespan,
        title="memberguard",
        version="1",
        # Served below, behind authentication unless settings.docs_public.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        description=(
            "Privacy gate for loyalty-programme member data. Every read is decided by policy "
            "and consent, recorded in a tamper-evident audit log, then released."
        ),
    )
    app.state.services = services
    app.state.settings = settings
    app.state.reads = ReadBatcher(services)  # replaced by each run of the lifespan
    app.state.readiness = health.Readiness(services)  # likewise
    problems.install(app)
    for router in (
        health.router,
        reads.router,
        members.router,
        audit.router,
        audit.members_router,
        clients.router,
    ):
        app.include_router(router)
    _add_docs(app, public=settings.docs_public)
    # Outermost first: the request id exists before the body limit can reject.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext)
    return app
