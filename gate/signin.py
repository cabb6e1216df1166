"""Members sign in with a one-time code sent to their phone or e-mail, and sign out.

``request_sign_in_code`` always answers the same way, whether or not a member
holds the contact: a challenge and its expiry. A challenge row is written
either way and the contact is looked up either way; only when exactly one
member holds it is a code composed, its sending recorded (``notice.sent``,
no actor: no one is signed in yet) and, once the unit of work has committed,
handed to the notifier. Sending happens after the answer when the entry point
can defer it (the API's background tasks), so the time to answer does not
depend on the transport either; a failed send is logged and the answer stays
the same, since an error for members only would tell who is one. Two or more
members sharing a contact is possible (contacts are not unique in the vault);
such a contact signs no one in: which of them would the code be for?

``verify_sign_in_code`` answers a challenge with a code: a session for the
member (``member.signin``), or ``401``. Every attempt is counted under the
log-head lock, so concurrent guesses cannot exceed the challenge's allowance;
the wrong code that burns a member's challenge is recorded as a ``deny``
(the DPO's signal that someone tried codes against that member), the others
are not, one by one. ``sign_out`` ends the session it is called with.

Rate limits (moving windows, ``settings.rate_limit_storage``), checked before
anything is read or recorded, so a flood neither reaches the database nor fills
the log:

- codes asked for one contact, from anywhere (``member_login_rate_per_contact``):
  with ``max_attempts`` wrong codes per challenge this bounds the guesses
  against one member's codes;
- codes asked, and codes tried, from one client address
  (``member_login_rate_per_address``, ``member_verify_rate_per_address``).

Counters are named by keyed digests (``principals.signin.throttle_digest``),
never by the contact or the address. Refusals (``429 rate-limited``) are not
recorded.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import limits
import structlog

from audit import actions
from core.errors import RateLimited, Unauthenticated
from gate.context import Services
from notify import Message, compose
from principals.actor import Actor
from principals.members import MEMBER_ROLE, OpenedSession, end_session, member_actor, open_session
from principals.signin import (
    CHANNEL_BY_FIELD,
    ChallengeClosed,
    InvalidCode,
    Outcome,
    check_code,
    normalise_code,
    open_challenge,
    purge_expired,
    throttle_digest,
)
from vault.members import lookup, member_exists, normalise_lookup

log = structlog.get_logger("memberguard.signin")

LOGIN_TEMPLATE = "login_code"
Defer = Callable[[Callable[[], None]], None]


def _run_now(task: Callable[[], None]) -> None:
    task()


def address_bucket(client_address: str | None) -> str:
    """The unit a client address is counted by: an IPv4 address, or an IPv6 /64.

    One IPv6 host commonly holds a whole /64 (SLAAC, privacy addresses), so
    counting single IPv6 addresses would let one host rotate past the limit.
    """
    if not client_address:
        return ""
    try:
        address = ipaddress.ip_address(client_address)
    except ValueError:
        return client_address  # not an IP (a test client's name): counted as it is
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class SignInThrottle:
    """The sign-in rates of one process (or of every process, with a shared storage)."""

    def __init__(self, services: Services) -> None:
        settings = services.settings
        self._limiter = services.rate_limits.limiter
        self._keyring = services.keyring
        self._per_contact = limits.parse_many(settings.member_login_rate_per_contact)
        self._per_address = limits.parse_many(settings.member_login_rate_per_address)
        self._verify_per_address = limits.parse_many(settings.member_verify_rate_per_address)

    def _address(self, client_address: str | None) -> str:
        # Clients whose address the server cannot see share one counter.
        return throttle_digest(self._keyring, "signin/address", address_bucket(client_address))

    def admit_login(self, *, field_name: str, normalised: str, client_address: str | None) -> None:
        self._hit("login-address", self._per_address, self._address(client_address))
        contact = throttle_digest(self._keyring, f"signin/{field_name}", normalised)
        self._hit("login-contact", self._per_contact, contact)

    def admit_verify(self, *, client_address: str | None) -> None:
        self._hit("verify-address", self._verify_per_address, self._address(client_address))

    def _hit(self, kind: str, rates: Sequence[limits.RateLimitItem], digest: str) -> None:
        for rate in rates:
            if not self._limiter.hit(rate, "signin", kind, digest):
                reset_at = self._limiter.get_window_stats(rate, "signin", kind, digest).reset_time
                log.warning("signin.throttled", limit=kind)
                raise RateLimited(
                    f"more than {rate} sign-in requests of this kind",
                    retry_after=math.ceil(reset_at - time.time()),
                )


@dataclass(frozen=True, slots=True)
class SignInStarted:
    challenge: str
    expires_at: datetime


def request_sign_in_code(
    services: Services,
    *,
    field_name: str,
    value: object,
    locale: str,
    client_address: str | None,
    request_id: str | None,
    defer: Defer = _run_now,
) -> SignInStarted:
    """Open a challenge for a phone number or e-mail address; send its code if exactly one
    member holds the contact. ``defer`` runs the sending once the answer is on its way
    (by default at once, after the commit)."""
    normalised = normalise_lookup(field_name, value)  # 422 naming the field, never the value
    channel = CHANNEL_BY_FIELD[field_name]
    SignInThrottle(services).admit_login(
        field_name=field_name, normalised=normalised, client_address=client_address
    )
    policy, settings = services.policy, services.settings
    minutes = settings.member_login_code_minutes
    message: Message | None = None
    with services.uow() as uow:
        purge_expired(uow.session, now=uow.now)
        holders = lookup(
            uow.session, keyring=services.keyring, field_name=field_name, normalised=normalised
        )
        member_id = holders[0] if len(holders) == 1 else None
        opened = open_challenge(
            uow.session,
            member_id=member_id,
            channel=channel,
            now=uow.now,
            lifetime=timedelta(minutes=minutes),
        )
        if member_id is not None:
            message = compose(
                LOGIN_TEMPLATE,
                channel=channel,
                to=normalised,
                locale=locale,
                context={
                    "programme": policy.programme.name,
                    "code": opened.code,
                    "minutes": minutes,
                },
            )
            uow.record(
                actions.notice_sent(
                    None,
                    policy=policy.version,
                    member_id=member_id,
                    template=LOGIN_TEMPLATE,
                    channel=channel,
                    message_id=message.id,
                    request_id=request_id,
                )
            )
        uow.commit()
    if len(holders) > 1:
        # For the operator: members who share a contact must sign in by their other one.
        log.warning("signin.shared_contact", by=field_name, members=len(holders))
    if message is not None:
        defer(partial(_deliver, services, message))
    return SignInStarted(challenge=opened.token, expires_at=opened.expires_at)


def _deliver(services: Services, message: Message) -> None:
    """Hand a committed code to the notifier. A failure is logged (by message id, never the
    recipient or the error's text, which a transport may fill with the address); the
    member asks again."""
    try:
        services.notifier.send(message, now=services.clock())
    except Exception as exc:  # any transport failure, after the answer
        log.error(
            "signin.code_not_sent",
            message_id=message.id,
            channel=message.channel,
            error_type=type(exc).__name__,
        )


def verify_sign_in_code(
    services: Services,
    *,
    challenge: str,
    code: str,
    client_address: str | None,
    request_id: str | None,
) -> OpenedSession:
    """Answer a challenge; a session for its member, or ``InvalidCode``/``ChallengeClosed``.

    The attempt is committed whatever the outcome, so a refused code still counts.
    """
    code = normalise_code(code)  # 422 for anything that is not 6 digits
    SignInThrottle(services).admit_verify(client_address=client_address)
    policy, settings = services.policy, services.settings
    opened: OpenedSession | None = None
    with services.uow() as uow:
        check = check_code(
            uow.session,
            token=challenge,
            code=code,
            now=uow.now,
            max_attempts=settings.member_login_max_attempts,
        )
        member_id, channel = check.member_id, check.channel or ""
        if check.outcome is Outcome.SIGNED_IN and member_id is not None:
            # A member crypto-shredded since the code was sent loses their
            # challenges with their sessions; this is the belt to those braces.
            if member_exists(uow.session, member_id):
                opened = open_session(
                    uow.session,
                    member_id=member_id,
                    now=uow.now,
                    lifetime=timedelta(minutes=settings.member_token_minutes),
                )
                uow.record(
                    actions.member_signin(
                        member_actor(member_id),
                        policy=policy.version,
                        member_id=member_id,
                        channel=channel,
                        decision="permit",
                        request_id=request_id,
                    )
                )
        elif check.outcome is Outcome.BURNED and member_id is not None:
            uow.record(
                actions.member_signin(
                    None,
                    policy=policy.version,
                    member_id=member_id,
                    channel=channel,
                    decision="deny",
                    request_id=request_id,
                )
            )
        uow.commit()
    if opened is not None:
        return opened
    if check.outcome in (Outcome.WRONG, Outcome.BURNED):
        raise InvalidCode(attempts_left=check.attempts_left)
    raise ChallengeClosed()


def sign_out(services: Services, *, actor: Actor, request_id: str | None) -> None:
    """End the caller's session. Its unit of work re-checks the session under the lock, so
    a session already ended or expired is ``401`` and nothing is recorded."""
    actor.require_role(MEMBER_ROLE)
    if actor.key_hash is None:
        raise Unauthenticated("a member signs out of the session they act through")
    with services.uow(actor) as uow:
        end_session(uow.session, token_hash=actor.key_hash, now=uow.now)
        uow.record(
            actions.member_signed_out(actor, policy=services.policy.version, request_id=request_id)
        )
        uow.commit()
