"""The webhook endpoints (admin): register, show, rotate, remove, and the delivery attempts.

The suite's default settings keep the URL rules on (``https://`` to public
hosts only), so the registrations here use a public address literal, which
resolves without DNS; deliveries go through ``httpx.MockTransport`` (the real
receiver is in tests/integration/test_webhooks.py).
"""

from __future__ import annotations

import base64
import dataclasses
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from feed.events import EventType, emit
from gate.context import Services
from tests.api.conftest import auth
from tests.conftest import Keys
from worker.webhooks import Courier

HOOK = "https://93.184.215.14/hooks/crm?token=s3cr3t-tok3n"
OVERLAP = timedelta(hours=24)


def hook_path(keys: Keys, name: str = "crm") -> str:
    return f"/v1/clients/{keys.ids[name]}/webhook"


def set_hook(client: TestClient, keys: Keys, url: str = HOOK, name: str = "crm") -> Any:
    return client.post(hook_path(keys, name), json={"url": url}, headers=auth(keys.admin))


def entries(client: TestClient, keys: Keys, action: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/audit/entries?action={action}", headers=auth(keys.auditor))
    assert response.status_code == 200, response.text
    return response.json()["entries"]


def test_registering_shows_the_secret_once_and_records_only_the_origin(
    app_client: TestClient, keys: Keys
) -> None:
    response = set_hook(app_client, keys)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["client_id"] == keys.ids["crm"]
    assert body["url"] == HOOK
    assert body["origin"] == "https://93.184.215.14"
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert response.headers["Cache-Control"] == "no-store"

    (entry,) = entries(app_client, keys, "webhook.set")
    assert entry["seq"] == int(response.headers["Audit-Seq"])
    assert entry["detail"] == {
        "client": keys.ids["crm"],
        "origin": "https://93.184.215.14",
        "replaced": False,
    }
    shown = app_client.get(hook_path(keys), headers=auth(keys.admin))
    assert shown.status_code == 200
    assert shown.json()["origin"] == "https://93.184.215.14"
    assert shown.json()["pending"] == 0
    everything = shown.text + app_client.get("/v1/audit/entries", headers=auth(keys.auditor)).text
    for hidden in (secret, secret.removeprefix("whsec_"), "s3cr3t-tok3n", "/hooks/crm"):
        assert hidden not in everything


def test_registering_again_replaces_the_url_and_the_secret(
    app_client: TestClient, keys: Keys
) -> None:
    first = set_hook(app_client, keys).json()["secret"]
    again = set_hook(app_client, keys, "https://93.184.215.15/in")
    assert again.status_code == 201
    assert again.json()["secret"] != first
    assert entries(app_client, keys, "webhook.set")[-1]["detail"]["replaced"] is True


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://93.184.215.14/hook", "https://"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://localhost/hook", "loopback"),
        ("https://10.0.0.8/hook", "private"),
        ("https://192.168.1.20:8443/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("ftp://93.184.215.14/hook", "https://"),
        ("no url at all", "https://"),
    ],
)
def test_a_url_breaking_the_rules_is_a_422_that_does_not_echo_it(
    app_client: TestClient, keys: Keys, url: str, rule: str
) -> None:
    response = set_hook(app_client, keys, url)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "webhook-url-refused"
    assert rule in problem["detail"]
    assert url not in response.text and "/hook" not in response.text
    assert entries(app_client, keys, "webhook.set") == []


def test_only_an_admin_registers_and_only_for_an_active_client(
    app_client: TestClient, keys: Keys
) -> None:
    refused = app_client.post(hook_path(keys), json={"url": HOOK}, headers=auth(keys.crm))
    assert refused.status_code == 403
    assert refused.json()["type"] == "role-required"
    app_client.delete(f"/v1/clients/{keys.ids['sms']}", headers=auth(keys.admin))
    assert set_hook(app_client, keys, name="sms").status_code == 404
    unknown = app_client.post(
        "/v1/clients/" + "a" * 24 + "/webhook", json={"url": HOOK}, headers=auth(keys.admin)
    )
    assert unknown.status_code == 404


def test_rotating_issues_a_new_secret_and_keeps_the_old_one_for_the_overlap_window(
    app_client: TestClient, keys: Keys, services: Services
) -> None:
    first = set_hook(app_client, keys).json()["secret"]
    rotated = app_client.post(hook_path(keys) + "/rotate", headers=auth(keys.admin))
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["secret"].startswith("whsec_") and body["secret"] != first
    assert rotated.headers["Cache-Control"] == "no-store"
    (entry,) = entries(app_client, keys, "webhook.rotate")
    assert entry["seq"] == int(rotated.headers["Audit-Seq"])
    assert set(entry["detail"]) == {"client", "previous_valid_until"}
    shown = app_client.get(hook_path(keys), headers=auth(keys.admin)).json()
    assert shown["previous_secret_valid_until"] == body["previous_secret_valid_until"]
    until = datetime.fromisoformat(body["previous_secret_valid_until"])
    assert until - datetime.fromisoformat(shown["rotated_at"]) == OVERLAP
    for secret in (first, body["secret"]):
        assert secret not in str(shown) and secret not in str(entry)


def test_rotating_or_removing_without_a_webhook_is_not_found(
    app_client: TestClient, keys: Keys
) -> None:
    for method, suffix in (("POST", "/rotate"), ("DELETE", ""), ("GET", "")):
        response = app_client.request(method, hook_path(keys) + suffix, headers=auth(keys.admin))
        assert response.status_code == 404, (method, suffix)


def test_removing_a_webhook_is_recorded_and_it_is_gone(app_client: TestClient, keys: Keys) -> None:
    set_hook(app_client, keys)
    removed = app_client.delete(hook_path(keys), headers=auth(keys.admin))
    assert removed.status_code == 204
    (entry,) = entries(app_client, keys, "webhook.remove")
    assert entry["detail"] == {"client": keys.ids["crm"], "origin": "https://93.184.215.14"}
    assert app_client.get(hook_path(keys), headers=auth(keys.admin)).status_code == 404


def deliver(services: Services, answers: list[int]) -> list[httpx.Request]:
    """Run a courier whose receiver answers ``answers`` in turn (then 200)."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(answers.pop(0) if answers else 200)

    Courier.of(
        services,
        transport=httpx.MockTransport(handle),
        resolve=lambda host, port: ["93.184.215.14"],
        jitter=lambda top: top,
    ).run()
    return seen


def test_the_attempts_are_listed_newest_first_page_by_page(
    app_client: TestClient, keys: Keys, services: Services
) -> None:
    set_hook(app_client, keys)
    with services.sessions() as session:
        event = emit(
            session,
            type=EventType.MEMBER_DELETED,
            data={"member_id": "m" * 24, "request_id": None},
            recipients=[keys.ids["crm"]],
            now=services.clock(),
            ack_required=True,
        )
        assert event is not None
        session.commit()
    seen = deliver(services, [500])
    assert len(seen) == 1 and seen[0].headers["webhook-id"] == event.id
    assert seen[0].url.path == "/hooks/crm" and seen[0].headers["host"] == "93.184.215.14"
    retry_at = app_client.get(hook_path(keys), headers=auth(keys.admin)).json()["next_attempt_at"]
    dated = services_at(services, retry_at)
    assert len(deliver(dated, [502])) == 1
    retry_at = app_client.get(hook_path(keys), headers=auth(keys.admin)).json()["next_attempt_at"]
    assert len(deliver(services_at(services, retry_at), [])) == 1

    path = f"/v1/clients/{keys.ids['crm']}/deliveries"
    first = app_client.get(path, params={"limit": 2}, headers=auth(keys.admin))
    assert first.status_code == 200, first.text
    page = first.json()
    assert [(i["attempt"], i["status_code"], i["outcome"]) for i in page["items"]] == [
        (3, 200, "delivered"),
        (2, 502, "retry"),
    ]
    item = page["items"][0]
    assert (item["event_id"], item["seq"], item["type"]) == (event.id, 1, "member.deleted")
    assert item["error"] is None and item["next_attempt_at"] is None
    assert page["items"][1]["next_attempt_at"] is not None
    second = app_client.get(
        path, params={"limit": 2, "cursor": page["next_cursor"]}, headers=auth(keys.admin)
    ).json()
    assert [(i["attempt"], i["status_code"]) for i in second["items"]] == [(1, 500)]
    assert second["next_cursor"] is None

    bad = app_client.get(path, params={"cursor": "nope"}, headers=auth(keys.admin))
    assert bad.status_code == 422 and bad.json()["type"] == "invalid-cursor"
    other = app_client.get(f"/v1/clients/{keys.ids['sms']}/deliveries", headers=auth(keys.admin))
    assert other.json() == {"items": [], "next_cursor": None}
    unknown = app_client.get("/v1/clients/" + "a" * 24 + "/deliveries", headers=auth(keys.admin))
    assert unknown.status_code == 404
    refused = app_client.get(path, headers=auth(keys.auditor))
    assert refused.status_code == 403


def services_at(services: Services, iso: str) -> Services:
    moment = datetime.fromisoformat(iso)
    return dataclasses.replace(services, clock=lambda: moment)
