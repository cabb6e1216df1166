"""The change feed: who is told of consent changes, corrections and deletions, the pull
API (paging, per-client order, acknowledgements), the DPO's view of a deletion's
recipients, and the outbox property (a change that rolls back tells no one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import audit.uow
import feed.events as feed_events
from audit.log import AuditUnavailable
from feed.models import FeedDelivery, FeedEvent
from rights.models import RightsRequestRecipient
from tests.api.conftest import MEMBER, auth, grant
from tests.api.rights_helpers import entries, relay, submitted
from tests.conftest import Keys

SignIn = Callable[[str], str]


def feed(client: TestClient, key: str, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/events", params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def items(client: TestClient, key: str, **params: Any) -> list[dict[str, Any]]:
    return feed(client, key, limit=1000, **params)["items"]


def kinds(client: TestClient, key: str) -> list[tuple[str, dict[str, Any]]]:
    return [(item["type"], item["data"]) for item in items(client, key)]


def read(client: TestClient, key: str, member_id: str, purpose: str) -> None:
    response = client.get(f"/v1/members/{member_id}?purpose={purpose}", headers=auth(key))
    assert response.status_code == 200, response.text


def refused(client: TestClient, key: str, member_id: str, purpose: str) -> None:
    response = client.get(f"/v1/members/{member_id}?purpose={purpose}", headers=auth(key))
    assert response.status_code == 403, response.text


def export(client: TestClient, key: str, member_id: str, purpose: str) -> None:
    response = client.get(f"/v1/members?purpose={purpose}", headers=auth(key))
    assert response.status_code == 200, response.text
    assert member_id in response.text


def ack(client: TestClient, key: str, event_id: str) -> Any:
    return client.post(f"/v1/events/{event_id}/ack", headers=auth(key))


def feed_rows(session: Session) -> tuple[int, int]:
    try:
        return (
            session.scalar(select(func.count()).select_from(FeedEvent)) or 0,
            session.scalar(select(func.count()).select_from(FeedDelivery)) or 0,
        )
    finally:
        session.close()


# -- consent.changed -------------------------------------------------------------------


def test_a_withdrawal_reaches_exactly_the_clients_granted_the_purpose(
    app_client: TestClient, member_id: str, keys: Keys
) -> None:
    grant(app_client, keys.app, member_id, "marketing_sms", status="withdrawn")
    told = (
        "consent.changed",
        {"member_id": member_id, "purpose": "marketing_sms", "status": "withdrawn"},
    )
    # crm and the sms gateway are granted marketing_sms; the others are not.
    assert kinds(app_client, keys.crm) == [told]
    assert kinds(app_client, keys.sms) == [told]
    for other in (keys.analytics, keys.pos, keys.recs, keys.app):
        assert kinds(app_client, other) == []


def test_the_client_that_recorded_a_change_is_not_told_of_it(
    app_client: TestClient, member_id: str, keys: Keys
) -> None:
    grant(app_client, keys.crm, member_id, "marketing_sms", status="withdrawn")
    assert kinds(app_client, keys.crm) == []
    assert [kind for kind, _ in kinds(app_client, keys.sms)] == ["consent.changed"]


def test_a_members_own_withdrawal_is_told_to_the_clients_granted_the_purpose(
    app_client: TestClient, member_id: str, member_token: str, keys: Keys
) -> None:
    response = app_client.post(
        "/v1/me/consents",
        json={"purposes": ["personalization", "marketing_sms"], "status": "withdrawn"},
        headers=auth(member_token),
    )
    assert response.status_code == 201, response.text
    assert kinds(app_client, keys.recs) == [
        (
            "consent.changed",
            {"member_id": member_id, "purpose": "personalization", "status": "withdrawn"},
        )
    ]
    assert [data["purpose"] for _, data in kinds(app_client, keys.crm)] == ["marketing_sms"]


def test_a_late_event_that_does_not_change_the_state_tells_no_one_but_a_regrant_does(
    app_client: TestClient, member_id: str, keys: Keys
) -> None:
    grant(app_client, keys.app, member_id, "personalization", at="2026-11-02T10:00:00+08:00")
    # A till syncs a withdrawal collected before the grant: the grant stands.
    late = grant(
        app_client,
        keys.app,
        member_id,
        "personalization",
        status="withdrawn",
        at="2026-11-01T10:00:00+08:00",
    )
    assert late["state"]["personalization"]["status"] == "granted"
    assert [data["status"] for _, data in kinds(app_client, keys.recs)] == ["granted"]
    # Granted again (a newer notice, a new touchpoint): consumers apply it idempotently.
    grant(app_client, keys.app, member_id, "personalization", at="2026-11-03T10:00:00+08:00")
    assert [data["status"] for _, data in kinds(app_client, keys.recs)] == ["granted", "granted"]


# -- member.corrected ------------------------------------------------------------------


def test_a_correction_reaches_only_the_clients_released_those_fields(
    app_client: TestClient, member_id: str, token_for: SignIn, keys: Keys, dpo_key: str
) -> None:
    read(app_client, keys.crm, member_id, "delivery")  # name, phone, address
    refused(app_client, keys.sms, member_id, "marketing_sms")  # no consent: nothing
    grant(app_client, keys.app, member_id, "personalization")
    export(app_client, keys.recs, member_id, "personalization")  # address as its region
    before = {key: len(items(app_client, key)) for key in (keys.crm, keys.recs, keys.sms)}
    token = token_for(member_id)
    address = submitted(
        app_client,
        token,
        {"type": "correction", "changes": {"address": "浙江省杭州市文三路 90 号"}},
    )
    told = (
        "member.corrected",
        {"member_id": member_id, "fields": ["address"], "request_id": address["id"]},
    )
    assert kinds(app_client, keys.crm)[before[keys.crm] :] == [told]
    assert kinds(app_client, keys.recs)[before[keys.recs] :] == [told]
    assert kinds(app_client, keys.sms)[before[keys.sms] :] == []
    # The name waits for the DPO; approved, it reaches crm alone (the export had no name).
    name = submitted(app_client, token, {"type": "correction", "changes": {"name": "王五"}})
    assert kinds(app_client, keys.crm)[before[keys.crm] + 1 :] == []
    approved = app_client.post(f"/v1/requests/{name['id']}/approve", headers=auth(dpo_key))
    assert approved.status_code == 200, approved.text
    assert kinds(app_client, keys.crm)[before[keys.crm] + 1 :] == [
        ("member.corrected", {"member_id": member_id, "fields": ["name"], "request_id": name["id"]})
    ]
    assert kinds(app_client, keys.recs)[before[keys.recs] + 1 :] == []
    assert [r["name"] for r in approved.json()["recipients"]] == ["crm"]


def test_a_clients_update_tells_the_other_recipients_of_those_fields_but_not_itself(
    app_client: TestClient, member_id: str, keys: Keys
) -> None:
    read(app_client, keys.crm, member_id, "membership")
    grant(app_client, keys.app, member_id, "personalization")
    export(app_client, keys.recs, member_id, "personalization")
    before = len(items(app_client, keys.recs))
    response = app_client.patch(
        f"/v1/members/{member_id}", json={"tier": "银卡"}, headers=auth(keys.crm)
    )
    assert response.status_code == 200, response.text
    assert kinds(app_client, keys.recs)[before:] == [
        ("member.corrected", {"member_id": member_id, "fields": ["tier"]})
    ]
    assert [kind for kind, _ in kinds(app_client, keys.crm)] == []
    # A field no one was released: no event at all.
    response = app_client.patch(
        f"/v1/members/{member_id}", json={"email": "z.san@example.org"}, headers=auth(keys.crm)
    )
    assert response.status_code == 200, response.text
    assert len(items(app_client, keys.recs)) == before + 1


# -- member.deleted, acknowledgements and the DPO's view ---------------------------------


@pytest.fixture
def deleted(
    app_client: TestClient, member_id: str, token_for: SignIn, keys: Keys
) -> dict[str, Any]:
    """The member, released to crm (a read), recs (an export) and app (a consent change's
    answer), only refused to sms, then deleted at their own request."""
    read(app_client, keys.crm, member_id, "delivery")
    grant(app_client, keys.app, member_id, "personalization")
    export(app_client, keys.recs, member_id, "personalization")
    refused(app_client, keys.sms, member_id, "marketing_sms")
    return submitted(app_client, token_for(member_id), {"type": "deletion"})


def test_a_deletion_asks_every_client_ever_released_the_members_data_to_acknowledge(
    app_client: TestClient, member_id: str, keys: Keys, deleted: dict[str, Any]
) -> None:
    assert deleted["status"] == "completed"  # shredded: acknowledgements are tracked, not awaited
    for key in (keys.crm, keys.recs, keys.app):
        (last,) = [item for item in items(app_client, key) if item["type"] == "member.deleted"]
        assert last["data"] == {"member_id": member_id, "request_id": deleted["id"]}
        assert last["ack_required"] is True and last["acknowledged_at"] is None
    # Refusals released nothing; analytics and pos never had the member.
    for key in (keys.sms, keys.analytics, keys.pos):
        assert all(item["type"] != "member.deleted" for item in items(app_client, key))
    assert [(r["name"], r["notified_at"], r["acknowledged_at"]) for r in deleted["recipients"]] == [
        (name, None, None) for name in sorted(["crm", "recs", "app"], key=keys.ids.get)
    ]
    (erased,) = entries(app_client, keys.auditor, action="member.delete")
    assert erased["detail"]["recipients"] == 3


def test_a_deletions_recipients_show_when_each_fetched_and_acknowledged(
    app_client: TestClient, keys: Keys, dpo_key: str, deleted: dict[str, Any]
) -> None:
    def recipients() -> dict[str, tuple[str | None, str | None]]:
        response = app_client.get(f"/v1/requests/{deleted['id']}", headers=auth(dpo_key))
        assert response.status_code == 200, response.text
        return {
            r["name"]: (r["notified_at"], r["acknowledged_at"])
            for r in response.json()["recipients"]
        }

    (event,) = [item for item in items(app_client, keys.crm) if item["type"] == "member.deleted"]
    fetched = recipients()
    assert fetched["crm"][0] is not None and fetched["crm"][1] is None
    assert fetched["recs"] == (None, None)
    items(app_client, keys.crm)  # a second fetch keeps the first time
    assert recipients()["crm"] == fetched["crm"]

    acked = ack(app_client, keys.crm, event["id"])
    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert (body["id"], body["seq"], body["type"]) == (event["id"], event["seq"], "member.deleted")
    assert body["acknowledged_at"] is not None
    shown = recipients()
    assert shown["crm"][1] is not None and shown["crm"][0] == fetched["crm"][0]
    # recs acknowledges without ever having fetched (it took the event from elsewhere).
    (other,) = [
        item
        for item in app_client.get(
            "/v1/events", params={"awaiting_ack": "true"}, headers=auth(keys.recs)
        ).json()["items"]
    ]
    assert other["id"] == event["id"]  # one event, the same id for every recipient
    assert ack(app_client, keys.recs, event["id"]).status_code == 200
    assert all(times[0] is not None for name, times in recipients().items() if name != "app")


def test_an_acknowledgement_is_idempotent_and_recorded_once(
    app_client: TestClient, member_id: str, keys: Keys, deleted: dict[str, Any]
) -> None:
    (event,) = [item for item in items(app_client, keys.crm) if item["type"] == "member.deleted"]
    first = ack(app_client, keys.crm, event["id"])
    again = ack(app_client, keys.crm, event["id"])
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert "Audit-Seq" in first.headers and "Audit-Seq" not in again.headers
    (entry,) = entries(app_client, keys.auditor, action="feed.ack")
    assert entry["actor"] == keys.ids["crm"]
    assert entry["members"] == [member_id]
    assert entry["seq"] == int(first.headers["Audit-Seq"])
    assert entry["detail"] == {
        "event": event["id"],
        "type": "member.deleted",
        "request": deleted["id"],
    }
    assert items(app_client, keys.crm, awaiting_ack="true") == []


def test_another_clients_event_and_an_unknown_one_are_not_found(
    app_client: TestClient, keys: Keys, deleted: dict[str, Any]
) -> None:
    (event,) = [item for item in items(app_client, keys.crm) if item["type"] == "member.deleted"]
    for key, event_id in (
        (keys.sms, event["id"]),
        (keys.crm, "a" * 24),
        (keys.crm, "not-an-id"),
    ):
        response = ack(app_client, key, event_id)
        assert response.status_code == 404, response.text
        assert response.json()["type"] == "not-found"
    assert entries(app_client, keys.auditor, action="feed.ack") == []


def test_the_dpo_queue_shows_deletions_until_every_recipient_acknowledged(
    app_client: TestClient, keys: Keys, dpo_key: str, deleted: dict[str, Any]
) -> None:
    def queue(awaiting: str) -> list[str]:
        response = app_client.get(
            "/v1/requests",
            params={"type": "deletion", "awaiting_ack": awaiting},
            headers=auth(dpo_key),
        )
        assert response.status_code == 200, response.text
        return [request["id"] for request in response.json()["items"]]

    assert queue("true") == [deleted["id"]] and queue("false") == []
    for key in (keys.crm, keys.recs, keys.app):
        (event,) = [item for item in items(app_client, key) if item["type"] == "member.deleted"]
        assert queue("true") == [deleted["id"]]  # still one recipient to go
        assert ack(app_client, key, event["id"]).status_code == 200
    assert queue("true") == [] and queue("false") == [deleted["id"]]
    shown = app_client.get(f"/v1/requests/{deleted['id']}", headers=auth(dpo_key)).json()
    assert shown["status"] == "completed"
    assert all(r["acknowledged_at"] is not None for r in shown["recipients"])


def test_a_correction_in_two_steps_shows_a_recipient_told_once_it_had_both_events(
    app_client: TestClient, member_id: str, token_for: SignIn, keys: Keys, dpo_key: str
) -> None:
    read(app_client, keys.crm, member_id, "delivery")  # name and address
    request = submitted(
        app_client,
        token_for(member_id),
        {"type": "correction", "changes": {"address": "浙江省杭州市文三路 90 号", "name": "王五"}},
    )
    assert request["status"] == "in_progress"  # the address applied, the name waits

    def crm() -> tuple[str | None, str | None]:
        shown = app_client.get(f"/v1/requests/{request['id']}", headers=auth(dpo_key)).json()
        ((name, notified, acknowledged),) = [
            (r["name"], r["notified_at"], r["acknowledged_at"]) for r in shown["recipients"]
        ]
        assert name == "crm"
        return notified, acknowledged

    (first,) = items(app_client, keys.crm)
    assert crm()[0] is not None
    assert ack(app_client, keys.crm, first["id"]).status_code == 200
    assert crm()[1] is not None
    approved = app_client.post(f"/v1/requests/{request['id']}/approve", headers=auth(dpo_key))
    assert approved.status_code == 200, approved.text
    assert crm() == (None, None)  # the name's event is not had yet
    (second,) = items(app_client, keys.crm, after=first["seq"])
    assert second["data"]["fields"] == ["name"]
    assert crm()[0] is not None and crm()[1] is None
    assert ack(app_client, keys.crm, second["id"]).status_code == 200
    assert None not in crm()


def test_a_request_applied_before_the_feed_keeps_its_recipients_never_told(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    keys: Keys,
    dpo_key: str,
    session: Session,
) -> None:
    request = submitted(app_client, token_for(member_id), {"type": "deletion"})
    assert request["recipients"] == []  # no client was ever released anything
    # As listed by a version before the change feed, which never notified anyone.
    session.add(RightsRequestRecipient(request_id=request["id"], client_id=keys.ids["crm"]))
    session.commit()
    session.close()
    shown = app_client.get(f"/v1/requests/{request['id']}", headers=auth(dpo_key)).json()
    assert shown["recipients"] == [
        {"client": keys.ids["crm"], "name": "crm", "notified_at": None, "acknowledged_at": None}
    ]


# -- the pull API: order, paging, isolation ------------------------------------------------


def test_each_clients_events_are_numbered_one_by_one_in_order_across_types(
    app_client: TestClient, member_id: str, token_for: SignIn, keys: Keys
) -> None:
    for day, status in ((2, "granted"), (3, "withdrawn"), (4, "granted")):
        grant(
            app_client,
            keys.app,
            member_id,
            "personalization",
            status,
            f"2026-11-0{day}T10:00:00+08:00",
        )
    read(app_client, keys.crm, member_id, "delivery")
    export(app_client, keys.recs, member_id, "personalization")
    token = token_for(member_id)
    submitted(
        app_client,
        token,
        {"type": "correction", "changes": {"address": "浙江省杭州市文三路 90 号"}},
    )
    submitted(app_client, token, {"type": "deletion"})
    recs = items(app_client, keys.recs)
    assert [item["type"] for item in recs] == [
        "consent.changed",
        "consent.changed",
        "consent.changed",
        "member.corrected",
        "member.deleted",
    ]
    assert [item["seq"] for item in recs] == [1, 2, 3, 4, 5]
    # crm has its own numbering: its own events only, from 1.
    crm = items(app_client, keys.crm)
    assert [item["type"] for item in crm] == ["member.corrected", "member.deleted"]
    assert [item["seq"] for item in crm] == [1, 2]
    assert recs[4]["id"] == crm[1]["id"]  # the same event, in each recipient's own order
    assert [item["created_at"] for item in recs] == sorted(item["created_at"] for item in recs)


def test_the_feed_pages_by_seq(app_client: TestClient, member_id: str, keys: Keys) -> None:
    for day in range(1, 6):
        status = "granted" if day % 2 else "withdrawn"
        grant(
            app_client,
            keys.app,
            member_id,
            "personalization",
            status,
            f"2026-11-0{day}T10:00:00+08:00",
        )
    page = feed(app_client, keys.recs, limit=2)
    assert [item["seq"] for item in page["items"]] == [1, 2] and page["next_after"] == 2
    page = feed(app_client, keys.recs, after=2, limit=2)
    assert [item["seq"] for item in page["items"]] == [3, 4] and page["next_after"] == 4
    page = feed(app_client, keys.recs, after=page["next_after"], limit=2)
    assert [item["seq"] for item in page["items"]] == [5] and page["next_after"] == 5
    # Nothing new: next_after stays, so a consumer can always pass it back.
    assert feed(app_client, keys.recs, after=5) == {"items": [], "next_after": 5}
    assert [item["data"]["status"] for item in items(app_client, keys.recs)] == [
        "granted",
        "withdrawn",
        "granted",
        "withdrawn",
        "granted",
    ]
    # Another client sees none of them, and its default page is its own.
    assert feed(app_client, keys.analytics) == {"items": [], "next_after": 0}
    assert set(items(app_client, keys.recs)[0]) == {
        "id",
        "seq",
        "type",
        "created_at",
        "data",
        "ack_required",
        "acknowledged_at",
    }


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "1001"}, {"after": "-1"}, {"after": "x"}, {"awaiting_ack": "maybe"}],
)
def test_paging_parameters_out_of_range_are_refused(
    app_client: TestClient, keys: Keys, params: dict[str, str]
) -> None:
    response = app_client.get("/v1/events", params=params, headers=auth(keys.crm))
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "validation-failed"


def test_only_clients_and_the_dpo_pull_a_feed(
    app_client: TestClient, keys: Keys, dpo_key: str, member_token: str
) -> None:
    for key in (keys.auditor, keys.admin, member_token):
        response = app_client.get("/v1/events", headers=auth(key))
        assert response.status_code == 403, response.text
    # The DPO's keys are told of breach incidents (``incident.opened``).
    assert app_client.get("/v1/events", headers=auth(dpo_key)).status_code == 200
    assert app_client.get("/v1/events").status_code == 401


def test_a_revoked_clients_events_are_not_served(
    app_client: TestClient, member_id: str, keys: Keys
) -> None:
    grant(app_client, keys.app, member_id, "marketing_sms", status="withdrawn")
    revoked = app_client.delete(f"/v1/clients/{keys.ids['sms']}", headers=auth(keys.admin))
    assert revoked.status_code == 204, revoked.text
    assert app_client.get("/v1/events", headers=auth(keys.sms)).status_code == 401


# -- what events carry, and what a rolled-back change leaves ---------------------------------


def test_events_carry_no_personal_value(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    keys: Keys,
    session: Session,
) -> None:
    read(app_client, keys.crm, member_id, "delivery")
    grant(app_client, keys.app, member_id, "personalization")
    export(app_client, keys.recs, member_id, "personalization")
    new_address, new_email = "浙江省杭州市西湖区文三路 90 号", "canary.feed@example.org"
    token = token_for(member_id)
    submitted(app_client, token, {"type": "correction", "changes": {"address": new_address}})
    patched = app_client.patch(
        f"/v1/members/{member_id}", json={"email": new_email}, headers=auth(keys.crm)
    )
    assert patched.status_code == 200, patched.text
    submitted(app_client, token, {"type": "deletion"})
    canaries = [
        MEMBER["name"],
        MEMBER["phone"],
        MEMBER["phone"][-8:],
        MEMBER["email"],
        MEMBER["email"].lower(),
        MEMBER["address"],
        MEMBER["id_number"],
        MEMBER["birthday"],
        new_address,
        new_email,
    ]
    pulled = [
        app_client.get("/v1/events?limit=1000", headers=auth(key)).text
        for key in (keys.crm, keys.recs, keys.app)
    ]
    assert "member.deleted" in "".join(pulled) and "member.corrected" in "".join(pulled)
    stored = [row for row in session.scalars(select(FeedEvent.data))]
    session.close()
    assert len(stored) >= 3
    for text in pulled + stored:
        for canary in canaries:
            assert canary not in text, canary


def test_a_change_that_rolls_back_tells_no_one(
    app_client: TestClient,
    member_id: str,
    token_for: SignIn,
    keys: Keys,
    relay_key: str,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read(app_client, keys.crm, member_id, "delivery")
    grant(app_client, keys.app, member_id, "personalization")
    export(app_client, keys.recs, member_id, "personalization")
    before = feed_rows(session)
    token = token_for(member_id)

    def unavailable(*args: object, **kwargs: object) -> None:
        raise AuditUnavailable("the audit log could not be committed; nothing was released")

    # The events are written before the commit appends the entries, which then fails:
    # each change did write its event (counted), and the rollback took it back.
    emitted: list[str] = []
    real_emit = feed_events.emit

    def counted_emit(*args: Any, **kwargs: Any) -> Any:
        event = real_emit(*args, **kwargs)
        if event is not None:
            emitted.append(event.type)
        return event

    monkeypatch.setattr(feed_events, "emit", counted_emit)
    monkeypatch.setattr(audit.uow, "append_entries", unavailable)
    for method, path, body, key in (
        (
            "POST",
            f"/v1/members/{member_id}/consents",
            {
                "purposes": ["personalization"],
                "status": "withdrawn",
                "channel": "app",
                "collected_at": "2026-11-05T10:00:00+08:00",
            },
            keys.app,
        ),
        ("PATCH", f"/v1/members/{member_id}", {"tier": "银卡"}, keys.crm),
        (
            "POST",
            "/v1/me/requests",
            {"type": "correction", "changes": {"address": "浙江省 1 号"}},
            token,
        ),
        ("POST", "/v1/me/requests", {"type": "deletion"}, token),
    ):
        response = app_client.request(method, path, json=body, headers=auth(key))
        assert response.status_code == 503, (path, response.text)
        assert response.json()["type"] == "audit-unavailable"
    relayed = relay(app_client, relay_key, member_id, {"type": "deletion"})
    assert relayed.status_code == 503, relayed.text
    assert emitted == [
        "consent.changed",
        "member.corrected",
        "member.corrected",
        "member.deleted",
        "member.deleted",
    ]
    assert feed_rows(session) == before
    monkeypatch.undo()
    # Nothing of it reached a feed; the member is still there, and the feed works again.
    assert [data["status"] for _, data in kinds(app_client, keys.recs)] == ["granted"]
    grant(
        app_client, keys.app, member_id, "personalization", "withdrawn", "2026-11-06T10:00:00+08:00"
    )
    assert [data["status"] for _, data in kinds(app_client, keys.recs)] == ["granted", "withdrawn"]
