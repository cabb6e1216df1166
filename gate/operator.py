"""Operator use cases run from the CLI: re-wrapping data keys, cutting a checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from audit import actions
from audit.notary import latest_checkpoint
from gate.context import Services
from gate.keyholders import ensure_no_holder_behind
from principals.actor import OPERATOR_ACTOR
from vault.members import count_by_kek_version, rewrap_batch

REWRAP_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Rewrapped:
    rewrapped: int
    by_version: dict[int, int]


def data_keys_by_version(services: Services) -> dict[int, int]:
    with services.reading() as session:
        return count_by_kek_version(session)


def rewrap_data_keys(
    services: Services, *, progress: Callable[[int], None] | None = None
) -> Rewrapped:
    """Re-wrap every data key under the newest KEK, batch by batch (resumable).

    Each batch is one audited unit of work whose entry names the range of
    member ids it covered; a batch in which every key was already current
    records nothing. ``progress`` is called once per batch of ``REWRAP_BATCH`` keys.

    Every batch first checks, under the log-head lock, that no running server
    wraps new data keys under an older KEK (``gate.keyholders``): a member it
    created after the re-wrap passed would stay behind. ``KeyringBehind`` then
    stops the re-wrap; the batches committed before stay (it is resumable).
    """
    changed = 0
    after = ""
    while True:
        with services.uow(OPERATOR_ACTOR) as uow:
            # One keyring for the batch: the check, the re-wrap and the entry
            # name the same version even if the source reloads meanwhile.
            keyring = services.keyring
            ensure_no_holder_behind(
                uow.session, services, version=keyring.active_version, now=uow.now
            )
            n, last = rewrap_batch(uow.session, keyring=keyring, after=after, limit=REWRAP_BATCH)
            if last is None:
                break
            if n:
                uow.record(
                    actions.data_keys_rewrapped(
                        OPERATOR_ACTOR,
                        policy=services.policy.version,
                        to_version=keyring.active_version,
                        rewrapped=n,
                        members_after=after,
                        members_through=last,
                    )
                )
            uow.commit()
        changed += n
        if progress is not None:
            progress(REWRAP_BATCH)
        after = last
    return Rewrapped(rewrapped=changed, by_version=data_keys_by_version(services))


def cut_checkpoint(services: Services) -> str | None:
    """Cut a signed checkpoint now if the log grew since the last one; the latest note.

    None only when the log is empty.
    """
    with services.uow(OPERATOR_ACTOR) as uow:
        uow.cut_checkpoint()
        uow.commit()
    if uow.checkpoint is not None:
        return uow.checkpoint.note
    with services.reading() as session:
        latest = latest_checkpoint(session)
        return latest.note if latest is not None else None


def cut_overdue_checkpoint(services: Services) -> dict[str, int]:
    """The worker's ``audit.checkpoint`` job: cut the checkpoint a quiet log is owed.

    A checkpoint is cut when a commit finds one due (``Notary.due``); with no
    commits, the last entries would wait for the next one, and the README's
    promise (a checkpoint within ``checkpoint_every_seconds``) would not hold.
    Asked first without the log-head lock, so that a log that owes nothing
    (nearly always) costs one read and never SQLite's write lock; then again
    under it, since a commit or another worker may have cut one meanwhile.
    The cut is recorded like any other (its ``audit.checkpoint`` entry).
    """
    with services.reading() as session:
        if not services.notary.overdue(session, services.clock()):
            return {"checkpoints": 0}
    with services.uow() as uow:
        if services.notary.overdue(uow.session, uow.now):
            uow.cut_checkpoint()
        uow.commit()
    return {"checkpoints": 0 if uow.checkpoint is None else 1}
