"""One notifier per channel: e-mail by one transport, SMS by another."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from notify.message import Channel, Message, Notifier, NotifierError


class RoutingNotifier:
    """Hands each message to the transport of its channel
    (``MEMBERGUARD_EMAIL_TRANSPORT``, ``MEMBERGUARD_SMS_TRANSPORT``)."""

    def __init__(self, by_channel: Mapping[Channel, Notifier]) -> None:
        self.by_channel = dict(by_channel)

    def send(self, message: Message, *, now: datetime) -> None:
        transport = self.by_channel.get(message.channel)
        if transport is None:
            raise NotifierError(f"no transport for {message.channel} messages")
        transport.send(message, now=now)
