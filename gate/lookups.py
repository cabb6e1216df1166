"""Finding members by phone or e-mail, throttled against enumeration.

A lookup answers "which member holds this contact value?". For a purpose that
sees the phone only masked (``139****5678``) that question, asked for each of
the 10,000 possible middle digits, would unmask the number, so three defences
stack up:

- the policy names the fields each purpose may look up by (``lookup``), none
  by default and never for a pseudonymous purpose (``policies.decide``);
- every client and purpose gets ``settings.lookup_rate`` lookups (a moving
  window, so no burst at a window's edge), refused with ``429 rate-limited``
  and ``Retry-After`` before anything is read or recorded: a flood must not
  fill the audit log;
- misses are counted. A client whose lookups in the last
  ``lookup_miss_window_seconds`` found no one at least
  ``lookup_suspect_misses`` times, and more often than
  ``lookup_suspect_miss_share`` of the time, is flagged: one ``lookup.flagged``
  entry per window for the DPO, and ``lookup_suspect_rate`` from then on.

A miss is what the client saw: a lookup that returned no member, whether no
one holds the value or the one who does has not consented to the purpose.

The counters live in the ``limits`` storage of ``settings.rate_limit_storage``
(in memory by default, so per process; a shared storage such as Redis makes
them hold across workers and hosts).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import limits
import structlog

from audit import actions
from consent.registry import consent_facts_for
from core.errors import RateLimited
from gate.context import Services
from gate.reads import refusal
from policies.decide import decide_lookup, decide_member, decide_purpose
from principals.actor import Actor
from vault.members import lookup, normalise_lookup

log = structlog.get_logger("memberguard.lookup")

# Counting items: an amount no client reaches, so a "hit" only counts.
_UNBOUNDED = 1_000_000_000


@dataclass(frozen=True, slots=True)
class LookupResult:
    ids: list[str]
    audit_seq: int


class LookupThrottle:
    """The rates and the miss counters of one client's lookups for one purpose."""

    def __init__(self, services: Services, client_id: str, purpose: str) -> None:
        settings = services.settings
        self._limiter = services.rate_limits.limiter
        self._keys = ("lookup", client_id, purpose)
        self._rate = limits.parse(settings.lookup_rate)
        self._suspect_rate = limits.parse(settings.lookup_suspect_rate)
        self.window_seconds = settings.lookup_miss_window_seconds
        self._min_misses = settings.lookup_suspect_misses
        self._share = settings.lookup_suspect_miss_share
        self._counter = limits.RateLimitItemPerSecond(_UNBOUNDED, self.window_seconds)
        # Amount 1: the first hit in a window succeeds (flag now), later ones fail.
        self._flag = limits.RateLimitItemPerSecond(1, self.window_seconds)

    @property
    def suspect(self) -> bool:
        return self._limiter.get_window_stats(self._flag, *self._keys, "flag").remaining == 0

    def admit(self) -> None:
        """Count one lookup against the rates, or raise ``RateLimited``.

        The stricter rate counts every lookup, flagged or not, so that it
        holds at once when a client is flagged in the middle of a burst.
        """
        suspect = self.suspect
        for rate, name, enforced in (
            (self._rate, "rate", True),
            (self._suspect_rate, "suspect", suspect),
        ):
            if not self._limiter.hit(rate, *self._keys, name) and enforced:
                reset_at = self._limiter.get_window_stats(rate, *self._keys, name).reset_time
                log.warning("lookup.throttled", client=self._keys[1], purpose=self._keys[2])
                raise RateLimited(
                    f"more than {rate} lookups for this purpose",
                    retry_after=math.ceil(reset_at - time.time()),
                )

    def observe(self, *, missed: bool) -> tuple[int, int] | None:
        """Count an outcome; (lookups, misses) in the window if this one flags the client."""
        self._limiter.hit(self._counter, *self._keys, "lookups")
        if not missed:
            return None
        self._limiter.hit(self._counter, *self._keys, "misses")
        lookups, misses = self._count("lookups"), self._count("misses")
        if misses < self._min_misses or misses <= self._share * lookups:
            return None
        if not self._limiter.hit(self._flag, *self._keys, "flag"):
            return None  # flagged already in this window
        return lookups, misses

    def _count(self, name: str) -> int:
        stats = self._limiter.get_window_stats(self._counter, *self._keys, name)
        return self._counter.amount - stats.remaining


def lookup_members(
    services: Services,
    *,
    actor: Actor,
    field_name: str,
    value: object,
    purpose: str,
    request_id: str | None,
) -> LookupResult:
    """Find members by phone or e-mail; only those the purpose admits are returned."""
    policy = services.policy
    normalised = normalise_lookup(field_name, value)  # bad input: 422 before anything is read
    # Purposes the policy does not know share one bucket: the key is never
    # text a client chose freely.
    throttle = LookupThrottle(services, actor.id, purpose if purpose in policy.purposes else "")
    throttle.admit()
    with services.uow(actor) as uow:
        decision = decide_purpose(policy, purpose=purpose, client_purposes=actor.purposes)
        decision = decide_lookup(policy, decision, field_name)
        admitted: list[str] = []
        matched = 0
        if decision.permitted:
            candidates = lookup(
                uow.session, keyring=services.keyring, field_name=field_name, normalised=normalised
            )
            matched = len(candidates)
            facts = consent_facts_for(uow.session, {(m, purpose) for m in candidates})
            admitted = [
                m
                for m in candidates
                if decide_member(policy, decision, facts.get((m, purpose))).permitted
            ]
        seq = uow.record(
            actions.members_looked_up(
                actor,
                policy=policy.version,
                decision=decision,
                by=field_name,
                matched=matched,
                admitted=admitted,
                request_id=request_id,
            )
        )
        if decision.permitted and (flagged := throttle.observe(missed=not admitted)):
            lookups, misses = flagged
            uow.record(
                actions.lookups_flagged(
                    actor,
                    policy=policy.version,
                    purpose=purpose,
                    lookups=lookups,
                    misses=misses,
                    window_seconds=throttle.window_seconds,
                    request_id=request_id,
                )
            )
            log.warning("lookup.flagged", client=actor.id, purpose=purpose, misses=misses)
        uow.commit()
    if not decision.permitted:
        raise refusal(policy, decision, seq)
    # decide_lookup refuses pseudonymous purposes, so these are plain member ids.
    return LookupResult(ids=admitted, audit_seq=seq)
