"""A real webhook receiver on 127.0.0.1: it checks each delivery with ``standardwebhooks``.

Like ``notify_servers``: a stdlib HTTP server on a port the kernel picks, in a
thread of its own, started and stopped with no timed wait (the suite also runs
under libfaketime with the clock stopped).

The receiver verifies as a consumer would, with ``Webhook(secret).verify(body,
headers)``, against each secret it knows. The verifier checks the timestamp
against its own clock (five minutes' tolerance); the deliveries are timed by
the suite's injected clock, so the receiver's clock is set to the same time
(``Receiver.now``), as a consumer's clock is in step with the sender's (NTP).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import standardwebhooks.webhooks as standard
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

# The verifier reads ``datetime.now`` from its module: one patch at a time.
_VERIFIER_CLOCK = threading.Lock()


def verify_at(secret: str, body: bytes, headers: dict[str, str], at: datetime) -> Any:
    """``Webhook(secret).verify(body, headers)`` with the verifier's clock at ``at``."""

    class VerifierTime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> VerifierTime:  # type: ignore[override]
            return cls.fromtimestamp(at.timestamp(), tz)

    with _VERIFIER_CLOCK:
        real = standard.datetime
        standard.datetime = VerifierTime  # type: ignore[misc]
        try:
            return Webhook(secret).verify(body, headers)
        finally:
            standard.datetime = real  # type: ignore[misc]


def verifies(secret: str, body: bytes, headers: dict[str, str], at: datetime) -> bool:
    try:
        verify_at(secret, body, headers, at)
    except WebhookVerificationError:
        return False
    return True


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    # By the name of each secret the receiver knows: did it verify the delivery?
    verified: dict[str, bool]

    @property
    def payload(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    port: int = 0
    # The secrets the receiver knows, by a name for the test.
    secrets: dict[str, str] = field(default_factory=dict)
    # The receiver's clock (see the module's docstring).
    now: datetime | None = None
    # The statuses to answer with, in order; then ``status``.
    script: list[int] = field(default_factory=list)
    status: int = 200
    # Answer 400 to a delivery no known secret verifies (as a consumer must).
    reject_unverified: bool = True
    # Hold each request this long (seconds) before answering, to widen races.
    hold: float = 0.0
    deliveries: list[Delivery] = field(default_factory=list)
    # Requests being answered now, by path, and the most at once.
    in_flight: Counter[str] = field(default_factory=Counter)
    most_in_flight: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def ids(self) -> list[str]:
        return [delivery.webhook_id for delivery in self.deliveries]


@contextmanager
def webhook_receiver(*, tls: ssl.SSLContext | None = None, **settings: Any) -> Iterator[Receiver]:
    """The receiver, over HTTPS with ``tls`` (a server context), else plain HTTP."""
    state = Receiver(**settings)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                state.in_flight[self.path] += 1
                state.most_in_flight[self.path] = max(
                    state.most_in_flight[self.path], state.in_flight[self.path]
                )
                at = state.now
            verified = {
                name: at is not None and verifies(secret, body, headers, at)
                for name, secret in state.secrets.items()
            }
            if state.hold:
                time.sleep(state.hold)  # a sleep, not a timed wait: fine under libfaketime
            with state.lock:
                state.deliveries.append(Delivery(self.path, headers, body, verified))
                status = state.script.pop(0) if state.script else state.status
                state.in_flight[self.path] -= 1
            if state.reject_unverified and state.secrets and not any(verified.values()):
                status = 400
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the receiver's request lines are not the code under test."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="test-webhook-receiver"
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
