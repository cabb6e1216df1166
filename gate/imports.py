"""Bulk import: members from an existing system, with their consent history.

One batch is one transaction and one ``member.import`` audit entry naming every
member it created, so each imported member's access history starts with the
import. Values go through the same validation and encryption as the API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from audit.log import Record, append_entry
from consent.registry import ImportedConsent, import_consents
from gate.clients import OPERATOR_ACTOR
from gate.context import Services
from vault.members import create_members_bulk, validate_values

# Given the new member id and the submitted record, the consent history to import.
ConsentHistory = Callable[[str, Mapping[str, Any]], list[ImportedConsent]]


def import_members(
    services: Services,
    members: Sequence[Mapping[str, Any]],
    *,
    source: str,
    history: ConsentHistory | None = None,
) -> list[str]:
    """Validate, encrypt and store one batch; returns the new member ids in input order."""
    policy = services.policy
    clean = [
        {k: v for k, v in validate_values(policy, member, partial=False).items() if v is not None}
        for member in members
    ]
    with services.uow() as uow:
        ids = create_members_bulk(
            uow.session, policy=policy, keyring=services.keyring, batch=clean, clock=services.clock
        )
        events: list[ImportedConsent] = []
        if history is not None:
            for member_id, member in zip(ids, members, strict=True):
                events.extend(history(member_id, member))
        appended = append_entry(
            uow.session,
            Record(
                action="member.import",
                decision="permit",
                reason="operator",
                policy=policy.version,
                actor=OPERATOR_ACTOR.id,
                actor_role=OPERATOR_ACTOR.role,
                members=ids,
                detail={"source": source, "members": len(ids), "consent_events": len(events)},
            ),
            clock=services.clock,
        )
        import_consents(
            uow.session,
            policy=policy,
            events=events,
            recorded_by=OPERATOR_ACTOR.id,
            audit_seq=appended.seq,
            now=services.clock(),
        )
        services.commit(uow)
    return ids
