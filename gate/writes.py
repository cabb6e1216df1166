"""Member writes: create and update. Each is one audited unit of work.

An update is a change other systems may hold copies of: the clients the log
shows were released any of the updated fields are told (``member.corrected``,
change feed, no ``request_id``) in the update's unit of work, all but the
client that made the update, which knows. A new member was released to no one
yet: nobody is told.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audit import actions
from core.errors import NotFound
from core.ids import is_valid_id
from feed.events import member_corrected
from gate.context import Services
from principals.actor import Actor
from vault.members import create_member, update_member, validate_values


@dataclass(frozen=True, slots=True)
class Written:
    id: str
    audit_seq: int


def create_member_record(
    services: Services,
    *,
    actor: Actor,
    values: Mapping[str, Any],
    request_id: str | None,
) -> Written:
    actor.require_scope("members:write")
    # Bad input is 422 before any lock is taken.
    clean = validate_values(services.policy, values, partial=False, today=services.clock().date())
    present = {k: v for k, v in clean.items() if v is not None}
    with services.uow(actor) as uow:
        member_id = create_member(
            uow.session,
            policy=services.policy,
            keyring=services.keyring,
            values=present,
            now=uow.now,
        )
        seq = uow.record(
            actions.member_created(
                actor,
                policy=services.policy.version,
                member_id=member_id,
                fields=list(present),
                request_id=request_id,
            )
        )
        uow.commit()
    return Written(id=member_id, audit_seq=seq)


def update_member_record(
    services: Services,
    *,
    actor: Actor,
    member_id: str,
    values: Mapping[str, Any],
    request_id: str | None,
) -> Written:
    actor.require_scope("members:write")
    if not is_valid_id(member_id):
        raise NotFound("no such member")
    clean = validate_values(services.policy, values, partial=True, today=services.clock().date())
    with services.uow(actor) as uow:
        update_member(  # NotFound unless the member exists (has a data key)
            uow.session,
            policy=services.policy,
            keyring=services.keyring,
            member_id=member_id,
            values=clean,
            now=uow.now,
        )
        seq = uow.record(
            actions.member_updated(
                actor,
                policy=services.policy.version,
                member_id=member_id,
                changes=clean,
                request_id=request_id,
            )
        )
        member_corrected(
            uow.session, member_id=member_id, fields=list(clean), now=uow.now, exclude=actor.id
        )
        uow.commit()
    return Written(id=member_id, audit_seq=seq)
