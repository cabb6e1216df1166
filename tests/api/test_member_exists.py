"""One meaning of "member exists": a data key. A crypto-shredded member exists for no use case.

Shredding (``vault.members.shred_member``) destroys the data key, the
ciphertexts and the blind-index rows but keeps the ``vault_member`` row, the
consent history and the audit entries (ids only). Every path then answers as
for a member that never existed.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from consent.models import ConsentEvent
from gate.context import Services
from tests.api.conftest import MEMBER, auth, grant
from tests.conftest import Keys
from vault.members import member_exists, shred_member
from vault.models import VaultBlindIndex, VaultDataKey, VaultField, VaultMember


@pytest.fixture
def shredded(app_client: TestClient, keys: Keys, member_id: str, services: Services) -> str:
    grant(app_client, keys.app, member_id, "marketing_sms")
    found = app_client.post(
        "/v1/members/lookup",
        json={"phone": MEMBER["phone"], "purpose": "customer_service"},
        headers=auth(keys.crm),
    )
    assert found.json()["ids"] == [member_id]  # found before the shred
    with services.sessions() as session:
        assert shred_member(session, member_id)
        session.commit()
    return member_id


def test_shredding_keeps_the_member_row_and_consent_history_only(
    shredded: str, session: Session
) -> None:
    assert not member_exists(session, shredded)
    assert session.get(VaultMember, shredded) is not None
    for model in (VaultField, VaultBlindIndex):
        count = select(func.count()).select_from(model).where(model.member_id == shredded)
        assert session.scalar(count) == 0, model.__tablename__
    events = select(func.count()).select_from(ConsentEvent)
    assert session.scalar(events.where(ConsentEvent.member_id == shredded)) == 1


def test_a_lookup_never_returns_a_shredded_member(
    app_client: TestClient, keys: Keys, shredded: str
) -> None:
    for body in (
        {"phone": MEMBER["phone"], "purpose": "customer_service"},
        {"email": MEMBER["email"], "purpose": "customer_service"},
    ):
        response = app_client.post("/v1/members/lookup", json=body, headers=auth(keys.crm))
        assert response.status_code == 200, response.text
        assert response.json()["ids"] == []


@pytest.mark.parametrize(
    ("method", "path", "body", "key"),
    [
        ("GET", "/v1/members/{id}?purpose=customer_service", None, "crm"),
        ("GET", "/v1/members/{id}?purpose=marketing_sms", None, "sms"),
        ("PATCH", "/v1/members/{id}", {"tier": "钻石"}, "crm"),
        ("GET", "/v1/members/{id}/consents", None, "crm"),
        (
            "POST",
            "/v1/members/{id}/consents",
            {
                "purposes": ["marketing_sms"],
                "status": "withdrawn",
                "channel": "app",
                "collected_at": "2026-11-02T10:00:00+08:00",
            },
            "crm",
        ),
    ],
)
def test_every_use_case_answers_not_found_for_a_shredded_member(
    app_client: TestClient,
    keys: Keys,
    shredded: str,
    session: Session,
    method: str,
    path: str,
    body: dict[str, object] | None,
    key: str,
) -> None:
    response = app_client.request(
        method, path.format(id=shredded), json=body, headers=auth(getattr(keys, key))
    )
    assert response.status_code == 404, response.text
    assert response.json()["type"] == "not-found"
    events = select(func.count()).select_from(ConsentEvent)
    assert session.scalar(events.where(ConsentEvent.member_id == shredded)) == 1


def test_an_export_neither_releases_nor_names_a_shredded_member(
    app_client: TestClient, keys: Keys, member_id: str, services: Services
) -> None:
    grant(app_client, keys.app, member_id, "personalization")
    before = app_client.get("/v1/members?purpose=personalization", headers=auth(keys.recs))
    assert len(before.text.splitlines()) == 2  # the member, the trailer
    with services.sessions() as session:
        shred_member(session, member_id)
        session.commit()
    after = app_client.get("/v1/members?purpose=personalization", headers=auth(keys.recs))
    assert after.status_code == 200
    assert [json.loads(line)["trailer"]["released"] for line in after.text.splitlines()] == [0]
    seq = int(after.headers["Audit-Seq"])
    entry = app_client.get(
        "/v1/audit/entries", params={"action": "member.export"}, headers=auth(keys.auditor)
    ).json()["entries"][-1]
    assert entry["seq"] == seq and entry["members"] == []


def test_a_member_whose_data_key_alone_is_gone_is_not_found_by_lookup(
    app_client: TestClient, keys: Keys, member_id: str, services: Services
) -> None:
    """The blind index is not the rule: without a data key, a leftover index row finds no one."""
    with services.sessions() as session:
        session.execute(delete(VaultDataKey).where(VaultDataKey.member_id == member_id))
        session.commit()
    response = app_client.post(
        "/v1/members/lookup",
        json={"phone": MEMBER["phone"], "purpose": "customer_service"},
        headers=auth(keys.crm),
    )
    assert response.status_code == 200, response.text
    assert response.json()["ids"] == []
