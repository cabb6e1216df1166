"""The life of a rights request: statuses, the events that move them, overdue. Pure.

::

    submitted ──begin──▶ in_progress ──complete──▶ completed
        │  └──────────────complete──────────────────▲
        │                     │
        ├──hold──▶ on_hold ◀──hold──┘        (deletion only: a legal hold blocks it)
        │            └──resume──▶ in_progress
        │
    any open status ──reject (reason)──▶ rejected
                    ──cancel──────────▶ cancelled
                    ──extend (reason)─▶ the same status, "extended" in the history

``completed``, ``rejected`` and ``cancelled`` are final: nothing moves a
request out of them. Who may cause which event (the member cancels, a DPO
approves, rejects and extends, holds belong to the DPO) is the use cases'
business (``gate.rights``); this module only says which moves exist.

``overdue`` is never stored: it is a function of the status, the due instant
and the caller's ``now``, so it cannot go stale. A hold does not stop the
clock (the member must be told why their deletion waits).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from core.errors import Conflict, InvalidInput


class RequestType(StrEnum):
    ACCESS = "access"
    CORRECTION = "correction"
    DELETION = "deletion"


class Status(StrEnum):
    SUBMITTED = "submitted"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class Event(StrEnum):
    BEGIN = "begin"
    HOLD = "hold"
    RESUME = "resume"
    COMPLETE = "complete"
    REJECT = "reject"
    CANCEL = "cancel"
    EXTEND = "extend"


# What the history shows for an extension: the request's status does not change.
EXTENDED = "extended"

OPEN = frozenset({Status.SUBMITTED, Status.IN_PROGRESS, Status.ON_HOLD})
FINAL = frozenset({Status.COMPLETED, Status.REJECTED, Status.CANCELLED})

_MOVES: dict[tuple[Status, Event], Status] = {
    (Status.SUBMITTED, Event.BEGIN): Status.IN_PROGRESS,
    (Status.SUBMITTED, Event.HOLD): Status.ON_HOLD,
    (Status.IN_PROGRESS, Event.HOLD): Status.ON_HOLD,
    (Status.ON_HOLD, Event.RESUME): Status.IN_PROGRESS,
    (Status.SUBMITTED, Event.COMPLETE): Status.COMPLETED,
    (Status.IN_PROGRESS, Event.COMPLETE): Status.COMPLETED,
    **{(status, Event.REJECT): Status.REJECTED for status in OPEN},
    **{(status, Event.CANCEL): Status.CANCELLED for status in OPEN},
    **{(status, Event.EXTEND): status for status in OPEN},
}
# Events that need a reason the member will read: a refusal must say why, and
# so must a later due date.
NEEDS_REASON = frozenset({Event.REJECT, Event.EXTEND})
# Holds block deletions only: access and correction are never held.
DELETION_ONLY = frozenset({Event.HOLD, Event.RESUME})


class InvalidTransition(Conflict):
    """The request's status does not allow this event (a final request, say)."""

    def __init__(self, status: Status, event: Event) -> None:
        super().__init__(
            f"a request that is {status.value} cannot be {_PAST[event]}", slug="request-state"
        )
        self.status = status
        self.event = event


_PAST = {
    Event.BEGIN: "started",
    Event.HOLD: "put on hold",
    Event.RESUME: "resumed",
    Event.COMPLETE: "completed",
    Event.REJECT: "rejected",
    Event.CANCEL: "cancelled",
    Event.EXTEND: "extended",
}


def advance(
    request_type: RequestType, status: Status, event: Event, *, reason: str | None = None
) -> Status:
    """The status after ``event``, or ``InvalidTransition`` (409) / ``InvalidInput`` (422).

    A missing reason is checked before the move, so that a reject without one
    is the caller's mistake whatever the request's state.
    """
    if event in NEEDS_REASON and not (reason and reason.strip()):
        raise InvalidInput(f"{event.value} needs a reason", errors=[_REASON_REQUIRED])
    if event in DELETION_ONLY and request_type is not RequestType.DELETION:
        raise InvalidTransition(status, event)
    moved = _MOVES.get((status, event))
    if moved is None:
        raise InvalidTransition(status, event)
    return moved


_REASON_REQUIRED = {"field": "reason", "problem": "is required"}


def history_status(status: Status, event: Event) -> str:
    """What the history records for an event that left the request in ``status``."""
    return EXTENDED if event is Event.EXTEND else status.value


def is_open(status: Status) -> bool:
    return status in OPEN


def is_overdue(status: Status, due_at: datetime, now: datetime) -> bool:
    """Not completed, rejected or cancelled once ``due_at`` has passed (on hold counts)."""
    return status in OPEN and now > due_at
