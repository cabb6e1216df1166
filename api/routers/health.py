"""Liveness and readiness: the only endpoints without authentication."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.schemas import ReadinessOut
from gate.context import Services
from gate.readiness import OK, check_readiness

router = APIRouter(tags=["health"])

# A probe is answered within this, whatever the check is waiting for.
READY_WITHIN_SECONDS = 2.0


class Readiness:
    """One readiness check at a time, shared by every probe that arrives while it runs.

    Probes are public and may come in floods: each one used to take a worker
    thread and a pooled connection. Now a probe joins the check in flight (or
    starts one, in a thread of its own), so a flood costs one thread and one
    connection; and it answers within ``READY_WITHIN_SECONDS`` even if the
    check hangs, which it then keeps waiting on instead of starting another.
    Built per run of the app: the check in flight belongs to its event loop.
    """

    def __init__(self, services: Services) -> None:
        self._services = services
        self._running: asyncio.Future[dict[str, str]] | None = None

    async def checks(self, *, within: float) -> dict[str, str]:
        if self._running is None:
            running = asyncio.ensure_future(asyncio.to_thread(check_readiness, self._services))
            running.add_done_callback(self._finished)
            self._running = running
        try:
            return await asyncio.wait_for(asyncio.shield(self._running), within)
        except TimeoutError:
            return {"check": f"no answer within {within:g} s"}

    def _finished(self, running: asyncio.Future[dict[str, str]]) -> None:
        if self._running is running:
            self._running = None


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadinessOut,
    responses={503: {"model": ReadinessOut, "description": "A dependency is not available"}},
)
async def readyz(request: Request) -> JSONResponse:
    readiness: Readiness = request.app.state.readiness
    checks = await readiness.checks(within=READY_WITHIN_SECONDS)
    ready = all(value == OK for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not-ready", "checks": checks},
        status_code=200 if ready else 503,
    )
