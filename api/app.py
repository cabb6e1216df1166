"""The application factory. Nothing is built at import time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from swagger_ui_bundle import swagger_ui_path

from api import openapi, problems
from api.deps import get_actor
from api.middleware import BodyLimit, RequestContext
from api.routers import (
    audit,
    clients,
    events,
    health,
    incidents,
    me,
    members,
    my_requests,
    reads,
    rights,
)
from core.errors import NotFound
from core.settings import Settings
from gate.batching import ReadBatcher
from gate.context import Services, build_services
from gate.keyholders import KeyringHeartbeat
from web import install as install_web
from worker.jobs import Job, default_jobs
from worker.runner import BackgroundWorker

# Swagger UI's files, served from the swagger-ui-bundle package: FastAPI's
# default page loads them from a CDN, which left /docs blank offline.
DOCS_ASSETS = "/docs/assets"
DOCS_ASSET_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})


def _add_docs(app: FastAPI, *, public: bool) -> None:
    """OpenAPI and Swagger UI: any valid credential (a key of any role, or a member's
    session token) may read them.

    Swagger UI's own files hold no data, but they sit behind the same rule as
    the page that loads them (a credential, or ``docs_public``), so that nothing
    is public but the health probes and the members' sign-in unless the operator
    opens the docs as a whole.
    """
    dependencies = [] if public else [Depends(get_actor)]
    assets = Path(swagger_ui_path)

    @app.get("/openapi.json", include_in_schema=False, dependencies=dependencies)
    def openapi_document() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=dependencies)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="memberguard API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
            # No badge fetched from the public validator service either.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(DOCS_ASSETS + "/{name}", include_in_schema=False, dependencies=dependencies)
    def docs_asset(name: str) -> FileResponse:
        # Only the files the page names: never a path into the package.
        if name not in DOCS_ASSET_FILES:
            raise NotFound("no such file")
        return FileResponse(assets / name)


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    jobs: Sequence[Job] | None = None,
) -> FastAPI:
    """The app for ``services`` (built from ``settings`` when not given: one or the other).

    Unless ``settings.worker_in_server`` is off, each run of the app runs the
    scheduled ``jobs`` (default: ``worker.jobs.default_jobs``) in a thread.
    """
    if services is None:
        services = build_services(settings or Settings())
    elif settings is not None and settings is not services.settings:
        raise ValueError("pass settings or services (which carry their settings), not both")
    settings = services.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A fresh batcher per run of the app: a closed one refuses every read.
        app.state.reads = ReadBatcher(services)
        # Records the KEK this process wraps under (and reloads a rotated key
        # file), so that `keys rewrap` never leaves it behind.
        heartbeat = KeyringHeartbeat(services)
        await asyncio.to_thread(heartbeat.start)
        app.state.readiness = health.Readiness(services)
        # The scheduled jobs, in this process too: leases keep each run to
        # one worker, however many servers and `memberguard worker`s run.
        worker = None
        if settings.worker_in_server:
            worker = BackgroundWorker(services, default_jobs(settings) if jobs is None else jobs)
            worker.start()
        app.state.worker = worker
        try:
            yield
        finally:
            # First, and waiting for the job running to finish (off the event
            # loop): nothing of the worker may outlive the app.
            if worker is not None:
                await asyncio.to_thread(worker.stop)
        # Decides and answers whatever is still queued, off the event loop.
        await asyncio.to_thread(app.state.reads.close)
        await asyncio.to_thread(heartbeat.stop)

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
    app.state.worker = None  # the running app's BackgroundWorker, if it runs one
    problems.install(app)
    for router in (
        health.router,
        reads.router,
        members.router,
        audit.router,
        audit.members_router,
        clients.router,
        me.signin_router,
        me.router,
        my_requests.router,
        rights.relayed_router,
        rights.queue_router,
        rights.holds_router,
        events.router,
        incidents.router,
    ):
        app.include_router(router)
    openapi.install(app)
    _add_docs(app, public=settings.docs_public)
    # Outermost first: the request id exists before the body limit can reject.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext)
    # The web pages (the privacy centre): last, so that their security headers
    # are the outermost layer and cover every answer under their paths.
    install_web(app, services)
    return app
