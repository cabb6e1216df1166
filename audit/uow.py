"""The audited unit of work: one use case, one transaction, its entries committed with it.

Opening it takes the log-head lock *before* the use case reads any fact, so
the log's order is the order decisions were made in: an entry's decision saw
every change recorded by the entries before it, on every database (SQLite's
BEGIN IMMEDIATE hid a missing lock; PostgreSQL and MySQL under READ COMMITTED
do not). Lock order is therefore structural, not a convention each use case
must remember.

The use case records entries (``record``, built by ``audit.actions``) and
changes facts in the session; ``commit`` appends the entries, cuts a signed
checkpoint when one is due, commits, and publishes the checkpoint. If any of
that fails, ``AuditUnavailable`` is raised and nothing is committed, so
nothing may be released. Leaving the block without ``commit`` rolls back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import TracebackType

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from audit import actions
from audit.actions import Record
from audit.log import (
    Appended,
    AuditUnavailable,
    append_entries,
    head_at_lock,
    lock_head,
    locked_head,
)
from audit.notary import CutCheckpoint, Notary
from audit.tree import MissingNode
from core.clock import Clock


class AuditedUnitOfWork:
    def __init__(
        self,
        sessions: Callable[[], Session],
        *,
        notary: Notary,
        clock: Clock,
        policy_version: str,
        under_lock: Callable[[Session, datetime], None] | None = None,
    ) -> None:
        """``under_lock`` runs right after the lock is taken, before the use case
        reads anything, with the use case's time (the gate re-checks that the
        caller was not revoked and that a member's session has not expired)."""
        self._sessions = sessions
        self._under_lock = under_lock
        self._notary = notary
        self._clock = clock
        self._policy_version = policy_version
        self._session: Session | None = None
        self._pending: list[Record] = []
        self._first_seq = 0  # the seq ``record`` gave the first pending entry
        self._force_checkpoint = False
        self._now: datetime | None = None
        self.checkpoint: CutCheckpoint | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("the unit of work is used outside its `with` block")
        return self._session

    def __enter__(self) -> AuditedUnitOfWork:
        self._session = self._sessions()
        try:
            lock_head(self._session)
            # One instant for the use case, taken once the lock is held: the
            # facts it writes, the entries that record them and the caller's
            # re-check all use the same time.
            self._now = self._clock()
            if self._under_lock is not None:
                self._under_lock(self._session, self._now)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _close(self) -> None:
        session, self._session = self._session, None
        self._pending = []
        if session is not None:
            try:
                session.rollback()
            finally:
                session.close()

    @property
    def now(self) -> datetime:
        """The use case's time: taken once, when the lock was granted."""
        if self._now is None:
            raise RuntimeError("the unit of work is used outside its `with` block")
        return self._now

    def record(self, record: Record) -> int:
        """Queue an entry for ``commit``; returns the seq it will have.

        The seq is known now because this transaction holds the log-head lock:
        no one else can append before it commits.
        """
        if not self._pending:
            head = locked_head(self.session)
            if head is None:  # a savepoint rolled back past the lock, say
                raise AuditUnavailable("the audit log lock was lost; nothing was released")
            self._first_seq = head.size + 1
        self._pending.append(record)
        return self._first_seq + len(self._pending) - 1

    def cut_checkpoint(self) -> None:
        """Cut a checkpoint at commit even if none is due yet (``memberguard audit checkpoint``)."""
        self._force_checkpoint = True

    def commit(self) -> list[Appended]:
        """Append the recorded entries, cut a checkpoint when due, and commit.

        Returns the appended entries. After an ``AuditUnavailable`` nothing was
        committed; the block then rolls back.
        """
        session = self.session
        now = self.now
        pending, self._pending = self._pending, []
        appended = append_entries(session, pending, clock=lambda: now) if pending else []
        if appended and appended[0].seq != self._first_seq:  # the rest follow, contiguous
            # Something appended around the unit of work after ``record`` gave
            # out its seqs: a bug. Nothing is committed rather than mislabelled.
            raise RuntimeError("entries were appended around the unit of work; nothing was saved")
        cut = None
        try:
            # A transaction that appended nothing cuts only on demand: the
            # next one that appends will, if one is due.
            found, moved = head_at_lock(session), locked_head(session)
            appended_any = found is not None and moved is not None and moved.size > found.size
            due = appended_any and self._notary.due(session, now)
            if self._force_checkpoint or due:
                cut = self._notary.cut(session, now=now)
                if cut is not None:
                    append_entries(
                        session,
                        [
                            actions.checkpoint_cut(
                                policy=self._policy_version,
                                size=cut.size,
                                root=cut.root,
                                origin=self._notary.origin,
                            )
                        ],
                        clock=lambda: now,
                    )
            session.commit()
        except (SQLAlchemyError, MissingNode) as exc:
            raise AuditUnavailable(
                "the audit log could not be committed; nothing was released"
            ) from exc
        self.checkpoint = cut
        if cut is not None:
            self._notary.publish(cut)
        return appended
