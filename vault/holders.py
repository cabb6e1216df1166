"""Which running processes wrap new data keys under which KEK version.

These functions only ``flush()``; ``gate.keyholders`` runs them in units of work.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vault.models import VaultKeyringHolder

# A process not seen for this long has long stopped; its row is only clutter.
FORGET_AFTER = timedelta(days=1)


def record_holder(
    session: Session,
    *,
    process_id: str,
    host: str,
    pid: int,
    kek_version: int,
    started_at: datetime,
    now: datetime,
) -> None:
    """Write this process's row (the KEK version it wraps under, seen ``now``)."""
    session.execute(
        delete(VaultKeyringHolder).where(VaultKeyringHolder.seen_at < now - FORGET_AFTER)
    )
    row = session.get(VaultKeyringHolder, process_id)
    if row is None:
        session.add(
            VaultKeyringHolder(
                id=process_id,
                host=host,
                pid=pid,
                kek_version=kek_version,
                started_at=started_at,
                seen_at=now,
            )
        )
    else:
        row.kek_version = kek_version
        row.seen_at = now
    session.flush()


def forget_holder(session: Session, process_id: str) -> None:
    session.execute(delete(VaultKeyringHolder).where(VaultKeyringHolder.id == process_id))
    session.flush()


def holders_behind(
    session: Session, *, kek_version: int, now: datetime, live_seconds: int
) -> list[VaultKeyringHolder]:
    """Processes seen within ``live_seconds`` of ``now`` that wrap under an older KEK.

    One seen *after* ``now`` counts as running too: its clock is ahead of
    ours, and taking it for stopped is the unsafe mistake.
    """
    return list(
        session.scalars(
            select(VaultKeyringHolder)
            .where(
                VaultKeyringHolder.kek_version < kek_version,
                VaultKeyringHolder.seen_at >= now - timedelta(seconds=live_seconds),
            )
            .order_by(VaultKeyringHolder.seen_at.desc(), VaultKeyringHolder.id)
        )
    )


def holders_wrapping_under(
    session: Session, *, kek_version: int, now: datetime, live_seconds: int
) -> list[VaultKeyringHolder]:
    """Processes seen within ``live_seconds`` of ``now`` that wrap new data keys under
    ``kek_version`` (one seen after ``now`` counts as running, as above)."""
    return list(
        session.scalars(
            select(VaultKeyringHolder)
            .where(
                VaultKeyringHolder.kek_version == kek_version,
                VaultKeyringHolder.seen_at >= now - timedelta(seconds=live_seconds),
            )
            .order_by(VaultKeyringHolder.seen_at.desc(), VaultKeyringHolder.id)
        )
    )
