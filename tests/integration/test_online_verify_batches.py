"""The online verifier's batched reads: the same verdicts at any batch size, on every backend.

``verify_log`` reads entries, member index rows and stored Merkle nodes a batch at
a time and compares them in bulk; these tests tamper with the stored rows (the
guards lifted, as a hostile DBA could) and check that it still names the earliest
bad entry, whatever the batch size, and that odd stored text is reported, not
raised.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, insert, update
from sqlalchemy.orm import Session, sessionmaker

from audit.models import AuditEntry, AuditEntryMember, AuditMerkleNode
from audit.online import VerifyReport, verify_log
from tests.integration.conftest import (
    AUDIT_TABLES,
    append_entries,
    member_ref,
    unguarded_connection,
)

TABLES = (*AUDIT_TABLES, "audit_merkle_node")
N = 13
BATCHES = (1, 2, 3, 5, 8, 5000)


@pytest.fixture
def tampering(request: pytest.FixtureRequest, backend: str) -> Iterator[Connection]:
    """A connection, inside a transaction, on which the log and tree tables can be edited."""
    with unguarded_connection(request, backend, TABLES) as conn:
        yield conn


@pytest.fixture
def sessions(tampering: Connection) -> sessionmaker[Session]:
    made = sessionmaker(
        bind=tampering,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )
    with made() as session:
        append_entries(session, N)
        session.commit()
    return made


def verify_each_batch(sessions: sessionmaker[Session]) -> VerifyReport:
    """The report, after checking that every batch size gives the same one."""
    reports = []
    for batch in BATCHES:
        with sessions() as session:
            reports.append(verify_log(session, batch=batch))
    assert all(report == reports[0] for report in reports), reports
    return reports[0]


def set_node(conn: Connection, level: int, idx: int, text: str) -> None:
    changed = conn.execute(
        update(AuditMerkleNode)
        .where(AuditMerkleNode.level == level, AuditMerkleNode.idx == idx)
        .values(hash=text)
    )
    assert changed.rowcount == 1


def node_hash(conn: Connection, level: int, idx: int) -> str:
    return conn.execute(
        AuditMerkleNode.__table__.select().where(
            AuditMerkleNode.level == level, AuditMerkleNode.idx == idx
        )
    ).one()[2]


def test_an_intact_log_verifies_at_every_batch_size(sessions: sessionmaker[Session]) -> None:
    report = verify_each_batch(sessions)
    assert report.ok, report
    assert report.size == N


def test_a_stored_node_in_upper_case_hex_is_the_same_hash(
    tampering: Connection, sessions: sessionmaker[Session]
) -> None:
    # Proofs read stored nodes with bytes.fromhex, which takes either case: so does verify.
    set_node(tampering, 1, 2, node_hash(tampering, 1, 2).upper())
    assert verify_each_batch(sessions).ok


@pytest.mark.parametrize("text", ["not hex at all", "zz" * 32, ""], ids=["words", "zz", "empty"])
def test_a_stored_node_that_is_not_a_hash_is_reported_not_raised(
    tampering: Connection, sessions: sessionmaker[Session], text: str
) -> None:
    set_node(tampering, 0, 4, text)
    report = verify_each_batch(sessions)
    assert (report.ok, report.first_bad_seq) == (False, 5)
    assert report.reason == "stored Merkle node (0, 4) does not match the entries"


def test_a_bad_node_is_named_before_a_later_bad_entry(
    tampering: Connection, sessions: sessionmaker[Session]
) -> None:
    # Node (1, 1) is completed by entry 4; entry 7's actor column is changed too.
    set_node(tampering, 1, 1, "00" * 32)
    changed = tampering.execute(
        update(AuditEntry).where(AuditEntry.seq == 7).values(actor="someone-else")
    )
    assert changed.rowcount == 1
    report = verify_each_batch(sessions)
    assert (report.ok, report.first_bad_seq) == (False, 4)
    assert report.reason == "stored Merkle node (1, 1) does not match the entries"


def test_a_missing_node_is_named_at_the_entry_that_completed_it(
    tampering: Connection, sessions: sessionmaker[Session]
) -> None:
    deleted = tampering.execute(
        AuditMerkleNode.__table__.delete().where(
            AuditMerkleNode.level == 2, AuditMerkleNode.idx == 1
        )
    )
    assert deleted.rowcount == 1
    report = verify_each_batch(sessions)
    assert (report.ok, report.first_bad_seq) == (False, 8)
    assert report.reason == "stored Merkle node (2, 1) is missing"


def test_a_member_row_for_seq_zero_is_named(
    tampering: Connection, sessions: sessionmaker[Session]
) -> None:
    tampering.execute(insert(AuditEntryMember).values(member_id=member_ref(999), seq=0))
    report = verify_each_batch(sessions)
    assert (report.ok, report.first_bad_seq) == (False, 0)
    assert report.reason == "member index row for an unknown entry"


def test_an_extra_member_row_is_named_at_its_entry(
    tampering: Connection, sessions: sessionmaker[Session]
) -> None:
    tampering.execute(insert(AuditEntryMember).values(member_id=member_ref(999), seq=6))
    report = verify_each_batch(sessions)
    assert (report.ok, report.first_bad_seq) == (False, 6)
    assert report.reason == "member index rows do not match the entry's members"


def test_a_member_row_past_the_last_entry_is_named(
    tampering: Connection, sessions: sessionmaker[Session]
) -> None:
    # Inside the head's size but with no entry: the last entry deleted, its rows kept.
    deleted = tampering.execute(AuditEntry.__table__.delete().where(AuditEntry.seq == N))
    assert deleted.rowcount == 1
    report = verify_each_batch(sessions)
    assert (report.ok, report.first_bad_seq) == (False, N)
    assert report.reason == "member index row for an entry that does not exist"
