"""Write use cases: members and consents. Each is one audited transaction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audit.log import Record, append_entry
from consent.registry import ConsentChange, RecordedConsent, consent_states, record_consent
from core.db import UnitOfWork
from core.errors import NotFound
from core.ids import is_valid_id
from gate.clients import Actor
from gate.context import Services
from vault.members import create_member, member_exists, update_member, validate_values


@dataclass(frozen=True, slots=True)
class Written:
    id: str
    audit_seq: int


def create_member_record(
    uow: UnitOfWork,
    *,
    services: Services,
    actor: Actor,
    values: Mapping[str, Any],
    request_id: str | None,
) -> Written:
    actor.require_scope("members:write")
    clean = validate_values(services.policy, values, partial=False)
    present = {k: v for k, v in clean.items() if v is not None}
    member_id = create_member(
        uow.session,
        policy=services.policy,
        keyring=services.keyring,
        values=present,
        clock=services.clock,
    )
    appended = append_entry(
        uow.session,
        Record(
            action="member.create",
            decision="permit",
            reason="members:write",
            policy=services.policy.version,
            actor=actor.id,
            actor_role=actor.role,
            members=[member_id],
            fields={name: "written" for name in sorted(present)},
            request_id=request_id,
        ),
        clock=services.clock,
    )
    services.commit(uow)
    return Written(id=member_id, audit_seq=appended.seq)


def update_member_record(
    uow: UnitOfWork,
    *,
    services: Services,
    actor: Actor,
    member_id: str,
    values: Mapping[str, Any],
    request_id: str | None,
) -> Written:
    actor.require_scope("members:write")
    if not is_valid_id(member_id):
        raise NotFound("no such member")
    clean = validate_values(services.policy, values, partial=True)
    update_member(
        uow.session,
        policy=services.policy,
        keyring=services.keyring,
        member_id=member_id,
        values=clean,
        clock=services.clock,
    )
    appended = append_entry(
        uow.session,
        Record(
            action="member.update",
            decision="permit",
            reason="members:write",
            policy=services.policy.version,
            actor=actor.id,
            actor_role=actor.role,
            members=[member_id],
            fields={
                name: ("cleared" if value is None else "written")
                for name, value in sorted(clean.items())
            },
            request_id=request_id,
        ),
        clock=services.clock,
    )
    services.commit(uow)
    return Written(id=member_id, audit_seq=appended.seq)


def record_member_consent(
    uow: UnitOfWork,
    *,
    services: Services,
    actor: Actor,
    member_id: str,
    change: ConsentChange,
    request_id: str | None,
) -> RecordedConsent:
    actor.require_scope("consents:write")
    if not is_valid_id(member_id):
        raise NotFound("no such member")
    recorded = record_consent(
        uow.session,
        policy=services.policy,
        member_id=member_id,
        change=change,
        recorded_by=actor.id,
        actor_role=actor.role,
        request_id=request_id,
        clock=services.clock,
    )
    services.commit(uow)
    return recorded


@dataclass(frozen=True, slots=True)
class ConsentStates:
    purposes: dict[str, dict[str, Any]]
    audit_seq: int


def read_member_consents(
    uow: UnitOfWork, *, services: Services, actor: Actor, member_id: str, request_id: str | None
) -> ConsentStates:
    actor.require_scope("consents:read")
    if not is_valid_id(member_id) or not member_exists(uow.session, member_id):
        raise NotFound("no such member")
    states = consent_states(uow.session, member_id)
    appended = append_entry(
        uow.session,
        Record(
            action="consent.read",
            decision="permit",
            reason="consents:read",
            policy=services.policy.version,
            actor=actor.id,
            actor_role=actor.role,
            members=[member_id],
            request_id=request_id,
        ),
        clock=services.clock,
    )
    services.commit(uow)
    return ConsentStates(purposes=states, audit_seq=appended.seq)
