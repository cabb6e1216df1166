"""Messages to members and staff: sign-in codes, request updates, breach notices.

One interface, ``Notifier.send(message)``; the transport is a setting per
channel: ``MEMBERGUARD_EMAIL_TRANSPORT`` (``outbox`` or ``smtp``) and
``MEMBERGUARD_SMS_TRANSPORT`` (``outbox`` or ``http``, an SMS gateway). A
message's recipient and body are personal data: they go to the transport and
nowhere else. Never to a log line, an audit entry (which records who was sent
which template, by id) or an exception message; ``Message``'s repr hides both.
"""

from __future__ import annotations

from core.settings import Settings
from notify.http import HttpSmsNotifier
from notify.message import Message, Notifier, NotifierError, compose
from notify.outbox import OutboxNotifier
from notify.routing import RoutingNotifier
from notify.smtp import SmtpNotifier, parse_smtp_url

__all__ = ["Message", "Notifier", "NotifierError", "build_notifier", "compose"]


def build_notifier(settings: Settings) -> Notifier:
    """The transports the settings name, one per channel.

    ``Settings`` has already refused a transport without its settings (its URL,
    its sender), so nothing is missing here.
    """
    outbox = OutboxNotifier(settings.resolved_outbox_dir)
    timeout = settings.notifier_timeout_seconds
    email: Notifier = outbox
    if settings.email_transport == "smtp":
        assert settings.smtp_url is not None and settings.smtp_from is not None
        email = SmtpNotifier(
            parse_smtp_url(settings.smtp_url.get_secret_value()),
            sender=settings.smtp_from,
            timeout=timeout,
        )
    sms: Notifier = outbox
    if settings.sms_transport == "http":
        assert settings.sms_gateway_url is not None
        token = settings.sms_gateway_token
        sms = HttpSmsNotifier(
            settings.sms_gateway_url.get_secret_value(),
            token=token.get_secret_value() if token is not None else None,
            timeout=timeout,
        )
    if email is sms:
        return outbox
    return RoutingNotifier({"email": email, "sms": sms})
