"""Running servers record the KEK they wrap under, so that a re-wrap never leaves one behind.

A server wraps new members' data keys under the newest KEK of the keyring it
holds. ``memberguard keys rewrap`` moves every data key to the newest KEK; a
server still on an older one would go on creating members under it, who would
be lost with it when it is retired. So each server process records itself
(``KeyringHeartbeat``): when it starts, then every
``keyring_heartbeat_seconds``, each time after reloading a key file that
``keys rotate`` changed; it forgets itself when it stops. ``rewrap_data_keys``
refuses (``KeyringBehind``) while a process seen within
``keyring_live_seconds`` wraps under an older KEK than the one it re-wraps to.

The rows are written in units of work that record no audit entry: a heartbeat
is no event about members or clients, and an entry per server every few
seconds would bury the log.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.orm import Session

from core.errors import Conflict
from core.ids import new_id
from gate.context import Services
from vault.holders import forget_holder, holders_behind, record_holder

log = structlog.get_logger("memberguard.keys")


class KeyringBehind(Conflict):
    slug = "keyring-behind"
    title = "A running server wraps under an older KEK"


@dataclass(frozen=True, slots=True)
class ThisProcess:
    id: str
    host: str
    pid: int
    started_at: datetime


def record_keyring_holder(services: Services, process: ThisProcess) -> None:
    """Record the KEK version ``process`` wraps new data keys under, seen now."""
    with services.uow() as uow:
        record_holder(
            uow.session,
            process_id=process.id,
            host=process.host,
            pid=process.pid,
            kek_version=services.keyring.active_version,
            started_at=process.started_at,
            now=uow.now,
        )
        uow.commit()


def forget_keyring_holder(services: Services, process: ThisProcess) -> None:
    with services.uow() as uow:
        forget_holder(uow.session, process.id)
        uow.commit()


def ensure_no_holder_behind(
    session: Session, services: Services, *, version: int, now: datetime
) -> None:
    """Raise ``KeyringBehind`` if a running server wraps under an older KEK than ``version``."""
    settings = services.settings
    behind = holders_behind(
        session, kek_version=version, now=now, live_seconds=settings.keyring_live_seconds
    )
    if not behind:
        return
    named = ", ".join(
        f"{row.host} pid {row.pid} (KEK {row.kek_version}, seen {row.seen_at:%Y-%m-%dT%H:%M:%SZ})"
        for row in behind[:3]
    )
    more = f" and {len(behind) - 3} more" if len(behind) > 3 else ""
    raise KeyringBehind(
        f"not re-wrapping: {len(behind)} running server(s) still wrap new data keys under a KEK "
        f"older than version {version}: {named}{more}. A server reloads a rotated key file "
        f"within {settings.keyring_heartbeat_seconds} s; restart one that cannot (the env "
        "provider, another host's key file), then run `memberguard keys rewrap` again"
    )


class KeyringHeartbeat:
    """One per server process: reload a changed keyring, record what it wraps under.

    ``start`` records the process before the server takes requests; then a
    daemon thread beats every ``keyring_heartbeat_seconds``; ``stop`` ends it
    and deletes the row, so a server restarted with a new keyring does not
    block a re-wrap for the live window. A failed beat is logged and retried
    at the next one: the server keeps serving (its reads and writes fail on
    their own if the database is gone).
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self.every = services.settings.keyring_heartbeat_seconds
        self.process: ThisProcess | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # Here, not in __init__: a forked worker is a process of its own.
        self.process = ThisProcess(
            id=new_id(),
            host=socket.gethostname()[:255],
            pid=os.getpid(),
            started_at=self.services.clock(),
        )
        self.beat()
        self._thread = threading.Thread(
            target=self._run, name="memberguard-keyring-heartbeat", daemon=True
        )
        self._thread.start()

    def beat(self) -> None:
        if self.process is None:
            raise RuntimeError("the heartbeat has not started")
        try:
            self.services.keys.refresh()
            record_keyring_holder(self.services, self.process)
        except Exception as exc:  # the next beat tries again
            log.error("keyring.heartbeat_failed", error=type(exc).__name__)

    def _run(self) -> None:
        while not self._stopping.wait(self.every):
            self.beat()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.process is None:
            return
        try:
            forget_keyring_holder(self.services, self.process)
        except Exception as exc:  # the row then ages out of the live window
            log.error("keyring.heartbeat_forget_failed", error=type(exc).__name__)
