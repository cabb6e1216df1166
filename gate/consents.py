"""Consent use cases: record a change collected at a touchpoint, read the current state.

A change is recorded by a client (a touchpoint that heard the member) or by the
member themself, signed in (``gate.me``).

Both open their unit of work, which takes the log-head lock before the
member's consent is read: a consent read's entry can never be ordered after a
change it did not see, on any database.

A recorded change is told to the clients granted each purpose
(``consent.changed``, change feed) in the same unit of work: every purpose
whose current state the change set, a re-grant of a granted purpose included
(consumers apply the state they are sent, idempotently), but not an event
that arrived after a newer one and lost to it (the state did not move, and
its status is not the member's). The client that recorded the change is not
told of it: its answer carried the resulting state. Bulk imports
(``gate.imports``) tell no one: they load history collected elsewhere for
members no client has yet received, not a change to apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audit import actions
from consent.registry import (
    ConsentChange,
    RecordedConsent,
    check_change,
    check_recorder,
    consent_states,
    new_receipt_id,
    record_consent,
)
from core.errors import Forbidden, NotFound
from core.ids import is_valid_id
from feed.events import consent_changed
from gate.context import Services
from principals.actor import Actor
from principals.members import MEMBER_ROLE
from vault.members import member_exists


def record_member_consent(
    services: Services,
    *,
    actor: Actor,
    member_id: str,
    change: ConsentChange,
    request_id: str | None,
) -> RecordedConsent:
    is_member = actor.kind == "member"
    if is_member:
        # A member records only their own consent (``gate.me``, channel web).
        actor.require_role(MEMBER_ROLE)
        if member_id != actor.id:
            raise Forbidden("a member records only their own consent", slug="role-required")
    else:
        actor.require_scope("consents:write")
    if not is_valid_id(member_id):
        raise NotFound("no such member")
    notices = check_change(services.policy, change, services.clock())  # 4xx before any lock
    check_recorder(
        services.policy,
        change,
        recorder_purposes=actor.purposes,
        recorder_collects_only=actor.collects_consent_only,
        recorder_is_member=is_member,
    )
    with services.uow(actor) as uow:
        if not member_exists(uow.session, member_id):
            raise NotFound("no such member")
        receipt_id = new_receipt_id(change)
        seq = uow.record(
            actions.consent_changed(
                actor,
                policy=services.policy.version,
                member_id=member_id,
                purposes=change.purposes,
                status=change.status,
                channel=change.channel,
                notice_versions=notices,
                receipt_id=receipt_id,
                request_id=request_id,
            )
        )
        recorded = record_consent(
            uow.session,
            policy=services.policy,
            member_id=member_id,
            change=change,
            notices=notices,
            receipt_id=receipt_id,
            recorded_by=actor.id,
            audit_seq=seq,
            now=uow.now,
        )
        consent_changed(
            uow.session,
            member_id=member_id,
            purposes=recorded.took_effect,
            status=change.status,
            now=uow.now,
            exclude=None if is_member else actor.id,
        )
        uow.commit()
    return recorded


@dataclass(frozen=True, slots=True)
class ConsentStates:
    purposes: dict[str, dict[str, Any]]
    audit_seq: int


def read_member_consents(
    services: Services, *, actor: Actor, member_id: str, request_id: str | None
) -> ConsentStates:
    actor.require_scope("consents:read")
    if not is_valid_id(member_id):
        raise NotFound("no such member")
    with services.uow(actor) as uow:
        if not member_exists(uow.session, member_id):
            raise NotFound("no such member")
        states = consent_states(uow.session, member_id)
        seq = uow.record(
            actions.consent_read(
                actor, policy=services.policy.version, member_id=member_id, request_id=request_id
            )
        )
        uow.commit()
    return ConsentStates(purposes=states, audit_seq=seq)
