"""The authority's deadline: when it falls, whether it was met, when to remind the DPO.

Counted in hours from ``detected_at`` (when the organisation became aware),
weekends and holidays included: GDPR Art. 33(1)'s 72 hours run through them.
Pure functions of the incident's times and an injected "now".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from policies.model import Breach, Severity

OVERDUE = "overdue"


def authority_deadline(
    rules: Breach, severity: Severity, detected_at: datetime
) -> tuple[datetime, str]:
    """When the authority must have been told, and the policy's rule that says so."""
    hours, text = rules.deadline_hours(severity)
    return detected_at + timedelta(hours=hours), text


@dataclass(frozen=True, slots=True)
class AuthorityClock:
    due_at: datetime
    notified_at: datetime | None
    now: datetime

    @property
    def overdue(self) -> bool:
        """Past the deadline with the authority not told."""
        return self.notified_at is None and self.now > self.due_at

    @property
    def met(self) -> bool | None:
        """Told in time (True), late or not yet told past the deadline (False), pending (None)."""
        if self.notified_at is not None:
            return self.notified_at <= self.due_at
        return False if self.overdue else None

    @property
    def seconds_left(self) -> int | None:
        """Until the deadline (negative past it); None once the authority was told."""
        if self.notified_at is not None:
            return None
        return int((self.due_at - self.now).total_seconds())


def reminder_due(
    clock: AuthorityClock, thresholds: tuple[int, ...], last: str | None
) -> str | None:
    """The reminder the DPO is owed now, if any: the nearest threshold crossed ("24", "6")
    or ``overdue``, unless it (or a later one) was already sent.

    ``thresholds``: hours before the deadline, furthest first; ``last``: the last
    reminder sent. A job that did not run at the 24-hour mark and runs at 5 hours
    left sends the 6-hour reminder only: one message, the one that is true now.
    """
    if clock.notified_at is not None:
        return None
    order = [str(hours) for hours in thresholds] + [OVERDUE]
    if clock.overdue:
        level = OVERDUE
    else:
        left = clock.due_at - clock.now
        crossed = [str(hours) for hours in thresholds if left <= timedelta(hours=hours)]
        if not crossed:
            return None
        level = crossed[-1]
    if last is not None and last in order and order.index(last) >= order.index(level):
        return None
    return level
