"""Client use cases: register, re-key, revoke (each one audited unit of work), and the
unrecorded listings (``list_clients``, ``client_state``) on a read-only session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audit import actions
from gate.context import Services
from principals import clients
from principals.actor import Actor


@dataclass(frozen=True, slots=True)
class IssuedClient:
    client: dict[str, Any]
    key: str
    audit_seq: int


def register_client(
    services: Services,
    *,
    actor: Actor,
    name: str,
    role: str,
    purposes: list[str],
    scopes: list[str],
    request_id: str | None,
) -> IssuedClient:
    """A new client and its first key (shown once; only its hash is stored)."""
    clients.check_new_client(
        services.policy, name=name, role=role, purposes=purposes, scopes=scopes
    )
    with services.uow(actor) as uow:
        new = clients.create_client(
            uow.session, name=name, role=role, purposes=purposes, scopes=scopes, now=uow.now
        )
        seq = uow.record(
            actions.client_created(
                actor,
                policy=services.policy.version,
                client_id=new.client["id"],
                name=name,
                role=role,
                purposes=purposes,
                scopes=scopes,
                request_id=request_id,
            )
        )
        uow.commit()
    return IssuedClient(client=new.client, key=new.key, audit_seq=seq)


def revoke_client(
    services: Services,
    *,
    actor: Actor,
    client: str,
    request_id: str | None,
    accept_name: bool = False,
) -> int:
    """Revoke a client by id (``accept_name``: or by name, for the CLI); returns the entry's seq."""
    with services.uow(actor) as uow:
        found = clients.find_client(uow.session, client) if accept_name else None
        client_id = found.id if found is not None else client
        clients.revoke(uow.session, client_id=client_id, now=uow.now)
        seq = uow.record(
            actions.client_revoked(
                actor, policy=services.policy.version, client_id=client_id, request_id=request_id
            )
        )
        uow.commit()
    return seq


def reissue_key(services: Services, *, actor: Actor, name: str, replace: bool) -> str:
    """Another key for the named active client; ``replace`` revokes the others."""
    with services.uow(actor) as uow:
        found = clients.find_client(uow.session, name)
        client_id = found.id if found is not None else name
        key = clients.issue_key(uow.session, client_id=client_id, now=uow.now, replace=replace)
        uow.record(
            actions.client_key_issued(
                actor,
                policy=services.policy.version,
                client_id=client_id,
                replaced_other_keys=replace,
            )
        )
        uow.commit()
    return key


def list_clients(services: Services) -> list[dict[str, Any]]:
    with services.reading() as session:
        return clients.list_clients(session)


def client_state(services: Services, name: str) -> str | None:
    """ "active", "revoked", or None for a name no client has."""
    with services.reading() as session:
        found = clients.find_client(session, name)
        if found is None:
            return None
        return "revoked" if found.revoked_at is not None else "active"
