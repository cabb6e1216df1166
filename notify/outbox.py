"""The default transport: one private JSON file per message in a directory.

This is how the demo and the tests read codes, and how an operator without
an SMS gateway or SMTP server sees what would have been sent. Files are
created 0600 in a 0700 directory: they hold the recipient and the body.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from notify.message import Message

log = structlog.get_logger("memberguard.notify")


# A file's name starts with its sending time (UTC): names sort in sending order.
_NAME_TIME = "%Y%m%dT%H%M%S%f"


class OutboxNotifier:
    transport = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: Message, *, now: datetime) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        record = {
            "id": message.id,
            "channel": message.channel,
            "to": message.to,
            "template": message.template,
            "locale": message.locale,
            "subject": message.subject,
            "body": message.body,
            "created_at": now.isoformat(),
        }
        # The time first, so that a listing sorted by name is in sending order.
        name = f"{now.astimezone(UTC).strftime(_NAME_TIME)}-{message.id}.json"
        temporary = self.directory / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(record, out, ensure_ascii=False, indent=2)
            out.flush()
            os.fsync(out.fileno())
        # Renamed into place: a reader never sees half a message.
        os.replace(temporary, self.directory / name)
        log.info(
            "message sent",
            transport=self.transport,
            channel=message.channel,
            template=message.template,
            message_id=message.id,
        )


def read_outbox(directory: Path) -> Iterator[dict[str, Any]]:
    """The messages in the outbox, oldest first."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.json")):
        yield json.loads(path.read_text(encoding="utf-8"))


def purge_outbox(directory: Path, *, sent_before: datetime) -> int:
    """Delete the messages sent before ``sent_before``; how many were deleted.

    A message's file holds its recipient and body in clear, and a member's
    deletion does not reach messages already sent (the vault does not know
    which files name them): the outbox keeps them only so long. The sending
    time is read from the file's name, so nothing is opened. Safe to run on
    several workers at once (a file another removed first is not counted).
    """
    if not directory.is_dir():
        return 0
    cutoff = sent_before.astimezone(UTC).strftime(_NAME_TIME)
    purged = 0
    for path in directory.glob("*.json"):
        if path.name[: len(cutoff)] < cutoff:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            purged += 1
    return purged
