"""Lookups cannot unmask a masked phone: declared fields, a rate, a stricter rate for misses.

The review's attack: a client that sees ``139****5678`` tries the 10,000
possible middle digits through ``POST /v1/members/lookup`` until one answers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from gate.context import Services
from policies.model import Policy
from tests.api.conftest import MEMBER, auth
from tests.conftest import Keys

MakeClient = Callable[..., TestClient]


@pytest.fixture
def client_with(services: Services) -> Iterator[MakeClient]:
    """An API on the test's services with some settings changed."""
    opened: list[TestClient] = []

    def make(**changes: object) -> TestClient:
        changed = dataclasses.replace(
            services, settings=services.settings.model_copy(update=changes)
        )
        client = TestClient(create_app(services=changed), raise_server_exceptions=False)
        opened.append(client)
        return client.__enter__()

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def lookup(client: TestClient, key: str, phone: str, purpose: str = "customer_service"):
    return client.post(
        "/v1/members/lookup", json={"phone": phone, "purpose": purpose}, headers=auth(key)
    )


def candidates(masked_phone: str) -> list[str]:
    """Every number a masked ``138****5678`` can stand for, in order."""
    head, tail = masked_phone[:3], masked_phone[-4:]
    return [f"{head}{middle:04d}{tail}" for middle in range(10_000)]


def audit_actions(client: TestClient, keys: Keys, action: str) -> list[dict]:
    response = client.get(f"/v1/audit/entries?action={action}", headers=auth(keys.auditor))
    assert response.status_code == 200, response.text
    return response.json()["entries"]


def test_enumerating_a_masked_phone_is_throttled_long_before_it_finds_the_member(
    app_client: TestClient, keys: Keys, member_id: str
) -> None:
    masked = app_client.get(
        f"/v1/members/{member_id}?purpose=customer_service", headers=auth(keys.crm)
    ).json()["fields"]["phone"]
    assert "*" in masked
    answered = 0
    for phone in candidates(masked):
        response = lookup(app_client, keys.crm, phone)
        if response.status_code == 429:
            break
        assert response.status_code == 200, response.text
        assert response.json()["ids"] == [], "the enumeration found the member"
        answered += 1
    else:
        pytest.fail("10,000 lookups were never throttled")
    # 30 a minute by default, but the 20th miss in a row flags the client,
    # and the stricter 5 a minute then holds at once. The member's number
    # (middle digits 1234) was far from reached.
    assert answered == 20
    assert len(audit_actions(app_client, keys, "lookup.flagged")) == 1
    assert response.json()["type"] == "rate-limited"
    assert response.headers["content-type"] == "application/problem+json"
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_a_throttled_lookup_is_neither_answered_nor_recorded(
    client_with: MakeClient, keys: Keys, member_id: str
) -> None:
    client = client_with(lookup_rate="2/minute")
    assert [lookup(client, keys.crm, MEMBER["phone"]).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    # A flood must not fill the log: the refusal is counted, not recorded.
    assert len(audit_actions(client, keys, "member.lookup")) == 2


def test_the_rate_is_per_client_and_purpose(
    client_with: MakeClient, keys: Keys, member_id: str
) -> None:
    client = client_with(lookup_rate="1/minute")
    assert lookup(client, keys.crm, MEMBER["phone"]).status_code == 200
    assert lookup(client, keys.crm, MEMBER["phone"]).status_code == 429
    assert lookup(client, keys.crm, MEMBER["phone"], purpose="membership").status_code == 200
    assert lookup(client, keys.pos, MEMBER["phone"], purpose="membership").status_code == 200


def test_a_client_whose_lookups_mostly_miss_is_flagged_once_and_throttled_harder(
    client_with: MakeClient, keys: Keys, member_id: str
) -> None:
    client = client_with(
        lookup_rate="100/minute", lookup_suspect_rate="3/minute", lookup_suspect_misses=5
    )
    # Two hits, then misses: the fifth miss (5 of 7 lookups) flags the client.
    for _ in range(2):
        assert lookup(client, keys.crm, MEMBER["phone"]).json()["ids"] == [member_id]
    for middle in range(5):
        assert lookup(client, keys.crm, f"1390000{middle:04d}").json()["ids"] == []
    flags = audit_actions(client, keys, "lookup.flagged")
    assert len(flags) == 1
    flag = flags[0]
    assert flag["actor"] == keys.ids["crm"]
    assert flag["decision"] == "deny"
    assert flag["purpose"] == "customer_service"
    assert flag["detail"] == {"lookups": 7, "misses": 5, "window_seconds": 3600}
    assert flag["members"] == []
    # From now on the stricter rate holds, counting the lookups already made
    # in its window: 7 in the last minute is more than 3.
    response = lookup(client, keys.crm, "13900019999")
    assert response.status_code == 429
    assert response.json()["type"] == "rate-limited"
    # Flagged once per window, however many more misses follow.
    assert len(audit_actions(client, keys, "lookup.flagged")) == 1


def test_a_client_whose_lookups_mostly_hit_is_not_flagged(
    client_with: MakeClient, keys: Keys, member_id: str
) -> None:
    client = client_with(lookup_rate="100/minute", lookup_suspect_misses=3)
    for middle in range(6):
        assert lookup(client, keys.crm, MEMBER["phone"]).json()["ids"] == [member_id]
        lookup(client, keys.crm, f"1390000{middle:04d}")
    # 6 misses of 12: not more than half.
    assert audit_actions(client, keys, "lookup.flagged") == []


def test_a_purpose_may_look_up_only_by_the_fields_its_policy_lists(
    app_client: TestClient, keys: Keys, member_id: str, policy: Policy
) -> None:
    # partner_sharing sees the phone in clear but lists no lookup field.
    assert policy.purposes["partner_sharing"].fields["phone"] == "clear"
    assert policy.purposes["partner_sharing"].lookup == ()
    response = lookup(app_client, keys.pos, MEMBER["phone"], purpose="partner_sharing")
    assert response.status_code == 403
    assert response.json()["type"] == "lookup-not-allowed"
    # membership lists the phone but not the e-mail.
    by_email = app_client.post(
        "/v1/members/lookup",
        json={"email": MEMBER["email"], "purpose": "membership"},
        headers=auth(keys.crm),
    )
    assert by_email.status_code == 403
    assert by_email.json()["type"] == "lookup-not-allowed"
    assert lookup(app_client, keys.crm, MEMBER["phone"], "membership").json() == {
        "ids": [member_id]
    }
