"""Editing the log behind the application's back is detected and the entry named.

The append-only triggers are lifted first (``unguarded``), as an attacker with
database access could: the triggers are guardrails, the hashes are the proof.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from audit.log import Appended
from audit.models import AuditEntry, AuditEntryMember
from audit.online import VerifyReport, verify_log
from cli.main import main
from core.db import build_engine, session_factory
from tests.conftest import FreshDatabase
from tests.integration.conftest import append_entries, lift_guards, member_ref

N = 8


@pytest.fixture
def log(unguarded_sessions: sessionmaker[Session]) -> list[Appended]:
    """N committed entries (to the test's savepoint), verified intact."""
    with unguarded_sessions() as session:
        appended = append_entries(session, N)
        session.commit()
        assert verify_log(session).ok
    return appended


def verify(sessions: sessionmaker[Session]) -> VerifyReport:
    with sessions() as session:
        return verify_log(session)


def entry_bytes(conn: Connection, seq: int) -> bytes:
    return bytes(conn.scalar(select(AuditEntry.entry).where(AuditEntry.seq == seq)))


def set_entry(conn: Connection, seq: int, **values: object) -> None:
    assert conn.execute(update(AuditEntry).where(AuditEntry.seq == seq).values(**values)).rowcount


def delete_entry(conn: Connection, seq: int) -> None:
    conn.execute(delete(AuditEntryMember).where(AuditEntryMember.seq == seq))
    assert conn.execute(delete(AuditEntry).where(AuditEntry.seq == seq)).rowcount == 1


def change_request_id_digit(raw: bytes) -> bytes:
    # One byte, and the result is still canonical JSON: only the hash can tell.
    at = raw.index(b'"request_id":"req-') + len(b'"request_id":"req-000')
    return raw[:at] + (b"9" if raw[at : at + 1] != b"9" else b"8") + raw[at + 1 :]


def break_json(raw: bytes) -> bytes:
    return raw[:-1] + b"]"


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (change_request_id_digit, "leaf hash does not match the entry bytes"),
        (break_json, "entry bytes are invalid"),
    ],
    ids=["still-canonical", "not-json"],
)
def test_an_entry_with_one_byte_changed_is_named(
    unguarded: Connection,
    unguarded_sessions: sessionmaker[Session],
    log: list[Appended],
    edit: Callable[[bytes], bytes],
    reason: str,
) -> None:
    target = log[4].seq
    raw = entry_bytes(unguarded, target)
    edited = edit(raw)
    assert len(edited) == len(raw)
    assert sum(a != b for a, b in zip(raw, edited, strict=True)) == 1
    set_entry(unguarded, target, entry=edited)
    report = verify(unguarded_sessions)
    assert not report.ok
    assert report.first_bad_seq == target
    assert report.reason is not None
    assert report.reason.startswith(reason)


def test_an_entry_whose_actor_column_was_changed_is_named(
    unguarded: Connection, unguarded_sessions: sessionmaker[Session], log: list[Appended]
) -> None:
    # Hiding an entry from the actor filter without touching the hashed bytes.
    target = log[4].seq
    set_entry(unguarded, target, actor="someone-else")
    report = verify(unguarded_sessions)
    assert (report.ok, report.first_bad_seq) == (False, target)
    assert report.reason == "column 'actor' does not match the entry bytes"


def test_an_entry_deleted_from_the_middle_is_named(
    unguarded: Connection, unguarded_sessions: sessionmaker[Session], log: list[Appended]
) -> None:
    target = log[3].seq
    delete_entry(unguarded, target)
    report = verify(unguarded_sessions)
    assert (report.ok, report.first_bad_seq) == (False, target)
    assert report.reason == f"entry {target} is missing (found {target + 1} next)"


def test_a_truncated_tail_is_named_even_though_the_head_is_untouched(
    unguarded: Connection, unguarded_sessions: sessionmaker[Session], log: list[Appended]
) -> None:
    last = log[-1].seq
    delete_entry(unguarded, last)
    report = verify(unguarded_sessions)
    assert (report.ok, report.first_bad_seq) == (False, last)
    assert report.reason == f"log ends at {last - 1} but the head says {last}"


def test_a_tail_entry_deleted_without_its_member_rows_is_named(
    unguarded: Connection, unguarded_sessions: sessionmaker[Session], log: list[Appended]
) -> None:
    last = log[-1].seq
    unguarded.execute(delete(AuditEntry).where(AuditEntry.seq == last))
    report = verify(unguarded_sessions)
    assert (report.ok, report.first_bad_seq) == (False, last)
    assert report.reason == "member index row for an entry that does not exist"


@pytest.mark.parametrize(
    ("columns", "reason"),
    [
        # The bytes name their own seq, so a swap is caught before any hash.
        (("entry",), "entry bytes name seq"),
        (("entry", "leaf_hash", "chain_hash"), "entry bytes name seq"),
    ],
    ids=["bytes", "bytes-and-hashes"],
)
def test_two_swapped_entries_are_named_at_the_earlier_one(
    unguarded: Connection,
    unguarded_sessions: sessionmaker[Session],
    log: list[Appended],
    columns: tuple[str, ...],
    reason: str,
) -> None:
    first, second = log[2].seq, log[5].seq
    picked = [getattr(AuditEntry, c) for c in columns]
    a = unguarded.execute(select(*picked).where(AuditEntry.seq == first)).one()
    b = unguarded.execute(select(*picked).where(AuditEntry.seq == second)).one()
    set_entry(unguarded, first, **dict(zip(columns, b, strict=True)))
    set_entry(unguarded, second, **dict(zip(columns, a, strict=True)))
    report = verify(unguarded_sessions)
    assert (report.ok, report.first_bad_seq) == (False, first)
    assert report.reason is not None and report.reason.startswith(reason)


def test_an_entry_with_a_member_index_row_deleted_is_named(
    unguarded: Connection, unguarded_sessions: sessionmaker[Session], log: list[Appended]
) -> None:
    # Hiding a read from the member's access history.
    target = log[4].seq
    hidden = member_ref(2 * 4)
    removed = unguarded.execute(
        delete(AuditEntryMember).where(
            AuditEntryMember.seq == target, AuditEntryMember.member_id == hidden
        )
    )
    assert removed.rowcount == 1
    report = verify(unguarded_sessions)
    assert (report.ok, report.first_bad_seq) == (False, target)
    assert report.reason == "member index rows do not match the entry's members"


def test_an_entry_inserted_behind_the_heads_back_is_named(
    unguarded: Connection, unguarded_sessions: sessionmaker[Session], log: list[Appended]
) -> None:
    # INSERT is allowed on the log tables; a forged entry with correct hashes
    # and member rows that does not move the head is still caught by its size.
    forged_seq = log[-1].seq + 1
    forged = json.loads(entry_bytes(unguarded, log[-1].seq))
    forged.update(seq=forged_seq, request_id="forged")
    raw = json.dumps(forged, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    leaf = hashlib.sha256(b"\x00" + raw).digest()
    chain = hashlib.sha256(b"\x02" + log[-1].chain_hash + leaf).digest()
    last = unguarded.execute(select(AuditEntry).where(AuditEntry.seq == log[-1].seq)).one()
    unguarded.execute(
        insert(AuditEntry).values(
            seq=forged_seq,
            recorded_at=last.recorded_at,
            action=last.action,
            actor=last.actor,
            purpose=last.purpose,
            decision=last.decision,
            reason=last.reason,
            entry=raw,
            leaf_hash=leaf.hex(),
            chain_hash=chain.hex(),
        )
    )
    unguarded.execute(
        insert(AuditEntryMember),
        [{"member_id": m, "seq": forged_seq} for m in forged["members"]],
    )
    report = verify(unguarded_sessions)
    assert (report.ok, report.first_bad_seq) == (False, forged_seq)
    assert report.reason == f"entries beyond the head size {log[-1].seq}"


# -- the CLI, against a real database -----------------------------------------


def committed_log(fresh: FreshDatabase, *, tamper_seq: int | None = None) -> None:
    engine = build_engine(fresh.url)
    try:
        with session_factory(engine)() as session:
            append_entries(session, N)
            session.commit()
        if tamper_seq is not None:
            with engine.connect() as conn:
                lift_guards(conn, engine.dialect.name)
                conn.commit()
                set_entry(conn, tamper_seq, actor="someone-else")
                conn.commit()
    finally:
        engine.dispose()


def audit_verify(fresh: FreshDatabase, home: Path) -> Result:
    # A home of its own: verify also reads the checkpoints published there.
    env = {"MEMBERGUARD_DATABASE_URL": fresh.url, "MEMBERGUARD_HOME": str(home)}
    return CliRunner().invoke(main, ["audit", "verify"], env=env)


def test_cli_verify_exits_1_and_names_the_tampered_entry(
    fresh_database: FreshDatabase, tmp_path: Path
) -> None:
    committed_log(fresh_database, tamper_seq=5)
    result = audit_verify(fresh_database, tmp_path / "home")
    assert result.exit_code == 1, result.output
    assert "FAILED at entry 5:" in result.stderr
    assert "column 'actor'" in result.stderr
    assert "OK" not in result.output


def test_cli_verify_exits_0_and_says_ok_for_an_intact_log(
    fresh_database: FreshDatabase, tmp_path: Path
) -> None:
    committed_log(fresh_database)
    result = audit_verify(fresh_database, tmp_path / "home")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"OK: {N} entries, head ")
