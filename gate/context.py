"""The composition root: what every entry point needs, built in one place.

``build_services(settings)`` builds the engine, keyring, checkpoint signer and
policy from one ``Settings``; the API, the CLI (and the coming worker and web
app) call it and nothing else builds them. ``Services`` carries only the
collaborators every use case shares; a feature's own configuration is read
from ``settings``, so the object does not grow a field per feature.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from audit.notary import Notary
from audit.signer import load_signer_env, load_signer_file
from audit.uow import AuditedUnitOfWork
from core.clock import Clock, utc_now
from core.db import SessionFactory, build_engine, session_factory
from core.settings import Settings
from policies import load_policy
from policies.model import Policy
from principals.actor import Actor
from principals.clients import ensure_active
from vault.keys import EnvKeyring, Keyring, LocalKeyFile


@dataclass(frozen=True)
class Services:
    settings: Settings
    policy: Policy
    keyring: Keyring
    notary: Notary
    # Sessions for use cases (they take the write lock) ...
    sessions: SessionFactory
    # ... and for read-only work that records nothing (key checks, auditor
    # queries, proofs, listings, readiness): never SQLite's write lock, and
    # (from build_services) a connection pool of their own.
    read_sessions: SessionFactory
    clock: Clock = utc_now

    def uow(self, actor: Actor | None = None) -> AuditedUnitOfWork:
        """One use case's audited unit of work (``with services.uow(actor) as uow:``).

        With an ``actor`` whose key was checked before the lock, it is checked
        again under it: a revocation appends its own entry, so every decision
        is ordered after any revocation logged before it.
        """
        return AuditedUnitOfWork(
            self.sessions,
            notary=self.notary,
            clock=self.clock,
            policy_version=self.policy.version,
            under_lock=partial(ensure_active, actor=actor) if actor is not None else None,
        )

    def dispose(self) -> None:
        """Close the pooled connections of the engines behind both session factories."""
        for factory in (self.sessions, self.read_sessions):
            bind = getattr(factory, "kw", {}).get("bind")
            if isinstance(bind, Engine):
                bind.dispose()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only session for work that records nothing; always rolled back."""
        session = self.read_sessions()
        try:
            yield session
        finally:
            session.rollback()
            session.close()


def load_keyring(settings: Settings) -> Keyring:
    if settings.key_provider == "env":
        return EnvKeyring(settings.keyring_env).load()
    return LocalKeyFile(settings.resolved_key_path).load()


def load_notary(settings: Settings) -> Notary:
    if settings.key_provider == "env":
        private_key = load_signer_env(settings.audit_signer_env, name=settings.audit_origin)
    else:
        private_key = load_signer_file(settings.resolved_signer_path, name=settings.audit_origin)
    return Notary(
        origin=settings.audit_origin,
        private_key=private_key,
        every_entries=settings.checkpoint_every_entries,
        every_seconds=settings.checkpoint_every_seconds,
        sink=settings.resolved_checkpoint_dir,
    )


def build_services(settings: Settings, *, clock: Clock = utc_now) -> Services:
    """Everything from ``settings``; raises KeyringError, SignerError or PolicyError."""
    url, synchronous = settings.resolved_database_url, settings.sqlite_synchronous
    # Read-only work (key checks, auditor queries, readiness) gets a connection
    # pool of its own. Writers queued for the log-head lock (SQLite's write
    # lock, the head row elsewhere) hold their pooled connections while they
    # wait; in one shared pool, a lock held for long made every key check and
    # readiness probe wait as long for a connection.
    engine = build_engine(url, sqlite_synchronous=synchronous)
    read_engine = build_engine(url, sqlite_synchronous=synchronous)
    return Services(
        settings=settings,
        policy=load_policy(settings.policy_path),
        keyring=load_keyring(settings),
        notary=load_notary(settings),
        sessions=session_factory(engine),
        read_sessions=session_factory(read_engine, read_only=True),
        clock=clock,
    )
