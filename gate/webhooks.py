"""Webhook use cases: register, rotate the secret, remove (each one audited unit of work),
and the unrecorded views (the webhook's state, its attempts). Delivery is the worker's
(``worker.webhooks``).

The URL rules that need DNS run before the unit of work, so that a slow
resolver never holds the log-head lock. Entries name the URL's origin only;
the secret is returned once, to the caller, and stored encrypted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from audit import actions
from feed import webhooks
from feed.webhooks import AttemptsPage, Resolve, resolve_host
from gate.context import Services
from principals import clients
from principals.actor import Actor


@dataclass(frozen=True, slots=True)
class IssuedWebhook:
    client_id: str
    url: str
    origin: str
    secret: str
    replaced: bool
    audit_seq: int


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    client_id: str
    secret: str
    previous_valid_until: datetime
    audit_seq: int


def _client_id(session: Session, reference: str, accept_name: bool) -> str:
    """The id of a client given by id, or (``accept_name``, the CLI) by name."""
    found = clients.find_client(session, reference) if accept_name else None
    return found.id if found is not None else reference


def set_webhook(
    services: Services,
    *,
    actor: Actor,
    client: str,
    url: str,
    request_id: str | None,
    accept_name: bool = False,
    resolve: Resolve = resolve_host,
) -> IssuedWebhook:
    """Register (or replace) a client's webhook; the new secret is in the result, once."""
    target = webhooks.check_webhook_url(
        url, allow_insecure=services.settings.webhooks_allow_insecure, resolve=resolve
    )
    with services.uow(actor) as uow:
        client_id = _client_id(uow.session, client, accept_name)
        done = webhooks.set_webhook(
            uow.session, services.keyring, client_id=client_id, target=target, now=uow.now
        )
        seq = uow.record(
            actions.webhook_set(
                actor,
                policy=services.policy.version,
                client_id=client_id,
                origin=target.origin,
                replaced=done.replaced,
                request_id=request_id,
            )
        )
        uow.commit()
    return IssuedWebhook(
        client_id=client_id,
        url=target.url,
        origin=target.origin,
        secret=done.secret,
        replaced=done.replaced,
        audit_seq=seq,
    )


def rotate_webhook_secret(
    services: Services,
    *,
    actor: Actor,
    client: str,
    request_id: str | None,
    accept_name: bool = False,
) -> IssuedSecret:
    """A new secret, returned once; the old one also signs for
    ``MEMBERGUARD_WEBHOOK_SECRET_OVERLAP_HOURS``."""
    overlap = timedelta(hours=services.settings.webhook_secret_overlap_hours)
    with services.uow(actor) as uow:
        client_id = _client_id(uow.session, client, accept_name)
        rotated = webhooks.rotate_secret(
            uow.session, services.keyring, client_id=client_id, now=uow.now, overlap=overlap
        )
        seq = uow.record(
            actions.webhook_rotated(
                actor,
                policy=services.policy.version,
                client_id=client_id,
                previous_valid_until=rotated.previous_valid_until,
                request_id=request_id,
            )
        )
        uow.commit()
    return IssuedSecret(
        client_id=client_id,
        secret=rotated.secret,
        previous_valid_until=rotated.previous_valid_until,
        audit_seq=seq,
    )


def remove_webhook(
    services: Services,
    *,
    actor: Actor,
    client: str,
    request_id: str | None,
    accept_name: bool = False,
) -> int:
    """Stop pushing a client's events; returns the entry's seq."""
    with services.uow(actor) as uow:
        client_id = _client_id(uow.session, client, accept_name)
        origin = webhooks.remove_webhook(uow.session, client_id=client_id)
        seq = uow.record(
            actions.webhook_removed(
                actor,
                policy=services.policy.version,
                client_id=client_id,
                origin=origin,
                request_id=request_id,
            )
        )
        uow.commit()
    return seq


def webhook_state(services: Services, client: str, *, accept_name: bool = False) -> dict[str, Any]:
    with services.reading() as session:
        client_id = _client_id(session, client, accept_name)
        return webhooks.webhook_view(session, client_id, now=services.clock())


def delivery_attempts(
    services: Services, client_id: str, *, cursor: str | None, limit: int
) -> AttemptsPage:
    with services.reading() as session:
        return webhooks.attempts_page(session, client_id, cursor=cursor, limit=limit)
