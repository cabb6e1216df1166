"""The audited unit of work: lock first, entries appended at commit, rollback by default."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.log import append_entry, locked_head, read_head
from audit.models import AuditEntry
from core.errors import Unauthenticated
from gate.clients import reissue_key, revoke_client
from gate.context import Services
from principals import OPERATOR_ACTOR, Actor
from principals.clients import authenticate
from tests.conftest import Keys
from tests.integration.conftest import record
from vault.models import VaultMember


def entries(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEntry)) or 0


def test_the_log_head_is_locked_as_soon_as_the_unit_of_work_opens(services: Services) -> None:
    with services.uow() as uow:
        assert locked_head(uow.session) is not None


def test_leaving_without_commit_keeps_nothing(services: Services, session: Session) -> None:
    before = read_head(session)
    with services.uow() as uow:
        uow.session.add(VaultMember(id="a" * 24, created_at=uow.now, updated_at=uow.now))
        uow.session.flush()
        uow.record(record(1))
    assert read_head(session) == before
    assert session.get(VaultMember, "a" * 24) is None


def test_recorded_entries_get_the_seqs_they_were_promised(
    services: Services, session: Session
) -> None:
    with services.uow() as uow:
        promised = [uow.record(record(n)) for n in range(3)]
        appended = uow.commit()
    assert [a.seq for a in appended] == promised == [1, 2, 3]
    # The first commit of a log also cuts a checkpoint, recorded after the use case's entries.
    assert uow.checkpoint is not None and uow.checkpoint.size == 3
    assert read_head(session).size == 4


def test_an_append_around_the_unit_of_work_saves_nothing(
    services: Services, session: Session
) -> None:
    with services.uow() as uow:
        uow.record(record(1))
        append_entry(uow.session, record(2), clock=services.clock)  # not through ``record``
        with pytest.raises(RuntimeError, match="around the unit of work"):
            uow.commit()
    assert entries(session) == 0


def test_a_key_revoked_before_the_lock_is_refused_under_it(services: Services, keys: Keys) -> None:
    with services.reading() as reading:
        sms = authenticate(reading, keys.sms)  # authenticated before the lock ...
    revoke_client(services, actor=OPERATOR_ACTOR, client=keys.ids["sms"], request_id=None)
    with pytest.raises(Unauthenticated), services.uow(sms):  # ... and refused under it
        pass


def test_a_key_replaced_before_the_lock_is_refused_under_it(services: Services, keys: Keys) -> None:
    with services.reading() as reading:
        sms = authenticate(reading, keys.sms)
    new_key = reissue_key(services, actor=OPERATOR_ACTOR, name="sms", replace=True)
    with pytest.raises(Unauthenticated), services.uow(sms):  # the old key, client still active
        pass
    with services.reading() as reading:
        renewed = authenticate(reading, new_key)
    with services.uow(renewed) as uow:
        assert locked_head(uow.session) is not None


def test_a_member_actor_is_refused_until_member_sessions_have_a_check(
    services: Services,
) -> None:
    member = Actor(id="m" * 24, name="member", role="member", kind="member")
    with pytest.raises(Unauthenticated), services.uow(member):
        pass
