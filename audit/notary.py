"""Signed checkpoints: cut, record, publish.

A checkpoint commits to the whole log at one size: the RFC 9162 root of the
first ``size`` leaves, in the C2SP tlog-checkpoint format, in a signed note
(Ed25519). It is cut every ``every_entries`` entries or ``every_seconds``
seconds (at the first commit after that), or on demand; it is stored, recorded
as a log entry of its own, and published to a directory, so that copies live
outside the database. An operator who rewrites the log cannot make it match
checkpoints that auditors already hold.
"""

from __future__ import annotations

import os
import stat
import tempfile
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.checkpoint import Checkpoint, format_checkpoint, sign_note, verifier_key
from audit.log import Head, head_at_lock, locked_head, read_head
from audit.models import AuditCheckpoint
from audit.tree import tree_root

log = structlog.get_logger("memberguard.audit")


@dataclass(frozen=True, slots=True)
class CutCheckpoint:
    size: int
    root: bytes
    note: str


@dataclass(frozen=True, slots=True)
class LatestCut:
    size: int
    cut_at: datetime


_LATEST_CUT = (
    select(AuditCheckpoint.size, AuditCheckpoint.cut_at)
    .order_by(AuditCheckpoint.size.desc())
    .limit(1)
)
# Per database: the latest checkpoint as of a head this process saw under the lock.
_KNOWN_CUTS: weakref.WeakKeyDictionary[Any, tuple[Head, LatestCut | None]] = (
    weakref.WeakKeyDictionary()
)
# The checkpoint the current transaction cut, if any.
_CUT_HERE = "memberguard_cut_here"


def _latest_cut(session: Session) -> LatestCut | None:
    """The latest checkpoint's size and time, read only when not known.

    Every checkpoint is recorded by an entry of its own, so a transaction
    that locked the very head (size and chain hash) at which this process
    last learnt the latest checkpoint knows no other was cut since; one it
    cut itself is kept in the session. Otherwise (another process appended,
    a rollback, a cold start) it is one query.
    """
    own = session.info.get(_CUT_HERE)
    if own is not None and own[0] is session.get_transaction():
        return own[1]
    found = head_at_lock(session)
    known = _KNOWN_CUTS.get(session.get_bind())
    if found is not None and known is not None and known[0] == found:
        return known[1]
    row = session.connection().execute(_LATEST_CUT).first()
    return LatestCut(row.size, row.cut_at) if row is not None else None


@dataclass(frozen=True)
class Notary:
    origin: str
    private_key: Ed25519PrivateKey
    every_entries: int = 1000
    every_seconds: int = 300
    sink: Path | None = None

    @property
    def verifier_key(self) -> str:
        return verifier_key(self.origin, self.private_key.public_key())

    def due(self, session: Session, now: datetime) -> bool:
        """Has the log grown by every_entries, or grown at all for every_seconds?

        Called on every audited commit, usually without a query: the head the
        transaction locked and moved is kept in the session, and the latest
        checkpoint is usually known (``_latest_cut``).
        """
        locked = locked_head(session)
        head = locked or read_head(session)
        last = _latest_cut(session)
        if locked is not None:  # what a head read without the lock says may be overtaken
            _KNOWN_CUTS[session.get_bind()] = (locked, last)
        if last is None:
            return head.size > 0
        grown = head.size - last.size
        return grown >= self.every_entries or (
            grown > 0 and now - last.cut_at >= timedelta(seconds=self.every_seconds)
        )

    def overdue(self, session: Session, now: datetime) -> bool:
        """Is a checkpoint due that no commit has cut? For the worker's ``audit.checkpoint`` job.

        ``due`` is asked only when a transaction commits, so on a log that
        stops growing, its newest entries wait uncheckpointed for the next
        commit, however late that comes. This asks the same question with no
        commit: has the log grown since the latest checkpoint, by
        ``every_entries`` or for ``every_seconds``?

        Growth here leaves out the entry that records the latest checkpoint
        (``audit.uow`` appends it in the transaction that cuts, so it is
        always the one right after the checkpoint's size): it is not news a
        checkpoint must cover. Counted, every checkpoint would make the next
        one due, and a quiet log would gain a checkpoint and its entry every
        ``every_seconds`` for ever.
        """
        head = locked_head(session) or read_head(session)
        last = session.connection().execute(_LATEST_CUT).first()
        if last is None:
            return head.size > 0
        grown = head.size - last.size - 1
        aged = now - last.cut_at >= timedelta(seconds=self.every_seconds)
        return grown > 0 and (grown >= self.every_entries or aged)

    def cut(self, session: Session, *, now: datetime) -> CutCheckpoint | None:
        """Sign the log at the size this transaction has extended it to, and store it.

        Flushes only. Runs under the log-head lock (``audit.uow`` calls it at
        commit), so the size and root are those of a log no one else is
        extending; the unit of work records the ``audit.checkpoint`` entry.
        None when the log is empty or already checkpointed at this size.
        """
        head = locked_head(session)
        if head is None:
            raise RuntimeError("a checkpoint is cut only under the log-head lock")
        size = head.size
        if size == 0:
            return None
        last = latest_checkpoint(session)
        if last is not None and last.size == size:
            return None
        root = tree_root(session, size)
        body = format_checkpoint(Checkpoint(origin=self.origin, size=size, root=root))
        note = sign_note(body, name=self.origin, private_key=self.private_key)
        session.add(AuditCheckpoint(size=size, root_hash=root.hex(), note=note, cut_at=now))
        session.flush()
        session.info[_CUT_HERE] = (session.get_transaction(), LatestCut(size, now))
        return CutCheckpoint(size=size, root=root, note=note)

    def publish(self, checkpoint: CutCheckpoint) -> None:
        """Write the note to the sink directory, atomically. Best effort: the
        database holds the same note, and the next publish rewrites ``latest``."""
        if self.sink is None:
            return
        try:
            self.sink.mkdir(parents=True, exist_ok=True, mode=0o700)
            for name in (f"{checkpoint.size:020d}.checkpoint", "latest.checkpoint"):
                _write_atomically(self.sink / name, checkpoint.note)
        except OSError as exc:
            log.error("checkpoint.publish_failed", size=checkpoint.size, error=type(exc).__name__)


def read_published(directory: Path) -> list[tuple[Path, str]]:
    """The notes ``publish`` wrote to ``directory``, by file name; none if it does not exist.

    Raises ValueError naming a file that cannot be read as UTF-8 text (read as
    bytes: universal newlines would turn a tampered "\\r" back into "\\n").
    """
    if not directory.is_dir():
        return []
    notes = []
    for path in sorted(directory.glob("*.checkpoint")):
        try:
            notes.append((path, path.read_bytes().decode("utf-8")))
        except UnicodeDecodeError:
            raise ValueError(f"published checkpoint {path} is not UTF-8 text") from None
        except OSError as exc:
            raise ValueError(
                f"published checkpoint {path} cannot be read ({type(exc).__name__})"
            ) from None
    return notes


def make_private_directory(path: Path) -> None:
    """Create ``path`` (mode 0700), or tighten it to 0700 if group or others have access.

    The published checkpoints are public by design, but the directory is the
    place ``audit verify`` trusts to say how large the log once was: only the
    service's user may write it. (Ship copies to auditors or a write-once
    store; see the README.)
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(path.stat().st_mode) & (stat.S_IRWXG | stat.S_IRWXO):
        os.chmod(path, 0o700)


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".checkpoint-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1))


def checkpoint_at(session: Session, size: int) -> AuditCheckpoint | None:
    return session.get(AuditCheckpoint, size)


def checkpoints_upto(session: Session, size: int) -> list[AuditCheckpoint]:
    return list(
        session.scalars(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.size <= size)
            .order_by(AuditCheckpoint.size)
        )
    )
