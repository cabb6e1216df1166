"""The rights request state machine: every move in an exhaustive table, and a Hypothesis
stateful machine that drives random events and checks the invariants after each."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from core.errors import InvalidInput
from policies import PolicyError, load_policy
from policies.loader import default_policy_dir
from rights.states import (
    FINAL,
    OPEN,
    Event,
    InvalidTransition,
    RequestType,
    Status,
    advance,
    history_status,
    is_overdue,
)

S, E = Status, Event
# Every move the machine allows, and what it leads to. Anything not here is refused.
ALLOWED: dict[tuple[Status, Event], Status] = {
    (S.SUBMITTED, E.BEGIN): S.IN_PROGRESS,
    (S.SUBMITTED, E.HOLD): S.ON_HOLD,
    (S.IN_PROGRESS, E.HOLD): S.ON_HOLD,
    (S.ON_HOLD, E.RESUME): S.IN_PROGRESS,
    (S.SUBMITTED, E.COMPLETE): S.COMPLETED,
    (S.IN_PROGRESS, E.COMPLETE): S.COMPLETED,
    (S.SUBMITTED, E.REJECT): S.REJECTED,
    (S.IN_PROGRESS, E.REJECT): S.REJECTED,
    (S.ON_HOLD, E.REJECT): S.REJECTED,
    (S.SUBMITTED, E.CANCEL): S.CANCELLED,
    (S.IN_PROGRESS, E.CANCEL): S.CANCELLED,
    (S.ON_HOLD, E.CANCEL): S.CANCELLED,
    (S.SUBMITTED, E.EXTEND): S.SUBMITTED,
    (S.IN_PROGRESS, E.EXTEND): S.IN_PROGRESS,
    (S.ON_HOLD, E.EXTEND): S.ON_HOLD,
}


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("event", list(Event))
def test_a_deletion_moves_exactly_as_the_table_says(status: Status, event: Event) -> None:
    expected = ALLOWED.get((status, event))
    if expected is None:
        with pytest.raises(InvalidTransition):
            advance(RequestType.DELETION, status, event, reason="why")
    else:
        assert advance(RequestType.DELETION, status, event, reason="why") is expected


@pytest.mark.parametrize("request_type", [RequestType.ACCESS, RequestType.CORRECTION])
@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("event", [Event.HOLD, Event.RESUME])
def test_only_a_deletion_is_ever_held(
    request_type: RequestType, status: Status, event: Event
) -> None:
    with pytest.raises(InvalidTransition):
        advance(request_type, status, event)


@pytest.mark.parametrize("status", sorted(FINAL))
def test_a_completed_rejected_or_cancelled_request_never_moves_again(status: Status) -> None:
    for event in Event:
        with pytest.raises(InvalidTransition) as info:
            advance(RequestType.CORRECTION, status, event, reason="why")
        assert info.value.slug == "request-state"


@pytest.mark.parametrize("event", [Event.REJECT, Event.EXTEND])
@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_rejection_or_an_extension_without_a_reason_is_refused(
    event: Event, reason: str | None
) -> None:
    with pytest.raises(InvalidInput) as info:
        advance(RequestType.ACCESS, Status.SUBMITTED, event, reason=reason)
    assert info.value.extra["errors"] == [{"field": "reason", "problem": "is required"}]


def test_an_extension_is_recorded_as_extended_and_keeps_the_status() -> None:
    assert history_status(Status.ON_HOLD, Event.EXTEND) == "extended"
    assert history_status(Status.CANCELLED, Event.CANCEL) == "cancelled"


DUE = datetime(2026, 12, 1, 15, 59, 59, 999999, tzinfo=UTC)


@pytest.mark.parametrize("status", list(Status))
def test_overdue_is_an_open_request_past_its_due_instant(status: Status) -> None:
    assert is_overdue(status, DUE, DUE) is False  # the due instant itself is still in time
    assert is_overdue(status, DUE, DUE + timedelta(microseconds=1)) is (status in OPEN)
    assert is_overdue(status, DUE, DUE - timedelta(days=3)) is False


class RequestLife(RuleBasedStateMachine):
    """Random events on one request of a random type; invariants after each step."""

    def __init__(self) -> None:
        super().__init__()
        self.request_type = RequestType.DELETION
        self.status = Status.SUBMITTED
        self.history: list[str] = [Status.SUBMITTED.value]
        self.closed_at: int | None = None

    @rule(request_type=st.sampled_from(list(RequestType)))
    def new_request(self, request_type: RequestType) -> None:
        self.request_type, self.status = request_type, Status.SUBMITTED
        self.history, self.closed_at = [Status.SUBMITTED.value], None

    @rule(event=st.sampled_from(list(Event)), reason=st.sampled_from([None, "", "a reason"]))
    def event(self, event: Event, reason: str | None) -> None:
        before = self.status
        try:
            after = advance(self.request_type, before, event, reason=reason)
        except InvalidInput:
            assert event in (Event.REJECT, Event.EXTEND) and not (reason or "").strip()
            return
        except InvalidTransition:
            assert (before, event) not in ALLOWED or (
                event in (Event.HOLD, Event.RESUME) and self.request_type != RequestType.DELETION
            )
            return
        assert ALLOWED[before, event] is after
        self.status = after
        self.history.append(history_status(after, event))
        if after in FINAL:
            self.closed_at = len(self.history)

    @invariant()
    def final_states_are_absorbing(self) -> None:
        if self.closed_at is not None:
            assert len(self.history) == self.closed_at
            assert self.status in FINAL

    @invariant()
    def only_deletions_are_ever_held(self) -> None:
        if self.request_type is not RequestType.DELETION:
            assert Status.ON_HOLD.value not in self.history

    @invariant()
    def the_history_starts_submitted(self) -> None:
        assert self.history[0] == Status.SUBMITTED.value


TestRequestLife = RequestLife.TestCase


# -- the policy's [rights.correction] not_correctable --------------------------------


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policy"
    shutil.copytree(default_policy_dir(), target)
    return target


def test_the_default_policy_keeps_the_programmes_own_records_out_of_corrections() -> None:
    correction = load_policy().rights.correction
    assert correction.not_correctable == ("registered_at", "points_balance", "tier")


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (
            'not_correctable = ["registered_at", "pionts"]',
            "rights.correction.not_correctable: unknown field 'pionts'",
        ),
        (
            'not_correctable = ["address"]',
            "address: both self_service and not_correctable",
        ),
        ('not_correctable = ["tier", "tier"]', "lists a field twice"),
    ],
)
def test_a_bad_not_correctable_list_names_the_problem(
    policy_dir: Path, new: str, expected: str
) -> None:
    target = policy_dir / "rights.toml"
    old = 'not_correctable = ["registered_at", "points_balance", "tier"]'
    assert old in target.read_text()
    target.write_text(target.read_text().replace(old, new))
    with pytest.raises(PolicyError) as info:
        load_policy(policy_dir)
    assert any(expected in problem for problem in info.value.problems), info.value.problems
