"""The SMTP transport against a real SMTP server (aiosmtpd) on the loopback interface."""

from __future__ import annotations

import traceback
from datetime import UTC, datetime

import pytest

from notify import NotifierError, compose
from notify.message import Message
from notify.smtp import SmtpNotifier, parse_smtp_url
from tests.integration.notify_servers import closed_port, smtp_server

NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
SENDER = "星辰会员中心 <noreply@xingchen.example>"
TO = "zhou.jinque@example.org"
PASSWORD = "p@ss:w/rd%20"  # a test credential, percent-encoded below
PASSWORD_IN_URL = "p%40ss%3Aw%2Frd%2520"
CODE = "482913"


def notifier(url: str) -> SmtpNotifier:
    return SmtpNotifier(parse_smtp_url(url), sender=SENDER, timeout=5)


def login_code(to: str = TO) -> Message:
    return compose(
        "login_code",
        channel="email",
        to=to,
        locale="zh-CN",
        context={"programme": "星辰会员", "code": CODE, "minutes": 10},
    )


def assert_says_nothing_personal(exc: BaseException, *secrets: str) -> None:
    """Neither the message nor a logged traceback of it holds a secret or the recipient."""
    shown = str(exc) + repr(exc) + "".join(traceback.format_exception(exc))
    for secret in (TO, "zhou.jinque", CODE, *secrets):
        assert secret not in shown, secret


def test_a_chinese_email_arrives_with_subject_body_sender_and_recipient_intact() -> None:
    message = login_code()
    with smtp_server() as server:
        notifier(f"smtp://127.0.0.1:{server.port}?starttls=false").send(message, now=NOW)
    (mail,) = server.received
    assert mail.mail_from == "noreply@xingchen.example"
    assert mail.rcpt_tos == [TO]
    received = mail.message
    assert received["Subject"] == "星辰会员 登录验证码" == message.subject
    # The wire's CRLF line ends aside, the text that arrives is the text sent.
    assert received.get_content().replace("\r\n", "\n") == message.body
    assert "您的登录验证码是 482913" in received.get_content()
    assert received["From"].addresses[0].display_name == "星辰会员中心"
    assert received["From"].addresses[0].addr_spec == "noreply@xingchen.example"
    assert received["To"].addresses[0].addr_spec == TO
    assert received.get_content_charset() == "utf-8"
    assert received["Message-ID"] == f"<{message.id}@xingchen.example>"
    assert received["Auto-Submitted"] == "auto-generated"
    # Seven-bit on the wire: it passes a server that does not offer 8BITMIME.
    assert mail.raw.isascii()


def test_the_user_and_password_from_the_url_sign_in() -> None:
    with smtp_server(credentials=("mailer@xingchen.example", PASSWORD)) as server:
        url = f"smtp://mailer%40xingchen.example:{PASSWORD_IN_URL}@127.0.0.1:{server.port}"
        notifier(url + "?starttls=false").send(login_code(), now=NOW)
    assert server.logins == [("mailer@xingchen.example", PASSWORD)]
    assert len(server.received) == 1


def test_a_wrong_password_is_a_notifier_error_without_the_password() -> None:
    with smtp_server(credentials=("mailer", "the-right-one")) as server:
        url = f"smtp://mailer:{PASSWORD_IN_URL}@127.0.0.1:{server.port}?starttls=false"
        with pytest.raises(NotifierError) as caught:
            notifier(url).send(login_code(), now=NOW)
    # (smtplib tries each mechanism the server offers: PLAIN, then LOGIN.)
    assert server.logins and set(server.logins) == {("mailer", PASSWORD)}
    assert server.received == []
    assert str(caught.value).startswith("smtp: the server refused the user and password")
    assert "SMTPAuthenticationError" in str(caught.value)
    assert_says_nothing_personal(caught.value, PASSWORD, PASSWORD_IN_URL, "the-right-one")


def test_a_refused_connection_is_a_notifier_error_without_the_password() -> None:
    with closed_port() as port:
        url = f"smtp://mailer:{PASSWORD_IN_URL}@127.0.0.1:{port}?starttls=false"
        with pytest.raises(NotifierError) as caught:
            notifier(url).send(login_code(), now=NOW)
    assert str(caught.value) == (
        "smtp: could not connect or was disconnected (ConnectionRefusedError)"
    )
    assert_says_nothing_personal(caught.value, PASSWORD, PASSWORD_IN_URL, str(port))


def test_a_refused_recipient_is_a_notifier_error_that_does_not_name_them() -> None:
    # smtplib's own exception carries the refused addresses: it must not show through.
    with smtp_server(refuse_recipients=True) as server, pytest.raises(NotifierError) as caught:
        notifier(f"smtp://127.0.0.1:{server.port}?starttls=false").send(login_code(), now=NOW)
    assert server.received == []
    assert "SMTPRecipientsRefused" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert_says_nothing_personal(caught.value)


def test_an_smtp_url_requires_starttls_and_a_server_without_it_gets_nothing() -> None:
    with smtp_server() as server, pytest.raises(NotifierError, match="does not offer STARTTLS"):
        notifier(f"smtp://127.0.0.1:{server.port}").send(login_code(), now=NOW)
    assert server.received == []


@pytest.mark.parametrize(
    "to",
    [
        "zhou.jinque@example.org\r\nBcc: everyone@example.org",
        "zhou.jinque@example.org, other@example.org",
        "not-an-address",
    ],
)
def test_a_recipient_that_is_not_one_address_is_refused_before_sending(to: str) -> None:
    with (
        smtp_server() as server,
        pytest.raises(NotifierError, match="could not be built") as caught,
    ):
        notifier(f"smtp://127.0.0.1:{server.port}?starttls=false").send(login_code(to), now=NOW)
    assert server.received == []
    assert_says_nothing_personal(caught.value, "everyone@example.org", "not-an-address")


def test_an_sms_message_is_refused_by_the_email_transport() -> None:
    sms = compose(
        "login_code",
        channel="sms",
        to="+8613912345670",
        locale="zh-CN",
        context={"programme": "星辰会员", "code": CODE, "minutes": 10},
    )
    with smtp_server() as server, pytest.raises(NotifierError, match="e-mail only"):
        notifier(f"smtp://127.0.0.1:{server.port}?starttls=false").send(sms, now=NOW)
    assert server.received == []
