"""Helpers for the rights tests: submit, look at the log, search the database for a value."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app import create_app
from core.db import Base
from gate.context import Services
from tests.api.conftest import auth
from tests.conftest import ServicesFor, ticking_clock


def submit(client: TestClient, token: str, body: dict[str, Any]) -> httpx.Response:
    return client.post("/v1/me/requests", json=body, headers=auth(token))


def submitted(client: TestClient, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = submit(client, token, body)
    assert response.status_code == 201, response.text
    return response.json()


def relay(client: TestClient, key: str, member_id: str, body: dict[str, Any]) -> httpx.Response:
    body = {"verification": {"method": "in_person_id", "reference": "CASE-2026-0042"}, **body}
    return client.post(f"/v1/members/{member_id}/requests", json=body, headers=auth(key))


def statuses(request: dict[str, Any]) -> list[str]:
    return [line["status"] for line in request["history"]]


def entries(client: TestClient, auditor: str, **filters: str) -> list[dict[str, Any]]:
    response = client.get(
        "/v1/audit/entries", params={"limit": "1000", **filters}, headers=auth(auditor)
    )
    assert response.status_code == 200, response.text
    return response.json()["entries"]


def stored_anywhere(session: Session, needle: str) -> list[str]:
    """Every table.column whose stored value contains ``needle`` (text or bytes)."""
    raw = needle.encode()
    hits = []
    try:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).all():
                for column, value in zip(table.columns, row, strict=True):
                    if (isinstance(value, bytes | memoryview) and raw in bytes(value)) or (
                        isinstance(value, str) and needle in value
                    ):
                        hits.append(f"{table.name}.{column.name}")
    finally:
        session.close()
    return hits


@contextmanager
def app_at(services_for: ServicesFor, services: Services, when: datetime) -> Iterator[TestClient]:
    """The same database and keys, with the clock at ``when``."""
    later = services_for(services.sessions, clock=ticking_clock(when))
    with TestClient(create_app(services=later), raise_server_exceptions=False) as client:
        yield client
