"""Legal holds (role ``dpo``): place, list, release. A member's deletion waits while one
is active; releasing the last one runs the waiting deletion in the same unit of work.

A hold is a fact about the member's data, so, like every use case, these
answer ``404`` for a member who does not exist (never did, or was deleted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from audit import actions
from audit.uow import AuditedUnitOfWork
from core.errors import InvalidInput, NotFound
from core.ids import is_valid_id
from gate.context import Services
from gate.rights import DPO_ROLE, resume_deletions
from gate.rights_notices import Defer, RequestNotices, send_now
from principals.actor import Actor
from rights.holds import (
    get_hold,
    hold_view,
    member_holds,
    place_hold,
    release_hold,
    unreleased_holds,
)
from vault.members import member_exists


@dataclass(frozen=True, slots=True)
class HoldChanged:
    hold: dict[str, Any]
    # Deletions that the release let run (their request ids).
    resumed: list[str]
    audit_seq: int


def _existing(session: Session, member_id: str) -> None:
    if not is_valid_id(member_id) or not member_exists(session, member_id):
        raise NotFound("no such member")


def place_member_hold(
    services: Services,
    *,
    actor: Actor,
    member_id: str,
    reason: str,
    until: datetime | None,
    request_id: str | None,
) -> HoldChanged:
    actor.require_role(DPO_ROLE)
    if not reason.strip():
        raise InvalidInput("a hold needs a reason", errors=[_REQUIRED])
    if until is not None and until <= services.clock():
        raise InvalidInput(
            "until is not in the future",
            errors=[{"field": "until", "problem": "must be in the future"}],
        )
    with services.uow(actor) as uow:
        _existing(uow.session, member_id)
        hold = place_hold(
            uow.session,
            member_id=member_id,
            reason=reason,
            ends_at=until,
            created_by=actor.id,
            now=uow.now,
        )
        seq = uow.record(
            actions.hold_changed(
                actor,
                policy=services.policy.version,
                member_id=member_id,
                hold=hold.id,
                event="placed",
                ends_at=until,
                request_id=request_id,
            )
        )
        uow.commit()
        return HoldChanged(_view(services, hold, uow), [], seq)


_REQUIRED = {"field": "reason", "problem": "is required"}


def list_member_holds(services: Services, *, actor: Actor, member_id: str) -> list[dict[str, Any]]:
    actor.require_role(DPO_ROLE)
    with services.reading() as session:
        _existing(session, member_id)
        now = services.clock()
        timezone = services.policy.rights.timezone
        return [hold_view(h, now=now, timezone=timezone) for h in member_holds(session, member_id)]


def list_active_holds(services: Services, *, actor: Actor) -> list[dict[str, Any]]:
    """Every member's active holds (``memberguard holds list``)."""
    actor.require_role(DPO_ROLE)
    with services.reading() as session:
        now = services.clock()
        timezone = services.policy.rights.timezone
        return [
            hold_view(h, now=now, timezone=timezone)
            for h in unreleased_holds(session)
            if h.active(now)
        ]


def release_member_hold(
    services: Services,
    *,
    actor: Actor,
    member_id: str,
    hold_id: str,
    request_id: str | None,
    defer: Defer = send_now,
) -> HoldChanged:
    """Release a hold; if it was the member's last active one, their deletion runs now.

    The member is told the deletion is done after the commit, through ``defer``.
    """
    actor.require_role(DPO_ROLE)
    notices = RequestNotices(services)
    with services.uow(actor) as uow:
        _existing(uow.session, member_id)
        hold = get_hold(uow.session, member_id, hold_id)
        release_hold(hold, released_by=actor.id, now=uow.now)
        seq = uow.record(
            actions.hold_changed(
                actor,
                policy=services.policy.version,
                member_id=member_id,
                hold=hold.id,
                event="released",
                ends_at=hold.ends_at,
                request_id=request_id,
            )
        )
        resumed = resume_deletions(
            uow, services, member_id, actor, notices=notices, request_id=request_id
        )
        uow.commit()
        changed = HoldChanged(_view(services, hold, uow), resumed, seq)
    notices.schedule(defer, actor=actor, request_id=request_id)
    return changed


def _view(services: Services, hold: Any, uow: AuditedUnitOfWork) -> dict[str, Any]:
    return hold_view(hold, now=uow.now, timezone=services.policy.rights.timezone)
