"""ASGI middleware: request ids, the access log, the body size limit.

Pure ASGI (not BaseHTTPMiddleware) so that streaming responses pass through
untouched and the body limit applies while the body is read.
"""

from __future__ import annotations

import os
import random
import re
import time
from typing import Any

import structlog

from api.problems import BodyTooLarge

log = structlog.get_logger("memberguard.access")

# Matched whole (fullmatch): a client's X-Request-ID is kept only in this shape.
UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)


# Request ids must be unique, not secret (each is shown to its client and
# grants nothing), so they come from a generator seeded once from the OS:
# uuid4() reads os.urandom on every call, which cost a tenth of the event
# loop's time under load.
_request_ids = random.Random()  # noqa: S311 (uniqueness, not secrecy)
# A forked worker (gunicorn --preload) must not repeat its parent's sequence.
os.register_at_fork(after_in_child=_request_ids.seed)


def new_request_id() -> str:
    """128 random bits as 32 hex digits, the shape of ``uuid4().hex``."""
    return f"{_request_ids.getrandbits(128):032x}"


class RequestContext:
    """Assigns the request id, logs one access line per request.

    The request id is always the server's own: it is written into audit
    entries, which are permanent and hashed, so no client text may reach them
    (a "UUID" can end in a phone number's digits). It is returned as
    ``X-Request-ID``. A client's own ``X-Request-ID``, if it is a UUID, is
    kept for correlation only: bound to the log lines as
    ``client_request_id`` (which the log's scrubbing covers, unlike the
    trusted ``request_id``) and echoed as ``X-Client-Request-ID``; anything
    else is dropped. The access line names the route template
    (``/v1/members/{member_id}``), never the raw path or query string.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        client_request_id = supplied if UUID_RE.fullmatch(supplied) else None
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        extra_headers = [(b"x-request-id", request_id.encode())]
        if client_request_id is not None:
            structlog.contextvars.bind_contextvars(client_request_id=client_request_id)
            extra_headers.append((b"x-client-request-id", client_request_id.encode()))
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).extend(extra_headers)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            log.info(
                "http.request",
                method=scope["method"],
                route=getattr(route, "path", "(unmatched)"),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                actor=scope.get("state", {}).get("actor_id"),
            )


class BodyLimit:
    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, send)
            return
        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(f"the body is larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, scope: dict[str, Any], send: Any) -> None:
        import json

        body = json.dumps(
            {
                "type": "payload-too-large",
                "title": "Request body too large",
                "status": 413,
                "detail": f"the body is larger than {self.max_bytes} bytes",
                "request_id": scope.get("state", {}).get("request_id"),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
