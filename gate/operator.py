"""Operator use cases run from the CLI: re-wrapping data keys, retiring a KEK, cutting a
checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from audit import actions
from audit.notary import latest_checkpoint
from core.errors import Conflict, NotFound, SetupError
from gate.context import Services
from gate.keyholders import ensure_no_holder_behind
from principals.actor import OPERATOR_ACTOR
from vault.holders import holders_wrapping_under
from vault.keys import Keyring, LocalKeyFile
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


class KekInUse(Conflict):
    slug = "kek-in-use"
    title = "The KEK version is still needed"


@dataclass(frozen=True, slots=True)
class Retired:
    version: int
    # The keyring without the version: what the key file now holds (local), or
    # what the operator deploys in place of the old one (env).
    keyring: Keyring
    seq: int


def retire_kek(services: Services, version: int) -> Retired:
    """Destroy KEK ``version``, once nothing needs it.

    Refused (``KekInUse``, nothing changed) while it is the active version,
    while any data key is wrapped under it, or while a server seen within
    ``keyring_live_seconds`` wraps new data keys under it. The checks run under
    the log-head lock, so no member is created under it meanwhile by a
    recorded server.

    The entry commits first; then, with the ``local`` provider, the key file is
    rewritten without the version (atomically, as ``keys rotate`` writes it):
    if that fails, the log says retired while the file still holds the KEK, and
    running the command again finishes (recording it again). With ``env`` the
    keyring is the process's environment: the one without the version is
    returned for the operator to deploy; destroying the old value is theirs.
    """
    settings = services.settings
    key_file = (
        LocalKeyFile(settings.resolved_key_path) if settings.key_provider == "local" else None
    )
    with services.uow(OPERATOR_ACTOR) as uow:
        # The key file as it is now, not as this process loaded it.
        keyring = key_file.load() if key_file is not None else services.keyring
        held = ", ".join(str(v) for v in sorted(keyring.keks))
        if version not in keyring.keks:
            raise NotFound(f"KEK version {version} is not in the keyring (versions: {held})")
        if version == keyring.active_version:
            raise KekInUse(
                f"not retiring KEK version {version}: it is the active version, which wraps "
                "every new data key; run `memberguard keys rotate` and `memberguard keys "
                "rewrap` first"
            )
        wrapped = count_by_kek_version(uow.session).get(version, 0)
        if wrapped:
            raise KekInUse(
                f"not retiring KEK version {version}: {wrapped} data key(s) are still wrapped "
                "under it; run `memberguard keys rewrap` first"
            )
        running = holders_wrapping_under(
            uow.session,
            kek_version=version,
            now=uow.now,
            live_seconds=settings.keyring_live_seconds,
        )
        if running:
            named = ", ".join(f"{row.host} pid {row.pid}" for row in running[:3])
            more = f" and {len(running) - 3} more" if len(running) > 3 else ""
            raise KekInUse(
                f"not retiring KEK version {version}: {len(running)} running server(s) still "
                f"wrap new data keys under it: {named}{more}. A server reloads a rotated key "
                f"file within {settings.keyring_heartbeat_seconds} s; restart one that cannot"
            )
        retired = keyring.without_kek(version)
        seq = uow.record(
            actions.kek_retired(
                OPERATOR_ACTOR,
                policy=services.policy.version,
                version=version,
                provider=settings.key_provider,
                remaining=sorted(retired.keks),
            )
        )
        uow.commit()
    if key_file is not None:
        try:
            # Loaded again: the file may have been rotated since the check.
            current = key_file.load()
            if version in current.keks:
                retired = current.without_kek(version)
                key_file.save(retired)
        except OSError as exc:
            raise SetupError(
                f"{key_file.path}: KEK version {version} is recorded as retired (audit entry "
                f"{seq}) but the key file could not be rewritten ({exc.strerror or exc}); fix "
                f"that and run `memberguard keys retire {version}` again"
            ) from None
    return Retired(version=version, keyring=retired, seq=seq)


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
