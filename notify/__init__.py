"""Messages to members and staff: sign-in codes, request updates, breach notices.

One interface, ``Notifier.send(message)``; the transport is a setting
(``MEMBERGUARD_NOTIFIER``). A message's recipient and body are personal data:
they go to the transport and nowhere else. Never to a log line, an audit entry
(which records who was sent which template, by id) or an exception message;
``Message``'s repr hides both.
"""

from __future__ import annotations

from core.settings import Settings
from notify.message import Message, Notifier, NotifierError, compose
from notify.outbox import OutboxNotifier

__all__ = ["Message", "Notifier", "NotifierError", "build_notifier", "compose"]


def build_notifier(settings: Settings) -> Notifier:
    """The transport ``settings.notifier`` names."""
    return OutboxNotifier(settings.resolved_outbox_dir)
