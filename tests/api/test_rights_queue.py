"""The DPO's queue: sorted by due date, paged, filtered, overdue computed with the caller's
clock; extensions as the policy allows them."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from gate.context import Services
from policies import load_policy
from policies.loader import default_policy_dir
from tests.api.conftest import MEMBER, auth
from tests.api.rights_helpers import app_at, entries, relay, statuses, submitted
from tests.conftest import NOW, Keys, ServicesFor

SignIn = Callable[[str], str]
EU_PROFILE = Path(default_policy_dir()).parent / "profiles" / "eu" / "rights.toml"


def new_member(client: TestClient, keys: Keys, n: int) -> str:
    response = client.post(
        "/v1/members", json={**MEMBER, "phone": f"1390000{n:04d}"}, headers=auth(keys.crm)
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture
def queue(app_client: TestClient, keys: Keys, relay_key: str) -> list[str]:
    """Four waiting corrections received on different days (names wait for the DPO)."""
    ids = []
    for n, received in enumerate(["2026-11-20", "2026-11-02", "2026-11-15", "2026-11-10"]):
        member = new_member(app_client, keys, n)
        response = relay(
            app_client,
            relay_key,
            member,
            {
                "type": "correction",
                "changes": {"name": "王五"},
                "received_at": f"{received}T10:00:00+08:00",
            },
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def test_the_queue_is_sorted_by_due_date_and_paged(
    app_client: TestClient, queue: list[str], dpo_key: str
) -> None:
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = app_client.get("/v1/requests", params=params, headers=auth(dpo_key)).json()
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 2
    assert [r["id"] for r in seen] == [queue[1], queue[3], queue[2], queue[0]]
    assert [r["due_at"][:10] for r in seen] == [
        "2026-12-02",
        "2026-12-10",
        "2026-12-15",
        "2026-12-20",
    ]


def test_the_queue_filters_by_status_and_type(
    app_client: TestClient, queue: list[str], dpo_key: str
) -> None:
    app_client.post(f"/v1/requests/{queue[0]}/approve", headers=auth(dpo_key))
    done = app_client.get(
        "/v1/requests", params={"status": "completed"}, headers=auth(dpo_key)
    ).json()
    assert [r["id"] for r in done["items"]] == [queue[0]]
    none = app_client.get("/v1/requests", params={"type": "deletion"}, headers=auth(dpo_key))
    assert none.json()["items"] == []
    bad = app_client.get("/v1/requests", params={"status": "lost"}, headers=auth(dpo_key))
    assert bad.status_code == 422


def test_overdue_is_computed_with_the_callers_clock_never_stored(
    app_client: TestClient,
    queue: list[str],
    dpo_key: str,
    services: Services,
    services_for: ServicesFor,
) -> None:
    now = app_client.get("/v1/requests", params={"overdue": "true"}, headers=auth(dpo_key))
    assert now.json()["items"] == []
    # 11 December 2026: the requests received on 2 and 10 November are past due.
    with app_at(services_for, services, NOW + timedelta(days=19)) as later:
        overdue = later.get(
            "/v1/requests", params={"overdue": "true"}, headers=auth(dpo_key)
        ).json()
        assert [r["id"] for r in overdue["items"]] == [queue[1], queue[3]]
        assert all(r["overdue"] for r in overdue["items"])
        in_time = later.get(
            "/v1/requests", params={"overdue": "false"}, headers=auth(dpo_key)
        ).json()
        assert [r["overdue"] for r in in_time["items"]] == [False, False]
        # Completed in time or late, a closed request is never overdue.
        later.post(f"/v1/requests/{queue[1]}/approve", headers=auth(dpo_key))
        shown = later.get(f"/v1/requests/{queue[1]}", headers=auth(dpo_key)).json()
        assert (shown["status"], shown["overdue"]) == ("completed", False)


def test_the_queue_belongs_to_the_dpo(
    app_client: TestClient, keys: Keys, relay_key: str, member_id: str, token_for: SignIn
) -> None:
    for key in (keys.auditor, keys.admin, keys.crm, relay_key, token_for(member_id)):
        response = app_client.get("/v1/requests", headers=auth(key))
        assert response.status_code == 403, response.text


# -- extensions ----------------------------------------------------------------------------


def test_the_china_profile_allows_no_extension(
    app_client: TestClient, queue: list[str], dpo_key: str
) -> None:
    response = app_client.post(
        f"/v1/requests/{queue[0]}/extend",
        json={"reason": "complex case", "until": "2027-01-10"},
        headers=auth(dpo_key),
    )
    assert response.status_code == 409, response.text
    assert response.json()["type"] == "extension-not-allowed"


@pytest.fixture
def eu_app(services: Services, tmp_path: Path) -> Iterator[TestClient]:
    policy_dir = tmp_path / "policy"
    shutil.copytree(default_policy_dir(), policy_dir)
    shutil.copyfile(EU_PROFILE, policy_dir / "rights.toml")
    eu = dataclasses.replace(services, policy=load_policy(policy_dir))
    with TestClient(create_app(services=eu), raise_server_exceptions=False) as client:
        yield client


def test_an_eu_deadline_is_extended_once_by_at_most_two_months_with_a_reason(
    eu_app: TestClient, member_id: str, token_for: SignIn, dpo_key: str, keys: Keys
) -> None:
    request = submitted(
        eu_app, token_for(member_id), {"type": "correction", "changes": {"name": "Li"}}
    )
    # Received 22 November 2026 (Berlin): one month, to Tuesday 22 December.
    assert request["due_at"] == "2026-12-22T23:59:59.999999+01:00"
    url = f"/v1/requests/{request['id']}/extend"
    no_reason = eu_app.post(url, json={"reason": "", "until": "2027-01-20"}, headers=auth(dpo_key))
    assert no_reason.status_code == 422
    too_far = eu_app.post(
        url, json={"reason": "complex case", "until": "2027-03-01"}, headers=auth(dpo_key)
    )
    assert too_far.status_code == 422 and too_far.json()["type"] == "extension-out-of-range"
    response = eu_app.post(
        url,
        json={"reason": "complex case, 3 systems to search", "until": "2027-02-22"},
        headers=auth(dpo_key),
    )
    assert response.status_code == 200, response.text
    extended = response.json()
    assert extended["due_at"] == "2027-02-22T23:59:59.999999+01:00"
    assert statuses(extended) == ["submitted", "extended"]
    assert extended["history"][-1]["reason"] == "complex case, 3 systems to search"
    assert extended["status"] == "submitted"
    again = eu_app.post(url, json={"reason": "more", "until": "2027-02-23"}, headers=auth(dpo_key))
    assert again.status_code == 409 and again.json()["type"] == "already-extended"
    (entry,) = [
        e
        for e in entries(eu_app, keys.auditor, action="rights.request")
        if e["detail"]["status"] == "extended"
    ]
    assert "3 systems" not in str(entry)


def test_a_closed_request_cannot_be_extended_or_rejected(
    eu_app: TestClient, member_id: str, token_for: SignIn, dpo_key: str
) -> None:
    request = submitted(eu_app, token_for(member_id), {"type": "access"})
    for action, body in (
        ("extend", {"reason": "x", "until": "2027-01-20"}),
        ("reject", {"reason": "x"}),
    ):
        response = eu_app.post(
            f"/v1/requests/{request['id']}/{action}", json=body, headers=auth(dpo_key)
        )
        assert response.status_code == 409, response.text
        assert response.json()["type"] == "request-state"
