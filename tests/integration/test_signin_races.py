"""Sign-in codes under concurrency, on every database: attempts are counted under the
log-head lock, so simultaneous guesses cannot exceed a challenge's allowance, and a
code opens one session however many requests carry it at once.

Real commits from several threads (``fresh_database``), as concurrent requests to
several workers would make them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from audit.entry import parse_entry
from audit.models import AuditEntry
from audit.online import verify_log
from core.db import build_engine, session_factory
from gate.context import Services
from gate.signin import request_sign_in_code, verify_sign_in_code
from notify.outbox import read_outbox
from principals.models import MemberLoginChallenge, MemberSession
from principals.signin import ChallengeClosed, InvalidCode
from tests.api.conftest import code_in
from tests.conftest import FreshDatabase, ServicesFor
from vault.members import create_member

THREADS = 10


@pytest.fixture
def services(fresh_database: FreshDatabase, services_for: ServicesFor) -> Iterator[Services]:
    engine = build_engine(fresh_database.url)
    try:
        built = services_for(session_factory(engine), session_factory(engine, read_only=True))
        with built.sessions() as session:
            create_member(
                session,
                policy=built.policy,
                keyring=built.keyring,
                values={"name": "张三", "phone": "+8613812345678"},
                now=built.clock(),
            )
            session.commit()
        yield built
    finally:
        engine.dispose()


def open_challenge(services: Services) -> tuple[str, str]:
    started = request_sign_in_code(
        services,
        field_name="phone",
        value="13812345678",
        locale="zh-CN",
        client_address=None,
        request_id=None,
    )
    message = list(read_outbox(services.settings.resolved_outbox_dir))[-1]
    return started.challenge, code_in(message)


def all_at_once(attempt: Callable[[], Any]) -> list[Any]:
    """``attempt`` in THREADS threads released together: each one's result or exception."""
    start = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = attempt()
        except Exception as exc:  # the outcome under test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "an attempt hung"
    return results


def signin_entries(services: Services) -> list[dict[str, Any]]:
    with services.reading() as session:
        rows = session.scalars(
            select(AuditEntry.entry).where(AuditEntry.action == "member.signin")
        ).all()
    return [parse_entry(bytes(raw)) for raw in rows]


def test_simultaneous_wrong_codes_are_counted_one_by_one_up_to_the_allowance(
    services: Services,
) -> None:
    challenge, code = open_challenge(services)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    results = all_at_once(
        lambda: verify_sign_in_code(
            services, challenge=challenge, code=wrong, client_address=None, request_id=None
        )
    )
    invalid = [r for r in results if isinstance(r, InvalidCode)]
    closed = [r for r in results if isinstance(r, ChallengeClosed)]
    assert len(invalid) == 5 and len(closed) == THREADS - 5, results
    assert sorted(r.extra["attempts_left"] for r in invalid) == [0, 1, 2, 3, 4]
    with pytest.raises(ChallengeClosed):  # burned: even the right code fails now
        verify_sign_in_code(
            services, challenge=challenge, code=code, client_address=None, request_id=None
        )
    with services.reading() as session:
        assert session.scalars(select(MemberLoginChallenge.attempts)).one() == 5
        assert session.scalar(select(func.count()).select_from(MemberSession)) == 0
    (burn,) = signin_entries(services)
    assert burn["decision"] == "deny"


def test_a_code_sent_to_many_requests_at_once_opens_one_session(services: Services) -> None:
    challenge, code = open_challenge(services)
    results = all_at_once(
        lambda: verify_sign_in_code(
            services, challenge=challenge, code=code, client_address=None, request_id=None
        )
    )
    opened = [r for r in results if not isinstance(r, Exception)]
    assert len(opened) == 1, results
    assert all(isinstance(r, ChallengeClosed) for r in results if isinstance(r, Exception))
    with services.reading() as session:
        assert session.scalar(select(func.count()).select_from(MemberSession)) == 1
        report = verify_log(session)
        assert report.ok, report.reason
    (signin,) = signin_entries(services)
    assert signin["decision"] == "permit"
