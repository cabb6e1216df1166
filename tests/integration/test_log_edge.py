"""The right edge of the Merkle tree, kept in memory between appends.

An append uses the remembered edge only if the head it locked is the head the
edge was remembered at; anything else (a rollback, another process's appends,
a different history of the same size) must read the edge from the database.
Each test would leave wrong Merkle nodes behind, and fail ``verify_log``, if
a stale edge were used.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, delete, update
from sqlalchemy.orm import Session, sessionmaker

import audit.tree
from audit.log import AuditUnavailable, append_entry, read_head
from audit.models import AuditMerkleNode
from audit.online import verify_log
from audit.tree import edge_keys
from gate.context import Services
from tests.integration.conftest import lift_guards, record, ticking_clock


def append(services: Services, n: int, *, commit: bool = True) -> None:
    with services.uow() as uow:
        append_entry(uow.session, record(n), clock=services.clock)
        if commit:
            uow.commit()


def head_size(services: Services) -> int:
    with services.reading() as session:
        return read_head(session).size


def remembered(services: Services) -> tuple[int, str, tuple[bytes, ...]] | None:
    with services.uow() as uow:
        return audit.tree._EDGES.get(uow.session.get_bind())


def assert_log_verifies(services: Services) -> None:
    with services.uow() as uow:
        report = verify_log(uow.session)
    assert report.ok, report


def test_edge_keys_are_the_perfect_subtrees_of_the_right_edge() -> None:
    assert edge_keys(0) == []
    assert edge_keys(1) == [(0, 0)]
    assert edge_keys(6) == [(2, 0), (1, 2)]
    assert edge_keys(7) == [(2, 0), (1, 2), (0, 6)]
    assert edge_keys(8) == [(3, 0)]


def test_an_edge_remembered_in_a_rolled_back_transaction_is_not_used(
    services: Services,
) -> None:
    for n in range(5):
        append(services, n)  # the first commit also cuts a checkpoint (an entry of its own)
    size = head_size(services)
    append(services, 99, commit=False)  # remembered at size + 1, then rolled back
    edge = remembered(services)
    assert edge is not None and edge[0] == size + 1
    for n in range(5, 12):
        append(services, n)
    assert_log_verifies(services)


def test_an_edge_of_another_history_of_the_same_size_is_not_used(services: Services) -> None:
    for n in range(3):
        append(services, n)
    size = head_size(services) + 1
    append(services, 100, commit=False)  # entry 100 at ``size``, rolled back
    stale = remembered(services)
    append(services, 200)  # entry 200 at ``size``, committed
    with services.uow() as uow:
        assert read_head(uow.session).size == size
        bind = uow.session.get_bind()
    assert stale is not None and stale[0] == size
    audit.tree._EDGES[bind] = stale  # same size, different chain hash
    for n in range(4, 9):
        append(services, n)
    assert_log_verifies(services)


def test_appends_by_someone_else_are_read_from_the_database(services: Services) -> None:
    for n in range(6):
        append(services, n)
    behind = remembered(services)
    for n in range(6, 11):
        append(services, n)
    with services.uow() as uow:
        bind = uow.session.get_bind()
    audit.tree._EDGES[bind] = behind  # as if another process had appended since
    for n in range(11, 20):
        append(services, n)
    assert_log_verifies(services)


@pytest.mark.parametrize("damage", ["delete", "not-hex"])
def test_a_missing_or_garbled_edge_node_fails_the_append_closed(
    unguarded: Connection, unguarded_sessions: sessionmaker[Session], backend: str, damage: str
) -> None:
    lift_guards(unguarded, "mysql" if backend == "mariadb" else backend, ("audit_merkle_node",))
    clock = ticking_clock()
    for n in range(3):
        with unguarded_sessions() as session:
            append_entry(session, record(n), clock=clock)
            session.commit()
    with unguarded_sessions() as session:
        audit.tree._EDGES.pop(session.get_bind(), None)  # as in a freshly started process
        level_1 = AuditMerkleNode.level == 1
        if damage == "delete":
            session.execute(delete(AuditMerkleNode).where(level_1))
        else:
            session.execute(update(AuditMerkleNode).where(level_1).values(hash="zz" * 32))
        session.commit()
    with unguarded_sessions() as session, pytest.raises(AuditUnavailable):
        append_entry(session, record(3), clock=clock)
