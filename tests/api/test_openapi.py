"""The OpenAPI document tells the truth: bearer security, problem+json answers, every slug.

It will be fuzzed against (schemathesis), so what it declares per operation
must be what the operation answers: these tests check the document's shape,
collect every problem slug and extension member the code can emit (from the
error classes and the source) and find each documented, and drive failing
requests through every operation to check their answers are declared.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api import problems
from api.openapi import PUBLIC_PATHS
from core.errors import DomainError
from gate.reads import refusal
from policies.decide import deny
from policies.model import Policy
from rights.requests import VERIFICATION_METHODS
from tests.api.conftest import MEMBER, auth
from tests.conftest import Keys

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = (
    "api",
    "audit",
    "breach",
    "cli",
    "consent",
    "core",
    "feed",
    "gate",
    "policies",
    "principals",
    "notify",
    "rights",
    "vault",
)
# A member's sign-in takes no credential (it is how a member gets one).
SIGN_IN = frozenset({"/v1/me/login", "/v1/me/login/verify"})
# Problem types that no single operation answers with: generic fallbacks of the
# error hierarchy, and Starlette's answers for paths and methods that are not
# operations. They are documented in the Problem schema's catalogue only.
CATALOGUE_ONLY = frozenset(
    {
        "error",
        "forbidden",
        "unavailable",
        "http-error",
        "method-not-allowed",
        "not-acceptable",
        "unsupported-media-type",
        # Raised by `memberguard keys rewrap` and `keys retire` only; no operation
        # can answer with them.
        "keyring-behind",
        "kek-in-use",
        "gone",
    }
)


@pytest.fixture
def doc(app_client: TestClient, keys: Keys) -> dict[str, Any]:
    response = app_client.get("/openapi.json", headers=auth(keys.sms))
    assert response.status_code == 200
    return response.json()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def declared(operation: dict[str, Any], status: int) -> list[str]:
    """The problem types an operation declares for a status (empty if none)."""
    response = operation["responses"].get(str(status))
    if response is None or problems.PROBLEM not in response.get("content", {}):
        return []
    schema = response["content"][problems.PROBLEM]["schema"]
    assert schema["allOf"][0] == {"$ref": "#/components/schemas/Problem"}
    return schema["allOf"][1]["properties"]["type"]["enum"]


# ------------------------------------------------------------------ the shape


def test_the_document_declares_http_bearer_security(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert len(schemes) == 1
    (scheme,) = schemes.values()
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert "security" not in doc  # per operation: the probes need none


def test_every_operation_but_the_probes_and_the_sign_in_needs_the_key_and_declares_401(
    doc: dict[str, Any],
) -> None:
    (scheme,) = doc["components"]["securitySchemes"]
    seen = 0
    for method, path, operation in operations(doc):
        if path in PUBLIC_PATHS:
            assert "security" not in operation, path
            assert "401" not in operation["responses"], path
            continue
        if path in SIGN_IN:
            # No credential: it is how a member gets one. Its own problems only.
            assert "security" not in operation, path
            assert "unauthenticated" not in declared(operation, 401), path
            assert declared(operation, 403) == [], path
            assert "rate-limited" in declared(operation, 429), path
            continue
        seen += 1
        assert operation["security"] == [{scheme: []}], (method, path)
        assert declared(operation, 401) == ["unauthenticated"], (method, path)
        assert "role-required" in declared(operation, 403), (method, path)
    assert seen >= 17


def test_no_validation_error_schema_of_fastapi_remains(doc: dict[str, Any]) -> None:
    text = json.dumps(doc)
    assert "HTTPValidationError" not in text
    assert '"ValidationError"' not in text and "schemas/ValidationError" not in text
    for method, path, operation in operations(doc):
        for status, response in operation["responses"].items():
            if int(status) >= 400 and path not in PUBLIC_PATHS:
                assert list(response["content"]) == [problems.PROBLEM], (method, path, status)


def test_a_relayed_requests_verification_method_is_the_closed_list_of_the_rights_domain(
    doc: dict[str, Any],
) -> None:
    schemas = doc["components"]["schemas"]
    method = schemas["VerificationIn"]["properties"]["method"]
    assert method["$ref"] == "#/components/schemas/VerificationMethod"
    assert schemas["VerificationMethod"]["enum"] == list(VERIFICATION_METHODS)
    assert schemas["VerificationMethod"]["type"] == "string"


def test_the_problem_schema_names_its_members_and_every_slug(doc: dict[str, Any]) -> None:
    schema = doc["components"]["schemas"]["Problem"]
    assert set(schema["required"]) == {"type", "title", "status", "detail", "request_id"}
    assert schema["properties"]["type"]["enum"] == list(problems.PROBLEM_TYPES)
    for slug, kind in problems.PROBLEM_TYPES.items():
        assert f"`{slug}` ({kind.status})" in schema["properties"]["type"]["description"]


def test_body_operations_declare_the_body_problems(doc: dict[str, Any]) -> None:
    bodies = [(m, p, op) for m, p, op in operations(doc) if "requestBody" in op]
    assert len(bodies) == 19
    for method, path, operation in bodies:
        assert declared(operation, 413) == ["payload-too-large"], (method, path)
        assert {"malformed-json", "json-too-deep", "validation-failed"} <= set(
            declared(operation, 422)
        ), (method, path)


# ------------------------------------------- every slug the code can emit


def product_modules() -> list[str]:
    names = []
    for package in PRODUCT:
        module = importlib.import_module(package)
        names.append(package)
        names.extend(
            info.name
            for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}.")
            if not info.name.startswith("migrations.versions")
        )
    return names


def error_classes() -> list[type[DomainError]]:
    for name in product_modules():
        importlib.import_module(name)
    found: list[type[DomainError]] = []
    todo: list[type[DomainError]] = [DomainError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def product_trees() -> Iterator[ast.AST]:
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield ast.parse(path.read_text("utf-8"))


def _str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _called(node: ast.Call) -> str | None:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def emitted_slugs(policy: Policy) -> set[str]:
    """Every problem type the code can answer with, collected from the code itself."""
    slugs = {cls.slug for cls in error_classes()}
    reasons: set[str] = set()
    for tree in product_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                slugs.update(s for k in node.keywords if k.arg == "slug" and (s := _str(k.value)))
                name = _called(node)
                if name == "problem" and len(node.args) > 1 and (s := _str(node.args[1])):
                    slugs.add(s)
                if name == "deny" and node.args and (s := _str(node.args[0])):
                    reasons.add(s)
            elif isinstance(node, ast.Dict):
                members = {_str(k): v for k, v in zip(node.keys, node.values, strict=True)}
                # A problem body written out by hand (the 413 of the body limit).
                if {"type", "title", "status"} <= members.keys() and (s := _str(members["type"])):
                    slugs.add(s)
    # A recorded refusal's problem type comes from its decision's reason.
    assert {"purpose-not-allowed", "consent-required", "member-not-found"} <= reasons
    refusals = [refusal(policy, deny(reason, "p"), 1) for reason in reasons]
    slugs.update(error.slug for error in refusals if isinstance(error, DomainError))
    assert len(refusals) == len(reasons) and all(isinstance(e, DomainError) for e in refusals)
    slugs.update(problems.HTTP_ERROR_SLUGS.values())
    slugs.add(problems.HTTP_ERROR)
    return slugs


def test_every_problem_type_the_code_can_emit_is_documented(
    doc: dict[str, Any], policy: Policy
) -> None:
    emitted = emitted_slugs(policy)
    # The collection sees what it must (an empty one would pass vacuously).
    assert {"unauthenticated", "consent-required", "no-checkpoint", "json-too-deep"} <= emitted
    assert {"payload-too-large", "vault-integrity", "database-unavailable"} <= emitted
    catalogue = set(doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"])
    assert emitted - catalogue == set()
    by_operation = {
        slug
        for _m, _p, operation in operations(doc)
        for status in operation["responses"]
        for slug in declared(operation, int(status))
    }
    assert emitted - CATALOGUE_ONLY - by_operation == set()
    assert catalogue >= CATALOGUE_ONLY


def test_each_error_class_answers_with_its_catalogued_status() -> None:
    for cls in error_classes():
        error = cls.__new__(cls)  # some constructors take more than a detail
        assert problems.status_for(error) == problems.PROBLEM_TYPES[cls.slug].status, cls


def extension_members() -> set[str]:
    """Keyword arguments that become members of a problem body, collected from the source:
    those an error class passes on to ``**extra``, and those ``problem()`` is given."""
    classes = {cls.__name__: cls for cls in error_classes()}

    def named_parameters(cls: type) -> set[str]:
        parameters = inspect.signature(cls.__init__).parameters.values()
        return {p.name for p in parameters if p.kind is not p.VAR_KEYWORD}

    members: set[str] = set()
    problem_parameters = set(inspect.signature(problems.problem).parameters) - {"extra"}
    for tree in product_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name in classes:
                parent = classes[node.name].__mro__[1]
                for call in ast.walk(node):
                    if (
                        isinstance(call, ast.Call)
                        and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "__init__"
                    ):
                        members |= {k.arg for k in call.keywords if k.arg} - named_parameters(
                            parent
                        )
            elif isinstance(node, ast.Call):
                name = _called(node)
                if name in classes:
                    keywords = {k.arg for k in node.keywords if k.arg}
                    members |= keywords - named_parameters(classes[name])
                elif name == "problem":
                    members |= {k.arg for k in node.keywords if k.arg} - problem_parameters
    return members


def test_every_extension_member_is_in_the_problem_schema(doc: dict[str, Any]) -> None:
    members = extension_members()
    assert {"errors", "known_purposes", "separate_purposes", "field"} <= members
    assert members - set(doc["components"]["schemas"]["Problem"]["properties"]) == set()


# ------------------------------------------- answers match the declarations


def _fill(path: str, member_id: str) -> str:
    return re.sub(
        r"\{(\w+)\}",
        lambda m: {
            "member_id": member_id,
            "seq": "1",
            "client_id": "a" * 24,
            "rights_request": "c" * 24,
            "hold_id": "d" * 24,
            "event_id": "e" * 24,
            "incident_id": "f" * 24,
        }[m.group(1)],
        path,
    )


def _query(path: str) -> dict[str, str]:
    if path == "/v1/audit/consistency":
        return {"from": "1", "to": "1"}
    if path.startswith("/v1/members") and not path.endswith(("consents", "access-log")):
        return {"purpose": "membership"}
    return {}


def _assert_declared(
    doc: dict[str, Any], method: str, path: str, response: httpx.Response
) -> dict[str, Any]:
    operation = doc["paths"][path][method.lower()]
    assert str(response.status_code) in operation["responses"], (method, path, response.text)
    body = response.json()
    assert response.headers["content-type"].startswith(problems.PROBLEM)
    assert body["type"] in declared(operation, response.status_code), (method, path, body)
    schema = doc["components"]["schemas"]["Problem"]
    assert set(schema["required"]) <= set(body) <= set(schema["properties"]), body
    return body


def _role(path: str) -> str:
    if "clients" in path:
        return "admin"
    if "audit" in path or path.endswith("access-log"):
        return "auditor"
    if path == "/v1/me" or path.startswith("/v1/me/"):
        return "member"
    if path.startswith(("/v1/requests", "/v1/incidents")) or "/holds" in path:
        return "dpo"
    return "client"


def test_failing_requests_to_every_operation_answer_as_declared(
    app_client: TestClient,
    doc: dict[str, Any],
    keys: Keys,
    member_id: str,
    member_token: str,
    dpo_key: str,
) -> None:
    wrong_role = {
        "client": keys.admin,
        "auditor": keys.crm,
        "admin": keys.auditor,
        "dpo": keys.auditor,
        "member": keys.crm,
    }
    own_key = {
        "client": keys.crm,
        "auditor": keys.auditor,
        "admin": keys.admin,
        "dpo": dpo_key,
        "member": member_token,
    }
    answered: set[str] = set()
    for method, path, operation in operations(doc):
        if path in PUBLIC_PATHS:
            continue
        url, params = _fill(path, member_id), _query(path)
        role = _role(path)
        body = (
            {"phone": MEMBER["phone"], "purpose": "membership"}
            if "requestBody" in operation
            else None
        )
        for key in () if path in SIGN_IN else (None, wrong_role[role]):
            response = app_client.request(
                method, url, params=params, json=body, headers=auth(key) if key else {}
            )
            answered.add(_assert_declared(doc, method, path, response)["type"])
        if "requestBody" in operation:
            own = None if path in SIGN_IN else own_key[role]
            for content in (
                b"{",
                b"[" * 10_000 + b"]" * 10_000,
                b'{"a": "' + b"x" * 20_000 + b'"}',
            ):
                response = app_client.request(
                    method,
                    url,
                    content=content,
                    headers={**(auth(own) if own else {}), "Content-Type": "application/json"},
                )
                answered.add(_assert_declared(doc, method, path, response)["type"])
    # (A 20,000-byte body of nesting is over this app's 16 KiB limit: 413, not json-too-deep.)
    assert answered == {
        "unauthenticated",
        "role-required",
        "malformed-json",
        "payload-too-large",
    }


def test_refusals_and_missing_things_answer_as_declared(
    app_client: TestClient, doc: dict[str, Any], keys: Keys, member_id: str
) -> None:
    unknown = "b" * 24
    cases = [
        (
            "GET",
            "/v1/members/{member_id}",
            f"/v1/members/{member_id}?purpose=marketing_sms",
            keys.sms,
        ),
        ("GET", "/v1/members/{member_id}", f"/v1/members/{member_id}?purpose=delivery", keys.sms),
        ("GET", "/v1/members/{member_id}", f"/v1/members/{unknown}?purpose=membership", keys.crm),
        ("GET", "/v1/members/{member_id}", f"/v1/members/{member_id}?purpose=fax", keys.crm),
        ("GET", "/v1/members", "/v1/members?purpose=delivery", keys.sms),
        ("GET", "/v1/members", "/v1/members?purpose=fax", keys.sms),
        ("PATCH", "/v1/members/{member_id}", f"/v1/members/{unknown}", keys.crm),
        ("PATCH", "/v1/members/{member_id}", f"/v1/members/{member_id}", keys.sms),
        ("POST", "/v1/members", "/v1/members", keys.sms),
        ("GET", "/v1/members/{member_id}/consents", f"/v1/members/{unknown}/consents", keys.crm),
        ("GET", "/v1/members/{member_id}/consents", f"/v1/members/{member_id}/consents", keys.sms),
        (
            "GET",
            "/v1/members/{member_id}/access-log",
            f"/v1/members/{unknown}x/access-log",
            keys.auditor,
        ),
        ("GET", "/v1/audit/entries", "/v1/audit/entries?cursor=nope", keys.auditor),
        ("GET", "/v1/audit/entries", "/v1/audit/entries?limit=0", keys.auditor),
        ("GET", "/v1/audit/checkpoint", "/v1/audit/checkpoint?size=3", keys.auditor),
        ("GET", "/v1/audit/entries/{seq}/proof", "/v1/audit/entries/1/proof?size=3", keys.auditor),
        ("GET", "/v1/audit/consistency", "/v1/audit/consistency?from=2&to=1", keys.auditor),
        ("DELETE", "/v1/clients/{client_id}", f"/v1/clients/{unknown}", keys.admin),
    ]
    for method, template, url, key in cases:
        body = {"tier": "银卡"} if method == "PATCH" else MEMBER if method == "POST" else None
        response = app_client.request(method, url, json=body, headers=auth(key))
        assert response.status_code >= 400, (url, response.text)
        _assert_declared(doc, method, template, response)
    consent = {
        "purposes": ["partner_sharing", "marketing_sms"],
        "status": "granted",
        "channel": "app",
        "collected_at": "2026-11-01T10:00:00+08:00",
    }
    for body, key in ((consent, keys.crm), ({**consent, "purposes": ["fax"]}, keys.crm)):
        response = app_client.post(
            f"/v1/members/{member_id}/consents", json=body, headers=auth(key)
        )
        _assert_declared(doc, "POST", "/v1/members/{member_id}/consents", response)
    for body in (
        {"phone": MEMBER["phone"], "purpose": "analytics"},
        {"phone": "1", "purpose": "fax"},
    ):
        response = app_client.post("/v1/members/lookup", json=body, headers=auth(keys.crm))
        _assert_declared(doc, "POST", "/v1/members/lookup", response)
    for body in ({"name": "crm", "role": "client"}, {"name": "x", "role": "nobody"}):
        response = app_client.post("/v1/clients", json=body, headers=auth(keys.admin))
        _assert_declared(doc, "POST", "/v1/clients", response)


def test_rights_refusals_and_conflicts_answer_as_declared(
    app_client: TestClient,
    doc: dict[str, Any],
    keys: Keys,
    member_id: str,
    dpo_key: str,
    token_for: Callable[[str], str],
) -> None:
    token = token_for(member_id)
    unknown = "c" * 24
    access = app_client.post("/v1/me/requests", json={"type": "access"}, headers=auth(token))
    done = access.json()["id"]
    hold = app_client.post(
        f"/v1/members/{member_id}/holds", json={"reason": "case 1"}, headers=auth(dpo_key)
    ).json()["id"]
    deletion = app_client.post("/v1/me/requests", json={"type": "deletion"}, headers=auth(token))
    held = deletion.json()["id"]
    extension = {"reason": "complex case", "until": "2027-01-20"}
    cases = [
        ("POST", "/v1/me/requests", "/v1/me/requests", token, {"type": "fax"}),
        ("POST", "/v1/me/requests", "/v1/me/requests", token, {"type": "deletion"}),
        ("GET", "/v1/me/requests/{rights_request}", f"/v1/me/requests/{unknown}", token, None),
        (
            "POST",
            "/v1/me/requests/{rights_request}/cancel",
            f"/v1/me/requests/{done}/cancel",
            token,
            None,
        ),
        (
            "GET",
            "/v1/me/requests/{rights_request}/copy",
            f"/v1/me/requests/{held}/copy",
            token,
            None,
        ),
        (
            "POST",
            "/v1/members/{member_id}/requests",
            f"/v1/members/{member_id}/requests",
            keys.crm,
            {"type": "access", "verification": {"method": "sms_code"}},
        ),
        ("GET", "/v1/requests", "/v1/requests?cursor=nope", dpo_key, None),
        ("GET", "/v1/requests/{rights_request}", f"/v1/requests/{unknown}", dpo_key, None),
        (
            "POST",
            "/v1/requests/{rights_request}/approve",
            f"/v1/requests/{done}/approve",
            dpo_key,
            None,
        ),
        (
            "POST",
            "/v1/requests/{rights_request}/reject",
            f"/v1/requests/{done}/reject",
            dpo_key,
            {"reason": "x"},
        ),
        (
            "POST",
            "/v1/requests/{rights_request}/extend",
            f"/v1/requests/{held}/extend",
            dpo_key,
            extension,
        ),
        (
            "POST",
            "/v1/members/{member_id}/holds",
            f"/v1/members/{unknown}/holds",
            dpo_key,
            {"reason": "x"},
        ),
        (
            "DELETE",
            "/v1/members/{member_id}/holds/{hold_id}",
            f"/v1/members/{member_id}/holds/{unknown}",
            dpo_key,
            None,
        ),
    ]
    answered = set()
    for method, template, url, key, body in cases:
        response = app_client.request(method, url, json=body, headers=auth(key))
        assert response.status_code >= 400, (url, response.text)
        answered.add(_assert_declared(doc, method, template, response)["type"])
    app_client.post(  # a second hold keeps the deletion (and the member) waiting
        f"/v1/members/{member_id}/holds", json={"reason": "case 2"}, headers=auth(dpo_key)
    )
    released = app_client.delete(f"/v1/members/{member_id}/holds/{hold}", headers=auth(dpo_key))
    assert released.status_code == 200
    again = app_client.delete(f"/v1/members/{member_id}/holds/{hold}", headers=auth(dpo_key))
    answered.add(
        _assert_declared(doc, "DELETE", "/v1/members/{member_id}/holds/{hold_id}", again)["type"]
    )
    assert answered == {
        "validation-failed",
        "request-open",
        "not-found",
        "request-state",
        "scope-required",
        "invalid-cursor",
        "not-awaiting-approval",
        "extension-not-allowed",
        "hold-ended",
    }


def test_the_members_refusals_answer_as_declared(
    app_client: TestClient, doc: dict[str, Any], member_id: str, member_token: str
) -> None:
    answered: set[str] = set()

    def check(method: str, path: str, response: httpx.Response) -> None:
        assert response.status_code >= 400, (path, response.text)
        answered.add(_assert_declared(doc, method, path, response)["type"])

    for body in ({"phone": "12345"}, {"phone": MEMBER["phone"], "email": "a@example.com"}):
        check("POST", "/v1/me/login", app_client.post("/v1/me/login", json=body))
    for _ in range(6):  # five codes an hour for one contact
        response = app_client.post("/v1/me/login", json={"phone": MEMBER["phone"]})
    check("POST", "/v1/me/login", response)
    challenge = app_client.post("/v1/me/login", json={"email": "nobody@example.com"}).json()
    for body in (
        {"challenge": challenge["challenge"], "code": "12345"},
        {"challenge": challenge["challenge"], "code": "123456"},
        {"challenge": "A" * 43, "code": "123456"},
    ):
        verify = app_client.post("/v1/me/login/verify", json=body)
        check("POST", "/v1/me/login/verify", verify)
    for body in (
        {"purposes": ["partner_sharing", "marketing_sms"], "status": "granted"},
        {"purposes": ["fax"], "status": "granted"},
        {"purposes": ["membership"], "status": "granted"},
    ):
        consent = app_client.post("/v1/me/consents", json=body, headers=auth(member_token))
        check("POST", "/v1/me/consents", consent)
    log = app_client.get("/v1/me/access-log?cursor=nope", headers=auth(member_token))
    check("GET", "/v1/me/access-log", log)
    assert answered == {
        "validation-failed",
        "rate-limited",
        "invalid-code",
        "challenge-closed",
        "separate-consent-alone",
        "unknown-purpose",
        "invalid-cursor",
    }
