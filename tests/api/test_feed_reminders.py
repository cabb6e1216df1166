"""The acknowledgement reminders (job ``feed.reminders``): the DPO is told, once per
interval, of each recipient that has not acknowledged a deletion in time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from feed.models import FeedDelivery, FeedEvent
from gate.context import Services
from gate.feed import REMIND_TEMPLATE, remind_overdue_acks
from notify import Message, NotifierError
from tests.api.conftest import auth, grant
from tests.api.rights_helpers import entries, submitted
from tests.conftest import NOW, Keys, ServicesFor, ticking_clock
from worker.jobs import default_jobs

SignIn = Callable[[str], str]
HOURS = 72  # the default MEMBERGUARD_FEED_ACK_REMIND_HOURS


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
def deletion(
    app_client: TestClient, member_id: str, token_for: SignIn, keys: Keys
) -> dict[str, Any]:
    """A deletion (at the suite's NOW) whose event went to crm (a read) and recs (an export)
    and app (a consent change's answer)."""
    assert (
        app_client.get(
            f"/v1/members/{member_id}?purpose=delivery", headers=auth(keys.crm)
        ).status_code
        == 200
    )
    grant(app_client, keys.app, member_id, "personalization")
    assert app_client.get("/v1/members?purpose=personalization", headers=auth(keys.recs)).is_success
    return submitted(app_client, token_for(member_id), {"type": "deletion"})


@pytest.fixture
def capture() -> Capture:
    return Capture()


@pytest.fixture
def at(
    services: Services, services_for: ServicesFor, capture: Capture
) -> Callable[[timedelta], Services]:
    """The same database, with the clock ``after`` the suite's NOW and a capturing transport."""

    def later(after: timedelta) -> Services:
        return services_for(services.sessions, clock=ticking_clock(NOW + after), notifier=capture)

    return later


def acknowledge(client: TestClient, key: str) -> None:
    (event,) = [
        item
        for item in client.get("/v1/events", headers=auth(key)).json()["items"]
        if item["type"] == "member.deleted"
    ]
    assert client.post(f"/v1/events/{event['id']}/ack", headers=auth(key)).status_code == 200


def reminded(session: Session) -> dict[str, datetime | None]:
    """When each recipient of the deletion's event was last reminded of it."""
    try:
        return dict(
            session.execute(
                select(FeedDelivery.client_id, FeedDelivery.reminded_at)
                .join(FeedEvent, FeedEvent.id == FeedDelivery.event_id)
                .where(FeedEvent.type == "member.deleted")
            ).all()
        )
    finally:
        session.close()


def test_nothing_is_reminded_before_the_interval_has_passed(
    deletion: dict[str, Any], at: Callable[[timedelta], Services], capture: Capture
) -> None:
    assert remind_overdue_acks(at(timedelta(hours=HOURS - 1))).deliveries == 0
    assert capture.sent == []


def test_the_reminder_interval_is_the_setting_s(
    deletion: dict[str, Any],
    services: Services,
    services_for: ServicesFor,
    capture: Capture,
) -> None:
    hourly = services.settings.model_copy(update={"feed_ack_remind_hours": 1})

    def after(minutes: int) -> Services:
        return services_for(
            services.sessions,
            settings=hourly,
            clock=ticking_clock(NOW + timedelta(minutes=minutes)),
            notifier=capture,
        )

    assert remind_overdue_acks(after(59)).deliveries == 0
    assert capture.sent == []
    assert remind_overdue_acks(after(61)).deliveries == 3
    assert len(capture.sent) == 1


def test_the_dpo_is_told_once_per_interval_of_each_acknowledgement_still_owed(
    app_client: TestClient,
    deletion: dict[str, Any],
    keys: Keys,
    at: Callable[[timedelta], Services],
    capture: Capture,
    session: Session,
) -> None:
    acknowledge(app_client, keys.app)  # app did its part in time
    first = at(timedelta(hours=HOURS, minutes=1))
    done = remind_overdue_acks(first)
    assert (done.deliveries, done.requests) == (2, [deletion["id"]])
    (message,) = capture.sent
    assert message.template == REMIND_TEMPLATE and message.id == done.message_id
    assert message.to == first.policy.programme.dpo
    assert deletion["id"] in message.body
    marks = reminded(session)
    assert marks[keys.ids["app"]] is None
    assert marks[keys.ids["crm"]] is not None and marks[keys.ids["recs"]] is not None
    (entry,) = entries(app_client, keys.auditor, action="feed.reminded")
    assert entry["actor"] is None
    assert entry["members"] == [deletion["member_id"]]
    assert entry["detail"]["clients"] == sorted([keys.ids["crm"], keys.ids["recs"]])
    assert entry["detail"]["requests"] == [deletion["id"]]
    assert entry["detail"]["deliveries"] == 2
    assert entry["detail"]["message"] == message.id
    sent = entries(app_client, keys.auditor, action="notice.sent")
    assert sent[-1]["detail"]["template"] == REMIND_TEMPLATE

    # Within the interval: nothing again.
    assert remind_overdue_acks(at(timedelta(hours=2 * HOURS))).deliveries == 0
    assert len(capture.sent) == 1
    # crm acknowledges; an interval after the first reminder, only recs is named again.
    acknowledge(app_client, keys.crm)
    again = remind_overdue_acks(at(timedelta(hours=2 * HOURS, minutes=2)))
    assert again.deliveries == 1
    assert entries(app_client, keys.auditor, action="feed.reminded")[-1]["detail"]["clients"] == [
        keys.ids["recs"]
    ]
    acknowledge(app_client, keys.recs)
    assert remind_overdue_acks(at(timedelta(hours=10 * HOURS))).deliveries == 0
    assert len(capture.sent) == 2


def test_a_reminder_that_could_not_be_sent_is_tried_again_at_the_next_run(
    deletion: dict[str, Any],
    at: Callable[[timedelta], Services],
    capture: Capture,
    session: Session,
) -> None:
    capture.refuse = True
    with pytest.raises(NotifierError):
        remind_overdue_acks(at(timedelta(hours=HOURS, minutes=1)))
    assert set(reminded(session).values()) == {None}
    capture.refuse = False
    assert remind_overdue_acks(at(timedelta(hours=HOURS, minutes=2))).deliveries == 3


def test_the_worker_runs_the_reminders_as_a_job_that_reports_counts(
    deletion: dict[str, Any], at: Callable[[timedelta], Services]
) -> None:
    later = at(timedelta(hours=HOURS, minutes=1))
    (job,) = [job for job in default_jobs(later.settings) if job.name == "feed.reminders"]
    assert job.every == timedelta(seconds=later.settings.feed_reminders_job_seconds)
    assert job.run(later) == {"reminded": 3, "requests": 1, "notices": 1}
    assert job.run(later) == {"reminded": 0, "requests": 0, "notices": 0}
