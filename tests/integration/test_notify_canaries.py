"""Canary values prove that a message's recipient and body never reach a log line.

Messages carrying planted canaries (a CN mobile number and an e-mail address
as recipients; a programme name and a code in the body) go through every
transport, to real local servers: the outbox, SMTP with a password, the SMS
gateway with a token and a key in its URL; and through failing ones (a refused
recipient, a wrong password, a gateway answering 500, nobody listening), each
failure logged with its traceback as a use case would. Afterwards no canary and
no secret may be found in what production logging (JSON, DEBUG) wrote, nor in
the transports' own log events before any redaction.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from core.logging import configure_logging
from notify import NotifierError, compose
from notify.http import HttpSmsNotifier
from notify.message import Message, Notifier
from notify.outbox import OutboxNotifier
from notify.smtp import SmtpNotifier, parse_smtp_url
from tests.integration.notify_servers import closed_port, sms_gateway, smtp_server

NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
PHONE = "+8613912345670"
EMAIL = "canary.zhou@example.org"
PROGRAMME = "金丝雀俱乐部"
CODE = "731904"
PASSWORD = "canary-pw-93f1"
TOKEN = "canary-token-5d2e"
GATEWAY_KEY = "canary-key-77ab"

CANARIES = (
    PHONE,
    "13912345670",
    "139 1234 5670",
    EMAIL,
    "canary.zhou",
    PROGRAMME,
    "金丝雀",
    CODE,
    "验证码",
    "sign-in code",
    PASSWORD,
    TOKEN,
    GATEWAY_KEY,
)

# The test's own servers log what they receive; they are not the code under test.
TEST_SERVER_LOGGERS = frozenset({"mail.log"})


def message(channel: str, locale: str) -> Message:
    return compose(
        "login_code",
        channel=channel,  # type: ignore[arg-type]
        to=PHONE if channel == "sms" else EMAIL,
        locale=locale,
        context={"programme": PROGRAMME, "code": CODE, "minutes": 10},
    )


def send_through_every_transport(outbox_dir: Path) -> list[str]:
    """Sends (or fails to send) a message through each transport; returns the ids sent."""
    log = structlog.get_logger("memberguard.rights")
    sent: list[str] = []

    def attempt(notifier: Notifier, item: Message, *, fails: bool) -> None:
        try:
            notifier.send(item, now=NOW)
        except NotifierError:
            # As a use case would: the failure, with its traceback, in the log.
            log.exception("notice not sent", message_id=item.id)
            assert fails
        else:
            assert not fails
            sent.append(item.id)

    def smtp(url: str) -> SmtpNotifier:
        return SmtpNotifier(parse_smtp_url(url), sender="noreply@example.com", timeout=5)

    for locale in ("zh-CN", "en"):
        attempt(OutboxNotifier(outbox_dir), message("sms", locale), fails=False)
        attempt(OutboxNotifier(outbox_dir), message("email", locale), fails=False)

    with smtp_server(credentials=("mailer", PASSWORD)) as server:
        good = f"smtp://mailer:{PASSWORD}@127.0.0.1:{server.port}?starttls=false"
        bad = f"smtp://mailer:{PASSWORD}x@127.0.0.1:{server.port}?starttls=false"
        attempt(smtp(good), message("email", "zh-CN"), fails=False)
        attempt(smtp(bad), message("email", "zh-CN"), fails=True)
        attempt(smtp(good), message("sms", "zh-CN"), fails=True)
    assert len(server.received) == 1
    with smtp_server(refuse_recipients=True) as server:
        url = f"smtp://127.0.0.1:{server.port}?starttls=false"
        attempt(smtp(url), message("email", "en"), fails=True)
    with closed_port() as port:
        url = f"smtp://mailer:{PASSWORD}@127.0.0.1:{port}?starttls=false"
        attempt(smtp(url), message("email", "en"), fails=True)

    with sms_gateway() as gateway:
        url = f"http://127.0.0.1:{gateway.port}/{GATEWAY_KEY}/send"
        attempt(HttpSmsNotifier(url, token=TOKEN, timeout=5), message("sms", "zh-CN"), fails=False)
    assert len(gateway.requests) == 1
    answer = f'{{"error": "undeliverable: {PHONE}", "text": "{CODE}"}}'.encode()
    with sms_gateway(status=500, answer=answer) as gateway:
        url = f"http://127.0.0.1:{gateway.port}/{GATEWAY_KEY}/send"
        attempt(HttpSmsNotifier(url, token=TOKEN, timeout=5), message("sms", "en"), fails=True)
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/{GATEWAY_KEY}/send"
        attempt(HttpSmsNotifier(url, token=TOKEN, timeout=5), message("sms", "en"), fails=True)
    return sent


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """Production logging (JSON, the redacting processors) at DEBUG level; returns a reader
    of what its handler rendered, plus anything else that reached stderr."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    capsys.readouterr()
    configure_logging(log_format="json", level="DEBUG")
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    rendered = io.StringIO()
    handler.setStream(rendered)
    try:
        yield lambda: rendered.getvalue() + capsys.readouterr().err
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.reset_defaults()


def log_records(log: str) -> list[tuple[dict[str, Any], str]]:
    records = []
    for line in log.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = {"unparsed": line}
        if record.get("logger") not in TEST_SERVER_LOGGERS:
            records.append((record, line))
    return records


def test_no_recipient_body_or_secret_reaches_a_log_line(
    json_logs: Callable[[], str], tmp_path: Path
) -> None:
    sent = send_through_every_transport(tmp_path / "outbox")
    records = log_records(json_logs())
    # The capture could catch a leak: every send and failure left a line, the
    # failures their tracebacks, and httpx its request lines.
    sent_lines = [r for r, _ in records if r.get("event") == "message sent"]
    assert sorted(r["message_id"] for r in sent_lines) == sorted(sent)
    assert {r["transport"] for r in sent_lines} == {"outbox", "smtp", "http"}
    failures = [r for r, _ in records if r.get("event") == "notice not sent"]
    assert len(failures) == 6 and all("NotifierError" in r["exception"] for r in failures)
    httpx_lines = [r for r, _ in records if r.get("logger") == "httpx"]
    assert len(httpx_lines) == 2
    assert all("http://127.0.0.1/…" in r["event"] for r in httpx_lines)
    for _record, line in records:
        for canary in CANARIES:
            escaped = json.dumps(canary)[1:-1]
            assert canary.lower() not in line.lower(), (canary, line)
            assert escaped.lower() not in line.lower(), (canary, line)


def test_the_transports_own_log_events_carry_ids_only(tmp_path: Path) -> None:
    with capture_logs() as events:
        sent = send_through_every_transport(tmp_path / "outbox")
    ours = [e for e in events if e["event"] == "message sent"]
    assert sorted(e["message_id"] for e in ours) == sorted(sent)
    for event in ours:
        assert set(event) == {
            "event",
            "log_level",
            "transport",
            "channel",
            "template",
            "message_id",
        }
        for canary in CANARIES:
            assert canary not in repr(event)
