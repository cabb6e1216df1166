"""The message and the transport interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from core.ids import new_id
from notify.templates import DEFAULT_LOCALE, LOCALES, render

Channel = Literal["sms", "email"]


@dataclass(frozen=True, slots=True)
class Message:
    """One rendered message. ``to`` and ``body`` are personal data: never in a repr."""

    channel: Channel
    to: str = field(repr=False)
    template: str
    locale: str
    subject: str = field(repr=False)
    body: str = field(repr=False)
    id: str = field(default_factory=new_id)


def compose(
    template: str, *, channel: Channel, to: str, locale: str, context: dict[str, object]
) -> Message:
    """Render ``template`` in ``locale`` for ``channel`` (``notify.templates``).

    The message records the locale it was rendered in: zh-CN for a locale
    without templates.
    """
    locale = locale if locale in LOCALES else DEFAULT_LOCALE
    subject, body = render(template, channel=channel, locale=locale, context=context)
    return Message(
        channel=channel, to=to, template=template, locale=locale, subject=subject, body=body
    )


class Notifier(Protocol):
    def send(self, message: Message, *, now: datetime) -> None:
        """Hand the message to the transport, or raise ``NotifierError``."""
        ...


class NotifierError(Exception):
    """The transport refused or could not be reached. The message names the transport,
    never the recipient or the body."""
