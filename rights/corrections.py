"""Corrections: which fields a member may correct, and the values that wait for the DPO.

A correction's new values are validated when it is submitted (``vault.members.
validate_values``: a bad value is a 422 naming the field, never the value, and
nothing is stored). Fields the policy lists as self-service are applied at
once; the others wait, sealed under the member's own data key: never in clear
outside the vault, and unreadable once the member is crypto-shredded.
Flushes only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from core.errors import InvalidInput
from policies.model import Policy
from rights.models import RightsCorrection
from vault.crypto import decrypt_value, encrypt_value
from vault.keys import Keyring
from vault.members import Value, member_data_key, validate_values


def check_changes(
    policy: Policy, changes: Mapping[str, Any], *, today: date
) -> dict[str, Value | None]:
    """The normalised changes, or ``InvalidInput`` naming every field that cannot be changed.

    A field the policy lists as ``not_correctable`` is named (its name is the
    policy's, not the caller's); a key that is no field of the policy is not
    echoed (it may be personal data sent in the wrong place), as in every
    other write.
    """
    if not changes:
        raise InvalidInput(
            "a correction needs changes",
            errors=[{"field": "changes", "problem": "name at least one field to correct"}],
        )
    refused = sorted(set(changes) & set(policy.rights.correction.not_correctable))
    if refused:
        raise InvalidInput(
            f"{len(refused)} field(s) cannot be corrected by a request",
            errors=[
                {"field": name, "problem": "is kept by the programme and cannot be corrected"}
                for name in refused
            ],
            allowed_fields=correctable_fields(policy),
        )
    return validate_values(policy, changes, partial=True, today=today)


def correctable_fields(policy: Policy) -> list[str]:
    return sorted(set(policy.fields) - set(policy.rights.correction.not_correctable))


def split_changes(
    policy: Policy, changes: Mapping[str, Value | None]
) -> tuple[dict[str, Value | None], dict[str, Value | None]]:
    """(applied at once, waiting for the DPO), by the policy's self-service list."""
    self_service = set(policy.rights.correction.self_service)
    now = {name: value for name, value in changes.items() if name in self_service}
    later = {name: value for name, value in changes.items() if name not in self_service}
    return now, later


def _label(request_id: str) -> str:
    # The AAD names the request: a sealed correction cannot be moved to another
    # request, or passed off as a field (field names have no "/").
    return f"rights/correction/{request_id}"


def seal_changes(
    session: Session,
    *,
    keyring: Keyring,
    member_id: str,
    request_id: str,
    changes: Mapping[str, Value | None],
) -> None:
    data_key = member_data_key(session, keyring, member_id)
    plaintext = json.dumps(dict(changes), ensure_ascii=False, sort_keys=True)
    session.add(
        RightsCorrection(
            request_id=request_id,
            member_id=member_id,
            values_ct=encrypt_value(data_key, member_id, _label(request_id), plaintext),
        )
    )
    session.flush()


def open_changes(
    session: Session, *, keyring: Keyring, member_id: str, request_id: str
) -> dict[str, Value | None]:
    """The waiting values; ``NotFound`` if the member has been shredded meanwhile."""
    row = session.get(RightsCorrection, request_id)
    if row is None:
        return {}
    data_key = member_data_key(session, keyring, member_id)
    text = decrypt_value(data_key, member_id, _label(request_id), bytes(row.values_ct))
    opened = json.loads(str(text))
    if not isinstance(opened, dict):
        raise ValueError("a sealed correction is not an object")
    return opened


def discard_changes(session: Session, request_id: str) -> int:
    removed = session.execute(
        delete(RightsCorrection).where(RightsCorrection.request_id == request_id)
    )
    return removed.rowcount or 0
