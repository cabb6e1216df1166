"""The access copy (PIPL Art. 45, GDPR Arts. 15 and 20): what memberguard holds of a member.

Built when an access request is received, inside its unit of work, and
stored sealed under the member's own data key until it expires
(``[rights] copy_days``) or the member is deleted; downloading it is a
separate, audited release (``gate.rights.download_copy``). It is also the
portability format: one JSON document, versioned by ``format``.

The shape (``memberguard.copy/1``), documented in the README::

    {"format", "member_id", "request_id", "created_at", "expires_at",
     "controller": {"name", "programme", "contact", "policy_url"},
     "fields": {name: value},                      # every stored field, in clear
     "consents": {"state": {purpose: {...}}, "history": [event, ...]},
     "purposes": [{"id", "description", "legal_basis", "separate_consent",
                   "third_party", "retention_days", "fields": {name: view},
                   "recipients": [client name, ...]}],   # clients granted it now
     "recipients": [{"client", "name"}],           # clients the log shows received data
     "access_log": [{"seq", "at", "recipient": {"kind", "name"} | null, "purpose",
                     "action", "decision", "fields", "released", "prev"}],
     "checkpoint": signed note | null}             # the latest signed checkpoint
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.notary import latest_checkpoint
from audit.queries import EntryFilter, page_entries
from consent.registry import consent_history, consent_states
from policies.model import Policy
from principals.clients import actor_names
from principals.models import GateClient, GateClientPurpose
from rights.models import RightsCopy
from rights.recipients import recipients_of
from vault.crypto import decrypt_value, encrypt_value
from vault.keys import Keyring
from vault.members import load_sealed, member_data_key

COPY_FORMAT = "memberguard.copy/1"
_LOG_PAGE = 1000


LogItem = Callable[..., dict[str, Any]]


def build_copy(
    session: Session,
    *,
    log_item: LogItem,
    policy: Policy,
    keyring: Keyring,
    member_id: str,
    request_id: str,
    now: datetime,
    expires_at: datetime,
) -> dict[str, Any]:
    """The document, from the facts as they stand under the caller's lock.

    Decrypts the member's fields: call only inside the unit of work that
    records the copy, which seals the result before it commits. ``log_item``
    shapes one access-log entry for the member (``gate.me.access_log_item``,
    the shape of ``GET /v1/me/access-log``), given the entry with its
    ``actor_name`` and ``prev``.
    """
    sealed = load_sealed(session, [member_id], list(policy.fields))[member_id]
    values = sealed.open(keyring)
    granted = _clients_by_purpose(session)
    received = recipients_of(session, member_id)
    log = _access_log(session, member_id)
    names = actor_names(session, set(received) | {e["actor"] for e in log if e.get("actor")})
    checkpoint = latest_checkpoint(session)
    programme = policy.programme
    return {
        "format": COPY_FORMAT,
        "member_id": member_id,
        "request_id": request_id,
        "created_at": now.isoformat(),
        "expires_at": expires_at.isoformat(),
        "controller": {
            "name": programme.controller,
            "programme": programme.name,
            "contact": programme.controller_contact,
            "policy_url": programme.policy_url,
        },
        "fields": {name: values[name] for name in policy.fields if name in values},
        "consents": {
            "state": consent_states(session, member_id),
            "history": consent_history(session, member_id),
        },
        "purposes": [
            {
                "id": pid,
                "description": spec.description,
                "legal_basis": spec.legal_basis,
                "separate_consent": spec.separate_consent,
                "third_party": spec.third_party,
                "retention_days": spec.retention_days,
                "fields": dict(spec.fields),
                "recipients": granted.get(pid, []),
            }
            for pid, spec in policy.purposes.items()
        ],
        "recipients": [{"client": cid, "name": names.get(cid)} for cid in received],
        "access_log": [
            log_item(
                {
                    **entry,
                    "actor_name": names.get(entry.get("actor") or ""),
                    "prev": (entry.get("member_prev") or {}).get(member_id),
                },
                member_id=member_id,
            )
            for entry in log
        ],
        "checkpoint": checkpoint.note if checkpoint is not None else None,
    }


def _clients_by_purpose(session: Session) -> dict[str, list[str]]:
    """The names of the clients granted each purpose now (revoked clients left out)."""
    rows = session.execute(
        select(GateClientPurpose.purpose, GateClient.name)
        .join(GateClient, GateClient.id == GateClientPurpose.client_id)
        .where(GateClient.revoked_at.is_(None))
        .order_by(GateClientPurpose.purpose, GateClient.name)
    ).all()
    granted: dict[str, list[str]] = {}
    for purpose, name in rows:
        granted.setdefault(purpose, []).append(name)
    return granted


def _access_log(session: Session, member_id: str) -> list[dict[str, Any]]:
    """Every entry naming the member, each shown as the member's line of it."""
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page, cursor = page_entries(
            session, EntryFilter(member=member_id), cursor=cursor, limit=_LOG_PAGE
        )
        entries.extend(page)
        if cursor is None:
            return entries


# -- sealed storage ------------------------------------------------------------------


def _label(request_id: str) -> str:
    return f"rights/copy/{request_id}"


def seal_copy(
    session: Session,
    *,
    keyring: Keyring,
    member_id: str,
    request_id: str,
    document: dict[str, Any],
    now: datetime,
    expires_at: datetime,
) -> None:
    data_key = member_data_key(session, keyring, member_id)
    text = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    session.add(
        RightsCopy(
            request_id=request_id,
            member_id=member_id,
            copy_ct=encrypt_value(data_key, member_id, _label(request_id), text),
            created_at=now,
            expires_at=expires_at,
        )
    )
    session.flush()


def open_copy(session: Session, *, keyring: Keyring, row: RightsCopy) -> dict[str, Any]:
    data_key = member_data_key(session, keyring, row.member_id)
    text = decrypt_value(data_key, row.member_id, _label(row.request_id), bytes(row.copy_ct))
    document = json.loads(str(text))
    if not isinstance(document, dict):
        raise ValueError("a sealed copy is not an object")
    return document


def expired_copies(session: Session, *, now: datetime, limit: int) -> list[RightsCopy]:
    """Copies past their expiry, locked; rows another worker holds are skipped."""
    return list(
        session.scalars(
            select(RightsCopy)
            .where(RightsCopy.expires_at <= now)
            .order_by(RightsCopy.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def available_copy(session: Session, member_id: str, *, now: datetime) -> str | None:
    """The request id of a copy of the member's data still downloadable at ``now``, if any."""
    return session.scalar(
        select(RightsCopy.request_id)
        .where(RightsCopy.member_id == member_id, RightsCopy.expires_at > now)
        .order_by(RightsCopy.expires_at.desc())
        .limit(1)
    )
