"""Real local servers for the notifier's transports: SMTP (aiosmtpd) and an SMS gateway.

Both listen on 127.0.0.1, on a port the kernel picks (port 0, so no race for a
"free" port), each in a thread of its own that the context manager stops and
joins. Neither starts or stops with a timed wait: the suite also runs under
libfaketime with the clock stopped, where a timed wait may never return. (This
is why the SMTP server is aiosmtpd's ``SMTP`` protocol on an event loop of our
own rather than its ``Controller``, which needs a port chosen in advance and
waits for the server with a timeout.)
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

# -- SMTP ------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage


@dataclass
class MailServer:
    port: int = 0
    received: list[ReceivedMail] = field(default_factory=list)
    # Who signed in, as (login, password).
    logins: list[tuple[str, str]] = field(default_factory=list)
    # Accepted credentials; None: the server offers no AUTH.
    credentials: tuple[str, str] | None = None
    refuse_recipients: bool = False

    # aiosmtpd handler hooks.
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if self.refuse_recipients:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        self.received.append(
            ReceivedMail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                raw=raw,
                message=parsed,
            )
        )
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        self.logins.append((login, password))
        # handled=False: aiosmtpd answers the failure itself (535).
        return AuthResult(success=(login, password) == self.credentials, handled=False)


@contextmanager
def smtp_server(
    *, credentials: tuple[str, str] | None = None, refuse_recipients: bool = False
) -> Iterator[MailServer]:
    """An SMTP server without TLS (so, no STARTTLS offered), optionally with AUTH."""
    state = MailServer(credentials=credentials, refuse_recipients=refuse_recipients)
    options: dict[str, Any] = {"hostname": "mail.test", "decode_data": False}
    if credentials is not None:
        # No TLS to require in a test on the loopback interface.
        options.update(authenticator=state.authenticate, auth_require_tls=False)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: SMTP(state, **options), "127.0.0.1", 0)
    )
    state.port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, name="test-smtp-server")
    thread.start()
    try:
        yield state
    finally:

        async def close() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


# -- SMS gateway -------------------------------------------------------------------


@dataclass
class GatewayRequest:
    path: str
    headers: dict[str, str]
    payload: Any


@dataclass
class Gateway:
    port: int = 0
    status: int = 202
    answer: bytes = b'{"accepted": true}'
    requests: list[GatewayRequest] = field(default_factory=list)
    # Set: the gateway holds every request until released (a gateway that hangs).
    hang: bool = False
    release: threading.Event = field(default_factory=threading.Event)


@contextmanager
def sms_gateway(**settings: Any) -> Iterator[Gateway]:
    state = Gateway(**settings)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.requests.append(
                GatewayRequest(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    payload=json.loads(body.decode("utf-8")),
                )
            )
            if state.hang:
                state.release.wait()  # untimed: released at teardown
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.answer)))
            self.end_headers()
            self.wfile.write(state.answer)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test server's own request lines are not the code under test."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    # A short poll: shutdown() waits for the loop's next look at its flag.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="test-sms-gateway"
    )
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        thread.join()
        server.server_close()


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so no one else takes it), not
    listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()
