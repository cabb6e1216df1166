"""The broker's side that needs no broker: its URL, its messages, its errors, its job."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pika
import pika.exceptions
import pytest
from pika.adapters.utils.connection_workflow import AMQPConnectorSocketConnectError

from core.settings import Settings, SettingsError, load_settings
from feed.broker import (
    BLOCKED_CONNECTION_TIMEOUT,
    _quiet_pika,
    broker_message,
    describe_failure,
    display_amqp_url,
    parse_amqp_url,
)
from feed.models import FeedEvent
from worker.jobs import default_jobs

PASSWORD = "pw-7c1e9a"  # a test credential: it must appear nowhere but in the URL
CREATED = datetime(2026, 11, 30, 9, 15, 0, 250000, tzinfo=UTC)


# -- the URL ---------------------------------------------------------------------------


def test_an_amqp_url_names_host_port_vhost_and_credentials() -> None:
    parameters = parse_amqp_url(f"amqp://feed:{PASSWORD}@rabbit.internal:5673/mg%2Fprod")
    assert (parameters.host, parameters.port, parameters.virtual_host) == (
        "rabbit.internal",
        5673,
        "mg/prod",
    )
    assert isinstance(parameters.credentials, pika.PlainCredentials)
    assert parameters.credentials.username == "feed"
    assert parameters.ssl_options is None
    assert display_amqp_url(parameters) == "amqp://feed@rabbit.internal:5673/mg%2Fprod"


def test_amqps_uses_tls_and_its_default_port() -> None:
    parameters = parse_amqp_url(f"amqps://feed:{PASSWORD}@rabbit.internal/%2F")
    assert parameters.ssl_options is not None
    assert parameters.port == 5671
    assert display_amqp_url(parameters) == "amqps://feed@rabbit.internal:5671/%2F"


def test_a_blocked_connection_times_out_unless_the_url_says_otherwise() -> None:
    default = parse_amqp_url("amqp://127.0.0.1/%2F")
    assert default.blocked_connection_timeout == BLOCKED_CONNECTION_TIMEOUT
    chosen = parse_amqp_url("amqp://127.0.0.1/%2F?blocked_connection_timeout=5&heartbeat=20")
    assert (chosen.blocked_connection_timeout, chosen.heartbeat) == (5, 20)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        (f"http://u:{PASSWORD}@rabbit.internal/%2F", "scheme must be amqp or amqps"),
        (f"amqp://u:{PASSWORD}@/%2F", "no host"),
        (f"amqp://u:{PASSWORD}@rabbit.internal:56x2/%2F", "not a URL"),
        (f"amqp://u{PASSWORD}@rabbit.internal/%2F", "both a user and a password"),
        (f"amqp://u:{PASSWORD}@rabbit.internal/a/b", "percent-encoded"),
        (f"amqp://u:{PASSWORD}@rabbit.internal/%2F?tls={PASSWORD}", "unknown query parameter"),
        (f"amqp://u:{PASSWORD}@rabbit.internal/%2F?heartbeat={PASSWORD}", "pika refuses"),
    ],
)
def test_a_bad_amqp_url_is_refused_with_the_rule_never_the_url(url: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule) as caught:
        parse_amqp_url(url)
    assert PASSWORD not in str(caught.value)
    assert "rabbit.internal" not in str(caught.value)


def test_load_settings_names_the_variable_and_never_the_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MEMBERGUARD_HOME", str(tmp_path))
    monkeypatch.setenv("MEMBERGUARD_AMQP_URL", f"rabbitmq://u:{PASSWORD}@rabbit.internal/%2F")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "MEMBERGUARD_AMQP_URL" in message and "amqp or amqps" in message
    assert PASSWORD not in message and "rabbit.internal" not in message


# -- the message -----------------------------------------------------------------------


def test_the_message_is_the_event_without_seq_with_its_recipients_persistent_and_named() -> None:
    event = FeedEvent(
        id="a" * 24,
        type="member.deleted",
        member_id="m" * 24,
        rights_request="r" * 24,
        data=json.dumps({"member_id": "m" * 24, "request_id": "r" * 24}),
        ack_required=True,
        created_at=CREATED,
    )
    message = broker_message(event, ["c" * 24, "b" * 24, "c" * 24])
    assert message.routing_key == "member.deleted"
    assert json.loads(message.body) == {
        "id": "a" * 24,
        "type": "member.deleted",
        "created_at": "2026-11-30T09:15:00.250000+00:00",
        "data": {"member_id": "m" * 24, "request_id": "r" * 24},
        "ack_required": True,
        "recipients": ["b" * 24, "c" * 24],
    }
    properties = message.properties
    assert properties.delivery_mode == 2
    assert properties.message_id == "a" * 24
    assert properties.content_type == "application/json"
    assert properties.type == "member.deleted"
    assert properties.timestamp == int(CREATED.timestamp())


# -- errors ----------------------------------------------------------------------------


def test_a_failure_is_described_by_classes_and_the_brokers_reply_only() -> None:
    refused = pika.exceptions.AMQPConnectionError(
        AMQPConnectorSocketConnectError(ConnectionRefusedError(111, f"refused {PASSWORD}"))
    )
    assert describe_failure(refused) == "AMQPConnectionError (ConnectionRefusedError)"
    login = pika.exceptions.ProbableAuthenticationError(
        pika.exceptions.ConnectionClosedByBroker(403, "ACCESS_REFUSED - Login was refused")
    )
    assert describe_failure(login) == (
        "ProbableAuthenticationError (ConnectionClosedByBroker (403 ACCESS_REFUSED - Login "
        "was refused))"
    )
    assert describe_failure(OSError(f"no route to {PASSWORD}")) == "OSError"


@pytest.mark.parametrize(
    ("root", "pika_before", "pika_after"),
    [
        (logging.INFO, logging.NOTSET, logging.WARNING),
        (logging.DEBUG, logging.NOTSET, logging.NOTSET),
        (logging.INFO, logging.INFO, logging.INFO),
    ],
)
def test_pikas_chatter_is_debug_unless_its_level_was_chosen(
    root: int, pika_before: int, pika_after: int
) -> None:
    loggers = logging.getLogger(), logging.getLogger("pika")
    saved = [logger.level for logger in loggers]
    try:
        for logger, level in zip(loggers, (root, pika_before), strict=True):
            logger.setLevel(level)
        _quiet_pika()
        assert loggers[1].level == pika_after
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)


# -- the job ---------------------------------------------------------------------------


def test_the_broker_job_exists_only_with_a_broker_url() -> None:
    assert "feed.broker" not in {job.name for job in default_jobs(Settings(amqp_url=None))}
    settings = Settings(
        amqp_url=f"amqp://u:{PASSWORD}@rabbit.internal/%2F", worker_max_runtime_seconds=120
    )
    (job,) = [job for job in default_jobs(settings) if job.name == "feed.broker"]
    assert (job.every, job.max_runtime) == (timedelta(seconds=5), timedelta(seconds=120))
    assert PASSWORD not in repr(job)
    custom = Settings(amqp_url="amqp://127.0.0.1/%2F", broker_job_seconds=30)
    assert [job.every for job in default_jobs(custom) if job.name == "feed.broker"] == [
        timedelta(seconds=30)
    ]
