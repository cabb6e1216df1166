"""A RabbitMQ for the tests: the URL, a fixture that checks it answers, and a listener.

RabbitMQ is the one at ``MEMBERGUARD_TEST_AMQP_URL`` (default 127.0.0.1:5672, guest/guest).
Unreachable, the tests that need it are skipped with the reason, except under ``CI=true``,
where they fail (the rule ``tests/conftest.py`` applies to PostgreSQL and MariaDB).
"""

from __future__ import annotations

import json
import os
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from feed.broker import EXCHANGE, parse_amqp_url
from tests.conftest import _unreachable

AMQP_URL = os.environ.get("MEMBERGUARD_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def reachable_amqp_url() -> str:
    """``AMQP_URL`` once a connection to it opened; else skipped (or failed under CI=true)."""
    try:
        with closing(pika.BlockingConnection(parse_amqp_url(AMQP_URL))):
            pass
    except (pika.exceptions.AMQPError, OSError) as exc:
        _unreachable("RabbitMQ", exc)
    return AMQP_URL


@dataclass(frozen=True)
class Received:
    routing_key: str
    properties: pika.BasicProperties
    body: dict[str, Any]


class Listener:
    """Exclusive queues on one connection: ``queue(*keys)`` declares one bound to
    ``memberguard.events`` by those keys; ``drain(queue, ids)`` takes what is in it,
    keeping the messages of ``ids`` (this test's events) in the order they came."""

    def __init__(self, channel: BlockingChannel) -> None:
        self.channel = channel
        # Declared as the publisher declares it, so that a queue can be bound before the
        # first run; the same attributes, or the broker refuses one of the two.
        channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)

    def queue(self, *keys: str, arguments: dict[str, Any] | None = None) -> str:
        name = self.channel.queue_declare("", exclusive=True, arguments=arguments).method.queue
        for key in keys:
            self.channel.queue_bind(name, EXCHANGE, routing_key=key)
        return name

    def drain(self, queue: str, ids: set[str]) -> list[Received]:
        received = []
        while True:
            method, properties, body = self.channel.basic_get(queue, auto_ack=True)
            if method is None:
                return received
            if properties.message_id in ids:
                received.append(Received(method.routing_key, properties, json.loads(body)))
