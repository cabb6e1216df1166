"""Inputs at the edges of their types get a 4xx, never a 500 (found in review)."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from gate.context import Services
from tests.api.conftest import auth
from tests.conftest import Keys


def test_a_cursor_naming_a_huge_sequence_number_is_invalid(
    app_client: TestClient, keys: Keys
) -> None:
    cursor = base64.urlsafe_b64encode(b"seq:99999999999999999999999").decode().rstrip("=")
    response = app_client.get(f"/v1/audit/entries?cursor={cursor}", headers=auth(keys.auditor))
    assert response.status_code == 422 and response.json()["type"] == "invalid-cursor"


@pytest.mark.parametrize(
    "since", ["2026-11-01T00:00:00", "0001-01-01T01:00:00+02:00", "9999-12-31T23:00:00-05:00"]
)
def test_audit_time_filters_need_a_zone_and_a_plausible_year(
    app_client: TestClient, keys: Keys, since: str
) -> None:
    response = app_client.get(
        "/v1/audit/entries", params={"since": since}, headers=auth(keys.auditor)
    )
    assert response.status_code == 422
    assert response.json()["type"] == "validation-failed"


@pytest.mark.parametrize(
    "at", ["0001-01-01T01:00:00+02:00", "1999-12-31T23:59:59Z", "2999-01-01T00:00:00Z"]
)
def test_implausible_collection_times_are_refused(
    app_client: TestClient, keys: Keys, member_id: str, at: str
) -> None:
    response = app_client.post(
        f"/v1/members/{member_id}/consents",
        json={
            "purposes": ["marketing_sms"],
            "status": "granted",
            "channel": "app",
            "collected_at": at,
        },
        headers=auth(keys.crm),
    )
    assert response.status_code == 422, response.text


def test_a_pattern_digit_means_an_ascii_digit(app_client: TestClient, keys: Keys) -> None:
    response = app_client.post(
        "/v1/members",
        json={"name": "张三", "phone": "13812345678", "home_store": "SZ-١٢٣"},
        headers=auth(keys.crm),
    )
    assert response.status_code == 422


def test_replacing_a_clients_key_revokes_the_old_one(
    app_client: TestClient, keys: Keys, services: Services
) -> None:
    from gate.clients import reissue_key
    from principals import OPERATOR_ACTOR

    new = reissue_key(services, actor=OPERATOR_ACTOR, name="sms", replace=True)
    assert (
        app_client.get("/v1/members?purpose=marketing_sms", headers=auth(keys.sms)).status_code
        == 401
    )
    assert app_client.get("/v1/members?purpose=marketing_sms", headers=auth(new)).status_code == 200
