"""Publishing the change feed to a message broker: the outbox relay to RabbitMQ.

With ``MEMBERGUARD_AMQP_URL`` set, the worker's ``feed.broker`` job publishes
every event to the durable topic exchange ``memberguard.events`` (declared
here), one message per event, routing key = the event's type
(``member.deleted``). Consumers bind queues by type (``member.*``,
``consent.changed``, ``#``), so one message per event is what they want: a
copy per recipient would multiply what a ``#`` binding receives, and a
routing key per client would break bindings by type. The broker is a shared
bus, so a recipient's ``seq`` (its own order in the pull feed) has no place
in the message; ``recipients`` lists the client ids the event is for, and a
consumer acting for one client skips the events that do not name it.

``feed_event.published_at`` is the outbox marker: null until the broker has
confirmed the message (publisher confirms), set afterwards in a short
transaction of its own. A run publishes the unconfirmed events oldest first
(``created_at, id``) and stops at the first one that fails, so a broken
connection or a refused message leaves that event and every later one for the
next run, in order. Delivery is therefore at least once: a crash between the
broker's confirmation and the marker, or a run that outlives its worker lease
and is overtaken, publishes an event again, with the same ``message_id``
(the event id), by which consumers drop the copy.

Marking an event published is transport bookkeeping: the event and its
recipients were recorded with the change that made them, and the broker is
memberguard's own transport, so the marker records no audit entry. It is
committed by a unit of work all the same (the one way memberguard commits),
which holds the log-head lock for the instant of one UPDATE per batch. No
transaction is open while a message is on the wire: a batch is read,
published, then marked.

Nothing here logs or raises with the URL's password: errors name the broker
as ``amqp://user@host:port/vhost`` and the failure's class (and the broker's
own reply, which never holds it).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import parse_qsl, quote, urlsplit

import pika
import pika.exceptions
import structlog
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy import select, update

from audit.uow import AuditedUnitOfWork
from core.db import SessionFactory
from feed.models import FeedDelivery, FeedEvent
from feed.pull import event_item

log = structlog.get_logger("memberguard.feed")

EXCHANGE = "memberguard.events"
CONTENT_TYPE = "application/json"
PERSISTENT = 2  # delivery_mode: written to disk by the durable queues that take it
APP_ID = "memberguard"
# Events read, published and marked per round: one short marking transaction per batch.
BATCH = 100
# How long a connection may stay blocked by the broker (a memory or disk alarm) before the
# run gives up, unless the URL says otherwise (?blocked_connection_timeout=): without one a
# blocked publish waits for ever, holding the job's lease.
BLOCKED_CONNECTION_TIMEOUT = 30.0


class BrokerError(Exception):
    """The broker could not take the events: unreachable, refused the login, or refused a
    message. Its message names the broker without its password, and the failure's class."""


class BrokerUnavailable(BrokerError):
    """No connection, or the connection or channel failed while publishing."""


class MessageRefused(BrokerError):
    """The broker answered a message with a negative confirmation (``basic.nack``): a queue
    bound to it refused it (``x-overflow: reject-publish``), or the broker failed to store it."""


# -- the URL ---------------------------------------------------------------------------

# The query parameters pika's URLParameters understands (its documentation's list).
URL_PARAMETERS = (
    "blocked_connection_timeout",
    "channel_max",
    "client_properties",
    "connection_attempts",
    "frame_max",
    "heartbeat",
    "locale",
    "retry_delay",
    "socket_timeout",
    "ssl_options",
    "stack_timeout",
    "tcp_options",
)


def parse_amqp_url(url: str) -> pika.URLParameters:
    """The connection parameters ``url`` names, or ``ValueError`` naming the rule it breaks.

    The message never holds the URL or a part of it: it carries a password.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise ValueError("not a URL such as amqp://user:password@host:5672/%2F") from None
    if parts.scheme.lower() not in ("amqp", "amqps"):
        raise ValueError("the scheme must be amqp or amqps (TLS)")
    if not parts.hostname:
        raise ValueError("the URL names no host")
    if (parts.username is None) != (parts.password is None):
        raise ValueError("give both a user and a password, or neither (pika's guest/guest)")
    if parts.path.count("/") > 1:
        raise ValueError("the path is the virtual host, percent-encoded: %2F for /")
    if {name for name, _ in _query_items(parts.query)} - set(URL_PARAMETERS):
        raise ValueError(f"unknown query parameter; pika's are {', '.join(URL_PARAMETERS)}")
    try:
        parameters = pika.URLParameters(url)
    except Exception:  # pika quotes the values it refuses; they may be anything
        raise ValueError("a query parameter has a value pika refuses") from None
    if "blocked_connection_timeout" not in dict(_query_items(parts.query)):
        parameters.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT
    return parameters


def _query_items(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def display_amqp_url(parameters: pika.ConnectionParameters) -> str:
    """The broker as logs and errors may name it: scheme, user, host, port, vhost."""
    scheme = "amqps" if parameters.ssl_options is not None else "amqp"
    user = getattr(parameters.credentials, "username", None)
    at = f"{quote(user, safe='')}@" if user else ""
    vhost = quote(parameters.virtual_host, safe="")
    return f"{scheme}://{at}{parameters.host}:{parameters.port}/{vhost}"


# -- the message -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerMessage:
    event_id: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties


def broker_message(event: FeedEvent, recipients: Iterable[str]) -> BrokerMessage:
    """The message for ``event``: the pull feed's item without ``seq`` (a recipient's own
    order, meaningless on a shared bus), with the ids of the clients it is for."""
    body = {**event_item(event), "recipients": sorted(set(recipients))}
    return BrokerMessage(
        event_id=event.id,
        routing_key=event.type,
        body=json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
        properties=pika.BasicProperties(
            content_type=CONTENT_TYPE,
            content_encoding="utf-8",
            delivery_mode=PERSISTENT,
            message_id=event.id,
            timestamp=int(event.created_at.timestamp()),
            type=event.type,
            app_id=APP_ID,
        ),
    )


# -- the publisher ---------------------------------------------------------------------


class BrokerPublisher:
    """One connection and one channel in confirm mode, for one run of the relay.

    ``with BrokerPublisher(parameters) as publisher: publisher.publish(message)``.
    Entering connects and declares the exchange (durable, topic: declaring it again with
    the same attributes is a no-op; an exchange that exists with other attributes is
    refused by the broker, and reported). ``publish`` returns once the broker has
    confirmed the message. Every failure of pika or of the socket is a ``BrokerError``.
    """

    def __init__(self, parameters: pika.ConnectionParameters, *, exchange: str = EXCHANGE) -> None:
        self.parameters = parameters
        self.exchange = exchange
        self.broker = display_amqp_url(parameters)
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def __enter__(self) -> BrokerPublisher:
        _quiet_pika()
        try:
            with self._failures("connect"):
                self._connection = pika.BlockingConnection(self.parameters)
                self._channel = self._connection.channel()
                self._channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
                self._channel.confirm_delivery()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            # Closing a connection that broke: nothing is left to release.
            with suppress(pika.exceptions.AMQPError, OSError):
                connection.close()

    def publish(self, message: BrokerMessage) -> bool:
        """Publish and wait for the broker's confirmation; True if a queue took the message,
        False if no queue is bound to its routing key (confirmed all the same).

        ``mandatory``: the broker returns a message no queue takes, then confirms it. On
        a topic bus a type nobody listens to is not an error, so such a message counts as
        published (holding it back would only replay a backlog to whoever binds later);
        the return tells the run to count it (``unroutable``), which is how an operator
        sees that nobody listens.
        """
        assert self._channel is not None, "publish inside `with`"
        try:
            with self._failures("publish"):
                self._channel.basic_publish(
                    self.exchange,
                    message.routing_key,
                    message.body,
                    message.properties,
                    mandatory=True,
                )
        except _Returned:
            return False
        return True

    @contextmanager
    def _failures(self, step: str) -> Iterator[None]:
        """pika's and the socket's exceptions as ``BrokerError``s (``from None``: the
        message says what failed, and nothing of pika's text needs to follow it)."""
        try:
            yield
        except pika.exceptions.UnroutableError:
            raise _Returned from None
        except pika.exceptions.NackError:
            raise MessageRefused(
                f"the message broker at {self.broker} refused a message (basic.nack: a "
                "bound queue is full with x-overflow=reject-publish, or the broker could "
                "not store it)"
            ) from None
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise BrokerUnavailable(
                f"the message broker at {self.broker} failed ({step}): {describe_failure(exc)}"
            ) from None


def _quiet_pika() -> None:
    """pika logs some twenty lines at INFO per connection (and a run with events opens one):
    its INFO is our DEBUG. Unless pika's level was set by someone, it logs warnings and
    errors only, except when the process logs at DEBUG."""
    pika_log = logging.getLogger("pika")
    if pika_log.level == logging.NOTSET and not logging.getLogger().isEnabledFor(logging.DEBUG):
        pika_log.setLevel(logging.WARNING)


class _Returned(Exception):
    """The broker returned a mandatory message: no queue is bound to its routing key."""


def describe_failure(exc: BaseException) -> str:
    """What went wrong, for a log line or an error: the exception's class; the broker's
    reply code and text when it closed the connection or the channel (its own words about
    a vhost, a permission or an exchange, which never hold the password); and, for a
    failed connect, the classes of the errors underneath. Never ``str()`` of anything else.
    """
    name = type(exc).__name__
    if isinstance(exc, (pika.exceptions.ConnectionClosed, pika.exceptions.ChannelClosed)):
        return f"{name} ({exc.reply_code} {exc.reply_text})"
    if isinstance(exc, pika.exceptions.AMQPConnectionError):
        causes = []
        for arg in exc.args:
            # The connection workflow wraps the socket's error (``.exception``).
            inner = getattr(arg, "exception", arg)
            if isinstance(inner, BaseException):
                causes.append(describe_failure(inner))
        if causes:
            return f"{name} ({', '.join(causes)})"
    return name


# -- the relay -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Relayed:
    """What a run did: events the broker confirmed, and how many of those no queue took."""

    published: int
    unroutable: int

    def counts(self) -> dict[str, int]:
        return {"published": self.published, "unroutable": self.unroutable}


def publish_events(
    *,
    parameters: pika.ConnectionParameters,
    units: Callable[[], AuditedUnitOfWork],
    read_sessions: SessionFactory,
    batch: int = BATCH,
    time_budget: float | None = None,
    exchange: str = EXCHANGE,
) -> Relayed:
    """Publish the events the broker has not confirmed, oldest first, until none are left
    (or ``time_budget`` seconds have passed: the rest is the next run's). Connects only
    when there is something to publish, so an idle relay opens no connection per run.

    Raises ``BrokerError`` at the first failure, after marking what was confirmed before
    it: that event and every later one stay for the next run (in order).
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    started = time.monotonic()
    pending = _pending(read_sessions, batch)
    if not pending:
        return Relayed(0, 0)
    published = unroutable = 0
    publisher = BrokerPublisher(parameters, exchange=exchange)
    try:
        with publisher:
            while pending:
                confirmed: list[str] = []
                try:
                    for message in pending:
                        if not publisher.publish(message):
                            unroutable += 1
                        confirmed.append(message.event_id)
                finally:
                    # Whatever the broker confirmed is marked, even if a later message failed.
                    _mark_published(units, confirmed)
                    published += len(confirmed)
                if len(pending) < batch or (
                    time_budget is not None and time.monotonic() - started >= time_budget
                ):
                    break
                pending = _pending(read_sessions, batch)
    except BrokerError as exc:
        log.warning(
            "feed.broker_failed",
            broker=publisher.broker,
            error=type(exc).__name__,
            # Our own words (the broker without its password, classes, the broker's
            # reply): the worker logs only the class of a job's exception.
            detail=str(exc),
            published=published,
        )
        raise
    return Relayed(published, unroutable)


def _pending(read_sessions: SessionFactory, batch: int) -> list[BrokerMessage]:
    """The next ``batch`` unconfirmed events as messages, oldest first.

    Read without a lock: an overlapping run (one that outlived its lease) may read the same
    events and publish them twice, which consumers drop by ``message_id``. Claiming rows
    (``FOR UPDATE SKIP LOCKED``) would keep a transaction, and on SQLite the write lock,
    open while the messages are on the wire.
    """
    with closing(read_sessions()) as session:
        try:
            events = session.scalars(
                select(FeedEvent)
                .where(FeedEvent.published_at.is_(None))
                .order_by(FeedEvent.created_at, FeedEvent.id)
                .limit(batch)
            ).all()
            recipients: dict[str, list[str]] = defaultdict(list)
            if events:
                rows = session.execute(
                    select(FeedDelivery.event_id, FeedDelivery.client_id).where(
                        FeedDelivery.event_id.in_([event.id for event in events])
                    )
                )
                for event_id, client_id in rows:
                    recipients[event_id].append(client_id)
            return [broker_message(event, recipients[event.id]) for event in events]
        finally:
            session.rollback()


def _mark_published(units: Callable[[], AuditedUnitOfWork], event_ids: Sequence[str]) -> None:
    """Set ``published_at`` on the events the broker confirmed, in one short transaction.

    ``published_at IS NULL`` in the WHERE keeps the first confirmation's time when an
    overlapping run published an event too.
    """
    if not event_ids:
        return
    with units() as uow:
        uow.session.execute(
            update(FeedEvent)
            .where(FeedEvent.id.in_(list(event_ids)), FeedEvent.published_at.is_(None))
            .values(published_at=uow.now)
        )
        uow.commit()
