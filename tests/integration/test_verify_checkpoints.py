"""``audit verify`` holds the log to the checkpoints held outside its tables.

A rollback that deletes the newest checkpoint row and every entry after it, with
the head moved back, leaves a log that is consistent in itself: only a copy of a
checkpoint kept elsewhere can tell that the log was once larger. Those copies
are the files published to ``$MEMBERGUARD_HOME/checkpoints`` on the host, and
the signed notes an auditor kept and passes with ``--checkpoint``. The log's own
``audit.checkpoint`` entries say which checkpoint rows must exist.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from audit.checkpoint import Checkpoint, format_checkpoint, generate_signer, sign_note
from audit.log import HEAD_ID, read_head
from audit.models import (
    AuditCheckpoint,
    AuditEntry,
    AuditEntryMember,
    AuditHead,
    AuditMerkleNode,
)
from audit.notary import Notary
from audit.online import verify_log
from audit.uow import AuditedUnitOfWork
from cli.main import main
from core.clock import Clock
from core.db import build_engine, session_factory
from core.settings import Settings
from gate.context import load_notary
from tests.conftest import ORIGIN, FreshDatabase
from tests.integration.conftest import (
    append_entries,
    lift_guards,
    ticking_clock,
    unguarded_connection,
)

LOG_TABLES = ("audit_entry", "audit_entry_member", "audit_merkle_node", "audit_checkpoint")
# Three units of work of five entries, each cutting a checkpoint (recorded by the
# entry after it), then two more entries: checkpoints at 5, 11 and 17, size 20.
CHECKPOINTS = (5, 11, 17)
SIZE = 20


def build_log(sessions: sessionmaker[Session], notary: Notary, clock: Clock) -> None:
    for _ in CHECKPOINTS:
        with AuditedUnitOfWork(
            sessions, notary=notary, clock=clock, policy_version="0" * 64
        ) as uow:
            append_entries(uow.session, 5, clock=clock)
            uow.cut_checkpoint()
            uow.commit()
    with sessions() as session:
        append_entries(session, 2, clock=clock)
        session.commit()
        assert read_head(session).size == SIZE


def roll_back(conn: Connection, size: int) -> None:
    """What a hostile DBA does to make the log ``size`` entries long again: drop the
    entries, their member rows, tree nodes and checkpoints beyond it, and move the head."""
    chain = conn.scalar(select(AuditEntry.chain_hash).where(AuditEntry.seq == size))
    conn.execute(delete(AuditEntryMember).where(AuditEntryMember.seq > size))
    conn.execute(delete(AuditEntry).where(AuditEntry.seq > size))
    conn.execute(delete(AuditCheckpoint).where(AuditCheckpoint.size > size))
    for level, idx in conn.execute(select(AuditMerkleNode.level, AuditMerkleNode.idx)).all():
        if (idx + 1) << level > size:  # a subtree with a leaf beyond the new end
            conn.execute(
                delete(AuditMerkleNode).where(
                    AuditMerkleNode.level == level, AuditMerkleNode.idx == idx
                )
            )
    conn.execute(
        update(AuditHead).where(AuditHead.id == HEAD_ID).values(size=size, head_hash=chain)
    )


# -- in the database: a checkpoint row the log says was cut -------------------------


@pytest.fixture
def unguarded_log(request: pytest.FixtureRequest, backend: str) -> Iterator[Connection]:
    with unguarded_connection(request, backend, LOG_TABLES) as conn:
        yield conn


def sessions_on(conn: Connection) -> sessionmaker[Session]:
    return sessionmaker(
        bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False, autoflush=False
    )


def test_a_deleted_middle_checkpoint_row_is_named_at_the_entry_recording_it(
    unguarded_log: Connection, signer: Ed25519PrivateKey
) -> None:
    sessions = sessions_on(unguarded_log)
    notary = Notary(origin=ORIGIN, private_key=signer)
    build_log(sessions, notary, ticking_clock())
    with sessions() as session:
        assert verify_log(session, verifier_key=notary.verifier_key).ok
    removed = unguarded_log.execute(delete(AuditCheckpoint).where(AuditCheckpoint.size == 11))
    assert removed.rowcount == 1
    for key in (notary.verifier_key, None):  # with and without the signatures checked
        with sessions() as session:
            report = verify_log(session, verifier_key=key)
        assert (report.ok, report.first_bad_seq) == (False, 12), report
        assert report.reason == "the entry records a checkpoint at size 11, which is missing"


# -- through the CLI, on a deployment's home ----------------------------------------


@dataclass(frozen=True)
class Deployment:
    home: Path
    url: str
    env: dict[str, str | None]
    signer: Ed25519PrivateKey

    @property
    def published(self) -> Path:
        return self.home / "checkpoints"

    def published_file(self, size: int) -> Path:
        return self.published / f"{size:020d}.checkpoint"

    def verify(self, *args: str) -> Result:
        result = CliRunner().invoke(main, ["audit", "verify", *args], env=self.env)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        return result

    def roll_back(self, size: int) -> None:
        engine = build_engine(self.url)
        try:
            with engine.connect() as conn:
                lift_guards(conn, engine.dialect.name, LOG_TABLES)
                conn.commit()
                roll_back(conn, size)
                conn.commit()
        finally:
            engine.dispose()

    def note(self, size: int, root: bytes, key: Ed25519PrivateKey | None = None) -> str:
        origin = "memberguard/audit-log"
        body = format_checkpoint(Checkpoint(origin=origin, size=size, root=root))
        return sign_note(body, name=origin, private_key=key or self.signer)


@pytest.fixture
def deployment(fresh_database: FreshDatabase, tmp_path: Path) -> Deployment:
    """A home initialised by ``memberguard init`` on the test's database, with the log
    built through its own services (so its checkpoints are published to the home)."""
    home = tmp_path / "home"
    env: dict[str, str | None] = {
        "MEMBERGUARD_HOME": str(home),
        "MEMBERGUARD_DATABASE_URL": fresh_database.url,
        "MEMBERGUARD_KEY_PROVIDER": None,
        "MEMBERGUARD_AUDIT_ORIGIN": None,
        "MEMBERGUARD_AUDIT_SIGNER_PATH": None,
        "MEMBERGUARD_CHECKPOINT_DIR": None,
    }
    result = CliRunner().invoke(main, ["init"], env=env)
    assert result.exit_code == 0, result.output
    notary = load_notary(Settings(home=home, database_url=fresh_database.url))
    engine = build_engine(fresh_database.url)
    try:
        build_log(session_factory(engine), notary, ticking_clock())
    finally:
        engine.dispose()
    return Deployment(home, fresh_database.url, env, notary.private_key)


def test_the_intact_log_verifies_against_its_published_checkpoints(
    deployment: Deployment,
) -> None:
    assert {p.name for p in deployment.published.glob("*.checkpoint")} == {
        *(f"{size:020d}.checkpoint" for size in CHECKPOINTS),
        "latest.checkpoint",
    }
    result = deployment.verify()
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"OK: {SIZE} entries, head ")


def test_a_rollback_past_a_published_checkpoint_fails(deployment: Deployment) -> None:
    # Back to 14: the checkpoint at 17 and everything after it are gone from the
    # database, and what is left is a consistent log of 14 entries.
    deployment.roll_back(14)
    result = deployment.verify()
    assert result.exit_code == 1, result.output
    assert "OK" not in result.stdout
    assert result.stderr.startswith("FAILED at entry 15: published checkpoint "), result.stderr
    assert str(deployment.published_file(17)) in result.stderr
    assert "at size 17, beyond the log's 14 entries: the log was rolled back" in result.stderr


def test_a_published_checkpoint_of_another_history_fails(deployment: Deployment) -> None:
    # Signed by the log's key for the same size, over other entries: one of the two
    # copies lies, and verify says which size the log and the file disagree at.
    forged = deployment.note(11, bytes(32))
    deployment.published_file(11).write_text(forged, encoding="utf-8")
    result = deployment.verify()
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("FAILED at entry 11: published checkpoint "), result.stderr
    assert "does not match the log at size 11" in result.stderr


def test_a_kept_checkpoint_that_the_log_extends_passes(
    deployment: Deployment, tmp_path: Path
) -> None:
    kept = tmp_path / "kept-11.checkpoint"
    shutil.copy(deployment.published_file(11), kept)
    shutil.rmtree(deployment.published)  # the auditor's copy alone
    result = deployment.verify("--checkpoint", str(kept))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"OK: {SIZE} entries, head ")
    assert "1 kept checkpoint" in result.stdout


def test_a_kept_checkpoint_past_a_rollback_fails_naming_the_file(
    deployment: Deployment, tmp_path: Path
) -> None:
    kept = tmp_path / "kept-17.checkpoint"
    shutil.copy(deployment.published_file(17), kept)
    deployment.roll_back(14)
    shutil.rmtree(deployment.published)  # the attacker cleaned the host too
    result = deployment.verify("--checkpoint", str(kept))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"FAILED at entry 15: checkpoint {kept} "), result.stderr
    assert "at size 17, beyond the log's 14 entries" in result.stderr


def test_a_kept_checkpoint_from_another_log_fails_naming_the_file(
    deployment: Deployment, tmp_path: Path
) -> None:
    # Same origin, same size, another key: not this log's checkpoint.
    other = generate_signer("memberguard/audit-log")[0]
    kept = tmp_path / "other-log.checkpoint"
    kept.write_text(deployment.note(11, bytes(32), other), encoding="utf-8")
    result = deployment.verify("--checkpoint", str(kept))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"FAILED: checkpoint {kept} does not verify: "), result.stderr


def test_a_kept_checkpoint_of_a_forked_history_fails_naming_the_file(
    deployment: Deployment, tmp_path: Path
) -> None:
    # Signed by the log's key (a split view: the auditor was shown another history).
    kept = tmp_path / "fork.checkpoint"
    kept.write_text(deployment.note(11, bytes(32)), encoding="utf-8")
    result = deployment.verify("--checkpoint", str(kept))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"FAILED at entry 11: checkpoint {kept} "), result.stderr
    assert "does not match the log at size 11" in result.stderr


def test_a_kept_checkpoint_needs_the_logs_verifier_key(
    deployment: Deployment, tmp_path: Path
) -> None:
    kept = tmp_path / "kept.checkpoint"
    shutil.copy(deployment.published_file(11), kept)
    (deployment.home / "keys" / "audit-signer.key").unlink()
    result = deployment.verify("--checkpoint", str(kept))
    assert result.exit_code == 1, result.output
    assert "--pubkey" in result.stderr


def test_a_rollback_is_caught_by_the_published_files_without_the_signing_key(
    deployment: Deployment,
) -> None:
    # No key to check signatures with: the published files' sizes and roots still count.
    (deployment.home / "keys" / "audit-signer.key").unlink()
    deployment.roll_back(14)
    result = deployment.verify()
    assert result.exit_code == 1, result.output
    assert "beyond the log's 14 entries: the log was rolled back" in result.stderr
