"""Bad input never gets past the edge: a problem+json 4xx, a stable type, nothing written.

Each test sends requests that must be refused and proves three things: the
answer is ``application/problem+json`` with the expected status and ``type``
slug (never a 500); the body does not echo what was sent; and the database
holds exactly what it held before (member, consent and client rows, and the
audit log: unchanged, or grown by the one entry that records a refusal).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from api.app import create_app
from audit.log import read_head
from core.ids import new_id
from gate.context import Services
from tests.api.conftest import MEMBER, app_routes, auth, grant
from tests.conftest import Keys

PROBLEM = "application/problem+json"
COLLECTED_AT = "2026-11-01T10:00:00+08:00"

# Every table a request could write to. ``audit_head.size`` is the log's length.
TABLES = (
    "vault_member",
    "vault_data_key",
    "vault_field",
    "vault_blind_index",
    "consent_state",
    "consent_event",
    "consent_receipt",
    "gate_client",
    "gate_client_purpose",
    "gate_api_key",
    "audit_entry",
    "audit_entry_member",
)

INJECTION_BY_ID = {
    "sql-drop": "'; DROP TABLE vault_member; --",
    "sql-tautology": "1' OR '1'='1",
    "bobby-tables": "Robert'); DROP TABLE members;--",
    "nul": "a\x00b",
    "bidi-override": "a\u202eb",
    "crlf-header": "\r\nX-Injected: 1",
}
INJECTIONS = [pytest.param(value, id=name) for name, value in INJECTION_BY_ID.items()]
INJECTION_VALUES = list(INJECTION_BY_ID.values())


# --------------------------------------------------------------------- helpers


def snapshot(session: Session) -> dict[str, int]:
    """Row counts of every writable table plus the audit head size.

    The session is closed afterwards so that no savepoint of ours stays open
    around the requests under test (closing it would roll their work back).
    """
    try:
        counts = {"audit_head.size": read_head(session).size}
        for table in TABLES:
            counts[table] = session.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
    finally:
        session.close()
    return counts


def grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in before if after[k] != before[k]}


def one_refusal_recorded(before: dict[str, int], after: dict[str, int], n: int = 1) -> None:
    """A recorded refusal adds its audit entry (and nothing else) to the database."""
    changed = grown(before, after)
    changed.pop("audit_entry_member", None)  # a refusal may name an existing member
    assert changed == {"audit_head.size": n, "audit_entry": n}, changed


def audit_bytes(session: Session) -> bytes:
    try:
        rows = session.execute(text("SELECT entry FROM audit_entry ORDER BY seq")).scalars()
        return b"\n".join(bytes(r) for r in rows)
    finally:
        session.close()


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["type"] == slug, body
    assert body["status"] == status
    return body


def without_request_id(response: httpx.Response) -> str:
    """The body text minus the request id (random hex, which could contain any digits)."""
    body = response.json()
    return response.text.replace(str(body.get("request_id")), "")


def assert_not_echoed(response: httpx.Response, value: object) -> None:
    shown = without_request_id(response)
    forms = {json.dumps(value), json.dumps(value, ensure_ascii=False)}
    if isinstance(value, str):
        forms |= {value, value.strip()} - {""}
    for form in forms:
        assert form not in shown, f"{form!r} echoed in {shown}"


def json_post(
    client: TestClient, path: str, content: bytes, key: str, method: str = "POST"
) -> httpx.Response:
    return client.request(
        method,
        path,
        content=content,
        headers={**auth(key), "Content-Type": "application/json"},
    )


def consent_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "purposes": ["marketing_sms"],
        "status": "granted",
        "channel": "app",
        "collected_at": COLLECTED_AT,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def assert_database_intact(
    client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    """The tables are all still there, and a normal request still works."""
    snapshot(session)
    response = client.get(f"/v1/members/{member_id}?purpose=membership", headers=auth(keys.crm))
    assert response.status_code == 200, response.text
    assert response.json()["fields"]["tier"] == MEMBER["tier"]


def body_endpoints(keys: Keys, member_id: str) -> list[tuple[str, str, str]]:
    """(method, path, key) of every endpoint that takes a JSON body."""
    return [
        ("POST", "/v1/members", keys.crm),
        ("PATCH", f"/v1/members/{member_id}", keys.crm),
        ("POST", "/v1/members/lookup", keys.crm),
        ("POST", f"/v1/members/{member_id}/consents", keys.app),
        ("POST", "/v1/clients", keys.admin),
    ]


# ------------------------------------------------------------- malformed bodies


MALFORMED_JSON = {
    "truncated-object": b'{"name": "\xe5\xbc\xa0\xe4\xb8\x89"',
    "missing-value": b'{"name": }',
    "single-quotes": b"{'name': 'x'}",
    "trailing-garbage": b'{"name": "x"} trailing',
    "bare-word": b"nope",
}


def test_malformed_json_is_refused_as_malformed_json(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    before = snapshot(session)
    for case, content in MALFORMED_JSON.items():
        for method, path, key in body_endpoints(keys, member_id):
            response = json_post(app_client, path, content, key, method)
            assert response.status_code == 422, (case, path)
            assert_problem(response, 422, "malformed-json")
    assert snapshot(session) == before


def test_body_that_is_not_utf8_is_refused_as_malformed_json(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    # RFC 8259 §8.1: JSON exchanged between systems is UTF-8. Bytes that do
    # not decode are malformed JSON like any other syntax error.
    before = snapshot(session)
    for method, path, key in body_endpoints(keys, member_id):
        response = json_post(app_client, path, b'{"name": "\xff\xfe"}', key, method)
        assert_problem(response, 422, "malformed-json")
    assert snapshot(session) == before


NESTED_TOO_DEEP = {
    "arrays": b"[" * 10_000 + b"]" * 10_000,
    "objects": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "arrays-in-a-field": b'{"name": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
}


def test_deeply_nested_json_is_refused_as_json_too_deep(
    services: Services, keys: Keys, member_id: str, session: Session
) -> None:
    """10,000 levels fit under the default body limit (64 KiB); the parser gives up
    at about 1,000 (RecursionError), which must be a documented 422, not a 400 or 500."""
    settings = services.settings.model_copy(update={"max_body_bytes": 1024 * 1024})
    app = create_app(services=dataclasses.replace(services, settings=settings))
    before = snapshot(session)
    with TestClient(app, raise_server_exceptions=False) as client:
        for case, content in NESTED_TOO_DEEP.items():
            for method, path, key in body_endpoints(keys, member_id):
                response = json_post(client, path, content, key, method)
                assert response.status_code == 422, (case, path, response.text)
                assert_problem(response, 422, "json-too-deep")
    assert snapshot(session) == before


def test_json_array_where_an_object_is_expected_is_a_validation_problem(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    before = snapshot(session)
    for method, path, key in body_endpoints(keys, member_id):
        response = app_client.request(method, path, json=[MEMBER], headers=auth(key))
        assert_problem(response, 422, "validation-failed")
    assert snapshot(session) == before


WRONG_TYPES: dict[str, dict[str, Any]] = {
    "consent-status-is-a-number": consent_body(status=1),
    "consent-status-not-in-enum": consent_body(status="maybe"),
    "consent-purposes-is-a-string": consent_body(purposes="x"),
    "consent-purposes-hold-numbers": consent_body(purposes=[1]),
    "consent-purposes-empty": consent_body(purposes=[]),
    "consent-purpose-and-purposes": consent_body(purpose="marketing_sms"),
    "consent-neither-purpose-nor-purposes": consent_body(purposes=None),
    "consent-channel-is-a-number": consent_body(channel=5),
    "consent-collected-at-not-a-time": consent_body(collected_at="yesterday"),
    "consent-collected-at-without-zone": consent_body(collected_at="2026-11-01T10:00:00"),
    "consent-notice-version-is-a-number": consent_body(notice_version=3),
    "consent-status-missing": consent_body(status=None),
    "lookup-phone-is-a-number": {"phone": 13812345678, "purpose": "membership"},
    "lookup-email-is-a-list": {"email": ["zhang.san@example.com"], "purpose": "membership"},
    "lookup-purpose-is-a-number": {"phone": "13812345678", "purpose": 1},
    "lookup-purpose-missing": {"phone": "13812345678"},
    "lookup-phone-and-email": {
        "phone": "13812345678",
        "email": "zhang.san@example.com",
        "purpose": "membership",
    },
    "lookup-neither-phone-nor-email": {"purpose": "membership"},
    "client-name-is-a-number": {"name": 7, "role": "client"},
    "client-role-not-in-enum": {"name": "pos-till", "role": "root"},
    "client-role-missing": {"name": "pos-till"},
    "client-purposes-is-a-string": {"name": "pos-till", "role": "client", "purposes": "x"},
    "client-scopes-hold-numbers": {"name": "pos-till", "role": "client", "scopes": [1]},
}


@pytest.mark.parametrize("endpoint", ["consent", "lookup", "client"])
def test_body_with_wrong_types_is_a_validation_problem(
    app_client: TestClient, keys: Keys, member_id: str, session: Session, endpoint: str
) -> None:
    path, key = {
        "consent": (f"/v1/members/{member_id}/consents", keys.crm),
        "lookup": ("/v1/members/lookup", keys.crm),
        "client": ("/v1/clients", keys.admin),
    }[endpoint]
    before = snapshot(session)
    for case, body in WRONG_TYPES.items():
        if case.startswith(endpoint + "-"):
            response = app_client.post(path, json=body, headers=auth(key))
            assert response.status_code == 422, (case, response.text)
            assert_problem(response, 422, "validation-failed")
    assert snapshot(session) == before


UNKNOWN_KEY = "Zhou Jinque private mobile"  # a key that could itself be personal data


def test_unknown_field_is_refused_without_naming_the_key(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    before = snapshot(session)
    for path, key, body in (
        (f"/v1/members/{member_id}/consents", keys.crm, consent_body()),
        ("/v1/members/lookup", keys.crm, {"phone": MEMBER["phone"], "purpose": "membership"}),
        ("/v1/clients", keys.admin, {"name": "pos-till", "role": "client"}),
        ("/v1/members", keys.crm, MEMBER),
    ):
        response = app_client.post(path, json={**body, UNKNOWN_KEY: "x"}, headers=auth(key))
        assert response.status_code == 422, (path, response.text)
        assert_problem(response, 422, "validation-failed")
        assert "Zhou" not in response.text, path
    assert snapshot(session) == before


# ------------------------------------------------------------------- body size


def test_body_over_the_limit_with_content_length_is_payload_too_large(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    big = json.dumps({**MEMBER, "address": "深圳" * 6000}).encode()
    assert len(big) > 16 * 1024
    before = snapshot(session)
    for method, path, key in body_endpoints(keys, member_id):
        response = json_post(app_client, path, big, key, method)
        assert_problem(response, 413, "payload-too-large")
    assert snapshot(session) == before


def test_streamed_body_over_the_limit_without_content_length_is_payload_too_large(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "' + b"a" * 4096
        for _ in range(5):
            yield b"a" * 4096
        yield b'"}'

    before = snapshot(session)
    for method, path, key in body_endpoints(keys, member_id):
        response = app_client.request(
            method,
            path,
            content=chunks(),
            headers={**auth(key), "Content-Type": "application/json"},
        )
        assert "content-length" not in response.request.headers
        assert_problem(response, 413, "payload-too-large")
    assert snapshot(session) == before


# ------------------------------------------------------------ member field rules

INVALID_FIELD_VALUES: dict[str, dict[str, list[Any]]] = {
    "contact": {
        "phone": ["1381234567", "138123456789", "13812345678abc", "+86 138 1234 5678 x12"],
        "email": ["zhang.san@", "zhang.san.example.com", "zhang@@example.com"],
        "address": ["<script>"],
    },
    "identity": {
        "id_number": [
            "110105194912310021",  # check digit should be X
            "110105194902300027",  # born on 30 February
            "1101051949123100",  # too short
            "01010519491231002X",  # region code cannot start with 0
        ],
        "name": ["12345", "张三<b>"],
    },
    "dates": {
        "birthday": ["1990-02-30", "1990-13-01", "17/05/1990", "2023-02-29", "1899-12-31"],
        "registered_at": ["2021-02-29", "2021-04-31"],
    },
    "enums": {
        "tier": ["白金卡", "gold", "GOLD"],
        "gender": ["Male"],
        "channel": ["fax"],
        "home_store": ["sz-012", "SZ-1", "SZ-012345"],
    },
    "points": {"points_balance": [-100, True, False, "1200", 1.5, 2**53]},
}


@pytest.mark.parametrize("group", list(INVALID_FIELD_VALUES))
def test_invalid_field_value_is_refused_naming_the_field_but_not_the_value(
    app_client: TestClient, keys: Keys, member_id: str, session: Session, group: str
) -> None:
    before = snapshot(session)
    for field, values in INVALID_FIELD_VALUES[group].items():
        for value in values:
            for method, path, body in (
                ("POST", "/v1/members", {**MEMBER, field: value}),
                ("PATCH", f"/v1/members/{member_id}", {field: value}),
            ):
                response = app_client.request(method, path, json=body, headers=auth(keys.crm))
                problem = assert_problem(response, 422, "validation-failed")
                assert [e["field"] for e in problem["errors"]] == [field], (method, value)
                assert_not_echoed(response, value)
    assert snapshot(session) == before


def test_empty_or_clearing_member_body_is_a_validation_problem(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    before = snapshot(session)
    for method, path, body in (
        ("POST", "/v1/members", {}),
        ("PATCH", f"/v1/members/{member_id}", {}),
        ("POST", "/v1/members", {"tier": "金卡"}),  # name and phone are required
        ("PATCH", f"/v1/members/{member_id}", {"phone": None}),  # cannot be cleared
    ):
        response = app_client.request(method, path, json=body, headers=auth(keys.crm))
        assert response.status_code == 422, (method, body, response.text)
        assert_problem(response, 422, "validation-failed")
    assert snapshot(session) == before


# ---------------------------------------------------------- purposes and members


def test_unknown_purpose_on_read_lookup_and_export_is_refused_and_recorded(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    for method, path, body in (
        ("GET", f"/v1/members/{member_id}?purpose=marketing_fax", None),
        ("POST", "/v1/members/lookup", {"phone": MEMBER["phone"], "purpose": "marketing_fax"}),
        ("GET", "/v1/members?purpose=marketing_fax", None),
    ):
        before = snapshot(session)
        response = app_client.request(method, path, json=body, headers=auth(keys.crm))
        problem = assert_problem(response, 422, "unknown-purpose")
        assert "membership" in problem["known_purposes"]
        assert "marketing_fax" not in response.text
        after = snapshot(session)
        one_refusal_recorded(before, after)
        assert int(response.headers["Audit-Seq"]) == after["audit_head.size"]


def test_unknown_purpose_in_consent_is_refused_and_nothing_is_recorded(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    before = snapshot(session)
    # Beside a known purpose too: the whole change is refused, not just part of it.
    for purposes in (["marketing_fax"], ["marketing_sms", "marketing_fax"]):
        for status in ("granted", "withdrawn", "refused"):
            response = app_client.post(
                f"/v1/members/{member_id}/consents",
                json=consent_body(purposes=purposes, status=status),
                headers=auth(keys.crm),
            )
            assert_problem(response, 422, "unknown-purpose")
            assert "marketing_fax" not in response.text
    assert snapshot(session) == before


def _member_request(
    client: TestClient, keys: Keys, operation: str, member_path: str
) -> httpx.Response:
    base = f"/v1/members/{member_path}"
    if operation == "read":
        return client.get(f"{base}?purpose=membership", headers=auth(keys.crm))
    if operation == "patch":
        return client.patch(base, json={"tier": "钻石"}, headers=auth(keys.crm))
    if operation == "record-consent":
        return client.post(f"{base}/consents", json=consent_body(), headers=auth(keys.app))
    return client.get(f"{base}/consents", headers=auth(keys.crm))


MEMBER_OPERATIONS = ["read", "patch", "record-consent", "read-consents"]


def test_unknown_member_is_not_found(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    for operation in MEMBER_OPERATIONS:
        before = snapshot(session)
        response = _member_request(app_client, keys, operation, new_id())
        assert response.status_code == 404, (operation, response.text)
        assert_problem(response, 404, "not-found")
        after = snapshot(session)
        if operation == "read":
            # A read is a decision, so its refusal is on the record.
            one_refusal_recorded(before, after)
            assert int(response.headers["Audit-Seq"]) == after["audit_head.size"]
        else:
            assert after == before, operation


MALFORMED_MEMBER_IDS = [
    "not-an-id",
    "A" * 24,  # ids are lower case
    "a" * 25,
    "1" * 24,  # base32 has no 0, 1, 8 or 9
    *INJECTION_VALUES,
]


def test_malformed_member_id_is_not_found_and_not_echoed(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    for operation in MEMBER_OPERATIONS:
        before = snapshot(session)
        for bad in MALFORMED_MEMBER_IDS:
            response = _member_request(app_client, keys, operation, quote(bad, safe=""))
            assert response.status_code == 404, (operation, bad, response.text)
            assert_problem(response, 404, "not-found")
            assert_not_echoed(response, bad)
        after = snapshot(session)
        if operation == "read":
            one_refusal_recorded(before, after, n=len(MALFORMED_MEMBER_IDS))
        else:
            assert after == before, operation
    log = audit_bytes(session)
    for bad in MALFORMED_MEMBER_IDS:
        assert json.dumps(bad).encode() not in log
    assert_database_intact(app_client, keys, member_id, session)


def test_a_member_id_with_a_trailing_newline_is_malformed_everywhere(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    """``re.match`` with ``$`` accepts ``"<id>\\n"``: such an id must be refused like any
    malformed one (404, not echoed), never recorded under an id that is not the member's."""
    padded = [member_id + "\n", new_id() + "\n", member_id + "\r\n"]
    for operation in MEMBER_OPERATIONS:
        before = snapshot(session)
        for bad in padded:
            response = _member_request(app_client, keys, operation, quote(bad, safe=""))
            assert_problem(response, 404, "not-found")
            assert_not_echoed(response, bad)
        after = snapshot(session)
        if operation == "read":
            one_refusal_recorded(before, after, n=len(padded))
        else:
            assert after == before, operation
    log = audit_bytes(session)
    for bad in padded:
        assert json.dumps(bad).encode() not in log
    for bad in padded:  # the auditor's view of a member and the admin's revocation too
        for method, path, key in (
            ("GET", f"/v1/members/{quote(bad, safe='')}/access-log", keys.auditor),
            ("DELETE", f"/v1/clients/{quote(keys.ids['sms'] + bad[24:], safe='')}", keys.admin),
        ):
            response = app_client.request(method, path, headers=auth(key))
            assert_problem(response, 404, "not-found")
            assert_not_echoed(response, bad)
    # The client with the id that was padded was not revoked.
    still = app_client.get(f"/v1/members/{member_id}?purpose=marketing_sms", headers=auth(keys.sms))
    assert still.status_code == 403, still.text


# ------------------------------------------------------------------- consents


def test_bundled_grant_of_a_separate_consent_is_refused(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    before = snapshot(session)
    for purposes in (
        ["partner_sharing", "marketing_sms"],  # third party, bundled with marketing
        ["marketing_sms", "identity_verification"],  # sensitive data, bundled
        ["partner_sharing", "identity_verification"],  # two separate ones together
    ):
        response = app_client.post(
            f"/v1/members/{member_id}/consents",
            json=consent_body(purposes=purposes, status="granted"),
            headers=auth(keys.pos),
        )
        assert response.status_code == 409, (purposes, response.text)
        problem = assert_problem(response, 409, "bundled-consent")
        assert set(problem["separate_purposes"]) <= set(purposes)
    assert snapshot(session) == before


def test_bundled_withdrawal_and_refusal_of_a_separate_consent_are_accepted(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    grant(app_client, keys.app, member_id, "partner_sharing")
    for day, status in ((2, "withdrawn"), (3, "refused")):
        before = snapshot(session)
        response = app_client.post(
            f"/v1/members/{member_id}/consents",
            json=consent_body(
                purposes=["partner_sharing", "marketing_sms"],
                status=status,
                collected_at=f"2026-11-0{day}T10:00:00+08:00",
            ),
            headers=auth(keys.crm),
        )
        assert response.status_code == 201, response.text
        assert [e["status"] for e in response.json()["events"]] == [status, status]
        changed = grown(before, snapshot(session))
        assert changed["consent_event"] == 2
        assert changed["audit_head.size"] == 1
        states = app_client.get(f"/v1/members/{member_id}/consents", headers=auth(keys.crm)).json()[
            "purposes"
        ]
        assert states["partner_sharing"]["status"] == status
        assert states["marketing_sms"]["status"] == status


def test_withdrawal_of_a_consent_never_granted_is_accepted_and_recorded(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    before = snapshot(session)
    recorded = grant(app_client, keys.app, member_id, "marketing_sms", status="withdrawn")
    assert recorded["receipt"] is None
    assert [(e["purpose"], e["status"]) for e in recorded["events"]] == [
        ("marketing_sms", "withdrawn")
    ]
    changed = grown(before, snapshot(session))
    assert changed["consent_event"] == 1
    assert changed["consent_state"] == 1
    assert changed["audit_head.size"] == 1
    states = app_client.get(f"/v1/members/{member_id}/consents", headers=auth(keys.crm)).json()
    assert states["purposes"]["marketing_sms"]["status"] == "withdrawn"
    read = app_client.get(f"/v1/members/{member_id}?purpose=marketing_sms", headers=auth(keys.sms))
    assert_problem(read, 403, "consent-required")


# ------------------------------------------------------------- authentication

BAD_CREDENTIALS = {
    "missing": {},
    "basic-scheme": {"Authorization": "Basic " + base64.b64encode(b"crm:secret").decode()},
    "bearer-without-key": {"Authorization": "Bearer"},
    "not-a-memberguard-key": {"Authorization": "Bearer sk_live_0123456789abcdef"},
    "unknown-key": {"Authorization": "Bearer mg_" + "A" * 43},
    "unknown-member-token": {"Authorization": "Bearer mgm_" + "A" * 43},
    "overlong-member-token": {"Authorization": "Bearer mgm_" + "a" * 300},
    "overlong-key": {"Authorization": "Bearer mg_" + "a" * 300},
    "key-in-wrong-header": {"X-API-Key": "mg_" + "A" * 43},
}


# The probes, and a member's sign-in: it is how a member gets a credential.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/v1/me/login", "/v1/me/login/verify"})


def every_endpoint(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves but the public ones, path parameters
    filled in."""
    return [
        (
            method,
            re.sub(
                r"\{(\w+)(?::\w+)?\}",
                lambda m: "1" if m.group(1) == "seq" else new_id(),
                path,
            ),
        )
        for method, path in app_routes(app)
        if path not in PUBLIC_PATHS
    ]


def test_only_the_health_probes_and_the_sign_in_are_public(app_client: TestClient) -> None:
    paths = {path for _method, path in app_routes(app_client.app)}  # type: ignore[arg-type]
    assert paths >= PUBLIC_PATHS  # the exemption names routes that exist
    walked = app_routes(app_client.app)  # type: ignore[arg-type]
    # The walk sees the whole contract (an empty walk would make the test below vacuous).
    assert {
        ("GET", "/v1/audit/head"),
        ("POST", "/v1/members"),
        ("GET", "/v1/members/{member_id}"),
        ("DELETE", "/v1/clients/{client_id}"),
        ("GET", "/docs"),
        ("GET", "/v1/me"),
        ("POST", "/v1/me/logout"),
    } <= set(walked)
    assert len(walked) >= 15


@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
def test_missing_malformed_or_unknown_key_is_unauthenticated_everywhere(
    app_client: TestClient, session: Session, case: str
) -> None:
    """Walks ``app.routes``: an endpoint added later is covered without editing this test."""
    headers = BAD_CREDENTIALS[case]
    before = snapshot(session)
    for method, path in every_endpoint(app_client.app):  # type: ignore[arg-type]
        # A well-formed query and body, so that nothing but the key can be wrong.
        response = app_client.request(
            method,
            path,
            params={"purpose": "membership"},
            json={"phone": MEMBER["phone"], "purpose": "membership"}
            if method in ("POST", "PATCH")
            else None,
            headers=headers,
        )
        assert response.status_code == 401, (method, path, response.status_code)
        assert_problem(response, 401, "unauthenticated")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        for value in headers.values():
            assert value.split()[-1] not in response.text
    assert snapshot(session) == before


def test_revoked_client_key_fails_on_the_very_next_request(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    created = app_client.post(
        "/v1/clients",
        json={"name": "pos-till-7", "role": "client", "purposes": ["membership"]},
        headers=auth(keys.admin),
    )
    assert created.status_code == 201, created.text
    client_id, key = created.json()["id"], created.json()["key"]
    path = f"/v1/members/{member_id}?purpose=membership"
    assert app_client.get(path, headers=auth(key)).status_code == 200
    revoked = app_client.delete(f"/v1/clients/{client_id}", headers=auth(keys.admin))
    assert revoked.status_code == 204, revoked.text
    before = snapshot(session)
    response = app_client.get(path, headers=auth(key))
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert snapshot(session) == before
    again = app_client.delete(f"/v1/clients/{client_id}", headers=auth(keys.admin))
    assert_problem(again, 409, "already-revoked")


def test_revoking_a_malformed_client_id_is_not_found(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    before = snapshot(session)
    for bad in [*INJECTION_VALUES, "no-such-client", "a" * 300]:
        response = app_client.delete(f"/v1/clients/{quote(bad, safe='')}", headers=auth(keys.admin))
        assert response.status_code == 404, (bad, response.text)
        assert_problem(response, 404, "not-found")
        assert_not_echoed(response, bad)
    assert snapshot(session) == before
    assert_database_intact(app_client, keys, member_id, session)


# -------------------------------------------------------------- authorisation


def test_purpose_not_granted_to_the_client_is_refused_and_recorded(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    for method, path, body in (
        ("GET", f"/v1/members/{member_id}?purpose=membership", None),
        ("POST", "/v1/members/lookup", {"phone": MEMBER["phone"], "purpose": "membership"}),
        ("GET", "/v1/members?purpose=membership", None),
    ):
        before = snapshot(session)
        response = app_client.request(method, path, json=body, headers=auth(keys.sms))
        problem = assert_problem(response, 403, "purpose-not-allowed")
        assert "fields" not in problem and "ids" not in problem
        after = snapshot(session)
        one_refusal_recorded(before, after)
        assert int(response.headers["Audit-Seq"]) == after["audit_head.size"]


def test_consent_based_purpose_without_consent_is_refused_and_recorded(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    before = snapshot(session)
    response = app_client.get(
        f"/v1/members/{member_id}?purpose=marketing_sms", headers=auth(keys.sms)
    )
    problem = assert_problem(response, 403, "consent-required")
    assert "fields" not in problem
    assert MEMBER["phone"] not in response.text
    after = snapshot(session)
    one_refusal_recorded(before, after)
    assert int(response.headers["Audit-Seq"]) == after["audit_head.size"]


def test_each_role_is_refused_on_the_other_roles_endpoints(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    member_endpoints = [
        ("GET", f"/v1/members/{member_id}?purpose=membership", None),
        ("GET", "/v1/members?purpose=membership", None),
        ("POST", "/v1/members", MEMBER),
        ("PATCH", f"/v1/members/{member_id}", {"tier": "钻石"}),
        ("POST", "/v1/members/lookup", {"phone": MEMBER["phone"], "purpose": "membership"}),
        ("POST", f"/v1/members/{member_id}/consents", consent_body()),
        ("GET", f"/v1/members/{member_id}/consents", None),
    ]
    audit_endpoints = [("GET", "/v1/audit/entries", None), ("GET", "/v1/audit/head", None)]
    admin_endpoints = [
        ("GET", "/v1/clients", None),
        ("POST", "/v1/clients", {"name": "rogue", "role": "admin"}),
        ("DELETE", f"/v1/clients/{keys.ids['sms']}", None),
    ]
    refused = {
        "client": (keys.crm, audit_endpoints + admin_endpoints),
        "auditor": (keys.auditor, member_endpoints + admin_endpoints),
        "admin": (keys.admin, member_endpoints + audit_endpoints),
    }
    before = snapshot(session)
    for role, (key, endpoints) in refused.items():
        for method, path, body in endpoints:
            response = app_client.request(method, path, json=body, headers=auth(key))
            assert response.status_code == 403, (role, method, path, response.text)
            assert_problem(response, 403, "role-required")
    assert snapshot(session) == before


def test_client_without_the_scope_cannot_write_members_or_consents(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    before = snapshot(session)
    for key, method, path, body in (
        (keys.sms, "POST", "/v1/members", MEMBER),  # no members:write
        (keys.pos, "PATCH", f"/v1/members/{member_id}", {"tier": "钻石"}),  # no members:write
        (keys.sms, "POST", f"/v1/members/{member_id}/consents", consent_body()),
        (keys.pos, "GET", f"/v1/members/{member_id}/consents", None),  # no consents:read
    ):
        response = app_client.request(method, path, json=body, headers=auth(key))
        assert response.status_code == 403, (method, path, response.text)
        assert_problem(response, 403, "scope-required")
    assert snapshot(session) == before


# ------------------------------------------------- injection and control chars


# Every string-typed field (points_balance is an integer: see the rules above).
TEXT_FIELDS = [name for name, value in MEMBER.items() if isinstance(value, str)]


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_in_any_member_field_is_refused_and_writes_nothing(
    app_client: TestClient, keys: Keys, member_id: str, session: Session, value: str
) -> None:
    before = snapshot(session)
    for field in TEXT_FIELDS:
        for method, path, body in (
            ("POST", "/v1/members", {**MEMBER, field: value}),
            ("PATCH", f"/v1/members/{member_id}", {field: value}),
        ):
            response = app_client.request(method, path, json=body, headers=auth(keys.crm))
            problem = assert_problem(response, 422, "validation-failed")
            assert [e["field"] for e in problem["errors"]] == [field], (method, field)
            assert_not_echoed(response, value)
    assert snapshot(session) == before
    assert_database_intact(app_client, keys, member_id, session)


def test_injection_in_a_purpose_parameter_is_refused_and_never_logged(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    for value in INJECTION_VALUES:
        before = snapshot(session)
        read = app_client.get(
            f"/v1/members/{member_id}", params={"purpose": value}, headers=auth(keys.crm)
        )
        assert_problem(read, 422, "unknown-purpose")
        assert_not_echoed(read, value)
        export = app_client.get("/v1/members", params={"purpose": value}, headers=auth(keys.crm))
        assert_problem(export, 422, "unknown-purpose")
        assert_not_echoed(export, value)
        # Both refusals are on the record...
        one_refusal_recorded(before, snapshot(session), n=2)
        # ...and the auditor's purpose filter takes only id-shaped text.
        before = snapshot(session)
        audit = app_client.get(
            "/v1/audit/entries", params={"purpose": value}, headers=auth(keys.auditor)
        )
        assert_problem(audit, 422, "validation-failed")
        assert_not_echoed(audit, value)
        assert snapshot(session) == before
    log = audit_bytes(session)
    for value in INJECTION_VALUES:
        assert json.dumps(value).encode() not in log
        assert json.dumps(value, ensure_ascii=False).encode() not in log
    assert_database_intact(app_client, keys, member_id, session)


@pytest.mark.parametrize(
    ("field", "slug"),
    [
        ("channel", "validation-failed"),
        ("notice_version", "validation-failed"),
        ("purposes", "unknown-purpose"),
        ("purpose", "unknown-purpose"),
    ],
)
def test_injection_in_a_consent_field_is_refused_and_writes_nothing(
    app_client: TestClient,
    keys: Keys,
    member_id: str,
    session: Session,
    field: str,
    slug: str,
) -> None:
    before = snapshot(session)
    for value in INJECTION_VALUES:
        if field == "purposes":
            body = consent_body(purposes=[value])
        elif field == "purpose":
            body = consent_body(purposes=None, purpose=value)
        else:
            body = consent_body(**{field: value})
        response = app_client.post(
            f"/v1/members/{member_id}/consents", json=body, headers=auth(keys.crm)
        )
        assert_problem(response, 422, slug)
        assert_not_echoed(response, value)
    assert snapshot(session) == before
    assert_database_intact(app_client, keys, member_id, session)


def test_injection_in_a_withdrawal_notice_version_is_refused_and_writes_nothing(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    # A withdrawal needs no accepted notice, but the version it names is
    # evidence that is stored and audited: it must be a notice the policy knows.
    before = snapshot(session)
    for status in ("withdrawn", "refused"):
        for value in INJECTION_VALUES:
            response = app_client.post(
                f"/v1/members/{member_id}/consents",
                json=consent_body(status=status, notice_version=value),
                headers=auth(keys.crm),
            )
            assert response.status_code == 422, (status, value, response.text)
            assert_problem(response, 422, "validation-failed")
            assert_not_echoed(response, value)
    assert snapshot(session) == before
    assert_database_intact(app_client, keys, member_id, session)


def test_injection_in_a_lookup_is_refused_and_never_logged(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    before = snapshot(session)
    for field in ("phone", "email"):
        for value in INJECTION_VALUES:
            response = app_client.post(
                "/v1/members/lookup",
                json={field: value, "purpose": "membership"},
                headers=auth(keys.crm),
            )
            assert_problem(response, 422, "validation-failed")
            assert_not_echoed(response, value)
    assert snapshot(session) == before
    for value in INJECTION_VALUES:
        response = app_client.post(
            "/v1/members/lookup",
            json={"phone": MEMBER["phone"], "purpose": value},
            headers=auth(keys.crm),
        )
        assert_problem(response, 422, "unknown-purpose")
        assert_not_echoed(response, value)
    one_refusal_recorded(before, snapshot(session), n=len(INJECTION_VALUES))
    log = audit_bytes(session)
    for value in INJECTION_VALUES:
        assert json.dumps(value).encode() not in log
    assert_database_intact(app_client, keys, member_id, session)


def test_a_client_registration_names_its_unknown_purposes_and_lists_the_policys(
    app_client: TestClient, keys: Keys, session: Session
) -> None:
    # Purpose names are not personal data, so the operator is told which are wrong;
    # a value not shaped like a purpose name (a pasted phone number) is only counted.
    before = snapshot(session)
    body = {
        "name": "pos-till",
        "role": "client",
        "purposes": ["membership", "telepathy", MEMBER["phone"]],
    }
    response = app_client.post("/v1/clients", json=body, headers=auth(keys.admin))
    problem = assert_problem(response, 422, "validation-failed")
    assert problem["detail"].startswith(
        "purposes not in the policy: telepathy and 1 value(s) that are not purpose names; "
        "the policy's purposes are: analytics, birthday_benefits,"
    )
    assert "membership" in problem["known_purposes"]
    assert_not_echoed(response, MEMBER["phone"])
    assert snapshot(session) == before


def test_injection_in_a_client_registration_is_refused_and_writes_nothing(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    before = snapshot(session)
    for field in ("name", "purposes", "scopes"):
        for value in INJECTION_VALUES:
            body: dict[str, Any] = {"name": "pos-till", "role": "client"}
            body[field] = value if field == "name" else [value]
            response = app_client.post("/v1/clients", json=body, headers=auth(keys.admin))
            assert_problem(response, 422, "validation-failed")
            assert_not_echoed(response, value)
    assert snapshot(session) == before
    assert_database_intact(app_client, keys, member_id, session)


def test_a_client_name_with_a_trailing_newline_is_refused(
    app_client: TestClient, keys: Keys, member_id: str, session: Session
) -> None:
    before = snapshot(session)
    for name in ("pos-till\n", "pos-till\r\n"):
        response = app_client.post(
            "/v1/clients", json={"name": name, "role": "client"}, headers=auth(keys.admin)
        )
        assert_problem(response, 422, "validation-failed")
    assert snapshot(session) == before
