"""The OpenAPI document: bearer authentication and the problem+json answers of each route.

FastAPI documents a 422 ``HTTPValidationError`` that this API never sends
(``api/problems.py`` answers ``application/problem+json``) and knows nothing of
the key check. Here each operation gets, from the generated document:

- ``security`` (HTTP bearer) unless it is a health probe or a member's sign-in
  (``problems(..., public=True)``);
- the problem types every authenticated route can answer with (401
  ``unauthenticated``, 403 ``role-required``, 500 ``internal-error``, 503
  ``database-unavailable``), those its parameters and body imply (422
  ``validation-failed``; 413, ``malformed-json``, ``json-too-deep`` for a
  body), and those the route declares with ``openapi_extra=problems(...)``;
- each as a ``Problem`` whose ``type`` is narrowed to the slugs listed.

The document is meant to be fuzzed against, so it lists what a route really
answers: a route declares the problem types its use case raises.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import FastAPI

from api.problems import PROBLEM, PROBLEM_TYPES

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
SECURITY_SCHEME = "bearer"
PROBLEM_REF = "#/components/schemas/Problem"
_DECLARED = "x-problems"
_PUBLIC = "x-public"

# A use case's unit of work can fail to append (audit-unavailable) and, when a
# checkpoint falls due at its commit, to sign (keys-unavailable).
AUDITED = ("audit-unavailable", "keys-unavailable")

_ANY = ("internal-error", "database-unavailable")
_AUTHENTICATED = ("unauthenticated", "role-required", *_ANY)
_BODY = ("payload-too-large", "malformed-json", "json-too-deep", "validation-failed")
_STRING_LIST = {"type": "array", "items": {"type": "string"}}


def problems(*slugs: str, public: bool = False) -> dict[str, Any]:
    """``openapi_extra`` for a route: the problem types it answers with beyond the common ones.

    ``public``: the route takes no bearer credential (a member's sign-in, which is
    how a member gets one): no security, no 401 ``unauthenticated`` or 403
    ``role-required``, only what the route declares and what any request can meet.
    """
    unknown = sorted(set(slugs) - set(PROBLEM_TYPES))
    if unknown:
        raise ValueError(f"undocumented problem types: {unknown}")
    return {_DECLARED: list(slugs), **({_PUBLIC: True} if public else {})}


def problem_schema() -> dict[str, Any]:
    catalogue = "\n".join(
        f"- `{slug}` ({kind.status}): {kind.meaning}" for slug, kind in PROBLEM_TYPES.items()
    )
    return {
        "title": "Problem",
        "description": "An RFC 9457 problem. It never echoes a submitted or stored value.",
        "type": "object",
        "required": ["type", "title", "status", "detail", "request_id"],
        "properties": {
            "type": {
                "type": "string",
                "enum": list(PROBLEM_TYPES),
                "description": "A stable slug (relative URI reference):\n" + catalogue,
            },
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "request_id": {
                "type": ["string", "null"],
                "description": "The server's request id (also the X-Request-ID header).",
            },
            "errors": {
                "type": "array",
                "description": "validation-failed and malformed-json: where and which rule.",
                "items": {
                    "type": "object",
                    "properties": {
                        "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                        "field": {"type": "string"},
                        "problem": {"type": "string"},
                        "kind": {"type": ["string", "null"]},
                    },
                },
            },
            "field": {"type": "string", "description": "The field a value was refused for."},
            "allowed_fields": _STRING_LIST,
            "known_purposes": _STRING_LIST,
            "attempts_left": {
                "type": "integer",
                "description": "invalid-code: wrong codes the challenge still takes (0: burned).",
            },
            "separate_purposes": _STRING_LIST,
            "known_channels": _STRING_LIST,
            "known_notices": _STRING_LIST,
            "accepted_notices": _STRING_LIST,
        },
    }


def _problem_response(slugs: list[str]) -> dict[str, Any]:
    return {
        "description": "; ".join(f"`{s}`: {PROBLEM_TYPES[s].meaning}" for s in slugs),
        "content": {
            PROBLEM: {
                "schema": {
                    "allOf": [
                        {"$ref": PROBLEM_REF},
                        {"properties": {"type": {"type": "string", "enum": slugs}}},
                    ]
                }
            }
        },
    }


def _implied(operation: dict[str, Any]) -> list[str]:
    """The problem types an operation's parameters and body imply."""
    slugs: list[str] = []
    checked = [
        p
        for p in operation.get("parameters", [])
        if p["in"] != "path" or p.get("schema", {}).get("type") != "string"
    ]
    if checked:
        slugs.append("validation-failed")
    if "requestBody" in operation:
        slugs.extend(_BODY)
    return slugs


def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document for ``app``, with security and problem responses (cached)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = FastAPI.openapi(app)  # caches on the app: mended in place below
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Problem"] = problem_schema()
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`mg_…`) issued by `memberguard clients add` or "
            "POST /v1/clients, or a member token (`mgm_…`) from POST /v1/me/login/verify.",
        }
    }
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            declared = operation.pop(_DECLARED, [])
            public = operation.pop(_PUBLIC, False)
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's HTTPValidationError
            if path in PUBLIC_PATHS:
                continue
            if not public:
                operation["security"] = [{SECURITY_SCHEME: []}]
            by_status: dict[int, list[str]] = defaultdict(list)
            common = _ANY if public else _AUTHENTICATED
            for slug in (*common, *_implied(operation), *declared):
                status = PROBLEM_TYPES[slug].status
                if slug not in by_status[status]:
                    by_status[status].append(slug)
            for status, slugs in sorted(by_status.items()):
                responses[str(status)] = _problem_response(slugs)
    return doc


def install(app: FastAPI) -> None:
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
