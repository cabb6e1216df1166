"""An incident's status, and which steps may be taken from which status.

``open`` → ``assessed`` → ``authority_notified`` → ``members_notified`` →
``closed``. The status is the furthest step taken: members may be told before
the authority (GDPR Art. 34 does not wait for Art. 33), and the authority's
notification recorded afterwards keeps the status at ``members_notified``.
The assessment may be revised until the incident is closed; nothing moves a
closed incident.
"""

from __future__ import annotations

from enum import StrEnum

from core.errors import Conflict


class Status(StrEnum):
    OPEN = "open"
    ASSESSED = "assessed"
    AUTHORITY_NOTIFIED = "authority_notified"
    MEMBERS_NOTIFIED = "members_notified"
    CLOSED = "closed"

    @property
    def rank(self) -> int:
        return list(Status).index(self)


class Step(StrEnum):
    """A line of the timeline; each is one audit entry (``incident.change``)."""

    OPENED = "opened"
    ASSESSED = "assessed"
    AUTHORITY_NOTIFIED = "authority_notified"
    MEMBERS_NOTIFIED = "members_notified"
    CLOSED = "closed"


class IncidentClosed(Conflict):
    def __init__(self) -> None:
        super().__init__("the incident is closed", slug="incident-closed")


class NotAssessed(Conflict):
    """The step needs the assessment first: what it means for members, what was done."""

    def __init__(self) -> None:
        super().__init__(
            "assess the incident first (consequences, measures, what members can do)",
            slug="incident-not-assessed",
        )


class AuthorityAlreadyNotified(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "the authority's notification is already recorded", slug="authority-notified"
        )


def after(status: Status, step: Step) -> Status:
    """The status once ``step`` is taken in ``status``; raises when it may not be."""
    if status is Status.CLOSED:
        raise IncidentClosed()
    if step is Step.OPENED:
        return Status.OPEN
    if step is Step.ASSESSED:
        return max(status, Status.ASSESSED, key=lambda s: s.rank)
    if step is Step.CLOSED:
        return Status.CLOSED
    if status is Status.OPEN:
        raise NotAssessed()
    target = Status(step.value)
    return max(status, target, key=lambda s: s.rank)
