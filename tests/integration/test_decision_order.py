"""A decision's entry is never ordered after a consent change the decision did not see.

The log's order must be the order decisions were made in: an entry at seq S
was decided on every consent change recorded below S, and on none above it.
On SQLite BEGIN IMMEDIATE serialises whole transactions, which hid a use case
that read consent before taking the log-head lock; PostgreSQL and MariaDB
under READ COMMITTED do not. So this runs with real commits from several
threads on every backend, and widens the window that such a bug needs: the
consent read is slowed down, and a change is committed in the meantime from
another thread. Each answer is then checked against the log: the consent
state a read returned, and the permit or deny a gated read recorded, must be
those of the latest change recorded before its entry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

import gate.consents
import gate.reads
from audit.entry import parse_entry
from audit.models import AuditEntry
from audit.online import verify_log
from consent.registry import ConsentChange
from core.db import build_engine, session_factory
from gate.clients import register_client
from gate.consents import read_member_consents, record_member_consent
from gate.context import Services
from gate.reads import ReadRequest, decide_reads
from gate.writes import create_member_record
from principals import OPERATOR_ACTOR, Actor
from principals.clients import authenticate
from tests.conftest import NOW, FreshDatabase, ServicesFor

ROUNDS = 12
SLOW_READ_SECONDS = 0.03


def locked_clock(start: datetime = NOW) -> Callable[[], datetime]:
    """The injected clock, safe across threads: strictly increasing."""
    from datetime import timedelta

    lock = threading.Lock()
    state = {"now": start}

    def clock() -> datetime:
        with lock:
            state["now"] += timedelta(milliseconds=1)
            return state["now"]

    return clock


@dataclass
class World:
    services: Services
    crm: Actor
    sms_key: str
    member: str


@pytest.fixture
def world(fresh_database: FreshDatabase, services_for: ServicesFor) -> Iterator[World]:
    engine = build_engine(fresh_database.url)
    services = services_for(
        session_factory(engine), session_factory(engine, read_only=True), clock=locked_clock()
    )
    keys = {}
    for name, purposes, scopes in (
        ("crm", ["membership"], ["members:write", "consents:read", "consents:write"]),
        ("sms", ["marketing_sms"], []),
    ):
        keys[name] = register_client(
            services,
            actor=OPERATOR_ACTOR,
            name=name,
            role="client",
            purposes=purposes,
            scopes=scopes,
            request_id=None,
        ).key
    with services.reading() as session:
        crm = authenticate(session, keys["crm"])
    member = create_member_record(
        services, actor=crm, values={"name": "李雷", "phone": "13912345678"}, request_id=None
    ).id
    try:
        yield World(services=services, crm=crm, sms_key=keys["sms"], member=member)
    finally:
        engine.dispose()


def slowed(original: Callable[..., Any], reading: threading.Event) -> Callable[..., Any]:
    """``original``, then a pause in which the other thread may commit a change."""

    def slow(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        reading.set()
        time.sleep(SLOW_READ_SECONDS)
        return result

    return slow


def change_consent(world: World, status: str) -> None:
    record_member_consent(
        world.services,
        actor=world.crm,
        member_id=world.member,
        change=ConsentChange(
            purposes=["marketing_sms"],
            status=status,  # type: ignore[arg-type]
            channel="app",
            collected_at=world.services.clock(),
        ),
        request_id=None,
    )


def race(world: World, decide: Callable[[], None], reading: threading.Event) -> None:
    """Each round: a decision whose consent read is slow, and a change committed meanwhile."""
    errors: list[BaseException] = []
    status = "withdrawn"
    for _ in range(ROUNDS):
        status = "granted" if status == "withdrawn" else "withdrawn"
        reading.clear()

        def changer(status: str = status) -> None:
            try:
                # Waits for the decision to have read consent; the change then
                # commits while that read is still in its transaction (if the
                # decision holds the log-head lock, the change waits for it).
                if not reading.wait(timeout=10):
                    # The window was never widened: the race would not be run.
                    raise AssertionError("the decision never read consent")
                change_consent(world, status)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=changer)
        thread.start()
        decide()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the consent change hung"
    assert errors == [], errors


def log_entries(services: Services) -> list[dict[str, Any]]:
    with services.reading() as session:
        return [parse_entry(bytes(raw)) for raw in _entries(session)]


def _entries(session: Session) -> list[bytes]:
    return list(session.scalars(select(AuditEntry.entry).order_by(AuditEntry.seq)))


def status_before(entries: list[dict[str, Any]], seq: int) -> str | None:
    """The marketing_sms consent as of the entries below ``seq``."""
    status = None
    for entry in entries:
        if entry["seq"] >= seq:
            break
        if entry["action"] == "consent.change" and "marketing_sms" in entry["detail"]["purposes"]:
            status = entry["detail"]["status"]
    return status


def test_a_consent_read_is_never_logged_after_a_change_it_did_not_see(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    reading = threading.Event()
    monkeypatch.setattr(
        gate.consents, "consent_states", slowed(gate.consents.consent_states, reading)
    )
    answers: list[tuple[int, str | None]] = []

    def decide() -> None:
        states = read_member_consents(
            world.services, actor=world.crm, member_id=world.member, request_id=None
        )
        answers.append((states.audit_seq, states.purposes.get("marketing_sms", {}).get("status")))

    race(world, decide, reading)
    entries = log_entries(world.services)
    assert len(answers) == ROUNDS
    wrong = [(seq, got) for seq, got in answers if got != status_before(entries, seq)]
    assert wrong == [], "a consent read was logged after a change it did not see"
    assert verify_log_ok(world.services)


def test_a_gated_read_is_never_logged_after_a_change_it_did_not_see(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    change_consent(world, "withdrawn")
    reading = threading.Event()
    monkeypatch.setattr(
        gate.reads, "consent_facts_for", slowed(gate.reads.consent_facts_for, reading)
    )
    answers: list[tuple[int, bool]] = []

    def decide() -> None:
        request = ReadRequest(
            credential=world.sms_key,
            member_id=world.member,
            purpose="marketing_sms",
            request_id=None,
            roles=("client",),
        )
        (outcome,) = decide_reads(world.services, [request])
        seq = outcome.audit_seq if isinstance(outcome, gate.reads.Decided) else None
        if seq is None:
            seq = outcome.error.audit_seq  # type: ignore[union-attr]
        answers.append((seq, isinstance(outcome, gate.reads.Decided)))

    race(world, decide, reading)
    entries = log_entries(world.services)
    assert len(answers) == ROUNDS
    by_seq = {entry["seq"]: entry for entry in entries}
    wrong = [
        seq
        for seq, released in answers
        if released != (status_before(entries, seq) == "granted")
        or (by_seq[seq]["decision"] == "permit") != released
    ]
    assert wrong == [], "a gated read was logged after a change it did not see"
    assert verify_log_ok(world.services)


def verify_log_ok(services: Services) -> bool:
    with services.reading() as session:
        return verify_log(session).ok
