"""Fail closed: when the audit entry cannot be written, nothing is released.

The failure is real: a trigger makes the database reject the insert into
``audit_entry`` (or, on PostgreSQL, the commit). Installing a trigger is DDL,
which MariaDB commits implicitly, so every backend uses a database of its own
(``fresh_database``) with an app built the way ``app_client`` builds it; that
also lets "nothing was committed" be checked from a separate connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, func, select

from api.app import create_app
from audit.log import Head, read_head
from audit.models import AuditEntry
from audit.online import verify_log
from core.db import build_engine, session_factory
from gate.clients import register_client
from principals import OPERATOR_ACTOR
from tests.api.conftest import MEMBER, auth
from tests.conftest import FreshDatabase, ServicesFor

FAIL_MESSAGE = "audit storage failure (test)"

FAIL_ON_INSERT = {
    "sqlite": [
        "CREATE TRIGGER test_audit_entry_fail BEFORE INSERT ON audit_entry "
        f"BEGIN SELECT RAISE(ABORT, '{FAIL_MESSAGE}'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION test_audit_fail() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{FAIL_MESSAGE}'; END; $$",
        "CREATE TRIGGER test_audit_entry_fail BEFORE INSERT ON audit_entry "
        "FOR EACH ROW EXECUTE FUNCTION test_audit_fail()",
    ],
    "mysql": [
        "CREATE TRIGGER test_audit_entry_fail BEFORE INSERT ON audit_entry FOR EACH ROW "
        f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{FAIL_MESSAGE}'"
    ],
}
# PostgreSQL only: the insert succeeds and the COMMIT itself fails.
FAIL_ON_COMMIT = [
    "CREATE FUNCTION test_audit_fail() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{FAIL_MESSAGE}'; END; $$",
    "CREATE CONSTRAINT TRIGGER test_audit_entry_fail_at_commit AFTER INSERT ON audit_entry "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_audit_fail()",
]
# Values that are the member's personal data (not enums such as channel "app").
PERSONAL = ("name", "phone", "email", "birthday", "address", "id_number", "home_store")


@dataclass
class Gate:
    engine: Engine
    client: TestClient
    key: str
    member: str

    def read(self) -> Response:
        return self.client.get(
            f"/v1/members/{self.member}?purpose=delivery", headers=auth(self.key)
        )

    def head(self) -> Head:
        with session_factory(self.engine)() as session:
            return read_head(session)

    def break_audit(self, statements: list[str]) -> None:
        with self.engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)


@pytest.fixture
def gate(fresh_database: FreshDatabase, services_for: ServicesFor) -> Iterator[Gate]:
    engine = build_engine(fresh_database.url)
    services = services_for(session_factory(engine), session_factory(engine, read_only=True))
    issued = register_client(
        services,
        actor=OPERATOR_ACTOR,
        name="crm",
        role="client",
        purposes=["delivery", "customer_service"],
        scopes=["members:write"],
        request_id=None,
    )
    app = create_app(services=services)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            created = client.post("/v1/members", json=MEMBER, headers=auth(issued.key))
            assert created.status_code == 201, created.text
            yield Gate(engine, client, issued.key, created.json()["id"])
    finally:
        engine.dispose()


@dataclass
class FailedRead:
    response: Response
    released_before: dict[str, Any]
    head_before: Head
    head_after: Head


@pytest.fixture
def failed_read(gate: Gate) -> FailedRead:
    permitted = gate.read()  # the same read succeeds while the log is writable
    assert permitted.status_code == 200, permitted.text
    head_before = gate.head()
    gate.break_audit(FAIL_ON_INSERT[gate.engine.dialect.name])
    response = gate.read()
    return FailedRead(response, permitted.json()["fields"], head_before, gate.head())


def test_read_answers_503_audit_unavailable_when_the_append_fails(
    failed_read: FailedRead,
) -> None:
    response = failed_read.response
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "audit-unavailable"
    assert body["status"] == 503
    assert "fields" not in body
    assert "Audit-Seq" not in response.headers  # there is no entry to name


def test_failed_read_body_holds_none_of_the_members_values(failed_read: FailedRead) -> None:
    values = {str(MEMBER[name]) for name in PERSONAL}
    values |= {v for v in failed_read.released_before.values() if isinstance(v, str)}
    values.discard("")
    text = failed_read.response.text
    escaped = json.dumps(failed_read.response.json())  # \\u-escaped form too
    leaked = sorted(v for v in values if v in text or json.dumps(v)[1:-1] in escaped)
    assert leaked == []
    assert FAIL_MESSAGE not in text  # database error text stays out of bodies


def test_failed_read_commits_nothing(failed_read: FailedRead, gate: Gate) -> None:
    assert failed_read.response.status_code == 503
    assert failed_read.head_after == failed_read.head_before
    with session_factory(gate.engine)() as session:
        newest = session.scalar(select(func.max(AuditEntry.seq)))
        assert newest == failed_read.head_before.size
        report = verify_log(session)
        assert report.ok, report.reason


@pytest.mark.backends("postgresql")  # the only one with deferred triggers to fail a COMMIT
def test_read_answers_503_and_commits_nothing_when_the_commit_fails_on_postgresql(
    backend: str, request: pytest.FixtureRequest
) -> None:
    gate: Gate = request.getfixturevalue("gate")
    head_before = gate.head()
    gate.break_audit(FAIL_ON_COMMIT)
    response = gate.read()
    assert response.status_code == 503, response.text
    assert response.json()["type"] == "audit-unavailable"
    assert "fields" not in response.json()
    assert gate.head() == head_before
