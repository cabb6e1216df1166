"""The authority's deadline and the incident's steps: pure rules, checked exhaustively."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from breach import terms
from breach.clock import OVERDUE, AuthorityClock, authority_deadline, reminder_due
from breach.states import (
    IncidentClosed,
    NotAssessed,
    Status,
    Step,
    after,
)
from policies.model import SEVERITIES, Breach
from principals.signin import CHANNEL_BY_FIELD

DETECTED = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
THRESHOLDS = (24, 6)


def clock_at(hours_left: float, notified: datetime | None = None) -> AuthorityClock:
    due = DETECTED + timedelta(hours=72)
    return AuthorityClock(due_at=due, notified_at=notified, now=due - timedelta(hours=hours_left))


def test_the_default_deadline_is_72_hours_weekends_included() -> None:
    due, rule = authority_deadline(Breach(), "high", DETECTED)
    assert (due, rule) == (DETECTED + timedelta(hours=72), "72 hours")


def test_a_severity_rule_shortens_the_deadline_for_that_severity_only() -> None:
    rules = Breach(authority_deadline_by_severity={"critical": "4 hours"})
    assert authority_deadline(rules, "critical", DETECTED)[0] == DETECTED + timedelta(hours=4)
    assert authority_deadline(rules, "low", DETECTED)[0] == DETECTED + timedelta(hours=72)


@pytest.mark.parametrize(
    "table",
    [
        {"authority_deadline_by_severity": {"low": "96 hours"}},
        {"authority_deadline": "3 days"},
        {"remind_before": ["soon"]},
        {"authority_deadline_by_severity": {"catastrophic": "1 hour"}},
    ],
)
def test_a_breach_table_that_would_relax_or_garble_the_deadline_does_not_load(
    table: dict[str, object],
) -> None:
    with pytest.raises(ValidationError):
        Breach.model_validate(table)


def test_the_deadline_is_pending_then_overdue_then_met_or_missed() -> None:
    assert clock_at(1).met is None and not clock_at(1).overdue
    assert clock_at(-1).overdue and clock_at(-1).met is False
    due = DETECTED + timedelta(hours=72)
    on_time = clock_at(-5, notified=due - timedelta(minutes=1))
    late = clock_at(-5, notified=due + timedelta(minutes=1))
    assert (on_time.met, on_time.overdue, on_time.seconds_left) == (True, False, None)
    assert (late.met, late.overdue) == (False, False)


@pytest.mark.parametrize(
    ("hours_left", "last", "expected"),
    [
        (30, None, None),
        (24, None, "24"),
        (23, None, "24"),
        (23, "24", None),
        (5, "24", "6"),
        (5, None, "6"),  # the job missed the 24-hour mark: one reminder, the true one
        (5, "6", None),
        (-1, "6", OVERDUE),
        (-1, None, OVERDUE),
        (-1, OVERDUE, None),
    ],
)
def test_each_reminder_is_due_once_and_only_the_nearest(
    hours_left: float, last: str | None, expected: str | None
) -> None:
    assert reminder_due(clock_at(hours_left), THRESHOLDS, last) == expected


def test_no_reminder_once_the_authority_was_told() -> None:
    notified = DETECTED + timedelta(hours=1)
    assert reminder_due(clock_at(-10, notified=notified), THRESHOLDS, None) is None


@given(
    hours=st.lists(st.floats(min_value=-100, max_value=100), min_size=1, max_size=20).map(
        lambda xs: sorted(xs, reverse=True)
    )
)
def test_over_time_the_reminders_go_in_order_without_repeats(hours: list[float]) -> None:
    sent: list[str] = []
    last = None
    for left in hours:
        level = reminder_due(clock_at(left), THRESHOLDS, last)
        if level is not None:
            sent.append(level)
            last = level
    order = ["24", "6", OVERDUE]
    assert sent == sorted(set(sent), key=order.index)


def test_steps_follow_the_status_order_and_members_may_be_told_first() -> None:
    status = after(Status.OPEN, Step.OPENED)
    status = after(status, Step.ASSESSED)
    assert after(status, Step.MEMBERS_NOTIFIED) is Status.MEMBERS_NOTIFIED
    # Told the authority after the members: the furthest step stays.
    assert after(Status.MEMBERS_NOTIFIED, Step.AUTHORITY_NOTIFIED) is Status.MEMBERS_NOTIFIED
    # Revising the assessment does not move the status back.
    assert after(Status.AUTHORITY_NOTIFIED, Step.ASSESSED) is Status.AUTHORITY_NOTIFIED
    assert after(Status.OPEN, Step.CLOSED) is Status.CLOSED


@pytest.mark.parametrize("step", [Step.AUTHORITY_NOTIFIED, Step.MEMBERS_NOTIFIED])
def test_notifying_needs_the_assessment(step: Step) -> None:
    with pytest.raises(NotAssessed):
        after(Status.OPEN, step)


@pytest.mark.parametrize("step", list(Step))
def test_nothing_moves_a_closed_incident(step: Step) -> None:
    with pytest.raises(IncidentClosed):
        after(Status.CLOSED, step)


def test_the_cli_offers_the_policys_severities() -> None:
    # breach.terms is what the CLI loads at start; the policy's Literal is the rule.
    assert terms.SEVERITIES == SEVERITIES
    assert set(terms.NOTICE_CHANNELS) == set(CHANNEL_BY_FIELD.values())
