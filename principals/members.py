"""Members' sessions: the ``mgm_`` bearer tokens a signed-in member acts with. Flushes only.

How a member signs in (a one-time code sent to their phone or e-mail) lives
with the sign-in use case; this module only opens, checks and ends the
sessions that sign-in produces. A token is stored as its SHA-256 and nothing
is cached: a session ended by logout or by the member's deletion fails on its
very next request, and again under the log-head lock (``ensure_member_active``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeGuard

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from core.errors import Unauthenticated
from principals.actor import Actor
from principals.models import MemberSession
from principals.signin import delete_member_challenges
from vault.models import VaultDataKey

TOKEN_PREFIX = "mgm_"  # noqa: S105 - a prefix, not a secret
MEMBER_ROLE = "member"


def hash_token(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


def well_formed_token(raw_token: str | None) -> TypeGuard[str]:
    return raw_token is not None and raw_token.startswith(TOKEN_PREFIX) and len(raw_token) <= 128


def member_actor(member_id: str, token_hash: str | None = None) -> Actor:
    """The actor a member's session signs in: the member's id, no purposes, no scopes.

    Entries name the member by id only (``actor_kind`` ``member``): a name
    would be personal data in the log.
    """
    return Actor(id=member_id, name="member", role=MEMBER_ROLE, kind="member", key_hash=token_hash)


@dataclass(frozen=True, slots=True)
class OpenedSession:
    token: str  # shown once, to the member who signed in
    expires_at: datetime


def open_session(
    session: Session, *, member_id: str, now: datetime, lifetime: timedelta
) -> OpenedSession:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + lifetime
    session.add(
        MemberSession(
            token_hash=hash_token(token), member_id=member_id, created_at=now, expires_at=expires_at
        )
    )
    session.flush()
    return OpenedSession(token=token, expires_at=expires_at)


def authenticate_member(session: Session, raw_token: str | None, *, now: datetime) -> Actor:
    """The member a live token signs in, or ``Unauthenticated``.

    A live session is not ended, not expired, and its member still exists
    (has a data key: ``vault.members.member_exists``).
    """
    if not well_formed_token(raw_token):
        raise Unauthenticated("missing or malformed token")
    token_hash = hash_token(raw_token)
    member_id = session.connection().execute(_LIVE, {"hash": token_hash, "now": now}).scalar()
    if member_id is None:
        raise Unauthenticated("unknown, expired or ended session")
    return member_actor(member_id, token_hash)


def ensure_member_active(session: Session, actor: Actor, *, now: datetime) -> None:
    """Under the log-head lock: the member's session is still live (a logout or a
    deletion logged before this use case ends it for every decision after it)."""
    if actor.key_hash is None:
        raise Unauthenticated("a member acts only through a session")
    found = session.connection().execute(_LIVE, {"hash": actor.key_hash, "now": now}).scalar()
    if found != actor.id:
        raise Unauthenticated("unknown, expired or ended session")


def end_session(session: Session, *, token_hash: str, now: datetime) -> bool:
    """Logout: end one session. False if it had already ended or expired."""
    ended = session.execute(
        update(MemberSession)
        .where(
            MemberSession.token_hash == token_hash,
            MemberSession.ended_at.is_(None),
            MemberSession.expires_at > now,
        )
        .values(ended_at=now)
    )
    return bool(ended.rowcount)


def delete_member_sessions(session: Session, member_id: str) -> int:
    """Remove every session of a member, and their pending sign-in codes (crypto-shredding:
    nothing of them stays usable). Returns the number of sessions removed."""
    delete_member_challenges(session, member_id)
    removed = session.execute(delete(MemberSession).where(MemberSession.member_id == member_id))
    return removed.rowcount or 0


# The member must exist too: a deletion removes the sessions in the same
# transaction, but a member shredded by any other path must not act either.
_LIVE = (
    select(MemberSession.member_id)
    .join(VaultDataKey, VaultDataKey.member_id == MemberSession.member_id)
    .where(
        MemberSession.token_hash == bindparam("hash"),
        MemberSession.ended_at.is_(None),
        MemberSession.expires_at > bindparam("now"),
    )
)
