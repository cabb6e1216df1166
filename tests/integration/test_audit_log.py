"""Appending to the log and verifying it, on a real database, checked against DESIGN by hand.

leaf_hash_n  = SHA-256(0x00 || entry_n)
chain_hash_n = SHA-256(0x02 || chain_hash_{n-1} || leaf_hash_n),  chain_hash_0 = 0^32
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.log import Appended, read_head
from audit.log import append_entries as append_entries_batch
from audit.models import AuditEntry, AuditEntryMember
from audit.online import verify_log
from core.clock import Clock
from core.db import build_engine, session_factory
from tests.conftest import FreshDatabase
from tests.integration.conftest import T0, append_entries, member_ref, record, ticking_clock

N = 12


def test_appends_take_contiguous_sequence_numbers_after_the_head(session: Session) -> None:
    start = read_head(session).size
    appended = append_entries(session, N)
    session.commit()
    assert [a.seq for a in appended] == list(range(start + 1, start + N + 1))
    stored = session.scalars(select(AuditEntry.seq).where(AuditEntry.seq > start)).all()
    assert sorted(stored) == list(range(start + 1, start + N + 1))


def test_verify_is_ok_and_the_head_hash_is_the_last_chain_hash(session: Session) -> None:
    start = read_head(session).size
    appended = append_entries(session, N)
    session.commit()
    report = verify_log(session, batch=5)  # several batches, to cross batch edges
    assert report.ok, report.reason
    assert report.size == start + N
    assert report.head_hash == appended[-1].chain_hash.hex()
    assert read_head(session).head_hash == appended[-1].chain_hash.hex()


def test_leaf_and_chain_hashes_are_the_ones_design_defines(session: Session) -> None:
    head = read_head(session)
    append_entries(session, N)
    session.commit()
    rows = session.execute(
        select(AuditEntry.seq, AuditEntry.entry, AuditEntry.leaf_hash, AuditEntry.chain_hash)
        .where(AuditEntry.seq > head.size)
        .order_by(AuditEntry.seq)
    ).all()
    previous = bytes.fromhex(head.head_hash)
    for row in rows:
        leaf = hashlib.sha256(b"\x00" + bytes(row.entry)).digest()
        chain = hashlib.sha256(b"\x02" + previous + leaf).digest()
        assert row.leaf_hash == leaf.hex(), row.seq
        assert row.chain_hash == chain.hex(), row.seq
        previous = chain
    assert len(rows) == N


def test_the_first_chain_hash_starts_from_32_zero_bytes(fresh_database: FreshDatabase) -> None:
    engine = build_engine(fresh_database.url)
    try:
        with session_factory(engine)() as session:
            appended = append_entries(session, 1)
            session.commit()
            raw = bytes(session.scalar(select(AuditEntry.entry).where(AuditEntry.seq == 1)))
    finally:
        engine.dispose()
    assert appended[0].seq == 1
    leaf = hashlib.sha256(b"\x00" + raw).digest()
    assert appended[0].chain_hash == hashlib.sha256(b"\x02" + bytes(32) + leaf).digest()


def test_stored_bytes_are_canonical_json_with_integer_microsecond_time(session: Session) -> None:
    start = read_head(session).size
    append_entries(session, 1, clock=ticking_clock(T0))
    session.commit()
    raw = bytes(session.scalar(select(AuditEntry.entry).where(AuditEntry.seq == start + 1)))
    entry = json.loads(raw)
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert raw == canonical.encode("utf-8")
    # The ticking clock has advanced one millisecond from T0 by its first call.
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert entry["at"] == (T0 + timedelta(milliseconds=1) - epoch) // timedelta(microseconds=1)
    assert entry["seq"] == start + 1
    assert (entry["action"], entry["decision"], entry["purpose"]) == (
        "member.read",
        "permit",
        "customer_service",
    )


def test_each_member_of_an_entry_gets_one_index_row(session: Session) -> None:
    appended = append_entries(session, 3)
    session.commit()
    rows = session.execute(
        select(AuditEntryMember.seq, AuditEntryMember.member_id).where(
            AuditEntryMember.seq >= appended[0].seq
        )
    ).all()
    expected = {(a.seq, member_ref(2 * n + k)) for n, a in enumerate(appended) for k in (0, 1)}
    assert sorted(tuple(r) for r in rows) == sorted(expected)


def test_back_links_name_each_members_previous_entry_across_query_chunks(
    session: Session,
) -> None:
    # 600 members: the back-link query takes them 512 at a time, the second
    # chunk padded to 128; 3 members are padded to 4.
    clock = ticking_clock()
    first = {
        member_ref(i): a.seq
        for i, a in enumerate(
            append_entries_for(session, [(member_ref(i),) for i in range(600)], clock)
        )
    }
    everyone = (*first, member_ref(600), member_ref(601))
    few = (member_ref(5), member_ref(599), member_ref(700))
    both = append_entries_for(session, [everyone, few], clock)
    session.commit()

    bodies = [
        json.loads(raw)
        for raw in session.scalars(
            select(AuditEntry.entry).where(AuditEntry.seq >= both[0].seq).order_by(AuditEntry.seq)
        )
    ]
    assert bodies[0]["member_prev"] == {**first, member_ref(600): 0, member_ref(601): 0}
    assert bodies[1]["member_prev"] == {
        member_ref(5): both[0].seq,
        member_ref(599): both[0].seq,
        member_ref(700): 0,
    }
    assert verify_log(session).ok


def append_entries_for(
    session: Session, members: list[tuple[str, ...]], clock: Clock
) -> list[Appended]:
    """One batch (one back-link query), an entry per tuple of members."""
    return append_entries_batch(
        session, [record(n, members=named) for n, named in enumerate(members)], clock=clock
    )
