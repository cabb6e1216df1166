"""The broker relay against a real RabbitMQ: what arrives, when it is marked, what waits.

RabbitMQ is the one at ``MEMBERGUARD_TEST_AMQP_URL`` (``tests/integration/amqp_listener.py``;
the ``amqp_url`` and ``listener`` fixtures are in ``tests/conftest.py``): unreachable, the tests
are skipped with the reason, except under ``CI=true``, where they fail.

Each test listens on exclusive queues of its own, bound to the types it emits (never
``#``, so that a test's made-up type is really unbound), and counts only the messages of
its own events: other runs may publish to the same exchange at the same time. Nothing
waits on a clock (the suite also runs under libfaketime with the clock stopped): a
confirmed message is already in its queues, so ``basic_get`` finds it at once.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from core.ids import new_id
from feed.broker import (
    BrokerUnavailable,
    MessageRefused,
    Relayed,
    parse_amqp_url,
    publish_events,
)
from feed.events import EventType, emit
from feed.models import FeedEvent
from gate.context import Services
from tests.conftest import NOW, Keys
from tests.integration.amqp_listener import Listener
from worker.jobs import default_jobs
from worker.runner import Worker


def publish(services: Services, url: str, **options: Any) -> Relayed:
    return publish_events(
        parameters=parse_amqp_url(url),
        units=services.uow,
        read_sessions=services.read_sessions,
        **options,
    )


def emit_events(services: Services, *specs: dict[str, Any]) -> list[FeedEvent]:
    """Commit one event per spec (``emit``'s keywords), as a use case would."""
    session = services.sessions()
    try:
        events = [emit(session, **spec) for spec in specs]
        session.commit()
    finally:
        session.close()
    assert all(event is not None for event in events)
    return [event for event in events if event is not None]


def add_bare_events(services: Services, type: str, count: int) -> list[str]:
    """Events of a type made up for one test (so that only its own queue is bound to it),
    without recipients; ``emit`` takes only the feed's types. Created a second apart."""
    ids = [new_id() for _ in range(count)]
    session = services.sessions()
    try:
        session.add_all(
            FeedEvent(
                id=event_id,
                type=type,
                data=json.dumps({"n": n}),
                ack_required=False,
                created_at=NOW + timedelta(seconds=n),
            )
            for n, event_id in enumerate(ids)
        )
        session.commit()
    finally:
        session.close()
    return ids


def published_at(services: Services, ids: list[str]) -> dict[str, datetime | None]:
    with services.reading() as session:
        rows = session.execute(
            select(FeedEvent.id, FeedEvent.published_at).where(FeedEvent.id.in_(ids))
        ).all()
    return {event_id: when for event_id, when in rows}


def made_up_type() -> str:
    return f"test.t{secrets.token_hex(6)}"


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A URL whose port refuses connections (bound here, never listening), with a password
    that must appear nowhere."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        yield f"amqp://guest:pw-{secrets.token_hex(8)}@127.0.0.1:{port}/%2F"


# -- what arrives ----------------------------------------------------------------------


def test_each_event_arrives_once_under_its_type_persistent_with_its_id_and_recipients(
    services: Services, keys: Keys, listener: Listener, amqp_url: str
) -> None:
    member = new_id()
    queue = listener.queue("consent.changed", "member.*")
    events = emit_events(
        services,
        {
            "type": EventType.CONSENT_CHANGED,
            "data": {"member_id": member, "purpose": "marketing_sms", "status": "withdrawn"},
            "recipients": [keys.ids["sms"], keys.ids["crm"]],
            "member_id": member,
            "now": NOW,
        },
        {
            "type": EventType.MEMBER_CORRECTED,
            "data": {"member_id": member, "fields": ["address", "phone"]},
            "recipients": [keys.ids["crm"]],
            "member_id": member,
            "now": NOW + timedelta(seconds=1),
        },
        {
            "type": EventType.MEMBER_DELETED,
            "data": {"member_id": member, "request_id": None},
            "recipients": [keys.ids["pos"], keys.ids["crm"]],
            "member_id": member,
            "ack_required": True,
            "now": NOW + timedelta(seconds=2),
        },
    )
    ids = [event.id for event in events]

    assert publish(services, amqp_url) == Relayed(published=3, unroutable=0)

    received = listener.drain(queue, set(ids))
    assert [(m.routing_key, m.properties.message_id) for m in received] == [
        ("consent.changed", ids[0]),
        ("member.corrected", ids[1]),
        ("member.deleted", ids[2]),
    ]
    for message, event in zip(received, events, strict=True):
        assert message.properties.delivery_mode == 2
        assert message.properties.content_type == "application/json"
        assert message.body == {
            "id": event.id,
            "type": event.type,
            "created_at": event.created_at.isoformat(),
            "data": json.loads(event.data),
            "ack_required": event.ack_required,
            "recipients": sorted(
                {
                    ids[0]: [keys.ids["sms"], keys.ids["crm"]],
                    ids[1]: [keys.ids["crm"]],
                    ids[2]: [keys.ids["pos"], keys.ids["crm"]],
                }[event.id]
            ),
        }
    # Ids, purposes and field names: the event's own data, nothing looked up.
    assert received[1].body["data"] == {"member_id": member, "fields": ["address", "phone"]}
    marked = published_at(services, ids)
    assert all(when is not None and when > NOW for when in marked.values())

    # Marked: a second run has nothing to publish and opens no connection.
    assert publish(services, amqp_url) == Relayed(published=0, unroutable=0)
    assert listener.drain(queue, set(ids)) == []
    assert published_at(services, ids) == marked


def test_events_go_out_oldest_first_across_batches(
    services: Services, listener: Listener, amqp_url: str
) -> None:
    kind = made_up_type()
    queue = listener.queue(kind)
    ids = add_bare_events(services, kind, 5)
    # Written newest first: the order is the events' time, not the rows'.
    session = services.sessions()
    try:
        for n, event_id in enumerate(ids):
            session.get_one(FeedEvent, event_id).created_at = NOW + timedelta(seconds=10 - n)
        session.commit()
    finally:
        session.close()

    assert publish(services, amqp_url, batch=2) == Relayed(published=5, unroutable=0)

    assert [m.properties.message_id for m in listener.drain(queue, set(ids))] == ids[::-1]
    assert None not in published_at(services, ids).values()


def test_an_event_no_queue_is_bound_to_is_confirmed_and_counted_as_unroutable(
    services: Services, amqp_url: str
) -> None:
    ids = add_bare_events(services, made_up_type(), 1)
    assert publish(services, amqp_url) == Relayed(published=1, unroutable=1)
    assert None not in published_at(services, ids).values()


# -- what waits ------------------------------------------------------------------------


def test_an_unreachable_broker_fails_the_run_and_the_events_go_out_on_a_later_one(
    services: Services,
    listener: Listener,
    amqp_url: str,
    refused_url: str,
    json_logs: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pika's own lines too (at DEBUG it keeps them: feed.broker._quiet_pika), whatever an
    # earlier run at another level left.
    monkeypatch.setattr(logging.getLogger("pika"), "level", logging.NOTSET)
    kind = made_up_type()
    queue = listener.queue(kind)
    ids = add_bare_events(services, kind, 2)
    password = parse_amqp_url(refused_url).credentials.password

    with pytest.raises(BrokerUnavailable) as caught:
        publish(services, refused_url)

    assert "ConnectionRefusedError" in str(caught.value)
    assert "guest@127.0.0.1" in str(caught.value)
    told = "".join(traceback.format_exception(caught.value)) + repr(caught.value)
    assert password not in told
    assert published_at(services, ids) == dict.fromkeys(ids)
    assert listener.drain(queue, set(ids)) == []
    logged = json_logs()
    assert "feed.broker_failed" in logged and "ConnectionRefusedError" in logged
    assert '"logger": "pika.' in logged
    assert password not in logged

    # The broker is back (the right URL): the outbox still holds them.
    assert publish(services, amqp_url) == Relayed(published=2, unroutable=0)
    assert [m.properties.message_id for m in listener.drain(queue, set(ids))] == ids
    assert None not in published_at(services, ids).values()


def test_a_refused_message_stops_the_run_and_it_and_later_events_wait_in_order(
    services: Services, listener: Listener, amqp_url: str
) -> None:
    kind = made_up_type()
    # A queue that holds one message and refuses (basic.nack) any more.
    queue = listener.queue(kind, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ids = add_bare_events(services, kind, 3)

    with pytest.raises(MessageRefused):
        publish(services, amqp_url)
    # The first was confirmed and marked; the second was refused, the third never sent.
    states = published_at(services, ids)
    assert states[ids[0]] is not None and states[ids[1]] is None and states[ids[2]] is None

    taken = listener.drain(queue, set(ids))  # room for one more: the second fits, not the third
    with pytest.raises(MessageRefused):
        publish(services, amqp_url)
    states = published_at(services, ids)
    assert states[ids[1]] is not None and states[ids[2]] is None

    taken += listener.drain(queue, set(ids))
    assert publish(services, amqp_url) == Relayed(published=1, unroutable=0)
    taken += listener.drain(queue, set(ids))
    assert [m.properties.message_id for m in taken] == ids
    assert None not in published_at(services, ids).values()


# -- through the worker ----------------------------------------------------------------


def test_the_worker_runs_the_broker_job_and_a_failed_run_is_retried_from_the_outbox(
    services: Services, listener: Listener, amqp_url: str, refused_url: str
) -> None:
    def broker_job(url: str) -> Any:
        settings = services.settings.model_copy(update={"amqp_url": SecretStr(url)})
        (job,) = [job for job in default_jobs(settings) if job.name == "feed.broker"]
        return job

    kind = made_up_type()
    queue = listener.queue(kind)
    ids = add_bare_events(services, kind, 2)

    (failed,) = Worker(services, [broker_job(refused_url)]).run_once(NOW)
    assert (failed.status, failed.error) == ("failed", "BrokerUnavailable")
    assert published_at(services, ids) == dict.fromkeys(ids)

    later = NOW + timedelta(hours=1)  # past the failure's backoff
    (ran,) = Worker(services, [broker_job(amqp_url)]).run_once(later)
    assert (ran.status, ran.result) == ("ok", {"published": 2, "unroutable": 0})
    assert [m.properties.message_id for m in listener.drain(queue, set(ids))] == ids
