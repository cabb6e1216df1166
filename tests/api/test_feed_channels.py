"""Issue #12's acceptance, end to end: a withdrawal, a correction and a deletion each reach
the right clients by the pull feed, by a signed webhook and on RabbitMQ, and the deletion
request shows each recipient's acknowledgement."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from feed.broker import parse_amqp_url, publish_events
from gate.context import Services
from gate.webhooks import set_webhook
from principals import OPERATOR_ACTOR
from tests.api.conftest import auth, grant
from tests.conftest import Keys
from tests.integration.amqp_listener import AMQP_URL, Listener
from tests.integration.webhook_receiver import Receiver, webhook_receiver
from worker.webhooks import Courier

SignIn = Callable[[str], str]
# The grant before the read is a consent change too.
TYPES = ["consent.changed", "consent.changed", "member.corrected", "member.deleted"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The receiver listens on the loopback interface, which only this setting allows.
    return Settings(
        home=tmp_path / "home",
        keyring_heartbeat_seconds=24 * 3600,
        keyring_live_seconds=2 * 24 * 3600,
        worker_in_server=False,
        webhooks_allow_insecure=True,
    )


@pytest.fixture
def receiver(services: Services) -> Iterator[Receiver]:
    with webhook_receiver() as running:
        running.now = services.clock()
        yield running


def events(client: TestClient, key: str) -> list[dict]:
    response = client.get("/v1/events", headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_a_withdrawal_a_correction_and_a_deletion_reach_their_clients_on_every_channel(
    app_client: TestClient,
    services: Services,
    keys: Keys,
    member_id: str,
    token_for: SignIn,
    receiver: Receiver,
    listener: Listener,
    dpo_key: str,
) -> None:
    queue = listener.queue("consent.changed", "member.*")
    secret = set_webhook(
        services,
        actor=OPERATOR_ACTOR,
        client=keys.ids["sms"],
        url=receiver.url(),
        request_id=None,
    ).secret
    receiver.secrets["sms"] = secret

    # The SMS gateway receives the member's phone (with consent); analytics never reads them.
    grant(app_client, keys.app, member_id, "marketing_sms")
    read = app_client.get(f"/v1/members/{member_id}?purpose=marketing_sms", headers=auth(keys.sms))
    assert read.status_code == 200, read.text

    # The member withdraws at the app; crm corrects the phone; the member asks for deletion.
    grant(app_client, keys.app, member_id, "marketing_sms", status="withdrawn")
    patched = app_client.patch(
        f"/v1/members/{member_id}", json={"phone": "13912345678"}, headers=auth(keys.crm)
    )
    assert patched.status_code == 200, patched.text
    deletion = app_client.post(
        "/v1/me/requests", json={"type": "deletion"}, headers=auth(token_for(member_id))
    )
    assert deletion.status_code == 201, deletion.text

    # Pull: the SMS gateway has them all, in its own order; analytics has none.
    pulled = events(app_client, keys.sms)
    assert [e["type"] for e in pulled] == TYPES
    assert [e["seq"] for e in pulled] == [1, 2, 3, 4]
    assert [e["data"].get("status") for e in pulled[:2]] == ["granted", "withdrawn"]
    assert all(e["data"]["member_id"] == member_id for e in pulled)
    assert pulled[2]["data"]["fields"] == ["phone"]
    assert "13912345678" not in str(pulled)
    assert events(app_client, keys.analytics) == []

    # Webhook: the same events, signed (the receiver verifies with standardwebhooks).
    assert Courier.of(services).run()["delivered"] == 4
    assert receiver.ids() == [e["id"] for e in pulled]
    assert all(d.verified["sms"] for d in receiver.deliveries)

    # RabbitMQ: the same events, by type, naming their recipients.
    published = publish_events(
        parameters=parse_amqp_url(AMQP_URL),
        units=services.uow,
        read_sessions=services.read_sessions,
    )
    assert published.counts()["published"] >= 4
    received = listener.drain(queue, {e["id"] for e in pulled})
    assert [r.routing_key for r in received] == TYPES
    assert all(keys.ids["sms"] in r.body["recipients"] for r in received)

    # The deletion is acknowledged; the request shows it for that recipient.
    deleted = pulled[3]
    assert deleted["ack_required"] is True
    ack = app_client.post(f"/v1/events/{deleted['id']}/ack", headers=auth(keys.sms))
    assert ack.status_code == 200, ack.text
    dpo_view = app_client.get(f"/v1/requests/{deletion.json()['id']}", headers=auth(dpo_key))
    assert dpo_view.status_code == 200, dpo_view.text
    by_name = {r["name"]: r for r in dpo_view.json()["recipients"]}
    assert by_name["sms"]["notified_at"] is not None
    assert by_name["sms"]["acknowledged_at"] is not None
    assert "analytics" not in by_name
