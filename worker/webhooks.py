"""Delivering webhooks: claim, commit, send, record, each step on its own.

``feed.webhooks`` writes the claim and the result (statements only, like
``worker.leases``); the courier here commits each in a short transaction of
its own, like ``worker.runner``, and sends between them with no transaction
open: a slow receiver holds no lock and no pooled connection. These are not
audited units of work: a claim and an attempt are delivery bookkeeping, not
facts about members or clients (what an event says was recorded with the
change that wrote it), so they take no log-head lock and never wait behind
the gate's writers.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
import structlog

from core.clock import Clock
from core.db import SessionFactory
from core.ids import new_id
from feed import webhooks
from feed.webhooks import Jitter, Resolve
from vault.keys import Keyring

if TYPE_CHECKING:
    from gate.context import Services

log = structlog.get_logger("memberguard.webhooks")


@dataclass
class Courier:
    """Delivers the webhooks that are due, one request at a time.

    The ``feed.webhooks`` job runs one courier at a time (its worker lease); two
    overlap when a run outlives that lease and the next run takes the job over.
    Any number may run at once all the same: a client is claimed by one at a
    time, so none of its events is ever in flight twice.
    ``after_send`` is called once a send returns, before its result is recorded
    (tests stop a courier there, as a crash would).
    """

    sessions: SessionFactory
    keyring: Callable[[], Keyring]
    clock: Clock
    timeout: float
    allow_insecure: bool
    resolve: Resolve = webhooks.resolve_host
    jitter: Jitter = webhooks.full_jitter
    transport: httpx.BaseTransport | None = None
    after_send: Callable[[webhooks.Claimed, webhooks.Sent], None] | None = None
    owner: str = field(default_factory=new_id)

    @classmethod
    def of(cls, services: Services, **overrides: object) -> Courier:
        settings = services.settings
        fields: dict[str, object] = {
            "sessions": services.sessions,
            "keyring": lambda: services.keyring,
            "clock": services.clock,
            "timeout": settings.webhook_timeout_seconds,
            "allow_insecure": settings.webhooks_allow_insecure,
            **overrides,
        }
        return cls(**fields)  # type: ignore[arg-type]

    def run(self, *, max_sends: int = 100, budget: timedelta | None = None) -> dict[str, int]:
        """Deliver due events until none is due, ``max_sends`` were sent, or ``budget`` has
        passed. Returns counts: delivered, retried, failed (given up), and lost (results
        not recorded: the claim was taken over, or the webhook changed, meanwhile)."""
        counts = {"delivered": 0, "retried": 0, "failed": 0, "lost": 0}
        started = self.clock()
        lease = webhooks.claim_lease(self.timeout)
        with ExitStack() as opened:
            # The HTTP client (and its TLS context, which loads the trust store) is
            # built at the first claim: most runs, every few seconds, find nothing due.
            http: httpx.Client | None = None
            for _ in range(max_sends):
                now = self.clock()
                if budget is not None and now - started >= budget:
                    break
                with self.sessions() as session:
                    claimed = webhooks.claim_next(session, now=now, owner=self.owner, lease=lease)
                    session.commit()
                if claimed is None:
                    break
                if http is None:
                    http = opened.enter_context(
                        webhooks.delivery_client(timeout=self.timeout, transport=self.transport)
                    )
                sent = webhooks.send(
                    http,
                    claimed,
                    keyring=self.keyring(),
                    now=now,
                    allow_insecure=self.allow_insecure,
                    resolve=self.resolve,
                )
                if self.after_send is not None:
                    self.after_send(claimed, sent)
                with self.sessions() as session:
                    recorded = webhooks.record_attempt(
                        session, claimed, sent, now=now, owner=self.owner, jitter=self.jitter
                    )
                    session.commit()
                where = {"client_id": claimed.client_id, "event_id": claimed.event_id}
                outcome = {"status": sent.status_code, "error": sent.error}
                if recorded is None:
                    counts["lost"] += 1
                    log.warning("webhook.claim_lost", **where, **outcome)
                    continue
                counts["retried" if recorded.outcome == webhooks.RETRY else recorded.outcome] += 1
                log.info(
                    f"webhook.{recorded.outcome}",
                    **where,
                    seq=claimed.seq,
                    attempt=recorded.attempt,
                    **outcome,
                )
        return counts
