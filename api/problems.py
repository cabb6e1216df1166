"""Errors → RFC 9457 problem+json, in one place.

``type`` is a stable slug (a relative URI reference) that clients match on:
``consent-required``, ``purpose-not-allowed``, ``validation-failed``,
``not-found``, … Bodies never echo request or stored values: validation
errors carry the location and the rule, not the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from audit.signer import SignerError
from core.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from vault.crypto import DecryptionFailed
from vault.keys import KeyringError

log = structlog.get_logger("memberguard.api")

PROBLEM = "application/problem+json"

STATUS_BY_CLASS: tuple[tuple[type[DomainError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (Gone, 410),
    (InvalidInput, 422),
    (RateLimited, 429),
    (Unavailable, 503),
)


class BodyTooLarge(DomainError):
    slug = "payload-too-large"
    title = "Request body too large"


@dataclass(frozen=True, slots=True)
class ProblemType:
    status: int
    meaning: str


# Every problem type the API answers with: its status and what it means. The
# OpenAPI document is built from this table (api/openapi.py), and a test
# collects the slugs the code can emit and checks that each is documented.
PROBLEM_TYPES: dict[str, ProblemType] = {
    "unauthenticated": ProblemType(
        401, "missing, malformed, unknown or revoked API key, or an ended member session"
    ),
    "invalid-code": ProblemType(
        401, "not the sign-in code sent for the challenge (`attempts_left`)"
    ),
    "challenge-closed": ProblemType(
        401, "the sign-in challenge is unknown, expired, used or burned: ask for a new code"
    ),
    "role-required": ProblemType(403, "the key's role may not use this endpoint"),
    "scope-required": ProblemType(403, "the client lacks the scope this write needs"),
    "purpose-not-allowed": ProblemType(403, "the client is not granted the purpose (recorded)"),
    "consent-required": ProblemType(403, "the member has not consented to the purpose (recorded)"),
    "consent-outdated": ProblemType(
        403, "the member consented under a notice the policy no longer accepts (recorded)"
    ),
    "lookup-not-allowed": ProblemType(
        403, "the purpose may not find members by that field (recorded)"
    ),
    "consent-self-grant": ProblemType(
        403, "a client may not record a grant for a purpose it reads itself"
    ),
    "separate-consent-collector-only": ProblemType(
        403, "a separate consent is granted only by a client that only collects consent"
    ),
    "forbidden": ProblemType(403, "refused (generic)"),
    "not-found": ProblemType(404, "no such member, client, entry or path"),
    "no-checkpoint": ProblemType(404, "no signed checkpoint at that size (or none yet)"),
    "method-not-allowed": ProblemType(405, "the path does not take this method"),
    "not-acceptable": ProblemType(406, "no representation matches the Accept header"),
    "bundled-consent": ProblemType(409, "a separate-consent purpose granted with others"),
    "client-exists": ProblemType(409, "a client with this name already exists"),
    "already-revoked": ProblemType(409, "the client is already revoked"),
    "keyring-behind": ProblemType(
        409, "a running server wraps under an older KEK (`keys rewrap`, CLI only)"
    ),
    "kek-in-use": ProblemType(
        409, "a KEK version still wraps data keys, is active or in use (`keys retire`, CLI only)"
    ),
    "extension-not-allowed": ProblemType(
        409, "the policy allows no extension of a rights request's deadline"
    ),
    "already-extended": ProblemType(
        409, "a rights request's deadline is extended once at most (GDPR Art. 12(3))"
    ),
    "request-open": ProblemType(
        409, "the member has an open request this one duplicates (`existing_request`)"
    ),
    "request-state": ProblemType(409, "the rights request's status does not allow this"),
    "not-awaiting-approval": ProblemType(409, "the rights request is not waiting for approval"),
    "hold-ended": ProblemType(409, "the hold has already been released or has ended"),
    "incident-closed": ProblemType(409, "the breach incident is closed: nothing moves it"),
    "incident-not-assessed": ProblemType(
        409, "the step needs the incident's assessment first (`POST …/assess`)"
    ),
    "authority-notified": ProblemType(
        409, "the authority's notification of this incident is already recorded"
    ),
    "breach-purpose-missing": ProblemType(
        409, "the policy defines no `breach_notification` purpose to read members' contacts under"
    ),
    "conflict": ProblemType(409, "a concurrent change won a uniqueness race; retry"),
    "copy-expired": ProblemType(410, "the access copy has expired; submit a new access request"),
    "gone": ProblemType(410, "no longer available (generic)"),
    "payload-too-large": ProblemType(413, "the body is larger than the configured limit"),
    "unsupported-media-type": ProblemType(415, "the body's content type is not accepted"),
    "validation-failed": ProblemType(422, "a parameter or body member breaks a rule (`errors`)"),
    "malformed-json": ProblemType(422, "the body is not UTF-8 JSON"),
    "json-too-deep": ProblemType(422, "the body nests arrays or objects too deeply"),
    "unknown-purpose": ProblemType(422, "the purpose is not in the policy (`known_purposes`)"),
    "invalid-cursor": ProblemType(422, "the cursor is not a next_cursor this API gave"),
    "webhook-url-refused": ProblemType(
        422, "not an https:// URL to a public host (the detail names the rule, not the URL)"
    ),
    "extension-out-of-range": ProblemType(
        422, "the new due date is not after the current one, or beyond the policy's extension_max"
    ),
    "separate-consent-alone": ProblemType(
        422, "a member grants a separate-consent purpose alone, one per request"
    ),
    "report-format-unavailable": ProblemType(
        422, "PDF reports need the optional `pdf` extra (WeasyPrint) on the server"
    ),
    "rate-limited": ProblemType(429, "too many requests of this kind; see `Retry-After`"),
    "http-error": ProblemType(400, "the request could not be read (generic)"),
    "error": ProblemType(400, "the request failed (generic)"),
    "vault-integrity": ProblemType(500, "stored data failed its integrity check; nothing released"),
    "internal-error": ProblemType(500, "an unexpected failure; see the server log"),
    "audit-unavailable": ProblemType(503, "the audit log could not be written; nothing released"),
    "keys-unavailable": ProblemType(503, "the key provider or checkpoint signer failed"),
    "database-unavailable": ProblemType(503, "the database could not be reached"),
    "unavailable": ProblemType(503, "a dependency failed (generic)"),
}

# Starlette's own HTTP errors (an unknown path, a method the path does not take).
HTTP_ERROR_SLUGS = {
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    415: "unsupported-media-type",
}
HTTP_ERROR = "http-error"


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    request: Request,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": slug,
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": getattr(request.state, "request_id", None),
        **extra,
    }
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="memberguard"'}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM)


def status_for(exc: DomainError) -> int:
    """The HTTP status of a domain error: the API's answers and the web's error pages."""
    if isinstance(exc, BodyTooLarge):
        return 413
    for cls, status in STATUS_BY_CLASS:
        if isinstance(exc, cls):
            return status
    return 400


async def domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status = status_for(exc)
    headers = {}
    seq = getattr(exc, "audit_seq", None)
    if seq is not None:
        headers["Audit-Seq"] = str(seq)
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if status >= 500:
        log.error("request.unavailable", problem=exc.slug, cause=type(exc.__cause__).__name__)
    return problem(status, exc.slug, exc.title, exc.detail, request, headers, **exc.extra)


def _clean_loc(error: dict[str, Any]) -> list[str | int]:
    loc = list(error.get("loc", ()))
    if error.get("type") == "extra_forbidden" and loc:
        # The key itself was sent by the client and may be personal data.
        loc[-1] = "(unknown field)"
    return loc


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": _clean_loc(e), "problem": str(e.get("msg", "invalid")), "kind": e.get("type")}
        for e in exc.errors()
    ]
    if any(e["kind"] == "json_invalid" for e in errors):
        return problem(
            422,
            "malformed-json",
            "Malformed JSON",
            "the request body is not valid JSON",
            request,
            errors=errors,
        )
    return problem(
        422,
        "validation-failed",
        "The request is not valid",
        f"{len(errors)} problem(s) in the request",
        request,
        errors=errors,
    )


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # FastAPI wraps any failure while reading the body in a 400; the cause says
    # what really happened.
    cause = exc.__cause__
    if isinstance(cause, BodyTooLarge):
        return await domain_error(request, cause)
    if isinstance(cause, RecursionError):
        # Valid JSON, but nested deeper than the parser goes (about 1,000 levels,
        # well inside the body limit); RFC 8259 section 9 allows the limit.
        return problem(
            422,
            "json-too-deep",
            "JSON nested too deeply",
            "the request body nests arrays or objects too deeply",
            request,
        )
    if isinstance(cause, UnicodeDecodeError | ValueError):
        return problem(
            422, "malformed-json", "Malformed JSON", "the request body is not UTF-8 JSON", request
        )
    slug = HTTP_ERROR_SLUGS.get(exc.status_code, HTTP_ERROR)
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    return problem(exc.status_code, slug, detail, detail, request, dict(exc.headers or {}))


async def decryption_failed(request: Request, exc: Exception) -> JSONResponse:
    log.error("vault.integrity", error="ciphertext did not authenticate")
    return problem(
        500,
        "vault-integrity",
        "Stored data failed its integrity check",
        "a stored ciphertext did not authenticate; no data was returned "
        "(the audit entry records the attempted release)",
        request,
    )


async def keyring_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("keys.unavailable", error=str(exc))
    return problem(
        503, "keys-unavailable", "Keys unavailable", "the key provider is not available", request
    )


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("database.unavailable", error_type=type(exc).__name__)
    return problem(
        503,
        "database-unavailable",
        "Database unavailable",
        "the database could not be reached; nothing was released",
        request,
    )


async def integrity_conflict(request: Request, exc: Exception) -> JSONResponse:
    # A unique constraint lost a race (e.g. two registrations of one client
    # name); the transaction was rolled back whole.
    log.warning("database.conflict", error_type=type(exc).__name__)
    return problem(
        409,
        "conflict",
        "Conflict",
        "the request conflicts with a concurrent change; retry",
        request,
    )


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request.failed", error_type=type(exc).__name__)
    return problem(
        500, "internal-error", "Internal error", "the request failed; see the server log", request
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(DecryptionFailed, decryption_failed)
    app.add_exception_handler(KeyringError, keyring_error)
    app.add_exception_handler(SignerError, keyring_error)
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(IntegrityError, integrity_conflict)
    app.add_exception_handler(Exception, unexpected)
