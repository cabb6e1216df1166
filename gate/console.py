"""Staff sign-in to the console: a ``dpo``, ``auditor`` or ``admin`` key opens a session.

The key is checked once (``principals.clients.authenticate``), never stored or
shown again; the browser then holds only a session token (``principals.staff``).
Wrong keys are counted per client address (``console_failed_rate_per_address``,
a moving window, the same ``RateLimits`` as the members' sign-in): once over,
every attempt from that address is refused before any key is looked up, right
or wrong, so guessing cannot continue. Counters are named by keyed digests,
never by the address.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta

import limits
import structlog

from audit import actions
from core.errors import RateLimited, Unauthenticated
from gate.context import Services
from gate.signin import address_bucket
from principals.actor import Actor
from principals.clients import authenticate
from principals.signin import throttle_digest
from principals.staff import OpenedStaffSession, end_staff_session, open_staff_session

log = structlog.get_logger("memberguard.console")


class ConsoleThrottle:
    def __init__(self, services: Services) -> None:
        self._limiter = services.rate_limits.limiter
        self._rates = limits.parse_many(services.settings.console_failed_rate_per_address)
        self._keyring = services.keyring

    def _digest(self, client_address: str | None) -> str:
        return throttle_digest(self._keyring, "console/address", address_bucket(client_address))

    def admit(self, client_address: str | None) -> None:
        digest = self._digest(client_address)
        for rate in self._rates:
            if not self._limiter.test(rate, "console", "failed", digest):
                reset_at = self._limiter.get_window_stats(rate, "console", "failed", digest)
                log.warning("console.throttled")
                raise RateLimited(
                    f"more than {rate} wrong console keys",
                    retry_after=max(1, math.ceil(reset_at.reset_time - time.time())),
                )

    def failed(self, client_address: str | None) -> None:
        digest = self._digest(client_address)
        for rate in self._rates:
            self._limiter.hit(rate, "console", "failed", digest)


def sign_in_staff(
    services: Services, *, key: str, client_address: str | None, request_id: str | None
) -> OpenedStaffSession:
    """A console session for a staff key; ``Unauthenticated`` for a wrong or revoked key,
    ``Forbidden`` for a system's key, ``RateLimited`` once an address tried too many."""
    throttle = ConsoleThrottle(services)
    throttle.admit(client_address)
    lifetime = timedelta(minutes=services.settings.console_session_minutes)
    with services.uow() as uow:
        try:
            actor = authenticate(uow.session, key.strip())
        except Unauthenticated:
            throttle.failed(client_address)
            raise
        opened = open_staff_session(uow.session, actor=actor, now=uow.now, lifetime=lifetime)
        uow.record(
            actions.staff_signed_in(actor, policy=services.policy.version, request_id=request_id)
        )
        uow.commit()
    log.info("console.signin", actor=actor.id, role=actor.role)
    return opened


def sign_out_staff(services: Services, *, actor: Actor, token: str, request_id: str | None) -> None:
    """End the session, server-side; recorded when it was still live."""
    with services.uow() as uow:
        if end_staff_session(uow.session, raw_token=token, now=uow.now):
            uow.record(
                actions.staff_signed_out(
                    actor, policy=services.policy.version, request_id=request_id
                )
            )
        uow.commit()
    log.info("console.signout", actor=actor.id)
