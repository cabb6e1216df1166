"""E-mail over SMTP (``MEMBERGUARD_EMAIL_TRANSPORT=smtp``), with the standard library.

``MEMBERGUARD_SMTP_URL`` names the server:

- ``smtp://[user:password@]host[:port]``: STARTTLS, required (port 587 unless
  given). A server that does not offer it is refused, never sent to in clear.
- ``smtps://[user:password@]host[:port]``: TLS from the first byte (port 465).
- ``smtp://host:port?starttls=false``: no TLS at all, for a relay on this host
  only (a loopback address or ``localhost``): a sign-in code and an address
  never cross a network in clear.

User and password are percent-encoded in the URL (``%40`` for ``@``). TLS
certificates are checked against the system's trust store and the host name.

A failure raises ``NotifierError`` naming the transport and the failure's
class (and the server's reply code, when there is one): never the recipient,
whom ``SMTPRecipientsRefused`` would print, nor the password, the server's
reply text or the URL. The original exception is not chained for the same
reason: a logged traceback would print it.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

import structlog

from notify.hosts import is_this_host
from notify.message import Message, NotifierError

log = structlog.get_logger("memberguard.notify")

# 7-bit: a body in Chinese goes base64 (or quoted-printable), so it arrives
# intact through a server that does not announce 8BITMIME. Subjects and
# display names are RFC 2047 encoded words either way.
_POLICY = SMTP_POLICY.clone(cte_type="7bit")
_DEFAULT_PORTS = {"smtp": 587, "smtps": 465}


@dataclass(frozen=True, slots=True)
class SmtpEndpoint:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpEndpoint:
    """The endpoint ``url`` names, or ``ValueError`` saying which rule it breaks.

    The message never holds the URL or a part of it: it carries a password.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("not a URL such as smtp://user:password@host:587") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("the scheme must be smtp (STARTTLS) or smtps (TLS)")
    if not parts.hostname:
        raise ValueError("the URL names no host")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("the URL has a path or fragment; only ?starttls=false is understood")
    query = parse_qs(parts.query, keep_blank_values=True)
    if set(query) - {"starttls"}:
        raise ValueError("the only query parameter understood is starttls")
    starttls = scheme == "smtp"
    if "starttls" in query:
        if scheme == "smtps":
            raise ValueError("starttls applies to smtp://, not to smtps:// (TLS already)")
        (value,) = query["starttls"][-1:]
        if value.lower() not in ("true", "false"):
            raise ValueError("starttls must be true or false")
        starttls = value.lower() == "true"
    if scheme == "smtp" and not starttls and not is_this_host(parts.hostname):
        raise ValueError(
            "starttls=false is only for a relay on this host (localhost or a loopback "
            "address); use STARTTLS or smtps:// for any other server"
        )
    if (parts.username is None) != (parts.password is None):
        raise ValueError("give both a user and a password, or neither")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    # smtplib signs in with ASCII only; refused here rather than at the first message.
    if not ((username or "").isascii() and (password or "").isascii()):
        raise ValueError("the user and password must be ASCII (percent-encoded in the URL)")
    return SmtpEndpoint(
        host=parts.hostname,
        port=port or _DEFAULT_PORTS[scheme],
        implicit_tls=scheme == "smtps",
        starttls=starttls,
        username=username,
        password=password,
    )


def check_sender(sender: str) -> str:
    """``MEMBERGUARD_SMTP_FROM``: an address, or ``Display Name <address>``."""
    _name, address = parseaddr(sender)
    local, at, domain = address.rpartition("@")
    if not (local and at and domain) or any(c.isspace() for c in address):
        raise ValueError("not an address such as noreply@example.com or 'Name <noreply@…>'")
    return sender


class SmtpNotifier:
    """Sends e-mail messages, one SMTP connection per message.

    Messages are few (codes and request updates), so a connection is not kept
    open between them: there is nothing to close and nothing to time out.
    """

    transport = "smtp"

    def __init__(self, endpoint: SmtpEndpoint, *, sender: str, timeout: float) -> None:
        self.endpoint = endpoint
        self.sender = check_sender(sender)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SmtpNotifier(host={self.endpoint.host!r}, port={self.endpoint.port})"

    def send(self, message: Message, *, now: datetime) -> None:
        if message.channel != "email":
            raise NotifierError(f"smtp: cannot send a {message.channel} message (e-mail only)")
        email, recipient = self._build(message, now=now)
        envelope_from = parseaddr(self.sender)[1]
        try:
            with self._connect() as server:
                if self.endpoint.username is not None:
                    assert self.endpoint.password is not None  # parse_smtp_url
                    server.login(self.endpoint.username, self.endpoint.password)
                server.send_message(email, from_addr=envelope_from, to_addrs=[recipient])
        except (smtplib.SMTPException, OSError, UnicodeError) as exc:
            # UnicodeError: smtplib encodes some of what it sends as ASCII, and its
            # message would quote a character of the value.
            raise NotifierError(f"smtp: {_failure(exc)}") from None
        log.info(
            "message sent",
            transport=self.transport,
            channel=message.channel,
            template=message.template,
            message_id=message.id,
        )

    def _build(self, message: Message, *, now: datetime) -> tuple[EmailMessage, str]:
        """The e-mail and its one recipient's address, as the header parser read it."""
        email = EmailMessage(policy=_POLICY)
        try:
            email["From"] = self.sender
            email["To"] = message.to
            email["Subject"] = message.subject
            email["Date"] = format_datetime(now)
            domain = parseaddr(self.sender)[1].rpartition("@")[2]
            # The message id again: a resent message is recognisably the same one.
            email["Message-ID"] = f"<{message.id}@{domain}>"
            # RFC 3834: an automatic message, so auto-responders do not answer it.
            email["Auto-Submitted"] = "auto-generated"
            email.set_content(message.body, charset="utf-8")
            # An address the header parser could not read as one mailbox (a
            # stray comma, a line break) is refused rather than sent elsewhere.
            to = email["To"].addresses
            if len(to) != 1 or not isinstance(to[0], Address) or not to[0].domain:
                raise ValueError("not one mailbox")
        except (ValueError, TypeError, IndexError) as exc:
            raise NotifierError(
                f"smtp: the message could not be built ({type(exc).__name__}): "
                "is the recipient one e-mail address?"
            ) from None
        return email, to[0].addr_spec

    def _connect(self) -> smtplib.SMTP:
        endpoint = self.endpoint
        context = ssl.create_default_context()
        if endpoint.implicit_tls:
            return smtplib.SMTP_SSL(
                endpoint.host, endpoint.port, timeout=self.timeout, context=context
            )
        server = smtplib.SMTP(endpoint.host, endpoint.port, timeout=self.timeout)
        try:
            if endpoint.starttls:
                server.ehlo()
                if not server.has_extn("starttls"):
                    raise _NoStartTls
                server.starttls(context=context)
                server.ehlo()
        except BaseException:
            server.close()
            raise
        return server


class _NoStartTls(smtplib.SMTPException):
    """The server does not offer STARTTLS, which an smtp:// URL requires."""


def _failure(exc: BaseException) -> str:
    """What went wrong, by class and reply code: never the exception's text."""
    name = type(exc).__name__
    if isinstance(exc, _NoStartTls):
        return "the server does not offer STARTTLS (use smtps:// or another server)"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        what = "the server refused the user and password"
    elif isinstance(exc, smtplib.SMTPRecipientsRefused):
        what = "the server refused the recipient"
    elif isinstance(exc, smtplib.SMTPSenderRefused):
        what = "the server refused the sender (MEMBERGUARD_SMTP_FROM)"
    elif isinstance(exc, smtplib.SMTPNotSupportedError):
        what = "the server does not support a command it needs"
    elif isinstance(exc, ssl.SSLError | ssl.CertificateError):
        what = "TLS failed"
    elif isinstance(exc, TimeoutError):
        what = "no answer in time"
    elif isinstance(exc, ConnectionError | smtplib.SMTPServerDisconnected):
        what = "could not connect or was disconnected"
    elif isinstance(exc, OSError):
        what = "could not reach the server"
    elif isinstance(exc, UnicodeError):
        what = "the message or an address is not ASCII where SMTP needs it"
    else:
        what = "the server refused the message"
    code = getattr(exc, "smtp_code", None)
    return f"{what} ({name}{f', {code}' if isinstance(code, int) else ''})"
