"""Bulk import: members from an existing system, with their consent history.

One batch is one transaction and one ``member.import`` audit entry naming every
member it created, so each imported member's access history starts with the
import. Values go through the same validation and encryption as the API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from audit import actions
from consent.registry import ImportedConsent, import_consents
from gate.context import Services
from principals.actor import OPERATOR_ACTOR
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
    today = services.clock().date()
    clean = [
        {
            k: v
            for k, v in validate_values(policy, member, partial=False, today=today).items()
            if v is not None
        }
        for member in members
    ]
    with services.uow() as uow:
        ids = create_members_bulk(
            uow.session, policy=policy, keyring=services.keyring, batch=clean, now=uow.now
        )
        events: list[ImportedConsent] = []
        if history is not None:
            for member_id, member in zip(ids, members, strict=True):
                events.extend(history(member_id, member))
        seq = uow.record(
            actions.members_imported(
                OPERATOR_ACTOR,
                policy=policy.version,
                member_ids=ids,
                source=source,
                consent_events=len(events),
            )
        )
        import_consents(
            uow.session,
            policy=policy,
            events=events,
            recorded_by=OPERATOR_ACTOR.id,
            audit_seq=seq,
            now=uow.now,
        )
        uow.commit()
    return ids
