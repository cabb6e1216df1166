"""Webhooks: each client's events pushed to its URL, signed per Standard Webhooks.

Registration (``set_webhook``, ``rotate_secret``, ``remove_webhook``) flushes
only: the use cases in ``gate.webhooks`` run it in an audited unit of work.
Delivery is the worker's (``worker.webhooks.Courier`` commits the claims and
results these functions write, as ``worker.runner`` commits ``worker.leases``):
short transactions that record scheduling state and attempts, never a fact
about members (what an event says was recorded with the change that wrote it).

**The URL and the secret.** Both are stored encrypted with AES-256-GCM under a
key derived by HKDF-SHA256 from the keyring's index key (info
``memberguard/webhook/v1``), with the client id and what the value is in the
AAD: a ciphertext cannot be moved to another client or column. The index key,
not a KEK: a KEK version is rotated and then retired (``keys retire`` checks
the data keys only), which would leave a secret under it unreadable, while the
index key never changes (every blind index depends on it). So ``keys
rotate``, ``keys rewrap`` and ``keys retire`` leave webhook secrets readable
and need not know of them; replacing the secret itself is ``rotate_secret``.
The secret must sign, so it cannot be hashed like an API key. The URL is
encrypted too because its path or query often carries the receiver's token;
``origin`` (scheme, host, port) is what is shown, logged and recorded.

**URL rules (SSRF).** ``https://`` only, to hosts whose every address is
public (not loopback, private, link-local, shared, reserved, multicast, nor an
IPv6 address carrying such an IPv4 one: ``is_public_address``):
checked at registration and again at each delivery, where the request then
goes to the address that was checked (TLS still verifies the host name; SNI
and ``Host`` carry it), so a DNS answer that changes between the check and the
connection cannot point a delivery inside. Redirects are not followed, and no
proxy from the environment is used. ``MEMBERGUARD_WEBHOOKS_ALLOW_INSECURE``
lifts the rules (development and tests).

**Delivery.** Per client, in ``seq`` order, one event at a time: an event
being retried holds back the client's later events (they are never sent ahead
of it), until it is delivered (any 2xx) or given up: tries continue until 24 hours
after the event was written (so a receiver that was down for days gives up
its backlog at one try per event, not one event a day), and every event gets
at least one. Tries back off exponentially with full jitter: a delay drawn uniformly
from ``[1 s, min(1 h, 30 s × 2^(n-1))]`` after the n-th failure.

The ``feed.webhooks`` job sends, one courier at a time system-wide (the job's
worker lease), one request at a time. For each delivery the courier claims the
client (a lease in the row, set by a conditional UPDATE; the candidate is read
with ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL and MySQL, and under
SQLite's single writer there), commits, sends with no transaction open, and
records the result only if it still holds the claim. Two couriers overlap only
when a run outlives its job lease and the next run takes over; the claims keep
them off each other's clients. A courier that dies after sending leaves the
claim to expire; the event is then sent again with the same ``webhook-id``
(the event id): at most one duplicate per crash, which the receiver drops by
that id.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import math
import random
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
from sqlalchemy import and_, exists, insert, or_, select, update
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from core.errors import InvalidInput, NotFound
from core.ids import is_valid_id
from feed.models import FeedDelivery, FeedEvent
from feed.pull import event_item, last_seq, mark_notified
from feed.webhook_models import FeedWebhook, FeedWebhookAttempt
from principals.models import GateClient
from vault import crypto
from vault.crypto import DecryptionFailed
from vault.keys import WEBHOOK_KEY_INFO, Keyring

SECRET_PREFIX = "whsec_"  # noqa: S105  (the format's prefix, not a secret)
SECRET_BYTES = 32  # Standard Webhooks: 24 to 64 bytes
MAX_URL_LENGTH = 2048

# The retry schedule (see the module's docstring).
FIRST_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=1)
MIN_DELAY = timedelta(seconds=1)
GIVE_UP_AFTER = timedelta(hours=24)

DELIVERED = "delivered"
RETRY = "retry"
FAILED = "failed"

# (host, port) -> the addresses it resolves to, as strings.
Resolve = Callable[[str, int], list[str]]
# The upper bound of a delay in seconds -> the delay drawn (full jitter).
Jitter = Callable[[float], float]


class WebhookUrlRefused(InvalidInput):
    """A URL a webhook may not have. The detail names the rule, never the URL."""

    slug = "webhook-url-refused"
    title = "The webhook URL is refused"


# -- URL rules --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A URL that passed the rules; ``origin`` is all of it that may be shown or recorded."""

    url: str
    origin: str


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver), in its order."""
    found: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


# IPv4-compatible IPv6 addresses (RFC 4291, deprecated): refused outright (:: and ::1 too).
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# NAT64 prefixes (RFC 6052's well-known one, RFC 8215's local-use one): the IPv4 address a
# translator reaches is in the last 32 bits (a /96 prefix, DNS64's usual layout).
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def _carried_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a connection to ``ip`` can end up at, through 6to4, Teredo
    (server and client) or NAT64."""
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    if any(ip in prefix for prefix in _NAT64):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)]
    return []


def _is_global_unicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


def is_public_address(address: str) -> bool:
    """Whether a delivery may go to ``address``: a global unicast address.

    ``is_global`` is false for loopback, private (RFC 1918, ULA), link-local,
    shared (100.64/10), documentation, reserved and unspecified addresses. An
    IPv6 address that carries an IPv4 one is judged by it too, since that is
    where a connection can end up: IPv4-mapped (``::ffff:127.0.0.1``, judged as
    the IPv4 address alone; Python 3.11 calls it global), 6to4 (``2002:a00:1::``
    is 10.0.0.1), Teredo (server and client) and NAT64 (``64:ff9b::a00:1``) must
    be global themselves and carry only global addresses. IPv4-compatible
    addresses (``::/96``, deprecated) are refused outright.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _is_global_unicast(ip.ipv4_mapped)
        if ip in _IPV4_COMPATIBLE:
            return False
        if not all(_is_global_unicast(carried) for carried in _carried_ipv4(ip)):
            return False
    return _is_global_unicast(ip)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def origin_of(url: httpx.URL) -> str:
    """Scheme, host and (when not the scheme's default) port: no user, path or query."""
    host = url.host
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{host}{port}"


def check_webhook_url(url: str, *, allow_insecure: bool, resolve: Resolve) -> WebhookTarget:
    """``url`` if a webhook may have it, else ``WebhookUrlRefused`` (which never repeats it).

    Without ``allow_insecure``: ``https://`` only, and every address the host
    resolves to must be public (a host that does not resolve is refused too).
    Delivery checks the addresses again (``send``): DNS can change.
    """
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlRefused(f"the webhook URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise WebhookUrlRefused("not a URL such as https://hooks.example.com/memberguard") from None
    if parsed.scheme not in ("https", "http") or not parsed.host:
        raise WebhookUrlRefused("the webhook URL must be an https:// URL with a host")
    if allow_insecure:
        return WebhookTarget(url=url, origin=origin_of(parsed))
    if parsed.scheme != "https":
        raise WebhookUrlRefused("the webhook URL must be https://")
    try:
        addresses = resolve(parsed.host, parsed.port or _default_port(parsed.scheme))
    except (OSError, UnicodeError):
        raise WebhookUrlRefused("the webhook URL's host does not resolve") from None
    if not addresses:
        raise WebhookUrlRefused("the webhook URL's host does not resolve")
    if not all(is_public_address(address) for address in addresses):
        raise WebhookUrlRefused(
            "the webhook URL's host is, or resolves to, a loopback, private or link-local "
            "address; webhooks go to public hosts only"
        )
    return WebhookTarget(url=url, origin=origin_of(parsed))


# -- the secret and its storage -----------------------------------------------------


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


Sealed = Literal["url", "secret"]


def _aad(client_id: str, what: Sealed) -> bytes:
    # The key's label leads the AAD (as it always has: stored values depend on these bytes).
    return WEBHOOK_KEY_INFO + b"\x00" + client_id.encode() + b"\x00" + what.encode()


def seal(keyring: Keyring, client_id: str, what: Sealed, plaintext: str) -> bytes:
    """``plaintext`` sealed (``vault.crypto.seal``) under the keyring's webhook key, for
    this client's ``what`` column only."""
    return crypto.seal(keyring.webhook_key(), plaintext.encode(), _aad(client_id, what))


def unseal(keyring: Keyring, client_id: str, what: Sealed, blob: bytes) -> str:
    """What ``seal`` sealed for this client and column, or ``DecryptionFailed``."""
    return crypto.unseal(keyring.webhook_key(), blob, _aad(client_id, what)).decode()


# -- registration (flushes only) -----------------------------------------------------


def _active_client(session: Session, client_id: str) -> GateClient:
    client = session.get(GateClient, client_id) if is_valid_id(client_id) else None
    if client is None or client.revoked_at is not None:
        raise NotFound("no such active client")
    return client


def _webhook_of(session: Session, client_id: str) -> FeedWebhook:
    webhook = session.get(FeedWebhook, client_id) if is_valid_id(client_id) else None
    if webhook is None:
        raise NotFound("the client has no webhook")
    return webhook


@dataclass(frozen=True, slots=True)
class SetWebhook:
    secret: str
    replaced: bool


def set_webhook(
    session: Session, keyring: Keyring, *, client_id: str, target: WebhookTarget, now: datetime
) -> SetWebhook:
    """Register the client's webhook, or replace its URL, with a new secret either way.

    A new webhook starts after the client's last event: it pushes what is
    written from now on (what came before stays in the pull feed). A replaced
    one keeps its place in the client's events, and the event it was trying
    is tried again at the new URL at once, from a first attempt; a claim a
    worker held is dropped, so that its result (from the old URL) is not
    recorded. The previous secret, if a rotation left one, is dropped too: a
    new URL is a new receiver.
    """
    _active_client(session, client_id)
    secret = new_secret()
    webhook = session.get(FeedWebhook, client_id)
    replaced = webhook is not None
    if webhook is None:
        webhook = FeedWebhook(
            client_id=client_id, created_at=now, cursor_seq=last_seq(session, client_id)
        )
        session.add(webhook)
    webhook.origin = target.origin
    webhook.url_ct = seal(keyring, client_id, "url", target.url)
    webhook.secret_ct = seal(keyring, client_id, "secret", secret)
    webhook.previous_secret_ct = None
    webhook.previous_secret_expires_at = None
    webhook.updated_at = now
    webhook.head_attempts = 0
    webhook.next_attempt_at = now
    webhook.claim_expires_at = None
    webhook.claimed_by = None
    session.flush()
    return SetWebhook(secret=secret, replaced=replaced)


@dataclass(frozen=True, slots=True)
class RotatedSecret:
    secret: str
    previous_valid_until: datetime


def rotate_secret(
    session: Session, keyring: Keyring, *, client_id: str, now: datetime, overlap: timedelta
) -> RotatedSecret:
    """A new secret; the current one keeps signing (beside it) until ``now + overlap``.

    A secret older than the current one (a rotation within the window of the
    one before) stops signing at once: there is one previous secret at most.
    """
    _active_client(session, client_id)
    webhook = _webhook_of(session, client_id)
    secret = new_secret()
    until = now + overlap
    # The same AAD marks current and previous secrets: the ciphertext moves as it is.
    webhook.previous_secret_ct = webhook.secret_ct if overlap > timedelta(0) else None
    webhook.previous_secret_expires_at = until if overlap > timedelta(0) else None
    webhook.secret_ct = seal(keyring, client_id, "secret", secret)
    webhook.rotated_at = now
    webhook.updated_at = now
    session.flush()
    return RotatedSecret(secret=secret, previous_valid_until=until)


def remove_webhook(session: Session, *, client_id: str) -> str:
    """Stop pushing the client's events (the pull feed still has them); returns the origin.

    The attempts stay, for the record of what was sent. A worker sending for
    the client finds its claim gone and records nothing.
    """
    webhook = _webhook_of(session, client_id)
    origin = webhook.origin
    session.delete(webhook)
    session.flush()
    return origin


def webhook_view(session: Session, client_id: str, *, now: datetime) -> dict[str, Any]:
    """What an admin may see of a webhook: the origin and the delivery state, no secret or URL."""
    webhook = _webhook_of(session, client_id)
    overlap = webhook.previous_secret_expires_at
    return {
        "client_id": client_id,
        "origin": webhook.origin,
        "created_at": webhook.created_at.isoformat(),
        "updated_at": webhook.updated_at.isoformat(),
        "rotated_at": webhook.rotated_at.isoformat() if webhook.rotated_at else None,
        "previous_secret_valid_until": (
            overlap.isoformat() if overlap is not None and overlap > now else None
        ),
        "delivered_through_seq": webhook.cursor_seq,
        "pending": max(0, last_seq(session, client_id) - webhook.cursor_seq),
        "head_attempts": webhook.head_attempts,
        "next_attempt_at": webhook.next_attempt_at.isoformat(),
    }


# -- the attempts listing -----------------------------------------------------------


def encode_cursor(attempt_id: int) -> str:
    return base64.urlsafe_b64encode(f"attempt:{attempt_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind != "attempt" or not value.isdigit() or len(value) > 18:
            raise ValueError
        return int(value)
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        raise InvalidInput(
            "cursor is not valid; use the next_cursor of a previous page", slug="invalid-cursor"
        ) from None


@dataclass(frozen=True, slots=True)
class AttemptsPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


def attempts_page(
    session: Session, client_id: str, *, cursor: str | None, limit: int
) -> AttemptsPage:
    """The client's delivery attempts, newest first. A client without a webhook lists
    the attempts of the ones it had (an unknown client is ``NotFound``)."""
    before = decode_cursor(cursor)
    if not is_valid_id(client_id) or session.get(GateClient, client_id) is None:
        raise NotFound("no such client")
    query = (
        select(FeedWebhookAttempt, FeedDelivery.seq, FeedEvent.type)
        .join(
            FeedDelivery,
            and_(
                FeedDelivery.event_id == FeedWebhookAttempt.event_id,
                FeedDelivery.client_id == FeedWebhookAttempt.client_id,
            ),
        )
        .join(FeedEvent, FeedEvent.id == FeedWebhookAttempt.event_id)
        .where(FeedWebhookAttempt.client_id == client_id)
        .order_by(FeedWebhookAttempt.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(FeedWebhookAttempt.id < before)
    rows = session.execute(query).all()
    items = [
        {
            "event_id": attempt.event_id,
            "seq": seq,
            "type": type_,
            "attempt": attempt.attempt,
            "at": attempt.attempted_at.isoformat(),
            "status_code": attempt.status_code,
            "error": attempt.error,
            "outcome": attempt.outcome,
            "next_attempt_at": (
                attempt.next_attempt_at.isoformat() if attempt.next_attempt_at else None
            ),
        }
        for attempt, seq, type_ in rows[:limit]
    ]
    more = len(rows) > limit
    return AttemptsPage(
        items=items, next_cursor=encode_cursor(rows[limit - 1][0].id) if more else None
    )


# -- delivery ----------------------------------------------------------------------


def full_jitter(ceiling: float) -> float:
    # Scheduling noise, not a secret: SystemRandom only because it needs no seeding.
    return random.SystemRandom().uniform(0, ceiling)


def retry_ceiling(failures: int) -> timedelta:
    """The longest wait after the ``failures``-th failed try: 30 s, doubling, at most 1 h."""
    exponent = min(max(failures, 1) - 1, 16)  # 30 s × 2^7 > 1 h already
    return min(MAX_DELAY, FIRST_DELAY * 2**exponent)


def retry_delay(failures: int, jitter: Jitter) -> timedelta:
    ceiling = retry_ceiling(failures)
    drawn = timedelta(seconds=jitter(ceiling.total_seconds()))
    return min(ceiling, max(MIN_DELAY, drawn))


def event_body(event: FeedEvent, seq: int) -> bytes:
    """The body of a delivery: the event's item with the client's ``seq``, as JSON (UTF-8)."""
    return json.dumps(event_item(event, seq), ensure_ascii=False, separators=(",", ":")).encode()


def signature_header(secrets_: list[str], *, msg_id: str, at: datetime, body: bytes) -> str:
    """``v1,<sig>`` by each secret, space-separated: a receiver that knows any one verifies."""
    text = body.decode()
    return " ".join(Webhook(secret).sign(msg_id, at, text) for secret in secrets_)


class _HideWebhookUrls(logging.Filter):
    """httpx logs each request's URL at INFO ("HTTP Request: POST https://…"). While a
    delivery is in flight, its URL in those lines becomes its origin (scheme and host):
    the path and query may carry the receiver's token."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._urls: dict[str, str] = {}

    @contextmanager
    def hiding(self, url: httpx.URL, shown: str) -> Iterator[None]:
        key = str(url)
        with self._lock:
            self._urls[key] = shown
        try:
            yield
        finally:
            with self._lock:
                self._urls.pop(key, None)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and self._urls:
            with self._lock:
                urls = dict(self._urls)
            record.args = tuple(
                f"{urls[str(arg)]}/…" if isinstance(arg, httpx.URL) and str(arg) in urls else arg
                for arg in record.args
            )
        return True


_HIDE_WEBHOOK_URLS = _HideWebhookUrls()


@dataclass(frozen=True, slots=True)
class Claimed:
    """A client claimed for one delivery, and the event to deliver (its ``seq`` is the
    client's ``cursor_seq + 1``)."""

    client_id: str
    origin: str
    url_ct: bytes
    secret_ct: bytes
    previous_secret_ct: bytes | None
    cursor_seq: int
    head_attempts: int
    event_id: str
    seq: int
    body: bytes
    # When the event was written: its tries end 24 hours after.
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Sent:
    """How a send went: the receiver's status, or why no answer came."""

    status_code: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def claim_lease(timeout: float) -> timedelta:
    """How long a claim lasts: longer than a send can take (connect, write and read are
    each bounded by the timeout, and the answer's body is not read)."""
    return max(timedelta(minutes=2), timedelta(seconds=6 * timeout))


_WEBHOOK = FeedWebhook.__table__.c


def _unclaimed(now: datetime) -> Any:
    return or_(_WEBHOOK.claim_expires_at.is_(None), _WEBHOOK.claim_expires_at <= now)


def claim_next(session: Session, *, now: datetime, owner: str, lease: timedelta) -> Claimed | None:
    """Claim the client whose next event has waited longest, if any is due; executes only
    (the caller commits the claim before it sends).

    Due: an active client's webhook, not claimed (or its claim expired), whose
    next event exists and whose ``next_attempt_at`` has come. Ordering by it
    serves clients in turn: a success sets it to the time of that delivery.
    """
    candidate = (
        select(_WEBHOOK.client_id)
        .where(
            _WEBHOOK.next_attempt_at <= now,
            _unclaimed(now),
            _WEBHOOK.client_id.in_(select(GateClient.id).where(GateClient.revoked_at.is_(None))),
            exists().where(
                FeedDelivery.client_id == _WEBHOOK.client_id,
                FeedDelivery.seq == _WEBHOOK.cursor_seq + 1,
            ),
        )
        .order_by(_WEBHOOK.next_attempt_at, _WEBHOOK.client_id)
        .limit(1)
    )
    if session.get_bind().dialect.name != "sqlite":
        # Overlapping couriers (a run that outlived its job lease, and the run that took
        # over) pass by the rows the other is claiming instead of queueing behind them.
        # SQLite has one writer at a time (BEGIN IMMEDIATE) and no SKIP LOCKED.
        candidate = candidate.with_for_update(skip_locked=True)
    client_id = session.scalar(candidate)
    if client_id is None:
        return None
    # The claim itself is conditional, so it holds where no lock was taken: only the
    # statement that changed the row holds it (as worker.leases claims a job).
    taken = session.execute(
        update(FeedWebhook.__table__)
        .where(_WEBHOOK.client_id == client_id, _unclaimed(now))
        .values(claim_expires_at=now + lease, claimed_by=owner)
    ).rowcount
    if taken != 1:
        return None
    row = session.execute(
        select(
            _WEBHOOK.origin,
            _WEBHOOK.url_ct,
            _WEBHOOK.secret_ct,
            _WEBHOOK.previous_secret_ct,
            _WEBHOOK.previous_secret_expires_at,
            _WEBHOOK.cursor_seq,
            _WEBHOOK.head_attempts,
            FeedDelivery.seq,
            FeedEvent,
        )
        .join(
            FeedDelivery,
            and_(
                FeedDelivery.client_id == _WEBHOOK.client_id,
                FeedDelivery.seq == _WEBHOOK.cursor_seq + 1,
            ),
        )
        .join(FeedEvent, FeedEvent.id == FeedDelivery.event_id)
        .where(_WEBHOOK.client_id == client_id)
    ).one()
    previous = row.previous_secret_ct
    expires = row.previous_secret_expires_at
    if previous is not None and (expires is None or expires <= now):
        # Past its overlap window, the replaced secret is destroyed.
        session.execute(
            update(FeedWebhook.__table__)
            .where(_WEBHOOK.client_id == client_id)
            .values(previous_secret_ct=None, previous_secret_expires_at=None)
        )
        previous = None
    return Claimed(
        client_id=client_id,
        origin=row.origin,
        url_ct=row.url_ct,
        secret_ct=row.secret_ct,
        previous_secret_ct=previous,
        cursor_seq=row.cursor_seq,
        head_attempts=row.head_attempts,
        event_id=row.FeedEvent.id,
        seq=row.seq,
        created_at=row.FeedEvent.created_at,
        body=event_body(row.FeedEvent, row.seq),
    )


@dataclass(frozen=True, slots=True)
class Recorded:
    outcome: str  # DELIVERED, RETRY or FAILED
    attempt: int
    next_attempt_at: datetime | None


def record_attempt(
    session: Session, claimed: Claimed, sent: Sent, *, now: datetime, owner: str, jitter: Jitter
) -> Recorded | None:
    """Record a send's result and release the claim; executes only (the caller commits).

    None, with nothing changed, when the claim is no longer ``owner``'s: it
    expired and another courier took the client over, or the webhook was
    replaced or removed meanwhile. That courier's result stands, not this one.

    2xx: the event is delivered, the client's next one is due at once, and the
    delivery's ``notified_at`` is set if it was not (delivery, not
    acknowledgement). Otherwise the event is tried again after the backoff,
    never later than 24 hours after it was written; a failure at or after that
    gives it up (``failed``), and the client's next event is due. Counting from
    the event, not from its first try: behind a receiver that was down for a
    week, each event of the backlog would otherwise hold the next one back for
    a whole day.
    """
    attempt = claimed.head_attempts + 1
    settled: dict[str, Any] = {
        "cursor_seq": claimed.seq,
        "head_attempts": 0,
        "next_attempt_at": now,
    }
    next_attempt_at: datetime | None = None
    if sent.delivered:
        outcome, values = DELIVERED, settled
    elif now >= claimed.created_at + GIVE_UP_AFTER:
        outcome, values = FAILED, settled
    else:
        outcome = RETRY
        next_attempt_at = min(
            now + retry_delay(attempt, jitter), claimed.created_at + GIVE_UP_AFTER
        )
        values = {"head_attempts": attempt, "next_attempt_at": next_attempt_at}
    recorded = session.execute(
        update(FeedWebhook.__table__)
        .where(
            _WEBHOOK.client_id == claimed.client_id,
            _WEBHOOK.claimed_by == owner,
            _WEBHOOK.cursor_seq == claimed.cursor_seq,
        )
        .values(claim_expires_at=None, claimed_by=None, **values)
    ).rowcount
    if recorded != 1:
        return None
    session.execute(
        insert(FeedWebhookAttempt.__table__).values(
            client_id=claimed.client_id,
            event_id=claimed.event_id,
            attempt=attempt,
            attempted_at=now,
            status_code=sent.status_code,
            error=sent.error,
            outcome=outcome,
            next_attempt_at=next_attempt_at,
        )
    )
    if sent.delivered:
        mark_notified(session, claimed.client_id, [claimed.event_id], now=now)
    return Recorded(outcome=outcome, attempt=attempt, next_attempt_at=next_attempt_at)


def delivery_client(
    *, timeout: float, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The HTTP client deliveries go through: no redirects followed (a redirect could
    point inside), no proxy or credentials from the environment (the connection must go
    to the address that was checked). Certificates are checked against the trust store
    httpx uses (``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` if set, else certifi's)."""
    logging.getLogger("httpx").addFilter(_HIDE_WEBHOOK_URLS)  # once per logger, however often
    return httpx.Client(
        transport=transport,
        verify=httpx.create_ssl_context(),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
    )


def send(
    http: httpx.Client,
    claimed: Claimed,
    *,
    keyring: Keyring,
    now: datetime,
    allow_insecure: bool,
    resolve: Resolve,
) -> Sent:
    """POST the claimed event, signed; no transaction may be open around this.

    The host is resolved and its addresses checked here, at the send (DNS can
    change after registration), and the request goes to the address checked.
    """
    try:
        url = httpx.URL(unseal(keyring, claimed.client_id, "url", claimed.url_ct))
        signing = [unseal(keyring, claimed.client_id, "secret", claimed.secret_ct)]
        if claimed.previous_secret_ct is not None:
            signing.append(unseal(keyring, claimed.client_id, "secret", claimed.previous_secret_ct))
    except DecryptionFailed:
        return Sent(error="secret-unreadable")
    try:
        addresses = resolve(url.host, url.port or _default_port(url.scheme))
    except (OSError, UnicodeError):
        return Sent(error="dns-error")
    if not addresses:
        return Sent(error="dns-error")
    if not allow_insecure and (
        url.scheme != "https" or not all(is_public_address(a) for a in addresses)
    ):
        return Sent(error="address-refused")
    # To the address just checked, not to a second lookup's answer; the host name
    # still goes in Host and in TLS (SNI, and the certificate is checked against it).
    pinned = url.copy_with(host=addresses[0])
    headers = {
        "Host": url.netloc.decode("ascii"),  # host[:port], never the user part
        "Content-Type": "application/json",
        "User-Agent": "memberguard-webhooks",
        "webhook-id": claimed.event_id,
        "webhook-timestamp": str(math.floor(now.timestamp())),
        "webhook-signature": signature_header(
            signing, msg_id=claimed.event_id, at=now, body=claimed.body
        ),
    }
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    try:
        with (
            _HIDE_WEBHOOK_URLS.hiding(pinned, claimed.origin),
            http.stream(
                "POST", pinned, content=claimed.body, headers=headers, extensions=extensions
            ) as response,
        ):
            # The answer's body is not read: its status is the answer.
            return Sent(status_code=response.status_code)
    except httpx.TimeoutException:
        return Sent(error="timeout")
    except httpx.HTTPError as exc:
        # The class only: httpx's messages may carry the URL.
        return Sent(error=_error_name(exc))


def _error_name(exc: Exception) -> str:
    """A short, stable name of a transport failure (``ConnectError`` → ``connect-error``)."""
    name = type(exc).__name__
    words = "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")
    return words[:32]
