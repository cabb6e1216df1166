"""Group commit: a batch of reads decided, recorded and committed together.

``decide_reads`` must give each read of a batch exactly the outcome it would
get alone, record each recorded one in its own entry, and commit them once;
``ReadBatcher`` must hold every caller until that commit, and fail every read
of a batch closed when the batch cannot be recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from sqlalchemy import select

import gate.batching
from audit.log import AuditUnavailable, read_head
from audit.models import AuditEntry
from audit.online import verify_log
from audit.uow import AuditedUnitOfWork
from consent.registry import ConsentChange, consent_facts_for
from core.errors import Forbidden, Unauthenticated
from gate.batching import ReadBatcher
from gate.clients import revoke_client
from gate.consents import record_member_consent
from gate.context import Services
from gate.reads import (
    Decided,
    MemberNotFound,
    ReadRefused,
    ReadRequest,
    Refused,
    UnknownPurposeRecorded,
    decide_reads,
)
from principals import OPERATOR_ACTOR
from principals.clients import authenticate, authenticate_many
from tests.api.conftest import MEMBER
from tests.conftest import Keys
from vault.members import create_member


def new_member(services: Services) -> str:
    with services.uow() as uow:
        member = create_member(
            uow.session,
            policy=services.policy,
            keyring=services.keyring,
            values=MEMBER,
            now=uow.now,
        )
        uow.commit()
    return member


def set_consent(services: Services, key: str, member: str, purpose: str, status: str) -> None:
    """Record a consent change the way the API does, as the client holding ``key``."""
    with services.reading() as session:
        actor = authenticate(session, key)
    record_member_consent(
        services,
        actor=actor,
        member_id=member,
        change=ConsentChange(
            purposes=[purpose],
            status=status,  # type: ignore[arg-type]
            channel="app",
            collected_at=services.clock(),
        ),
        request_id=None,
    )


def request(key: str, member: str, purpose: str = "customer_service") -> ReadRequest:
    return ReadRequest(
        credential=key, member_id=member, purpose=purpose, request_id=None, roles=("client",)
    )


def read_entries_after(services: Services, seq: int) -> list[int]:
    with services.reading() as session:
        return list(
            session.scalars(
                select(AuditEntry.seq)
                .where(AuditEntry.seq > seq, AuditEntry.action == "member.read")
                .order_by(AuditEntry.seq)
            )
        )


def head_size(services: Services) -> int:
    with services.reading() as session:
        return read_head(session).size


def test_a_batch_gives_each_read_its_own_outcome_and_entry(services: Services, keys: Keys) -> None:
    member = new_member(services)
    other = new_member(services)
    before = head_size(services)
    batch = [
        request(keys.crm, member),  # permitted (contract)
        request(keys.crm, member, "marketing_sms"),  # no consent
        request(keys.crm, member, "no_such_purpose"),
        request(keys.crm, "not-an-id"),
        request(keys.sms, other, "customer_service"),  # purpose not granted
        request(keys.crm, other),  # permitted
        request(keys.crm, member),  # the same member again in the batch
        request("mg_" + "x" * 43, member),  # unknown key: not recorded
        request(keys.auditor, member),  # wrong role: not recorded
    ]
    outcomes = decide_reads(services, batch)

    assert len(outcomes) == len(batch)
    permitted = [outcomes[i] for i in (0, 5, 6)]
    assert all(isinstance(o, Decided) for o in permitted)
    assert isinstance(outcomes[1], Refused) and isinstance(outcomes[1].error, ReadRefused)
    assert outcomes[1].error.slug == "consent-required"
    assert isinstance(outcomes[2], Refused)
    assert isinstance(outcomes[2].error, UnknownPurposeRecorded)
    assert isinstance(outcomes[3], Refused) and isinstance(outcomes[3].error, MemberNotFound)
    assert isinstance(outcomes[4], Refused) and isinstance(outcomes[4].error, ReadRefused)
    assert outcomes[4].error.slug == "purpose-not-allowed"
    assert isinstance(outcomes[7], Refused) and isinstance(outcomes[7].error, Unauthenticated)
    assert outcomes[7].actor is None
    assert isinstance(outcomes[8], Refused) and isinstance(outcomes[8].error, Forbidden)

    # Seven reads recorded, in request order, in consecutive entries; the two
    # that never got past authentication are not.
    seqs = [o.audit_seq for o in permitted] + [
        outcomes[i].error.audit_seq  # type: ignore[union-attr]
        for i in (1, 2, 3, 4)
    ]
    assert sorted(seqs) == list(range(before + 1, before + 8))
    assert read_entries_after(services, before) == sorted(seqs)
    assert permitted[0].audit_seq < permitted[1].audit_seq < permitted[2].audit_seq

    released = permitted[0].release(services)
    assert released.id == member and released.fields["name"] == "张*"
    with services.reading() as session:
        assert verify_log(session).ok  # back-links of the member read twice


def test_a_batch_reads_consent_as_committed_before_it(services: Services, keys: Keys) -> None:
    """A withdrawal committed before the batch refuses the batch's reads."""
    member = new_member(services)
    set_consent(services, keys.app, member, "marketing_sms", "granted")
    (first,) = decide_reads(services, [request(keys.crm, member, "marketing_sms")])
    assert isinstance(first, Decided)
    set_consent(services, keys.app, member, "marketing_sms", "withdrawn")
    outcomes = decide_reads(services, [request(keys.crm, member, "marketing_sms")] * 3)
    assert all(isinstance(o, Refused) and o.error.slug == "consent-required" for o in outcomes)  # type: ignore[union-attr]


def test_a_client_revoked_before_the_batch_is_refused_unrecorded(
    services: Services, keys: Keys
) -> None:
    member = new_member(services)
    revoke_client(services, actor=OPERATOR_ACTOR, client=keys.ids["crm"], request_id=None)
    before = head_size(services)
    (outcome,) = decide_reads(services, [request(keys.crm, member)])
    assert isinstance(outcome, Refused) and isinstance(outcome.error, Unauthenticated)
    assert read_entries_after(services, before) == []


class HeldBatches:
    """Wraps ``decide_reads``: the first batch waits until released; batch sizes are kept."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, services: Services, requests: Sequence[ReadRequest]) -> list:
        self.sizes.append(len(requests))
        if len(self.sizes) == 1:
            self.entered.set()
            assert self.release.wait(10)
        return decide_reads(services, requests)


def test_reads_that_arrive_during_a_commit_share_the_next_one(
    services: Services, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldBatches()
    monkeypatch.setattr(gate.batching, "decide_reads", held)
    members = [new_member(services) for _ in range(3)]
    batcher = ReadBatcher(services, max_batch=64)
    try:
        first = batcher.submit(request(keys.crm, members[0]))
        assert held.entered.wait(10)
        waiting = [batcher.submit(request(keys.crm, members[i % 3])) for i in range(20)]
        time.sleep(0.05)
        assert not any(f.done() for f in waiting)  # held until their batch commits
        held.release.set()
        outcomes = [f.result(timeout=10) for f in [first, *waiting]]
    finally:
        batcher.close()
    assert held.sizes == [1, 20]
    assert all(isinstance(o, Decided) for o in outcomes)
    seqs = [o.audit_seq for o in outcomes]  # type: ignore[union-attr]
    assert seqs == sorted(seqs) and len(set(seqs)) == 21
    with services.reading() as session:
        assert verify_log(session).ok


def test_a_batch_that_cannot_be_recorded_releases_nothing_to_anyone(
    services: Services, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = [new_member(services) for _ in range(2)]
    before = head_size(services)

    def failing_commit(self: AuditedUnitOfWork) -> list:
        raise AuditUnavailable("the audit log could not be committed; nothing was released")

    monkeypatch.setattr(AuditedUnitOfWork, "commit", failing_commit)
    held = HeldBatches()
    monkeypatch.setattr(gate.batching, "decide_reads", held)
    batcher = ReadBatcher(services)
    try:
        first = batcher.submit(request(keys.crm, members[0]))
        assert held.entered.wait(10)
        rest = [batcher.submit(request(keys.crm, members[1])) for _ in range(5)]
        held.release.set()
        errors = [f.exception(timeout=10) for f in [first, *rest]]
    finally:
        batcher.close()
    assert all(isinstance(e, AuditUnavailable) for e in errors)
    assert len({id(e) for e in errors}) == len(errors)  # one error object per caller
    assert head_size(services) == before
    with services.reading() as session:
        assert session.scalar(select(AuditEntry.seq).where(AuditEntry.seq > before)) is None


def test_an_unexpected_error_fails_the_batch_closed(
    services: Services, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> list:
        raise RuntimeError("a bug")

    monkeypatch.setattr(gate.batching, "decide_reads", broken)
    batcher = ReadBatcher(services)
    try:
        error = batcher.submit(request(keys.crm, new_member(services))).exception(timeout=10)
    finally:
        batcher.close()
    assert isinstance(error, AuditUnavailable)
    assert isinstance(error.__cause__, RuntimeError)


class Fatal(BaseException):
    """Not an Exception: what ends a thread (as SystemExit would)."""


def test_a_thread_ended_by_an_error_hands_what_is_queued_to_a_new_one(
    services: Services, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = new_member(services)
    batches: list[int] = []

    def fatal_once(services_: Services, requests: Sequence[ReadRequest]) -> list:
        batches.append(len(requests))
        if len(batches) == 1:
            raise Fatal
        return decide_reads(services_, requests)

    ended: list[type[BaseException]] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: ended.append(args.exc_type))
    monkeypatch.setattr(gate.batching, "decide_reads", fatal_once)
    batcher = ReadBatcher(services)
    try:
        failed = batcher.submit(request(keys.crm, member)).exception(timeout=10)
        later = batcher.submit(request(keys.crm, member)).result(timeout=10)
    finally:
        batcher.close()
    assert isinstance(failed, AuditUnavailable)
    assert isinstance(failed.__cause__, Fatal)
    assert isinstance(later, Decided)
    deadline = time.monotonic() + 5
    while not ended and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ended == [Fatal]  # the first thread did end


def test_callers_are_answered_even_if_logging_the_failure_fails(
    services: Services, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    class BrokenLog:
        def error(self, *_args: object, **_kwargs: object) -> None:
            raise BrokenPipeError

    def broken(*_args: object) -> list:
        raise RuntimeError("a bug")

    monkeypatch.setattr(gate.batching, "log", BrokenLog())
    monkeypatch.setattr(gate.batching, "decide_reads", broken)
    batcher = ReadBatcher(services)
    try:
        member = new_member(services)
        errors = [batcher.submit(request(keys.crm, member)).exception(timeout=10) for _ in range(2)]
    finally:
        batcher.close()
    assert all(isinstance(e, AuditUnavailable) for e in errors)


def test_close_decides_the_reads_already_queued(
    services: Services, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldBatches()
    monkeypatch.setattr(gate.batching, "decide_reads", held)
    member = new_member(services)
    batcher = ReadBatcher(services)
    first = batcher.submit(request(keys.crm, member))
    assert held.entered.wait(10)
    queued = [batcher.submit(request(keys.crm, member)) for _ in range(3)]
    closing = threading.Thread(target=batcher.close)
    closing.start()
    held.release.set()
    closing.join(10)
    assert not closing.is_alive()
    outcomes = [f.result(timeout=0) for f in [first, *queued]]
    assert all(isinstance(o, Decided) for o in outcomes)
    with pytest.raises(AuditUnavailable):
        batcher.submit(request(keys.crm, member))


def test_the_thread_ends_when_idle_and_restarts_on_demand(services: Services, keys: Keys) -> None:
    member = new_member(services)
    batcher = ReadBatcher(services, idle_seconds=0.05)
    try:
        assert isinstance(batcher.submit(request(keys.crm, member)).result(10), Decided)
        deadline = time.monotonic() + 5
        while batcher._thread is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert batcher._thread is None
        assert isinstance(batcher.submit(request(keys.crm, member)).result(10), Decided)
    finally:
        batcher.close()


def test_a_closed_batcher_refuses_new_reads(services: Services, keys: Keys) -> None:
    batcher = ReadBatcher(services)
    batcher.close()
    with pytest.raises(AuditUnavailable):
        batcher.submit(request(keys.crm, new_member(services)))


def test_consent_facts_for_returns_exactly_the_pairs_asked(services: Services, keys: Keys) -> None:
    a, b = new_member(services), new_member(services)
    set_consent(services, keys.app, a, "marketing_sms", "granted")
    set_consent(services, keys.app, a, "analytics", "granted")
    set_consent(services, keys.app, b, "analytics", "withdrawn")
    with services.reading() as session:
        facts = consent_facts_for(session, {(a, "marketing_sms"), (b, "analytics")})
    # (a, analytics) matches the query's member and purpose lists but was not asked for.
    assert set(facts) == {(a, "marketing_sms"), (b, "analytics")}
    assert facts[(a, "marketing_sms")].status == "granted"
    assert facts[(b, "analytics")].status == "withdrawn"
    with services.reading() as session:
        assert consent_facts_for(session, set()) == {}


def test_authenticate_many_gives_each_key_its_client_and_grants(
    services: Services, keys: Keys
) -> None:
    with services.reading() as session:
        actors = authenticate_many(
            session, [keys.crm, keys.sms, keys.auditor, "mg_unknown", "not-a-key"]
        )
    assert set(actors) == {keys.crm, keys.sms, keys.auditor}
    assert actors[keys.crm].purposes == {
        "membership",
        "customer_service",
        "marketing_sms",
        "delivery",
    }
    assert actors[keys.crm].scopes == {"members:write", "consents:read", "consents:write"}
    assert actors[keys.sms].purposes == {"marketing_sms"}
    assert actors[keys.auditor].role == "auditor" and actors[keys.auditor].purposes == set()
    with services.reading() as session:
        assert actors[keys.crm] == authenticate(session, keys.crm)
