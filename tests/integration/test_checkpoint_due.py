"""When a checkpoint is due, decided without reading the latest one on every commit.

``Notary.due`` reuses what this process learnt of the latest checkpoint only in
a transaction that locked the very head it was learnt at; a checkpoint cut by
this transaction, or by anyone since, must be taken into account. The services
fixture cuts every 50 entries; a wrong answer shows as a checkpoint at the
wrong size.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select

import audit.notary
from audit.log import append_entry
from audit.models import AuditCheckpoint
from gate.context import Services
from tests.integration.conftest import record


def commit_entries(services: Services, count: int) -> None:
    for n in range(count):
        with services.uow() as uow:
            append_entry(uow.session, record(n), clock=services.clock)
            uow.commit()


def checkpoint_sizes(services: Services) -> list[int]:
    with services.uow() as uow:
        return list(
            uow.session.scalars(select(AuditCheckpoint.size).order_by(AuditCheckpoint.size))
        )


def cut_now(services: Services) -> None:
    """An on-demand cut, as ``memberguard audit checkpoint`` does it."""
    with services.uow() as uow:
        uow.cut_checkpoint()
        uow.commit()
    assert uow.checkpoint is not None


def known_cut(services: Services) -> Any:
    with services.uow() as uow:
        return audit.notary._KNOWN_CUTS.get(uow.session.get_bind())


def set_known_cut(services: Services, known: Any) -> None:
    with services.uow() as uow:
        audit.notary._KNOWN_CUTS[uow.session.get_bind()] = known


def test_a_checkpoint_cut_in_the_committing_transaction_is_not_cut_again(
    services: Services,
) -> None:
    commit_entries(services, 1)  # the first commit cuts at 1 (its entry is 2)
    commit_entries(services, 47)  # head 49: one short of due
    cut_now(services)  # 49, its entry 50: due counts from 49, so no cut at 50
    assert checkpoint_sizes(services) == [1, 49]
    commit_entries(services, 48)  # head 98: 49 past the last cut
    assert checkpoint_sizes(services) == [1, 49]
    commit_entries(services, 1)
    assert checkpoint_sizes(services) == [1, 49, 99]


def test_a_checkpoint_cut_by_someone_else_is_read_from_the_database(
    services: Services,
) -> None:
    commit_entries(services, 31)  # cut at 1; head 32
    behind = known_cut(services)
    assert behind is not None and behind[1].size == 1
    cut_now(services)  # at 32, its entry 33
    set_known_cut(services, behind)  # as if another process had cut it: this one knows 1
    commit_entries(services, 48)  # head 81: 49 past 32 (80 past 1)
    assert checkpoint_sizes(services) == [1, 32]
    commit_entries(services, 1)
    assert checkpoint_sizes(services) == [1, 32, 82]


def test_what_a_rolled_back_transaction_learnt_is_not_used(services: Services) -> None:
    commit_entries(services, 2)  # cut at 1; head 3
    with services.uow() as uow:  # learns "latest is 1" at a head of size 4, rolled back
        append_entry(uow.session, record(99), clock=services.clock)
        assert services.notary is not None
        assert not services.notary.due(uow.session, services.clock())
    rolled_back = known_cut(services)
    assert rolled_back is not None and rolled_back[0].size == 4
    cut_now(services)  # at 3, its entry 4: another head of size 4
    set_known_cut(services, rolled_back)
    commit_entries(services, 48)  # head 52: 49 past 3 (51 past 1)
    assert checkpoint_sizes(services) == [1, 3]
    commit_entries(services, 1)
    assert checkpoint_sizes(services) == [1, 3, 53]


def test_a_commit_at_a_known_head_reads_no_checkpoint(services: Services) -> None:
    commit_entries(services, 3)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    with services.uow() as uow:
        engine = uow.session.get_bind().engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        commit_entries(services, 1)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert not [s for s in statements if "audit_checkpoint" in s]
