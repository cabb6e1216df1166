"""Liveness and readiness: the only endpoints without authentication."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from vault.crypto import new_data_key, unwrap_data_key, wrap_data_key
from vault.keys import KeyringError

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    services = request.app.state.services
    checks: dict[str, Any] = {}
    try:
        # A read-only session: readiness probes must never queue for SQLite's write lock.
        with services.reading() as session:
            session.execute(text("SELECT 1 FROM audit_head WHERE id = 1")).one()
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        checks["database"] = f"unavailable ({type(exc).__name__})"
    try:
        # A wrap/unwrap round trip proves the active KEK is usable.
        version, wrapped = wrap_data_key(services.keyring, "readyz", new_data_key())
        unwrap_data_key(services.keyring, "readyz", version, wrapped)
        checks["keys"] = "ok"
    except KeyringError as exc:
        checks["keys"] = f"unavailable ({type(exc).__name__})"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not-ready", "checks": checks},
        status_code=200 if ready else 503,
    )
