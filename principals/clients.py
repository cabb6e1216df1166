"""Client registry and API keys: the tables' domain logic. Flushes only.

Nothing here is cached: a revoked client or key fails on its very next
request. The use cases that change clients (and audit it) are in
``gate.clients``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from audit.actions import ActorKind
from core.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from core.ids import is_valid_id, new_id
from policies.model import SLUG_RE, Policy
from principals.actor import OPERATOR, OPERATOR_ACTOR, ROLES, SCOPES, Actor
from principals.members import ensure_member_active
from principals.models import GateApiKey, GateClient, GateClientPurpose

KEY_PREFIX = "mg_"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")  # fullmatch: "$" allows a final "\n"


def kind_of(role: str) -> ActorKind:
    """A ``client`` key is a system's; auditor and admin keys are people's (staff)."""
    return "client" if role == "client" else "staff"


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def well_formed_key(raw_key: str | None) -> TypeGuard[str]:
    return raw_key is not None and raw_key.startswith(KEY_PREFIX) and len(raw_key) <= 128


def authenticate(session: Session, raw_key: str | None) -> Actor:
    """The actor of one key: ``authenticate_many`` with a batch of one."""
    if not well_formed_key(raw_key):
        raise Unauthenticated("missing or malformed API key")
    actor = authenticate_many(session, [raw_key]).get(raw_key)
    if actor is None:
        raise Unauthenticated("unknown or revoked API key")
    return actor


def authenticate_many(session: Session, raw_keys: Iterable[str]) -> dict[str, Actor]:
    """Authenticate several keys at once: the actor of each valid, unrevoked key.

    The batched read path calls this under the log-head lock, so it is both the
    authentication and the revocation re-check of ``ensure_active``: a key or a
    client revoked by an earlier entry fails here. Malformed keys are left out
    without a query; the rest cost one query, grants included.
    """
    by_hash = {hash_key(k): k for k in raw_keys if well_formed_key(k)}
    if not by_hash:
        return {}
    clients: dict[str, tuple[str, str, str, str]] = {}
    purposes: dict[str, set[str]] = {}
    for key_hash, client_id, name, role, scopes, purpose in session.connection().execute(
        _BY_KEY_HASH, {"hashes": list(by_hash)}
    ):
        clients[key_hash] = (client_id, name, role, scopes)
        granted = purposes.setdefault(key_hash, set())
        if purpose is not None:
            granted.add(purpose)
    return {
        by_hash[key_hash]: Actor(
            id=client_id,
            name=name,
            role=role,
            kind=kind_of(role),
            key_hash=key_hash,
            purposes=frozenset(purposes[key_hash]),
            scopes=frozenset(scopes.split()),
        )
        for key_hash, (client_id, name, role, scopes) in clients.items()
    }


_BY_KEY_HASH = (
    select(
        GateApiKey.key_hash,
        GateClient.id,
        GateClient.name,
        GateClient.role,
        GateClient.scopes,
        GateClientPurpose.purpose,
    )
    .join(GateClient, GateApiKey.client_id == GateClient.id)
    .outerjoin(GateClientPurpose, GateClientPurpose.client_id == GateClient.id)
    .where(
        GateApiKey.key_hash.in_(bindparam("hashes", expanding=True)),
        GateApiKey.revoked_at.is_(None),
        GateClient.revoked_at.is_(None),
    )
)


def ensure_active(session: Session, actor: Actor, *, now: datetime) -> None:
    """Re-check, under the log-head lock, that the caller may still act.

    Authentication ran before the lock; a revocation, a key replacement or a
    logout appends its own entry, so checking again here orders every decision
    after any revocation logged before it, and stops a running export at its
    next batch. For a caller signed in by an API key, that key itself must
    still be valid, not only its client; a member's session must still be
    live. The operator at the CLI always may.
    """
    if actor.id == OPERATOR and actor.kind == "staff":
        return
    if actor.kind == "member":
        ensure_member_active(session, actor, now=now)
        return
    if actor.key_hash is None:
        found = session.connection().execute(_ACTIVE_CLIENT, {"client": actor.id}).first()
    else:
        params = {"client": actor.id, "key": actor.key_hash}
        found = session.connection().execute(_ACTIVE_KEY, params).first()
    if found is None:
        raise Unauthenticated("unknown or revoked API key")


# Built once: every use case runs one of these under the lock.
_ACTIVE_CLIENT = select(GateClient.id).where(
    GateClient.id == bindparam("client"), GateClient.revoked_at.is_(None)
)
_ACTIVE_KEY = (
    select(GateClient.id)
    .join(GateApiKey, GateApiKey.client_id == GateClient.id)
    .where(
        GateClient.id == bindparam("client"),
        GateClient.revoked_at.is_(None),
        GateApiKey.key_hash == bindparam("key"),
        GateApiKey.revoked_at.is_(None),
    )
)


def check_new_client(
    policy: Policy, *, name: str, role: str, purposes: list[str], scopes: list[str]
) -> None:
    """Everything about a registration that can be checked without the database."""
    if not NAME_RE.fullmatch(name):
        raise InvalidInput(
            "name must be 1-64 characters: lower-case letters, digits, '_', '.', '-'"
        )
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    unknown = sorted(set(purposes) - set(policy.purposes))
    if unknown:
        raise InvalidInput(
            f"{_unknown_purposes(unknown)}; the policy's purposes are: "
            + ", ".join(sorted(policy.purposes)),
            known_purposes=sorted(policy.purposes),
        )
    bad_scopes = sorted(set(scopes) - SCOPES)
    if bad_scopes:
        raise InvalidInput(f"unknown scope(s); known scopes are {', '.join(sorted(SCOPES))}")
    if role != "client" and (purposes or scopes):
        raise InvalidInput("only clients are granted purposes and scopes")


def _unknown_purposes(unknown: list[str]) -> str:
    """Name the unknown purposes an operator asked for: purpose names are not personal data.

    Only what is shaped like a purpose name (the policy's slug rule) is repeated;
    anything else is counted, not echoed, since error details never repeat
    arbitrary submitted values (someone may have pasted a phone number).
    """
    named = [purpose for purpose in unknown if SLUG_RE.fullmatch(purpose)]
    others = len(unknown) - len(named)
    listed = ", ".join(named)
    if others:
        listed += f"{' and ' if named else ''}{others} value(s) that are not purpose names"
    return f"{'purpose' if len(unknown) == 1 else 'purposes'} not in the policy: {listed}"


@dataclass(frozen=True, slots=True)
class NewClient:
    client: dict[str, Any]
    key: str


def create_client(
    session: Session,
    *,
    name: str,
    role: str,
    purposes: list[str],
    scopes: list[str],
    now: datetime,
) -> NewClient:
    """Store a client (checked with ``check_new_client``) and its first key."""
    if session.scalar(select(GateClient.id).where(GateClient.name == name)) is not None:
        raise Conflict("a client with this name already exists", slug="client-exists")
    client = GateClient(
        id=new_id(), name=name, role=role, scopes=" ".join(sorted(set(scopes))), created_at=now
    )
    client.purposes = [GateClientPurpose(purpose=p) for p in sorted(set(purposes))]
    session.add(client)
    session.flush()
    return NewClient(client=client_view(client), key=_store_new_key(session, client.id, now))


def issue_key(session: Session, *, client_id: str, now: datetime, replace: bool) -> str:
    """Another key for an active client; ``replace`` revokes its other keys."""
    client = session.get(GateClient, client_id) if is_valid_id(client_id) else None
    if client is None or client.revoked_at is not None:
        raise NotFound("no such active client")
    if replace:
        _revoke_keys(session, client_id, now)
    return _store_new_key(session, client_id, now)


def revoke(session: Session, *, client_id: str, now: datetime) -> None:
    """Revoke a client and every key of it."""
    client = session.get(GateClient, client_id) if is_valid_id(client_id) else None
    if client is None:
        raise NotFound("no such client")
    if client.revoked_at is not None:
        raise Conflict("client is already revoked", slug="already-revoked")
    client.revoked_at = now
    _revoke_keys(session, client_id, now)
    session.flush()


def _revoke_keys(session: Session, client_id: str, now: datetime) -> None:
    session.execute(
        update(GateApiKey)
        .where(GateApiKey.client_id == client_id, GateApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def _store_new_key(session: Session, client_id: str, now: datetime) -> str:
    key = new_key()
    session.add(
        GateApiKey(key_hash=hash_key(key), client_id=client_id, prefix=key[:10], created_at=now)
    )
    session.flush()
    return key


def list_clients(session: Session) -> list[dict[str, Any]]:
    clients = session.scalars(select(GateClient).order_by(GateClient.created_at, GateClient.name))
    return [client_view(c) for c in clients]


def find_client(session: Session, reference: str) -> GateClient | None:
    """A client by id, or by name when no client has that id (ids are unambiguous)."""
    if is_valid_id(reference):
        by_id = session.get(GateClient, reference)
        if by_id is not None:
            return by_id
    return session.scalar(select(GateClient).where(GateClient.name == reference))


def actor_names(session: Session, actor_ids: Collection[str]) -> dict[str, str]:
    """The names of the actors (clients, the operator) that audit entries name by id.

    Revoked clients keep their rows, so every client an entry names has one.
    """
    names = {OPERATOR: OPERATOR_ACTOR.name} if OPERATOR in actor_ids else {}
    ids = [i for i in actor_ids if is_valid_id(i)]
    if ids:
        rows = session.execute(select(GateClient.id, GateClient.name).where(GateClient.id.in_(ids)))
        names.update({row.id: row.name for row in rows})
    return names


def client_view(client: GateClient) -> dict[str, Any]:
    return {
        "id": client.id,
        "name": client.name,
        "role": client.role,
        "purposes": sorted(p.purpose for p in client.purposes),
        "scopes": sorted(client.scopes.split()),
        "created_at": client.created_at.isoformat(),
        "revoked_at": client.revoked_at.isoformat() if client.revoked_at else None,
    }
