"""The composition root: what every entry point needs, built in one place.

``build_services(settings)`` builds the engine, keyring, checkpoint signer and
policy from one ``Settings``; the API, the CLI (and the coming worker and web
app) call it. The one exception is ``memberguard audit verify``, which opens a
read-only engine of its own: an auditor's host may hold no keys. ``Services`` carries only the
collaborators every use case shares; a feature's own configuration is read
from ``settings``, so the object does not grow a field per feature.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter, RateLimiter
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from audit.notary import Notary
from audit.signer import load_signer_env, load_signer_file
from audit.uow import AuditedUnitOfWork
from core.clock import Clock, utc_now
from core.db import SessionFactory, build_engine, open_connection, session_factory
from core.settings import Settings
from migrations import require_current
from notify import Notifier, build_notifier
from policies import load_policy
from policies.model import Policy
from principals.actor import Actor
from principals.clients import ensure_active
from vault.keys import EnvKeyring, Keyring, KeyringSource, LocalKeyFile


@dataclass(frozen=True)
class Services:
    settings: Settings
    policy: Policy
    # The keyring, loaded again when the process falls behind a rotation
    # (``vault.keys.KeyringSource``); use cases read ``keyring``.
    keys: KeyringSource
    notary: Notary
    # Sessions for use cases (they take the write lock) ...
    sessions: SessionFactory
    # ... and for read-only work that records nothing (key checks, auditor
    # queries, proofs, listings, readiness): never SQLite's write lock, and
    # (from build_services) a connection pool of their own.
    read_sessions: SessionFactory
    # Sign-in codes, request updates, notices: sent after the unit of work
    # that records them commits (``notify``).
    notifier: Notifier
    clock: Clock = utc_now
    # Rate-limit counters shared by every request of this process (or, with a
    # shared storage URI, of every process): state, not configuration.
    rate_limits: RateLimits = field(default_factory=lambda: RateLimits("memory://"))

    @property
    def keyring(self) -> Keyring:
        """The keyring now: new data keys are wrapped under its newest KEK."""
        return self.keys.current

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
            under_lock=(
                (lambda session, now: ensure_active(session, actor, now=now))
                if actor is not None
                else None
            ),
        )

    def dispose(self) -> None:
        """Close the pooled connections of both session factories, stop the rate limits."""
        self.rate_limits.close()
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


class RateLimits:
    """A moving-window limiter (no burst at a fixed window's edge doubles a
    rate) over a ``limits`` storage, built on first use.

    Lazily, because ``limits``' memory storage starts a timer thread when it
    is built: a process (or a test) that never limits anything starts none.
    ``close`` stops that timer, so that nothing of it outlives the services.
    """

    def __init__(self, storage_uri: str) -> None:
        self._storage_uri = storage_uri
        self._limiter: RateLimiter | None = None
        self._lock = threading.Lock()

    @property
    def limiter(self) -> RateLimiter:
        if self._limiter is None:
            with self._lock:
                if self._limiter is None:
                    self._limiter = MovingWindowRateLimiter(storage_from_string(self._storage_uri))
        return self._limiter

    def close(self) -> None:
        with self._lock:
            limiter, self._limiter = self._limiter, None
        timer = getattr(getattr(limiter, "storage", None), "timer", None)
        if isinstance(timer, threading.Timer):
            timer.cancel()
            # Cancelled, it ends at once; joined, no thread of it outlives the services
            # (a live thread keeps the offline verifier from forking its workers).
            timer.join()


def keyring_source(settings: Settings) -> KeyringSource:
    """The keyring from the configured provider, and how to load it again.

    The key file is stamped, so a rotation is noticed by ``refresh``; the
    environment of a running process cannot change, so ``env`` only loads
    again on an unknown KEK version (which then fails as before).
    """
    if settings.key_provider == "env":
        return KeyringSource(lambda: EnvKeyring(settings.keyring_env).load())
    key_file = LocalKeyFile(settings.resolved_key_path)
    return KeyringSource(key_file.load, changed=key_file.stamp)


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


def check_database(settings: Settings, *, migrated: bool = True) -> None:
    """The database answers (and, if ``migrated``, is at this version's schema), or a
    ``SetupError`` naming the fix: a wrong URL, an unknown database or role, a home
    ``memberguard init`` has not set up.

    Entry points call this before they serve or operate, so that a bad
    configuration fails at once, in one line, rather than at the first request.
    """
    engine = build_engine(
        settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    try:
        if migrated:
            require_current(engine)
        else:
            with open_connection(engine):
                pass
    finally:
        engine.dispose()


def build_services(settings: Settings, *, clock: Clock = utc_now) -> Services:
    """Everything from ``settings``; raises a ``SetupError`` (keys, signer, database URL) or
    ``PolicyError``. The database is not connected to here: see ``check_database``."""
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
        keys=keyring_source(settings),
        notary=load_notary(settings),
        sessions=session_factory(engine),
        read_sessions=session_factory(read_engine, read_only=True),
        notifier=build_notifier(settings),
        clock=clock,
        rate_limits=RateLimits(settings.rate_limit_storage),
    )
