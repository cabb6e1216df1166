"""Legal holds: while a member has an active hold, their deletion waits (``on_hold``).

A hold is active until it is released or its ``ends_at`` (the API's
``until``) passes: a hold that lapses counts as released from that instant,
so no decision ever rests on a hold that has ended. A deletion waiting on
holds that have all lapsed is resumed by the job ``gate.rights_jobs.
release_lapsed_holds``, which records each lapse. Flushes only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound
from core.ids import is_valid_id, new_id
from rights.models import RightsHold


def place_hold(
    session: Session,
    *,
    member_id: str,
    reason: str,
    ends_at: datetime | None,
    created_by: str,
    now: datetime,
) -> RightsHold:
    hold = RightsHold(
        id=new_id(),
        member_id=member_id,
        reason=reason,
        ends_at=ends_at,
        created_by=created_by,
        created_at=now,
    )
    session.add(hold)
    session.flush()
    return hold


def member_holds(session: Session, member_id: str) -> list[RightsHold]:
    return list(
        session.scalars(
            select(RightsHold)
            .where(RightsHold.member_id == member_id)
            .order_by(RightsHold.created_at, RightsHold.id)
        )
    )


def unreleased_holds(session: Session) -> list[RightsHold]:
    """Every hold not released or recorded as lapsed, of every member (the CLI's list)."""
    return list(
        session.scalars(
            select(RightsHold)
            .where(RightsHold.released_at.is_(None))
            .order_by(RightsHold.created_at, RightsHold.id)
        )
    )


def active_holds(session: Session, member_id: str, *, now: datetime) -> list[RightsHold]:
    return [hold for hold in member_holds(session, member_id) if hold.active(now)]


def get_hold(session: Session, member_id: str, hold_id: str) -> RightsHold:
    """The member's hold, locked for the use case; another member's is ``NotFound``."""
    if not is_valid_id(hold_id):
        raise NotFound("no such hold")
    hold = session.scalar(
        select(RightsHold)
        .where(RightsHold.id == hold_id, RightsHold.member_id == member_id)
        .with_for_update()
    )
    if hold is None:
        raise NotFound("no such hold")
    return hold


def release_hold(hold: RightsHold, *, released_by: str, now: datetime) -> None:
    """End an active hold now."""
    if not hold.active(now):
        raise Conflict("the hold has already been released or has ended", slug="hold-ended")
    hold.released_at = now
    hold.released_by = released_by


def record_lapse(hold: RightsHold) -> None:
    """A hold whose end passed: released at that end, by no one."""
    if hold.ends_at is None or hold.released_at is not None:
        raise ValueError("only an unreleased hold with an end lapses")
    hold.released_at = hold.ends_at
    hold.released_by = None


def lapsed_holds(session: Session, *, now: datetime, limit: int) -> list[RightsHold]:
    """Holds whose end has passed and that nothing recorded as ended yet, locked
    (rows another worker holds are skipped)."""
    return list(
        session.scalars(
            select(RightsHold)
            .where(
                RightsHold.released_at.is_(None),
                RightsHold.ends_at.is_not(None),
                RightsHold.ends_at <= now,
            )
            .order_by(RightsHold.ends_at, RightsHold.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def hold_view(hold: RightsHold, *, now: datetime, timezone: str) -> dict[str, Any]:
    zone = ZoneInfo(timezone)

    def shown(moment: datetime | None) -> str | None:
        return moment.astimezone(zone).isoformat() if moment is not None else None

    return {
        "id": hold.id,
        "member_id": hold.member_id,
        "reason": hold.reason,
        "until": shown(hold.ends_at),
        "active": hold.active(now),
        "created_by": hold.created_by,
        "created_at": shown(hold.created_at),
        "released_at": shown(hold.released_at),
        "released_by": hold.released_by,
    }
