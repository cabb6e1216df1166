"""Concurrent writers emitting events: each client's ``seq`` is still 1 … n without gaps
or duplicates, and in the order the changes committed (the log's order)."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audit.notary import Notary
from audit.uow import AuditedUnitOfWork
from core.clock import Clock
from core.db import build_engine, session_factory
from feed.events import EventType, emit
from feed.models import FeedDelivery, FeedEvent
from gate.clients import register_client
from principals import OPERATOR_ACTOR
from tests.conftest import ORIGIN, FreshDatabase, ServicesFor
from tests.integration.conftest import POLICY, member_ref, record
from tests.integration.test_concurrency import APPENDS, WRITERS, run_writers


def test_concurrent_changes_number_each_clients_events_one_by_one_in_commit_order(
    fresh_database: FreshDatabase,
    services_for: ServicesFor,
    clock: Clock,
    signer: Ed25519PrivateKey,
) -> None:
    engine = build_engine(fresh_database.url)
    try:
        setup = services_for(session_factory(engine))
        everyone, evens, odds = (
            register_client(
                setup,
                actor=OPERATOR_ACTOR,
                name=name,
                role="client",
                purposes=[],
                scopes=[],
                request_id=None,
            ).client["id"]
            for name in ("everyone", "evens", "odds")
        )
    finally:
        engine.dispose()
    notary = Notary(origin=ORIGIN, private_key=signer, every_entries=10_000, every_seconds=3600)

    def change(factory: sessionmaker[Session], index: int, n: int) -> list[int]:
        """One use case: an entry and its event, to ``everyone`` and to one of the others."""
        uow = AuditedUnitOfWork(factory, notary=notary, clock=clock, policy_version=POLICY)
        with uow:
            member = member_ref(index * APPENDS + n)
            promised = uow.record(record(n, members=(member,)))
            emit(
                uow.session,
                type=EventType.CONSENT_CHANGED,
                data={"entry": promised},
                recipients=[everyone, evens if n % 2 == 0 else odds],
                member_id=member,
                now=uow.now,
            )
            uow.commit()  # no retry: a serialisation failure (or a duplicate seq) fails
        return [promised]

    run_writers(fresh_database, change)

    engine = build_engine(fresh_database.url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(
                select(FeedDelivery.client_id, FeedDelivery.seq, FeedEvent.data)
                .join(FeedEvent, FeedEvent.id == FeedDelivery.event_id)
                .order_by(FeedDelivery.client_id, FeedDelivery.seq)
            ).all()
    finally:
        engine.dispose()
    by_client: dict[str, list[tuple[int, int]]] = {}
    for client_id, seq, data in rows:
        by_client.setdefault(client_id, []).append((seq, json.loads(data)["entry"]))
    total = WRITERS * APPENDS
    assert len(by_client[everyone]) == total
    assert len(by_client[evens]) + len(by_client[odds]) == total
    for client_id, events in by_client.items():
        seqs, entries = zip(*events, strict=True)
        assert list(seqs) == list(range(1, len(events) + 1)), client_id  # no gap, no duplicate
        assert list(entries) == sorted(entries), client_id  # in the log's (commit) order
