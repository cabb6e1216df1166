"""Breach incidents through the API: affected members from the log, the 72-hour clock,
the report, notices sent once, and bad input refused with nothing stored."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import breach.scope
from breach.incidents import INTERRUPTED, contact_decision
from breach.models import BreachAffected, BreachIncident, BreachIncidentEvent
from gate.context import Services
from gate.incident_jobs import NoticeRun, _claim, remind_incident_deadlines, send_queued_notices
from gate.incidents import open_incident as open_incident_use_case
from notify import NotifierError
from notify.outbox import OutboxNotifier
from policies.model import Breach
from principals.clients import authenticate
from tests.api.conftest import MEMBER, auth, grant, outbox_messages
from tests.api.rights_helpers import entries, submitted
from tests.conftest import NOW, Keys
from vault.models import VaultField

SECRET_TEXT = "Gateway key AKIA-canary-7731 leaked in a public paste"


class MovableClock:
    """The suite's ticking clock, which a test can also move forward by hours."""

    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


def iso(moment: datetime) -> str:
    return moment.isoformat()


def new_member(client: TestClient, keys: Keys, n: int, **extra: Any) -> str:
    body = {**MEMBER, "phone": f"1390000{n:04d}", "email": f"member{n}@example.com", **extra}
    response = client.post("/v1/members", json=body, headers=auth(keys.crm))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def read(client: TestClient, key: str, member_id: str, purpose: str) -> httpx.Response:
    return client.get(f"/v1/members/{member_id}", params={"purpose": purpose}, headers=auth(key))


def open_incident(client: TestClient, dpo_key: str, **body: Any) -> httpx.Response:
    payload = {
        "title": "The SMS gateway's key leaked",
        "description": SECRET_TEXT,
        "detected_at": iso(NOW),
        "severity": "high",
        "scope": {"kind": "all"},
        **body,
    }
    return client.post("/v1/incidents", json=payload, headers=auth(dpo_key))


def opened(client: TestClient, dpo_key: str, **body: Any) -> dict[str, Any]:
    response = open_incident(client, dpo_key, **body)
    assert response.status_code == 201, response.text
    return response.json()


def affected_lines(client: TestClient, dpo_key: str, incident_id: str) -> dict[str, dict]:
    response = client.get(f"/v1/incidents/{incident_id}/affected", headers=auth(dpo_key))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    return {line["member_id"]: line for line in lines}


def assess(client: TestClient, dpo_key: str, incident_id: str) -> dict[str, Any]:
    response = client.post(
        f"/v1/incidents/{incident_id}/assess",
        json={
            "consequences": "Members may receive fraudulent text messages.",
            "measures": "The gateway's key was revoked and replaced.",
            "member_advice": "Ignore messages asking for a code or a payment.",
        },
        headers=auth(dpo_key),
    )
    assert response.status_code == 200, response.text
    return response.json()


def count(services: Services, model: type) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# -- scope "client": exactly what the log shows was released to it -------------------


@pytest.fixture
def window(app_client: TestClient, keys: Keys, clock: MovableClock) -> dict[str, Any]:
    """Six members and the SMS client's traffic before, in and after a one-hour window."""
    ids = [new_member(app_client, keys, n) for n in range(6)]
    for member_id in ids[:5]:
        grant(app_client, keys.app, member_id, "marketing_sms")
    assert read(app_client, keys.sms, ids[0], "marketing_sms").status_code == 200  # before
    start = clock.advance(hours=1)
    assert read(app_client, keys.sms, ids[1], "marketing_sms").status_code == 200
    lookup = app_client.post(
        "/v1/members/lookup",
        json={"phone": "13900000002", "purpose": "marketing_sms"},
        headers=auth(keys.sms),
    )
    assert lookup.status_code == 200 and lookup.json()["ids"] == [ids[2]], lookup.text
    assert read(app_client, keys.sms, ids[5], "marketing_sms").status_code == 403  # refused
    assert read(app_client, keys.crm, ids[3], "customer_service").status_code == 200  # other
    end = clock.advance(minutes=30)
    assert read(app_client, keys.sms, ids[4], "marketing_sms").status_code == 200  # after
    clock.advance(hours=1)
    return {"ids": ids, "from": iso(start), "to": iso(end)}


def test_a_client_scope_finds_the_members_released_to_it_in_the_window_with_their_fields(
    app_client: TestClient, keys: Keys, dpo_key: str, window: dict[str, Any]
) -> None:
    ids = window["ids"]
    incident = opened(
        app_client,
        dpo_key,
        detected_at=window["to"],
        scope={"kind": "client", "client": "sms", "from": window["from"], "to": window["to"]},
    )
    lines = affected_lines(app_client, dpo_key, incident["id"])
    # Read in the window (every field marketing_sms releases, in its views), and found
    # by a lookup (identity, no field); not the member read before or after it, not the
    # one refused, not the one another client read.
    assert set(lines) == {ids[1], ids[2]}
    assert lines[ids[1]]["views"] == {"name": ["masked"], "phone": ["clear"], "tier": ["clear"]}
    assert lines[ids[1]]["identity"] is False
    assert lines[ids[2]]["fields"] == [] and lines[ids[2]]["identity"] is True
    affected = incident["affected"]
    assert affected["members"] == 2 and affected["identity_only"] == 1
    assert affected["fields"] == {"name": 1, "phone": 1, "tier": 1}
    # Masked releases count apart from clear ones.
    assert affected["views"] == {"name": {"masked": 1}, "phone": {"clear": 1}, "tier": {"clear": 1}}
    assert affected["sensitive"] is False
    assert incident["scope"]["client"] == keys.ids["sms"]
    assert incident["scope"]["client_name"] == "sms"
    # Times in the policy's zone (Asia/Shanghai), the timeline's too: no raw numbers.
    assert incident["scope"]["from"].endswith("+08:00")
    assert incident["timeline"][0]["authority_due_at"] == incident["authority_due_at"]


def test_an_open_window_ends_when_the_incident_is_opened(
    app_client: TestClient, keys: Keys, dpo_key: str, window: dict[str, Any]
) -> None:
    ids = window["ids"]
    incident = opened(
        app_client, dpo_key, scope={"kind": "client", "client": "sms", "from": window["from"]}
    )
    assert set(affected_lines(app_client, dpo_key, incident["id"])) == {ids[1], ids[2], ids[4]}


def test_an_export_to_the_client_counts_every_member_it_released(
    app_client: TestClient, keys: Keys, dpo_key: str, clock: MovableClock
) -> None:
    ids = [new_member(app_client, keys, n) for n in range(3)]
    for member_id in ids[:2]:
        grant(app_client, keys.app, member_id, "personalization")
    start = clock.advance(hours=1)
    exported = app_client.get(
        "/v1/members", params={"purpose": "personalization"}, headers=auth(keys.recs)
    )
    assert exported.status_code == 200, exported.text
    incident = opened(
        app_client,
        dpo_key,
        scope={"kind": "client", "client": keys.ids["recs"], "from": iso(start)},
    )
    lines = affected_lines(app_client, dpo_key, incident["id"])
    assert set(lines) == set(ids[:2])
    assert lines[ids[0]]["views"]["address"] == ["region"]
    assert lines[ids[0]]["views"]["birthday"] == ["year"]


def test_a_shredded_member_is_affected_but_unreachable_and_the_report_says_so(
    app_client: TestClient,
    keys: Keys,
    dpo_key: str,
    clock: MovableClock,
    token_for: Callable[[str], str],
    outbox: Path,
) -> None:
    ids = [new_member(app_client, keys, n) for n in range(2)]
    for member_id in ids:
        grant(app_client, keys.app, member_id, "marketing_sms")
    start = clock.advance(hours=1)
    for member_id in ids:
        assert read(app_client, keys.sms, member_id, "marketing_sms").status_code == 200
    deletion = submitted(app_client, token_for(ids[0]), {"type": "deletion"})
    assert deletion["status"] == "completed"
    incident = opened(
        app_client, dpo_key, scope={"kind": "client", "client": "sms", "from": iso(start)}
    )
    lines = affected_lines(app_client, dpo_key, incident["id"])
    assert set(lines) == set(ids)
    assert lines[ids[0]]["shredded"] is True and lines[ids[1]]["shredded"] is False
    assert incident["affected"]["shredded"] == 1

    assess(app_client, dpo_key, incident["id"])
    before = len(outbox_messages(outbox))
    totals = app_client.post(
        f"/v1/incidents/{incident['id']}/notify-members",
        json={"channels": ["email", "sms"]},
        headers=auth(dpo_key),
    )
    assert totals.status_code == 202, totals.text
    notices = app_client.get(f"/v1/incidents/{incident['id']}/notices", headers=auth(dpo_key))
    assert notices.json() == {"queued": 0, "sent": 1, "failed": 0, "unreachable": 1, "not_asked": 0}
    sent = outbox_messages(outbox)[before:]
    assert [(m["template"], m["to"]) for m in sent] == [("breach_notice", "member1@example.com")]

    report = app_client.get(
        f"/v1/incidents/{incident['id']}/report", params={"lang": "en"}, headers=auth(dpo_key)
    ).json()
    assert report["data_subjects"]["shredded"] == 1
    html = app_client.get(
        f"/v1/incidents/{incident['id']}/report",
        params={"format": "html", "lang": "en"},
        headers=auth(dpo_key),
    ).text
    assert "crypto-shredded" in html.lower() or "shredded" in html.lower()


def test_a_members_scope_lists_every_field_the_vault_holds_of_them(
    app_client: TestClient, keys: Keys, dpo_key: str
) -> None:
    ids = [new_member(app_client, keys, n) for n in range(3)]
    incident = opened(app_client, dpo_key, scope={"kind": "members", "member_ids": ids[:2]})
    lines = affected_lines(app_client, dpo_key, incident["id"])
    assert set(lines) == set(ids[:2])
    assert set(lines[ids[0]]["fields"]) == set(MEMBER)
    # The ID card number is sensitive personal information (PIPL Art. 28).
    assert incident["affected"]["sensitive"] is True
    assert incident["affected"]["sensitive_members"] == 2


def test_an_all_scope_covers_every_member_who_still_has_data(
    app_client: TestClient,
    keys: Keys,
    dpo_key: str,
    token_for: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Batches of two: the vault is read (and the rows written) over several batches.
    monkeypatch.setattr(breach.scope, "BATCH", 2)
    ids = [new_member(app_client, keys, n) for n in range(6)]
    submitted(app_client, token_for(ids[2]), {"type": "deletion"})
    incident = opened(app_client, dpo_key, scope={"kind": "all"})
    alive = set(ids) - {ids[2]}
    assert set(affected_lines(app_client, dpo_key, incident["id"])) == alive
    assert incident["affected"]["members"] == len(alive) and incident["affected"]["shredded"] == 0


# -- the clock ---------------------------------------------------------------------------


def test_the_authority_deadline_is_72_hours_after_detection_and_overdue_is_computed(
    app_client: TestClient, dpo_key: str, clock: MovableClock
) -> None:
    detected = NOW - timedelta(hours=70)
    incident = opened(app_client, dpo_key, detected_at=iso(detected))
    due = datetime.fromisoformat(incident["authority_due_at"])
    assert due == detected + timedelta(hours=72)
    assert incident["authority_rule"] == "72 hours"
    assert incident["authority_overdue"] is False
    assert incident["authority_deadline_met"] is None
    assert 0 < incident["authority_seconds_left"] <= 2 * 3600
    clock.advance(hours=3)
    late = app_client.get(f"/v1/incidents/{incident['id']}", headers=auth(dpo_key)).json()
    assert late["authority_overdue"] is True and late["authority_deadline_met"] is False
    listed = app_client.get("/v1/incidents", headers=auth(dpo_key)).json()["items"]
    assert [item["authority_overdue"] for item in listed] == [True]

    assess(app_client, dpo_key, incident["id"])
    notified = app_client.post(
        f"/v1/incidents/{incident['id']}/authority-notified",
        json={"at": iso(clock.now), "authority": "CAC Shenzhen", "reference": "SZ-2026-118"},
        headers=auth(dpo_key),
    )
    assert notified.status_code == 200, notified.text
    shown = notified.json()
    assert shown["status"] == "authority_notified"
    assert shown["authority_overdue"] is False and shown["authority_deadline_met"] is False


def test_the_dpo_is_reminded_at_24_and_6_hours_left_and_when_overdue_each_once(
    app_client: TestClient, services: Services, dpo_key: str, clock: MovableClock, outbox: Path
) -> None:
    def reminders() -> list[dict[str, Any]]:
        return [m for m in outbox_messages(outbox) if m["template"] == "dpo_incident_due"]

    incident = opened(app_client, dpo_key, detected_at=iso(NOW - timedelta(hours=40)))
    assert remind_incident_deadlines(services).incidents == []  # 32 hours left
    clock.advance(hours=9)  # 23 hours left
    assert remind_incident_deadlines(services).incidents == [incident["id"]]
    assert remind_incident_deadlines(services).incidents == []
    clock.advance(hours=18)  # 5 hours left
    assert remind_incident_deadlines(services).incidents == [incident["id"]]
    clock.advance(hours=6)  # overdue
    assert remind_incident_deadlines(services).incidents == [incident["id"]]
    assert remind_incident_deadlines(services).incidents == []
    assert len(reminders()) == 3
    assert incident["id"] in reminders()[-1]["body"]


def test_a_stricter_deadline_applies_to_its_severity(services: Services, dpo_key: str) -> None:
    strict = services.policy.model_copy(
        update={"breach": Breach(authority_deadline_by_severity={"critical": "4 hours"})}
    )
    with services.reading() as session:
        dpo = authenticate(session, dpo_key)
    shown = open_incident_use_case(
        dataclasses.replace(services, policy=strict),
        actor=dpo,
        title="t",
        description="d",
        detected_at=NOW,
        severity="critical",
        scope={"kind": "all"},
        request_id=None,
    )
    assert shown["authority_rule"] == "4 hours"
    assert datetime.fromisoformat(shown["authority_due_at"]) == NOW + timedelta(hours=4)


# -- steps, the timeline, the log ------------------------------------------------------


def test_each_step_is_a_timeline_line_and_an_audit_entry_without_the_dpos_words(
    app_client: TestClient, keys: Keys, dpo_key: str
) -> None:
    incident = opened(app_client, dpo_key)
    incident_id = incident["id"]
    not_yet = app_client.post(
        f"/v1/incidents/{incident_id}/authority-notified",
        json={"at": iso(NOW), "authority": "CAC"},
        headers=auth(dpo_key),
    )
    assert not_yet.status_code == 409 and not_yet.json()["type"].endswith("incident-not-assessed")
    assess(app_client, dpo_key, incident_id)
    body = {"at": iso(NOW), "authority": "CAC", "reference": "R-1"}
    first = app_client.post(
        f"/v1/incidents/{incident_id}/authority-notified", json=body, headers=auth(dpo_key)
    )
    assert first.status_code == 200, first.text
    again = app_client.post(
        f"/v1/incidents/{incident_id}/authority-notified", json=body, headers=auth(dpo_key)
    )
    assert again.status_code == 409 and again.json()["type"].endswith("authority-notified")
    closed = app_client.post(
        f"/v1/incidents/{incident_id}/close",
        json={"summary": "Key rotated; no misuse seen."},
        headers=auth(dpo_key),
    )
    assert closed.status_code == 200, closed.text
    shown = closed.json()
    assert shown["status"] == "closed" and shown["summary"] == "Key rotated; no misuse seen."
    assert [line["step"] for line in shown["timeline"]] == [
        "opened",
        "assessed",
        "authority_notified",
        "closed",
    ]
    assert all(line["actor_name"] == "dpo" for line in shown["timeline"])
    after_close = app_client.post(
        f"/v1/incidents/{incident_id}/assess",
        json={"consequences": "c", "measures": "m", "member_advice": "a"},
        headers=auth(dpo_key),
    )
    assert after_close.status_code == 409
    assert after_close.json()["type"].endswith("incident-closed")

    logged = entries(app_client, keys.auditor, action="incident.change")
    assert [e["detail"]["step"] for e in logged] == [
        "opened",
        "assessed",
        "authority_notified",
        "closed",
    ]
    everything = json.dumps(entries(app_client, keys.auditor), ensure_ascii=False)
    assert SECRET_TEXT not in everything and "no misuse seen" not in everything


def test_the_affected_list_is_recorded_before_it_is_handed_out(
    app_client: TestClient, keys: Keys, dpo_key: str
) -> None:
    new_member(app_client, keys, 1)
    incident = opened(app_client, dpo_key)
    response = app_client.get(f"/v1/incidents/{incident['id']}/affected", headers=auth(dpo_key))
    (entry,) = entries(app_client, keys.auditor, action="incident.affected")
    assert str(entry["seq"]) == response.headers["Audit-Seq"]
    assert entry["detail"] == {"incident": incident["id"], "members": 1}


def test_the_dpo_keys_feed_carries_incident_opened(
    app_client: TestClient, keys: Keys, dpo_key: str
) -> None:
    incident = opened(app_client, dpo_key)
    feed = app_client.get("/v1/events", headers=auth(dpo_key)).json()["items"]
    assert [(e["type"], e["data"]) for e in feed] == [
        ("incident.opened", {"incident_id": incident["id"]})
    ]
    clients = app_client.get("/v1/events", headers=auth(keys.crm)).json()["items"]
    assert all(e["type"] != "incident.opened" for e in clients)


@pytest.mark.parametrize("who", ["crm", "auditor", "admin"])
def test_only_the_dpo_runs_incidents(app_client: TestClient, keys: Keys, who: str) -> None:
    response = open_incident(app_client, getattr(keys, who))
    assert response.status_code == 403
    assert app_client.get("/v1/incidents", headers=auth(getattr(keys, who))).status_code == 403


# -- the report --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "phrases"),
    [
        ("zh-CN", ["个人信息", "发现时间", "联系"]),
        ("en", ["Personal data breach", "detected", "Data protection officer"]),
    ],
)
def test_the_report_has_every_required_section_in_both_languages(
    app_client: TestClient, keys: Keys, dpo_key: str, lang: str, phrases: list[str]
) -> None:
    new_member(app_client, keys, 1)
    incident = opened(app_client, dpo_key)
    assess(app_client, dpo_key, incident["id"])
    path = f"/v1/incidents/{incident['id']}/report"
    report = app_client.get(path, params={"lang": lang}, headers=auth(dpo_key))
    assert report.status_code == 200, report.text
    data = report.json()
    for section in (
        "what_happened",
        "data_subjects",
        "records",
        "categories",
        "sensitive_data",
        "likely_consequences",
        "measures_taken",
        "what_members_can_do",
        "contact",
        "authority",
        "timeline",
    ):
        assert section in data, section
    assert data["data_subjects"]["members"] == 1
    assert data["contact"]["dpo"] == "dpo@brand.example"
    html = app_client.get(path, params={"lang": lang, "format": "html"}, headers=auth(dpo_key))
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    for phrase in phrases:
        assert phrase.lower() in html.text.lower(), phrase
    assert "Members may receive fraudulent text messages." in html.text
    logged = entries(app_client, keys.auditor, action="incident.report")
    assert [(e["detail"]["format"], e["detail"]["locale"]) for e in logged] == [
        ("json", lang),
        ("html", lang),
    ]


# -- notices -----------------------------------------------------------------------------


@pytest.fixture
def assessed(app_client: TestClient, keys: Keys, dpo_key: str) -> dict[str, Any]:
    ids = [new_member(app_client, keys, n) for n in range(5)]
    incident = opened(app_client, dpo_key, scope={"kind": "members", "member_ids": ids})
    assess(app_client, dpo_key, incident["id"])
    return {"incident": incident["id"], "ids": ids}


def notify(client: TestClient, dpo_key: str, incident_id: str, channels: list[str]) -> dict:
    response = client.post(
        f"/v1/incidents/{incident_id}/notify-members",
        json={"channels": channels},
        headers=auth(dpo_key),
    )
    assert response.status_code == 202, response.text
    return response.json()


def test_notify_members_sends_one_notice_each_and_asking_again_sends_none(
    app_client: TestClient, keys: Keys, dpo_key: str, assessed: dict[str, Any], outbox: Path
) -> None:
    notify(app_client, dpo_key, assessed["incident"], ["sms", "email"])
    notify(app_client, dpo_key, assessed["incident"], ["sms", "email"])
    sent = [m for m in outbox_messages(outbox) if m["template"] == "breach_notice"]
    # SMS first, as asked; one per member, never two.
    assert sorted(m["to"] for m in sent) == [f"+861390000{n:04d}" for n in range(5)]
    assert {m["channel"] for m in sent} == {"sms"}
    totals = app_client.get(
        f"/v1/incidents/{assessed['incident']}/notices", headers=auth(dpo_key)
    ).json()
    assert totals["sent"] == 5 and totals["queued"] == 0
    shown = app_client.get(f"/v1/incidents/{assessed['incident']}", headers=auth(dpo_key)).json()
    assert shown["status"] == "members_notified"
    # The contacts were read under breach_notification, and the sending recorded; the
    # entries name the members, never an address.
    (read_entry,) = entries(app_client, keys.auditor, action="incident.contacts")
    assert read_entry["purpose"] == "breach_notification"
    assert sorted(read_entry["members"]) == sorted(assessed["ids"])
    (sent_entry,) = entries(app_client, keys.auditor, action="incident.notices")
    assert sent_entry["detail"]["sent"] == {"sms": 5}
    assert "1390000" not in json.dumps(entries(app_client, keys.auditor))


def test_a_notice_the_transport_refused_is_sent_when_asked_again(
    app_client: TestClient,
    services: Services,
    dpo_key: str,
    assessed: dict[str, Any],
    outbox: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_send = OutboxNotifier.send
    refuse = {"first": True}

    def flaky(self: OutboxNotifier, message: Any, *, now: datetime) -> None:
        if refuse["first"]:
            refuse["first"] = False
            raise OSError("gateway down")
        real_send(self, message, now=now)

    monkeypatch.setattr(OutboxNotifier, "send", flaky)
    totals_after = notify(app_client, dpo_key, assessed["incident"], ["email"])
    assert totals_after["queued"] == 5  # the answer is given before the sending
    totals = app_client.get(
        f"/v1/incidents/{assessed['incident']}/notices", headers=auth(dpo_key)
    ).json()
    assert (totals["sent"], totals["failed"]) == (4, 1)
    notify(app_client, dpo_key, assessed["incident"], ["email"])
    sent = [m["to"] for m in outbox_messages(outbox) if m["template"] == "breach_notice"]
    assert sorted(sent) == sorted(f"member{n}@example.com" for n in range(5))


def test_notices_claimed_by_a_sender_that_died_are_never_sent_again(
    app_client: TestClient,
    services: Services,
    dpo_key: str,
    assessed: dict[str, Any],
    clock: MovableClock,
    outbox: Path,
) -> None:
    incident_id = assessed["incident"]
    # Queue without sending (the worker will), then a sender claims two and dies.
    with services.sessions() as session:
        session.execute(
            BreachAffected.__table__.update()
            .where(BreachAffected.__table__.c.incident_id == incident_id)
            .values(notice_status="queued")
        )
        session.execute(
            BreachIncident.__table__.update()
            .where(BreachIncident.__table__.c.id == incident_id)
            .values(notice_channels="email")
        )
        session.commit()
    decision = contact_decision(services.policy)
    died = _claim(services, decision, None, incident_id, None, 2, NoticeRun())
    assert died is not None and len(died) == 2
    # Another run while the claim is fresh sends the rest and leaves those two alone.
    assert send_queued_notices(services).sent == 3
    # Once the claim is older than a run may last, they are marked interrupted.
    clock.advance(seconds=services.settings.worker_max_runtime_seconds + 60)
    run = send_queued_notices(services)
    assert (run.sent, run.interrupted) == (0, 2)
    sent = [m["to"] for m in outbox_messages(outbox) if m["template"] == "breach_notice"]
    assert len(sent) == len(set(sent)) == 3
    notify(app_client, dpo_key, incident_id, ["email"])  # asking again sends none of them
    assert len([m for m in outbox_messages(outbox) if m["template"] == "breach_notice"]) == 3
    with services.sessions() as session:
        failures = session.scalars(
            select(BreachAffected.failure).where(BreachAffected.notice_status == "failed")
        ).all()
    assert failures == [INTERRUPTED, INTERRUPTED]


def test_a_member_with_no_contact_on_the_channels_asked_is_unreachable(
    app_client: TestClient, keys: Keys, dpo_key: str, outbox: Path
) -> None:
    body = {k: v for k, v in MEMBER.items() if k != "email"}
    response = app_client.post(
        "/v1/members", json={**body, "phone": "13900009999"}, headers=auth(keys.crm)
    )
    member_id = response.json()["id"]
    incident = opened(app_client, dpo_key, scope={"kind": "members", "member_ids": [member_id]})
    assess(app_client, dpo_key, incident["id"])
    notify(app_client, dpo_key, incident["id"], ["email"])
    totals = app_client.get(f"/v1/incidents/{incident['id']}/notices", headers=auth(dpo_key))
    assert totals.json()["unreachable"] == 1 and totals.json()["sent"] == 0


def test_notices_wait_for_the_assessment(app_client: TestClient, keys: Keys, dpo_key: str) -> None:
    incident = opened(app_client, dpo_key)
    response = app_client.post(
        f"/v1/incidents/{incident['id']}/notify-members",
        json={"channels": ["sms"]},
        headers=auth(dpo_key),
    )
    assert response.status_code == 409
    assert response.json()["type"].endswith("incident-not-assessed")


# -- bad input -----------------------------------------------------------------------------


def error_fields(problem: dict[str, Any]) -> set[str]:
    """Where each error is: a use case names a ``field``, the schema a ``loc``."""
    return {
        error.get("field") or ".".join(str(part) for part in error["loc"] if part != "body")
        for error in problem.get("errors", [])
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scope": {"kind": "client", "client": "nobody", "from": iso(NOW)}}, "scope.client"),
        (
            {
                "scope": {
                    "kind": "client",
                    "client": "sms",
                    "from": iso(NOW),
                    "to": iso(NOW - timedelta(hours=1)),
                }
            },
            "scope.to",
        ),
        ({"scope": {"kind": "vault"}}, "scope.kind"),
        ({"scope": {"kind": "all", "client": "sms"}}, "scope.client"),
        ({"scope": {"kind": "members", "member_ids": ["a" * 24]}}, "scope.member_ids"),
        ({"scope": {"kind": "members", "member_ids": ["not an id"]}}, "scope.member_ids"),
        ({"detected_at": iso(NOW + timedelta(days=1))}, "detected_at"),
        ({"detected_at": "2026-11-20T10:00:00"}, "detected_at"),
        ({"severity": "apocalyptic"}, "severity"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"extra": "field"}, "(unknown field)"),
        ({"scope": {"kind": "client", "client": "sms"}}, "scope.from"),
    ],
)
def test_bad_input_is_a_422_and_stores_nothing(
    app_client: TestClient,
    services: Services,
    keys: Keys,
    dpo_key: str,
    change: dict[str, Any],
    field: str,
) -> None:
    before = count(services, BreachIncidentEvent)
    response = open_incident(app_client, dpo_key, **change)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"].endswith("validation-failed")
    assert field in error_fields(problem), problem
    assert count(services, BreachIncident) == 0
    assert count(services, BreachIncidentEvent) == before
    assert SECRET_TEXT not in response.text


def test_an_unknown_incident_is_a_404(app_client: TestClient, dpo_key: str) -> None:
    for path in ("", "/affected", "/report", "/notices"):
        response = app_client.get(f"/v1/incidents/{'b' * 24}{path}", headers=auth(dpo_key))
        assert response.status_code == 404, path


def test_a_reminder_the_transport_refused_is_sent_by_the_next_run(
    app_client: TestClient,
    services: Services,
    dpo_key: str,
    outbox: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    incident = opened(app_client, dpo_key, detected_at=iso(NOW - timedelta(hours=60)))
    real_send = OutboxNotifier.send

    def down(self: OutboxNotifier, message: Any, *, now: datetime) -> None:
        raise NotifierError("outbox: unavailable")

    monkeypatch.setattr(OutboxNotifier, "send", down)
    refused = remind_incident_deadlines(services)
    assert (refused.incidents, refused.failed) == ([], 1)
    monkeypatch.setattr(OutboxNotifier, "send", real_send)
    assert remind_incident_deadlines(services).incidents == [incident["id"]]
    assert [m["template"] for m in outbox_messages(outbox)] == ["dpo_incident_due"]


def test_a_member_whose_stored_contact_is_damaged_is_unreachable_and_never_sent_to(
    app_client: TestClient,
    dpo_key: str,
    assessed: dict[str, Any],
    session: Session,
    outbox: Path,
) -> None:
    damaged = assessed["ids"][0]
    field = session.get(VaultField, (damaged, "email"))
    assert field is not None
    field.value_ct = bytes(field.value_ct)[:-1] + bytes([field.value_ct[-1] ^ 1])
    session.commit()
    session.close()
    totals = notify(app_client, dpo_key, assessed["incident"], ["email", "sms"])
    assert totals["unreachable"] == 0  # the contacts are read when the notices are sent
    after = app_client.get(f"/v1/incidents/{assessed['incident']}/notices", headers=auth(dpo_key))
    assert (after.json()["sent"], after.json()["unreachable"]) == (4, 1)
    lines = affected_lines(app_client, dpo_key, assessed["incident"])
    assert (lines[damaged]["notice"], lines[damaged]["notice_failure"]) == (
        "unreachable",
        "vault-integrity",
    )
    sent = [m["to"] for m in outbox_messages(outbox) if m["template"] == "breach_notice"]
    assert "member0@example.com" not in sent and len(sent) == 4
