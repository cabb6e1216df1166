"""Staff console sessions: the ``mgs_`` tokens a signed-in DPO, auditor or admin acts with.
Flushes only.

A session is opened by a staff key (``principals.clients.authenticate``) and acts as
that key's actor: the same ``Actor`` (with the key's hash), so every use case's
re-check under the log-head lock (``ensure_active``) also holds for console actions.
Each request re-reads the session joined to the key and its client: a revoked key
or client ends its sessions at once, as an expired or ended session does.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeGuard

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from core.errors import Forbidden, Unauthenticated
from principals.actor import Actor
from principals.clients import kind_of
from principals.models import GateApiKey, GateClient, GateClientPurpose, StaffSession

TOKEN_PREFIX = "mgs_"  # noqa: S105 - a prefix, not a secret
STAFF_ROLES = ("dpo", "auditor", "admin")


def hash_token(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


def well_formed_token(raw_token: str | None) -> TypeGuard[str]:
    return raw_token is not None and raw_token.startswith(TOKEN_PREFIX) and len(raw_token) <= 128


@dataclass(frozen=True, slots=True)
class OpenedStaffSession:
    token: str  # handed to the browser once, in a cookie; only its hash is kept
    expires_at: datetime


def open_staff_session(
    session: Session, *, actor: Actor, now: datetime, lifetime: timedelta
) -> OpenedStaffSession:
    """A session for a staff key's actor; a system's (``client``) key opens none."""
    if actor.role not in STAFF_ROLES or actor.key_hash is None:
        raise Forbidden("the console is for dpo, auditor and admin keys", slug="role-required")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + lifetime
    session.add(
        StaffSession(
            token_hash=hash_token(token),
            client_id=actor.id,
            key_hash=actor.key_hash,
            created_at=now,
            expires_at=expires_at,
        )
    )
    session.flush()
    return OpenedStaffSession(token=token, expires_at=expires_at)


def authenticate_staff(session: Session, raw_token: str | None, *, now: datetime) -> Actor:
    """The actor a live console session acts as, or ``Unauthenticated``.

    Live: not ended, not expired, and its key and client both still unrevoked.
    """
    if not well_formed_token(raw_token):
        raise Unauthenticated("missing or malformed session")
    rows = session.connection().execute(_LIVE, {"hash": hash_token(raw_token), "now": now}).all()
    if not rows:
        raise Unauthenticated("unknown, expired or ended session")
    client_id, name, role, scopes, key_hash, _ = rows[0]
    return Actor(
        id=client_id,
        name=name,
        role=role,
        kind=kind_of(role),
        key_hash=key_hash,
        purposes=frozenset(row[5] for row in rows if row[5] is not None),
        scopes=frozenset(scopes.split()),
    )


def end_staff_session(session: Session, *, raw_token: str, now: datetime) -> bool:
    """Logout: end one session, server-side. False if it had already ended or expired."""
    if not well_formed_token(raw_token):
        return False
    ended = session.execute(
        update(StaffSession)
        .where(
            StaffSession.token_hash == hash_token(raw_token),
            StaffSession.ended_at.is_(None),
            StaffSession.expires_at > now,
        )
        .values(ended_at=now)
    )
    return bool(ended.rowcount)


_LIVE = (
    select(
        GateClient.id,
        GateClient.name,
        GateClient.role,
        GateClient.scopes,
        StaffSession.key_hash,
        GateClientPurpose.purpose,
    )
    .select_from(StaffSession)
    .join(GateClient, StaffSession.client_id == GateClient.id)
    .join(GateApiKey, GateApiKey.key_hash == StaffSession.key_hash)
    .outerjoin(GateClientPurpose, GateClientPurpose.client_id == GateClient.id)
    .where(
        StaffSession.token_hash == bindparam("hash"),
        StaffSession.ended_at.is_(None),
        StaffSession.expires_at > bindparam("now"),
        GateApiKey.client_id == GateClient.id,
        GateApiKey.revoked_at.is_(None),
        GateClient.revoked_at.is_(None),
        GateClient.role.in_(STAFF_ROLES),
    )
)
