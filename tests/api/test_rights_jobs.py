"""The deadline job: one notice to the DPO per run for requests that newly crossed a
threshold (3 working days left, overdue), never repeated for the same state."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from gate.context import Services
from gate.rights_jobs import flag_due_requests
from notify import Message, NotifierError
from rights.models import RightsRequest
from tests.api.conftest import MEMBER, auth
from tests.api.rights_helpers import entries, relay
from tests.conftest import NOW, Keys, ServicesFor


class Capture:
    """A transport that keeps what it is given (or refuses, when told to)."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.refuse = False

    def send(self, message: Message, *, now: datetime) -> None:
        if self.refuse:
            raise NotifierError("transport down (test)")
        self.sent.append(message)


@pytest.fixture
def requests(app_client: TestClient, keys: Keys, relay_key: str) -> dict[str, str]:
    """Corrections waiting for the DPO (30 days), seen on Sunday 22 November 2026."""
    made = {}
    for n, (name, received) in enumerate(
        [("overdue", "2026-10-20"), ("due_monday", "2026-10-24"), ("far", "2026-11-10")]
    ):
        member = app_client.post(
            "/v1/members", json={**MEMBER, "phone": f"1390000{n:04d}"}, headers=auth(keys.crm)
        ).json()["id"]
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
        made[name] = response.json()["id"]
    return made


def job(services_for: ServicesFor, services: Services, capture: Capture, at: datetime) -> Any:
    return lambda: flag_due_requests(
        services_for(services.sessions, notifier=capture, clock=lambda: at)
    )


def test_due_and_overdue_requests_are_flagged_once_in_one_notice_to_the_dpo(
    app_client: TestClient,
    requests: dict[str, str],
    services: Services,
    services_for: ServicesFor,
    keys: Keys,
) -> None:
    capture = Capture()
    run: Callable[[], Any] = job(services_for, services, capture, NOW)
    flagged = run()
    assert (flagged.due_soon, flagged.overdue) == ([requests["due_monday"]], [requests["overdue"]])
    (message,) = capture.sent
    # The policy's DPO (``[programme] dpo_contact``), not the controller's general address.
    assert (message.to, message.template, message.channel) == (
        "dpo@brand.example",
        "dpo_requests_due",
        "email",
    )
    assert message.id == flagged.message_id
    # The digest names requests by id only (notify's dpo_requests_due template).
    assert requests["due_monday"] in message.body and requests["overdue"] in message.body
    assert requests["far"] not in message.body
    (entry,) = entries(app_client, keys.auditor, action="rights.flagged")
    assert entry["detail"] == {
        "due_soon": [requests["due_monday"]],
        "overdue": [requests["overdue"]],
        "message": message.id,
    }
    # (The members were told their requests were received: notices of their own.)
    (notice,) = [
        e
        for e in entries(app_client, keys.auditor, action="notice.sent")
        if e["detail"]["template"] == "dpo_requests_due"
    ]
    assert notice["detail"]["message"] == message.id and notice["actor"] is None
    assert "dpo@brand.example" not in str(entry) + str(notice)

    # The same states again: nothing new, nothing sent.
    assert run().message_id is None
    assert len(capture.sent) == 1

    # Two days on, Monday's request is overdue too: flagged again, at the new threshold.
    later = job(services_for, services, capture, NOW + timedelta(days=2))()
    assert (later.due_soon, later.overdue) == ([], [requests["due_monday"]])
    assert len(capture.sent) == 2


def test_a_notice_that_cannot_be_sent_leaves_the_requests_to_flag_again(
    requests: dict[str, str], services: Services, services_for: ServicesFor
) -> None:
    capture = Capture()
    capture.refuse = True
    run = job(services_for, services, capture, NOW)
    with pytest.raises(NotifierError):
        run()
    capture.refuse = False
    flagged = run()
    assert sorted(flagged.due_soon + flagged.overdue) == sorted(
        [requests["due_monday"], requests["overdue"]]
    )
    assert len(capture.sent) == 1


def close(
    how: str, client: TestClient, request_id: str, dpo_key: str, token_for: Callable[[str], str]
) -> None:
    """Close a waiting correction as the DPO (reject, approve) or its member (cancel) would."""
    if how == "cancelled":
        shown = client.get(f"/v1/requests/{request_id}", headers=auth(dpo_key)).json()
        token = token_for(shown["member_id"])
        response = client.post(f"/v1/me/requests/{request_id}/cancel", headers=auth(token))
    elif how == "rejected":
        body = {"reason": "duplicate of case 3"}
        response = client.post(
            f"/v1/requests/{request_id}/reject", json=body, headers=auth(dpo_key)
        )
    else:
        response = client.post(f"/v1/requests/{request_id}/approve", headers=auth(dpo_key))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == how


@pytest.mark.parametrize("how", ["rejected", "cancelled", "completed"])
def test_a_request_closed_before_any_run_is_never_flagged_though_past_due(
    requests: dict[str, str],
    services: Services,
    services_for: ServicesFor,
    app_client: TestClient,
    dpo_key: str,
    token_for: Callable[[str], str],
    keys: Keys,
    session: Session,
    how: str,
) -> None:
    # Closed while never flagged: only the job's own choice of statuses can keep it out
    # (a request flagged overdue before it closed is passed over for that flag alone).
    closed = requests["overdue"]
    close(how, app_client, closed, dpo_key, token_for)
    capture = Capture()
    runs = [job(services_for, services, capture, at)() for at in (NOW, NOW + timedelta(days=5))]
    # Past its due date at both runs, it would be flagged overdue at the first if it were open.
    row = session.get(RightsRequest, closed)
    assert row is not None and row.due_at < NOW and row.due_flag is None
    session.close()
    assert all(closed not in run.due_soon + run.overdue for run in runs)
    assert all(closed not in message.body for message in capture.sent)
    flagged = entries(app_client, keys.auditor, action="rights.flagged")
    assert all(closed not in str(entry["detail"]) for entry in flagged)
    # The runs did flag: the open request beside it, due Monday, then past due.
    assert [(run.due_soon, run.overdue) for run in runs] == [
        ([requests["due_monday"]], []),
        ([], [requests["due_monday"]]),
    ]
    assert len(capture.sent) == len(flagged) == 2
