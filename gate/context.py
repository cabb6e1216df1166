"""What the use cases need, built once by the app factory or the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from audit.log import AuditUnavailable
from audit.notary import Notary
from core.clock import Clock, utc_now
from core.db import SessionFactory, UnitOfWork
from policies.model import Policy
from vault.keys import Keyring


@dataclass(frozen=True)
class Services:
    policy: Policy
    keyring: Keyring
    session_factory: SessionFactory
    # Sessions that never take SQLite's write lock: audit exports and reports.
    read_session_factory: SessionFactory | None = None
    clock: Clock = utc_now
    export_batch_size: int = 500
    # Cuts signed checkpoints; None only where no signing key is configured
    # (tests of other parts).
    notary: Notary | None = None

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory)

    def commit(self, uow: UnitOfWork) -> None:
        """Commit an audited transaction, cutting a checkpoint first when one is due.

        The checkpoint is cut in the same transaction, under the log-head lock
        the transaction already holds, and published once committed.
        """
        cut = None
        if self.notary is not None and self.notary.due(uow.session, self.clock()):
            cut = self.notary.cut(uow.session, clock=self.clock, policy_version=self.policy.version)
        commit_audited(uow)
        if cut is not None and self.notary is not None:
            self.notary.publish(cut)

    def read_uow(self) -> UnitOfWork:
        return UnitOfWork(self.read_session_factory or self.session_factory)


def commit_audited(uow: UnitOfWork) -> None:
    """Commit a transaction that holds an audit entry; a failure means nothing is released."""
    try:
        uow.commit()
    except SQLAlchemyError as exc:
        raise AuditUnavailable(
            "the audit log could not be committed; nothing was released"
        ) from exc
