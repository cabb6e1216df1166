"""Webhook delivery against a real local receiver that verifies with ``standardwebhooks``.

Every test drives the courier (``worker.webhooks.Courier``, what the
``feed.webhooks`` job runs) with a clock it sets: nothing here waits on a
clock (the suite also runs under libfaketime, where a timed wait may never
return), and the retry schedule is walked by moving the clock to each
``next_attempt_at``.
"""

from __future__ import annotations

import itertools
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from core.db import build_engine, session_factory
from core.ids import new_id
from core.settings import Settings
from feed import webhooks
from feed.events import EventType, emit
from feed.models import FeedDelivery
from feed.webhook_models import FeedWebhook, FeedWebhookAttempt
from gate.clients import register_client
from gate.context import Services
from gate.webhooks import remove_webhook, rotate_webhook_secret, set_webhook
from principals import OPERATOR_ACTOR
from tests.conftest import NOW, FreshDatabase, ServicesFor
from tests.integration.webhook_receiver import Receiver, verifies, webhook_receiver
from worker.jobs import default_jobs
from worker.runner import Worker
from worker.webhooks import Courier


class Clock:
    """The suite's clock, moved by the test (``at``)."""

    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The receiver is on the loopback interface: the tests allow it (as the setting's
    # description says they do); the rules themselves are tested without it.
    return Settings(
        home=tmp_path / "home",
        keyring_heartbeat_seconds=24 * 3600,
        keyring_live_seconds=2 * 24 * 3600,
        worker_in_server=False,
        webhooks_allow_insecure=True,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client_id(services: Services) -> str:
    return new_client(services, "crm")


def new_client(services: Services, name: str) -> str:
    return register_client(
        services,
        actor=OPERATOR_ACTOR,
        name=name,
        role="client",
        purposes=["marketing_sms"],
        scopes=[],
        request_id=None,
    ).client["id"]


def emit_events(services: Services, client_id: str, count: int = 1) -> list[str]:
    """``count`` events for the client, committed, in its ``seq`` order."""
    with services.sessions() as session:
        ids = []
        for _ in range(count):
            event = emit(
                session,
                type=EventType.CONSENT_CHANGED,
                data={"member_id": new_id(), "purpose": "marketing_sms", "status": "withdrawn"},
                recipients=[client_id],
                now=services.clock(),
            )
            assert event is not None
            ids.append(event.id)
        session.commit()
    return ids


def at_most(top: float) -> float:
    """The jitter that draws the longest wait (a deterministic schedule)."""
    return top


def courier(services: Services, **overrides: Any) -> Courier:
    return Courier.of(services, **{"jitter": at_most, **overrides})


def attempts(services: Services, client_id: str) -> list[FeedWebhookAttempt]:
    with services.reading() as session:
        rows = list(
            session.scalars(
                select(FeedWebhookAttempt)
                .where(FeedWebhookAttempt.client_id == client_id)
                .order_by(FeedWebhookAttempt.id)
            )
        )
        session.expunge_all()  # read after the session's rollback
        return rows


def webhook_row(services: Services, client_id: str) -> FeedWebhook:
    with services.reading() as session:
        row = session.get(FeedWebhook, client_id)
        assert row is not None
        session.expunge(row)
        return row


def delivery(services: Services, event_id: str, client_id: str) -> FeedDelivery:
    with services.reading() as session:
        row = session.get(FeedDelivery, (event_id, client_id))
        assert row is not None
        session.expunge(row)
        return row


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


def register(services: Services, client_id: str, receiver: Receiver, path: str = "/hook") -> str:
    """The client's webhook at the receiver; the receiver learns the secret (as ``current``)."""
    secret = set_webhook(
        services, actor=OPERATOR_ACTOR, client=client_id, url=receiver.url(path), request_id=None
    ).secret
    receiver.secrets["current"] = secret
    return secret


# -- delivery, signatures, retries ----------------------------------------------------


def test_a_delivery_is_the_pull_feed_item_signed_per_standard_webhooks(
    services: Services, client_id: str, receiver: Receiver, clock: Clock
) -> None:
    register(services, client_id, receiver)
    (event_id,) = emit_events(services, client_id)
    receiver.now = clock.at

    assert courier(services).run() == {"delivered": 1, "retried": 0, "failed": 0, "lost": 0}

    (received,) = receiver.deliveries
    assert received.verified == {"current": True}
    assert received.webhook_id == event_id
    assert received.headers["webhook-timestamp"] == str(int(clock.at.timestamp()))
    assert received.headers["webhook-signature"].startswith("v1,")
    assert received.headers["content-type"] == "application/json"
    payload = received.payload
    assert set(payload) == {"id", "seq", "type", "created_at", "data", "ack_required"}
    assert (payload["id"], payload["seq"], payload["type"]) == (event_id, 1, "consent.changed")
    assert payload["data"]["purpose"] == "marketing_sms" and payload["ack_required"] is False
    assert delivery(services, event_id, client_id).notified_at == clock.at
    assert delivery(services, event_id, client_id).acknowledged_at is None


def test_a_run_builds_its_http_client_only_once_something_is_due(
    services: Services,
    client_id: str,
    receiver: Receiver,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[httpx.Client] = []
    build = webhooks.delivery_client

    def counting(**kwargs: Any) -> httpx.Client:
        built.append(build(**kwargs))
        return built[-1]

    monkeypatch.setattr(webhooks, "delivery_client", counting)
    register(services, client_id, receiver)
    assert courier(services).run()["delivered"] == 0  # nothing due: no client, no TLS context
    assert built == []

    emit_events(services, client_id, 2)
    receiver.now = clock.at
    assert courier(services).run()["delivered"] == 2
    assert len(built) == 1  # one for the run, not one per delivery
    assert built[0].is_closed


def test_a_receiver_that_fails_twice_gets_three_tries_further_apart_each_time(
    services: Services, client_id: str, receiver: Receiver, clock: Clock
) -> None:
    register(services, client_id, receiver)
    (event_id,) = emit_events(services, client_id)
    receiver.script = [500, 500]
    receiver.now = clock.at
    first = clock.at

    assert courier(services).run()["retried"] == 1
    assert courier(services).run()["retried"] == 0  # not due yet: nothing is sent
    waits = []
    for _ in range(2):
        due = webhook_row(services, client_id).next_attempt_at
        waits.append(due - clock.at)
        clock.at = receiver.now = due
        courier(services).run()

    tries = attempts(services, client_id)
    assert [(a.attempt, a.status_code, a.outcome) for a in tries] == [
        (1, 500, "retry"),
        (2, 500, "retry"),
        (3, 200, "delivered"),
    ]
    # With the longest jitter: 30 s, then 60 s; each wait within its ceiling.
    assert waits == [timedelta(seconds=30), timedelta(seconds=60)]
    assert [a.next_attempt_at for a in tries[:2]] == [first + waits[0], sum(waits, first)]
    assert receiver.ids() == [event_id] * 3  # the same webhook-id on every try
    assert all(d.verified["current"] for d in receiver.deliveries)
    assert delivery(services, event_id, client_id).notified_at == clock.at
    row = webhook_row(services, client_id)
    assert (row.cursor_seq, row.head_attempts) == (1, 0)


def test_the_waits_between_tries_are_jittered_within_their_doubling_ceilings(
    services: Services, client_id: str, receiver: Receiver, clock: Clock
) -> None:
    register(services, client_id, receiver)
    emit_events(services, client_id)
    receiver.status = 503
    receiver.now = clock.at
    for failures in range(1, 9):
        courier(services, jitter=webhooks.full_jitter).run()
        due = webhook_row(services, client_id).next_attempt_at
        assert timedelta(seconds=1) <= due - clock.at <= webhooks.retry_ceiling(failures)
        clock.at = receiver.now = due
    ceilings = [webhooks.retry_ceiling(n).total_seconds() for n in range(1, 9)]
    assert ceilings == [30, 60, 120, 240, 480, 960, 1920, 3600]


def test_an_event_failing_for_24_hours_is_given_up_and_the_next_one_goes(
    services: Services, client_id: str, receiver: Receiver, clock: Clock
) -> None:
    register(services, client_id, receiver)
    doomed, after = emit_events(services, client_id, 2)
    receiver.status = 500
    receiver.now = clock.at
    first = clock.at
    while True:
        counts = courier(services).run(max_sends=1)
        if counts["failed"]:
            break
        assert counts["retried"] == 1
        clock.at = receiver.now = webhook_row(services, client_id).next_attempt_at
        assert clock.at <= first + timedelta(hours=24)

    tries = attempts(services, client_id)
    assert tries[-1].outcome == "failed" and tries[-1].next_attempt_at is None
    assert tries[-1].attempted_at == first + timedelta(hours=24)  # the last try is at 24 h
    assert all(t.outcome == "retry" for t in tries[:-1])
    gaps = [b.attempted_at - a.attempted_at for a, b in itertools.pairwise(tries)]
    assert max(gaps) == timedelta(hours=1)
    assert {t.event_id for t in tries} == {doomed}
    assert delivery(services, doomed, client_id).notified_at is None

    receiver.status = 200
    assert courier(services).run()["delivered"] == 1
    assert receiver.ids()[-1] == after
    assert webhook_row(services, client_id).cursor_seq == 2


def test_a_backlog_older_than_24_hours_gets_one_try_per_event_not_a_day_each(
    services: Services, client_id: str, receiver: Receiver, clock: Clock
) -> None:
    # The receiver was down for a week: its events are past their 24 hours already.
    register(services, client_id, receiver)
    ids = emit_events(services, client_id, 3)
    receiver.status = 500
    clock.at = receiver.now = clock.at + timedelta(days=7)
    for _ in ids:
        assert courier(services).run(max_sends=1) == {
            "delivered": 0,
            "retried": 0,
            "failed": 1,
            "lost": 0,
        }
    assert receiver.ids() == ids
    assert [t.outcome for t in attempts(services, client_id)] == ["failed"] * 3
    assert webhook_row(services, client_id).cursor_seq == 3


def test_a_client_s_events_go_in_seq_order_and_none_overtakes_one_being_retried(
    services: Services, client_id: str, receiver: Receiver, clock: Clock
) -> None:
    register(services, client_id, receiver)
    ids = emit_events(services, client_id, 3)
    receiver.script = [500]
    receiver.now = clock.at

    assert courier(services).run() == {"delivered": 0, "retried": 1, "failed": 0, "lost": 0}
    assert receiver.ids() == ids[:1]  # the later events wait behind the first
    clock.at = receiver.now = webhook_row(services, client_id).next_attempt_at
    assert courier(services).run()["delivered"] == 3
    assert receiver.ids() == [ids[0], *ids]
    assert [d.payload["seq"] for d in receiver.deliveries] == [1, 1, 2, 3]


def test_a_new_webhook_pushes_only_the_events_written_after_it(
    services: Services, client_id: str, receiver: Receiver, clock: Clock
) -> None:
    emit_events(services, client_id, 2)  # before: the pull feed has them
    register(services, client_id, receiver)
    (later,) = emit_events(services, client_id)
    receiver.now = clock.at
    assert courier(services).run()["delivered"] == 1
    assert receiver.ids() == [later]
    assert receiver.deliveries[0].payload["seq"] == 3


def test_a_revoked_client_or_a_removed_webhook_gets_nothing(
    services: Services, client_id: str, receiver: Receiver, clock: Clock
) -> None:
    register(services, client_id, receiver)
    other = new_client(services, "sms")
    register(services, other, receiver, "/other")
    emit_events(services, client_id)
    emit_events(services, other)
    remove_webhook(services, actor=OPERATOR_ACTOR, client=client_id, request_id=None)
    from gate.clients import revoke_client

    revoke_client(services, actor=OPERATOR_ACTOR, client=other, request_id=None)
    assert courier(services).run()["delivered"] == 0
    assert receiver.deliveries == []


# -- rotation ---------------------------------------------------------------------------


def test_after_a_rotation_both_secrets_sign_until_the_window_ends_then_only_the_new(
    services: Services, client_id: str, receiver: Receiver, clock: Clock
) -> None:
    old = register(services, client_id, receiver)
    rotated = rotate_webhook_secret(
        services, actor=OPERATOR_ACTOR, client=client_id, request_id=None
    )
    assert rotated.previous_valid_until == clock.at + timedelta(hours=24)
    # The receiver has not switched yet: it knows only the old secret.
    receiver.secrets = {"old": old}

    emit_events(services, client_id)
    clock.at = receiver.now = NOW + timedelta(hours=23)
    assert courier(services).run()["delivered"] == 1
    during = receiver.deliveries[-1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert during.verified == {"old": True}
    assert verifies(rotated.secret, during.body, during.headers, clock.at)

    # Past the window, a receiver that knows only the old secret can verify nothing.
    (after_event,) = emit_events(services, client_id)
    clock.at = receiver.now = rotated.previous_valid_until + timedelta(seconds=1)
    counts = courier(services).run()
    assert counts == {"delivered": 0, "retried": 1, "failed": 0, "lost": 0}
    past = receiver.deliveries[-1]
    assert past.webhook_id == after_event
    assert len(past.headers["webhook-signature"].split(" ")) == 1
    assert past.verified == {"old": False}
    assert verifies(rotated.secret, past.body, past.headers, clock.at)
    assert attempts(services, client_id)[-1].status_code == 400
    assert delivery(services, after_event, client_id).notified_at is None
    # The old secret is destroyed once its window is over.
    row = webhook_row(services, client_id)
    assert row.previous_secret_ct is None and row.previous_secret_expires_at is None

    # The receiver switches to the new secret: the retry goes through.
    receiver.secrets = {"new": rotated.secret}
    clock.at = receiver.now = row.next_attempt_at
    assert courier(services).run()["delivered"] == 1
    assert receiver.deliveries[-1].verified == {"new": True}


def test_a_replaced_url_gets_the_pending_event_with_a_new_secret_and_no_old_one(
    services: Services, client_id: str, receiver: Receiver, clock: Clock
) -> None:
    old = register(services, client_id, receiver)
    rotate_webhook_secret(services, actor=OPERATOR_ACTOR, client=client_id, request_id=None)
    (event_id,) = emit_events(services, client_id)
    receiver.script = [500]
    receiver.secrets = {}
    courier(services).run()
    new = register(services, client_id, receiver, "/moved")
    receiver.secrets = {"new": new, "old": old}
    receiver.now = clock.at
    assert courier(services).run()["delivered"] == 1  # at once: a new URL starts afresh
    moved = receiver.deliveries[-1]
    assert (moved.path, moved.webhook_id) == ("/moved", event_id)
    assert moved.verified == {"new": True, "old": False}
    assert [a.attempt for a in attempts(services, client_id)] == [1, 1]


# -- crashes and concurrency -------------------------------------------------------------


class Crash(BaseException):
    """The courier's process dying between the send and the record of its result."""


def crash_after_send(_claimed: webhooks.Claimed, _sent: webhooks.Sent) -> None:
    raise Crash


def test_a_courier_that_dies_after_sending_leaves_the_event_to_be_sent_again_with_its_id(
    services: Services, client_id: str, receiver: Receiver, clock: Clock
) -> None:
    register(services, client_id, receiver)
    (event_id,) = emit_events(services, client_id)
    receiver.now = clock.at
    dying = courier(services, after_send=crash_after_send)
    with pytest.raises(Crash):
        dying.run()
    assert receiver.ids() == [event_id]  # the receiver had it; nothing was recorded
    assert attempts(services, client_id) == []
    assert webhook_row(services, client_id).claimed_by == dying.owner

    # While the dead courier's claim lasts, no one sends the event again ...
    assert courier(services).run()["delivered"] == 0
    assert receiver.ids() == [event_id]
    # ... and once it expires, another courier does: same webhook-id, one duplicate.
    clock.at = receiver.now = NOW + webhooks.claim_lease(services.settings.webhook_timeout_seconds)
    assert courier(services).run()["delivered"] == 1
    assert receiver.ids() == [event_id, event_id]
    assert all(d.verified["current"] for d in receiver.deliveries)
    (recorded,) = attempts(services, client_id)
    assert (recorded.attempt, recorded.outcome) == (1, "delivered")
    assert delivery(services, event_id, client_id).notified_at == clock.at

    # The dead courier's result, were it to come back, is not recorded over it.
    late = webhooks.Sent(status_code=200)
    with services.sessions() as session:
        claimed = webhooks.Claimed(
            client_id=client_id,
            origin="",
            url_ct=b"",
            secret_ct=b"",
            previous_secret_ct=None,
            cursor_seq=0,
            head_attempts=0,
            event_id=event_id,
            seq=1,
            body=b"",
            created_at=clock.at,
        )
        assert (
            webhooks.record_attempt(
                session, claimed, late, now=clock.at, owner=dying.owner, jitter=at_most
            )
            is None
        )
        session.rollback()
    assert len(attempts(services, client_id)) == 1


def services_on(engine: Engine, services_for: ServicesFor, clock: Clock) -> Services:
    return services_for(
        session_factory(engine), session_factory(engine, read_only=True), clock=clock
    )


def test_two_couriers_at_once_never_send_one_client_s_events_concurrently(
    fresh_database: FreshDatabase, services_for: ServicesFor, clock: Clock
) -> None:
    """Each courier with its own engine (as its own process would have), started together,
    against a receiver that holds each request a little, to widen any race."""
    setup_engine = build_engine(fresh_database.url)
    engines = [build_engine(fresh_database.url) for _ in range(2)]
    try:
        setup = services_on(setup_engine, services_for, clock)
        with webhook_receiver(hold=0.01) as receiver:
            receiver.now = clock.at
            sent: dict[str, list[str]] = {}
            for name in ("crm", "sms", "pos", "app"):
                client = new_client(setup, name)
                secret = set_webhook(
                    setup,
                    actor=OPERATOR_ACTOR,
                    client=client,
                    url=receiver.url(f"/{name}"),
                    request_id=None,
                ).secret
                receiver.secrets[name] = secret
                sent[name] = emit_events(setup, client, 5)
            started = threading.Barrier(2)
            counts: list[dict[str, int]] = []
            errors: list[BaseException] = []

            def run(engine: Engine) -> None:
                one = courier(services_on(engine, services_for, clock))
                started.wait()
                try:
                    counts.append(one.run())
                except BaseException as exc:  # asserted below
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert errors == []
        assert sum(c["delivered"] for c in counts) == 20
        assert sum(c["lost"] for c in counts) == 0
        by_path: dict[str, list[str]] = {}
        for received in receiver.deliveries:
            by_path.setdefault(received.path, []).append(received.webhook_id)
        # Each event exactly once, each client's in order, never two of a client at once.
        assert by_path == {f"/{name}": ids for name, ids in sent.items()}
        assert set(receiver.most_in_flight.values()) == {1}
    finally:
        setup_engine.dispose()
        for engine in engines:
            engine.dispose()


@pytest.mark.backends("postgresql", "mariadb")
def test_a_claim_passes_by_a_webhook_row_another_worker_has_locked(
    fresh_database: FreshDatabase, services_for: ServicesFor, clock: Clock, backend: str
) -> None:
    """SKIP LOCKED: a row locked by another transaction is passed by at once, not waited for."""
    engines = [build_engine(fresh_database.url) for _ in range(2)]
    try:
        setup = services_on(engines[0], services_for, clock)
        with webhook_receiver() as receiver:
            first, second = (new_client(setup, name) for name in ("crm", "sms"))
            for client in (first, second):
                set_webhook(
                    setup, actor=OPERATOR_ACTOR, client=client, url=receiver.url(), request_id=None
                )
                emit_events(setup, client)
            # Both are due; the first in claim order is locked by another transaction.
            ordered = sorted(
                [first, second],
                key=lambda c: (webhook_row(setup, c).next_attempt_at, c),
            )
            with Session(engines[0]) as holder, Session(engines[1]) as claimer:
                # A claim that waited for the lock would fail here, not hang.
                claimer.execute(
                    text(
                        "SET lock_timeout = '5s'"
                        if backend == "postgresql"
                        else "SET innodb_lock_wait_timeout = 5"
                    )
                )
                holder.execute(
                    text("SELECT client_id FROM feed_webhook WHERE client_id = :c FOR UPDATE"),
                    {"c": ordered[0]},
                )
                claimed = webhooks.claim_next(
                    claimer, now=clock.at, owner="claimer", lease=timedelta(minutes=2)
                )
                assert claimed is not None and claimed.client_id == ordered[1]
                claimer.rollback()
                holder.rollback()
    finally:
        for engine in engines:
            engine.dispose()


# -- URL rules at send time, and what is logged ------------------------------------------


def test_an_address_that_turned_private_since_registration_is_refused_at_send_time(
    services_for: ServicesFor,
    services: Services,
    client_id: str,
    receiver: Receiver,
    clock: Clock,
    settings: Settings,
) -> None:
    strict = services_for(
        services.sessions, settings=settings.model_copy(update={"webhooks_allow_insecure": False})
    )
    set_webhook(
        strict,
        actor=OPERATOR_ACTOR,
        client=client_id,
        url=f"https://hooks.example.test:{receiver.port}/hook",
        request_id=None,
        resolve=lambda host, port: ["93.184.215.14"],
    )
    emit_events(strict, client_id)
    # The name now answers with the loopback address (DNS rebinding).
    rebound = courier(strict, resolve=lambda host, port: ["93.184.215.14", "127.0.0.1"])
    assert rebound.run()["retried"] == 1
    assert receiver.deliveries == []
    (refused,) = attempts(strict, client_id)
    assert (refused.status_code, refused.error) == (None, "address-refused")
    assert refused.outcome == "retry"


def test_a_delivery_goes_to_the_address_resolved_and_names_the_host_it_was_given(
    services: Services, client_id: str, receiver: Receiver, clock: Clock
) -> None:
    url = f"http://hooks.example.test:{receiver.port}/hook"
    secret = set_webhook(
        services, actor=OPERATOR_ACTOR, client=client_id, url=url, request_id=None
    ).secret
    receiver.secrets["current"] = secret
    receiver.now = clock.at
    emit_events(services, client_id)
    resolved: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        resolved.append((host, port))
        return ["127.0.0.1"]

    assert courier(services, resolve=resolve).run()["delivered"] == 1
    assert resolved == [("hooks.example.test", receiver.port)]
    assert receiver.deliveries[0].headers["host"] == f"hooks.example.test:{receiver.port}"


def tls_for(host: str, tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A certificate authority and a server certificate for ``host`` (and not for the
    address it is reached at): the server's context and a client's that trusts the CA."""
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "memberguard test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(pem))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client = ssl.create_default_context(cadata=ca.public_bytes(pem).decode())
    return server, client


def test_an_https_delivery_to_the_resolved_address_checks_the_certificate_for_the_host(
    services: Services, client_id: str, clock: Clock, tmp_path: Path
) -> None:
    """The connection goes to the address the check resolved (127.0.0.1 here), and TLS
    still names and verifies the host: SNI and the certificate are the host's."""
    host = "hooks.example.test"
    server_tls, client_tls = tls_for(host, tmp_path)
    with webhook_receiver(tls=server_tls) as receiver:
        secret = set_webhook(
            services,
            actor=OPERATOR_ACTOR,
            client=client_id,
            url=f"https://{host}:{receiver.port}/hook",
            request_id=None,
        ).secret
        receiver.secrets["current"] = secret
        receiver.now = clock.at
        emit_events(services, client_id)
        trusting = httpx.HTTPTransport(verify=client_tls)
        assert (
            courier(services, transport=trusting, resolve=lambda host, port: ["127.0.0.1"]).run()[
                "delivered"
            ]
            == 1
        )
        assert receiver.deliveries[0].verified == {"current": True}
        assert receiver.deliveries[0].headers["host"] == f"{host}:{receiver.port}"
        # A certificate the client does not trust is a failed try, retried.
        emit_events(services, client_id)
        untrusting = httpx.HTTPTransport(verify=ssl.create_default_context())
        assert (
            courier(services, transport=untrusting, resolve=lambda host, port: ["127.0.0.1"]).run()[
                "retried"
            ]
            == 1
        )
    assert attempts(services, client_id)[-1].error == "connect-error"


def test_an_unreachable_receiver_is_retried_with_the_error_class_recorded(
    services: Services, client_id: str, clock: Clock
) -> None:
    from tests.integration.notify_servers import closed_port

    with closed_port() as port:
        set_webhook(
            services,
            actor=OPERATOR_ACTOR,
            client=client_id,
            url=f"http://127.0.0.1:{port}/hook",
            request_id=None,
        )
        emit_events(services, client_id)
        assert courier(services).run()["retried"] == 1
    (tried,) = attempts(services, client_id)
    assert (tried.status_code, tried.error) == (None, "connect-error")


def test_the_url_s_path_and_query_and_the_secret_reach_no_log_line_or_audit_entry(
    services: Services,
    client_id: str,
    receiver: Receiver,
    clock: Clock,
    json_logs: Any,
    session: Session,
) -> None:
    token = "tok-" + new_id()
    url = receiver.url(f"/hooks/{token}-path?token={token}")
    secret = set_webhook(
        services, actor=OPERATOR_ACTOR, client=client_id, url=url, request_id=None
    ).secret
    rotated = rotate_webhook_secret(
        services, actor=OPERATOR_ACTOR, client=client_id, request_id=None
    ).secret
    receiver.secrets["new"] = rotated
    receiver.now = clock.at
    emit_events(services, client_id, 2)
    receiver.script = [500]
    courier(services).run()
    clock.at = receiver.now = webhook_row(services, client_id).next_attempt_at
    assert courier(services).run()["delivered"] == 2
    assert receiver.deliveries[-1].path == f"/hooks/{token}-path?token={token}"

    logs = json_logs()
    assert "webhook.delivered" in logs and "webhook.retry" in logs
    assert "HTTP Request: POST http://127.0.0.1" in logs  # httpx's line, with the origin only
    entries = session.execute(text("SELECT entry FROM audit_entry")).scalars().all()
    recorded = b"\n".join(bytes(e) for e in entries).decode()
    assert f"http://127.0.0.1:{receiver.port}" in recorded  # the origin is recorded
    for value in (token, secret, rotated, secret.removeprefix("whsec_")):
        assert value not in logs
        assert value not in recorded


def test_the_secret_and_the_url_are_stored_encrypted_in_no_column_in_clear(
    services: Services, client_id: str, receiver: Receiver, session: Session
) -> None:
    token = "tok-" + new_id()
    issued = set_webhook(
        services,
        actor=OPERATOR_ACTOR,
        client=client_id,
        url=receiver.url(f"/hook?token={token}"),
        request_id=None,
    )
    rotated = rotate_webhook_secret(
        services, actor=OPERATOR_ACTOR, client=client_id, request_id=None
    ).secret
    raw = [s.removeprefix("whsec_") for s in (issued.secret, rotated)]
    needles = [issued.secret, rotated, *raw, token]
    tables = {
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
        "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
        "mysql": "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
    }[session.get_bind().dialect.name]
    names = session.execute(text(tables)).scalars().all()
    assert "feed_webhook" in names
    for name in names:
        for row in session.execute(text(f"SELECT * FROM {name}")):
            cells = [c if isinstance(c, bytes) else str(c).encode() for c in row]
            for needle in needles:
                for cell in cells:
                    assert needle.encode() not in cell, name
    row = webhook_row(services, client_id)
    keyring = services.keyring
    assert webhooks.unseal(keyring, client_id, "secret", row.secret_ct) == rotated
    assert webhooks.unseal(keyring, client_id, "secret", row.previous_secret_ct or b"") == (
        issued.secret
    )
    assert token in webhooks.unseal(keyring, client_id, "url", row.url_ct)


# -- the job ---------------------------------------------------------------------------------


def test_the_worker_s_feed_webhooks_job_delivers_and_reports_counts(
    services: Services, client_id: str, receiver: Receiver, clock: Clock
) -> None:
    register(services, client_id, receiver)
    emit_events(services, client_id, 2)
    receiver.now = clock.at
    jobs = [job for job in default_jobs(services.settings) if job.name == "feed.webhooks"]
    (run,) = Worker(services, jobs).run_once(clock.at)
    assert (run.status, run.result) == (
        "ok",
        {"delivered": 2, "retried": 0, "failed": 0, "lost": 0},
    )
    assert len(receiver.deliveries) == 2
