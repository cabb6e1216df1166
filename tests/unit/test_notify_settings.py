"""Choosing the notifier's transports: the settings, their checks at start, the routing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.settings import Settings, SettingsError, load_settings
from notify import NotifierError, build_notifier, compose
from notify.http import HttpSmsNotifier, check_gateway_url
from notify.message import Message
from notify.outbox import OutboxNotifier
from notify.routing import RoutingNotifier
from notify.smtp import SmtpEndpoint, SmtpNotifier, check_sender, parse_smtp_url

PASSWORD = "s3cr3t-pw"  # a test credential
GATEWAY_KEY = "k-51e0d2"
NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpEndpoint("mail.example.com", 587, False, True)),
        ("smtp://mail.example.com:2525", SmtpEndpoint("mail.example.com", 2525, False, True)),
        ("SMTPS://mail.example.com", SmtpEndpoint("mail.example.com", 465, True, False)),
        (
            "smtp://mail.example.com?starttls=true",
            SmtpEndpoint("mail.example.com", 587, False, True),
        ),
        ("smtp://localhost:25?starttls=false", SmtpEndpoint("localhost", 25, False, False)),
        ("smtp://127.0.0.1:25?starttls=FALSE", SmtpEndpoint("127.0.0.1", 25, False, False)),
        ("smtp://[::1]:25?starttls=false", SmtpEndpoint("::1", 25, False, False)),
    ],
)
def test_smtp_urls_name_host_port_and_tls(url: str, expected: SmtpEndpoint) -> None:
    assert parse_smtp_url(url) == expected


def test_the_user_and_password_are_percent_decoded() -> None:
    endpoint = parse_smtp_url(f"smtps://mailer%40example.com:{PASSWORD}%2F%40@mail.example.com")
    assert endpoint.username == "mailer@example.com"
    assert endpoint.password == PASSWORD + "/@"
    assert PASSWORD not in repr(endpoint)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        (f"http://u:{PASSWORD}@mail.example.com", "scheme must be smtp"),
        (f"smtp://u:{PASSWORD}@", "no host"),
        (f"smtp://u:{PASSWORD}@mail.example.com/inbox", "path"),
        (f"smtp://u:{PASSWORD}@mail.example.com?tls=1", "only query parameter"),
        (f"smtps://u:{PASSWORD}@mail.example.com?starttls=true", "not to smtps"),
        (f"smtp://u:{PASSWORD}@mail.example.com?starttls=maybe", "true or false"),
        (f"smtp://u:{PASSWORD}@mail.example.com?starttls=false", "only for a relay on this host"),
        (f"smtp://u:{PASSWORD}@10.0.0.5:25?starttls=false", "only for a relay on this host"),
        (f"smtp://u:{PASSWORD}@mail.example.com:99999", "not a URL"),
        (f"smtp://u:{PASSWORD}wö@mail.example.com", "ASCII"),
        ("smtp://mailer@mail.example.com", "both a user and a password"),
    ],
)
def test_a_refused_smtp_url_says_which_rule_and_never_the_password(url: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule) as caught:
        parse_smtp_url(url)
    assert PASSWORD not in str(caught.value)
    assert "mail.example.com" not in str(caught.value)


@pytest.mark.parametrize(
    "sender", ["noreply@example.com", "星辰会员 <noreply@example.com>", "<noreply@example.com>"]
)
def test_a_sender_is_an_address_with_or_without_a_name(sender: str) -> None:
    assert check_sender(sender) == sender


@pytest.mark.parametrize("sender", ["noreply", "星辰会员", "no reply@example.com", "@example.com"])
def test_a_sender_that_is_no_address_is_refused(sender: str) -> None:
    with pytest.raises(ValueError, match="not an address"):
        check_sender(sender)


@pytest.mark.parametrize(
    "url",
    [
        f"https://sms.example.com/{GATEWAY_KEY}/send",
        f"http://127.0.0.1:8080/{GATEWAY_KEY}",
        f"http://localhost/{GATEWAY_KEY}",
    ],
)
def test_a_gateway_url_is_https_or_on_this_host(url: str) -> None:
    assert check_gateway_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        f"http://sms.example.com/{GATEWAY_KEY}",
        f"ftp://sms.example.com/{GATEWAY_KEY}",
        f"https:///{GATEWAY_KEY}",
        f"sms.example.com/{GATEWAY_KEY}",
    ],
)
def test_a_refused_gateway_url_never_shows_in_the_message(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_gateway_url(url)
    assert GATEWAY_KEY not in str(caught.value)
    assert "sms.example.com" not in str(caught.value)


# -- load_settings: refused at start, naming the variable and never the value ------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.setenv("MEMBERGUARD_HOME", str(tmp_path))
    for name in (
        "EMAIL_TRANSPORT",
        "SMS_TRANSPORT",
        "SMTP_URL",
        "SMTP_FROM",
        "SMS_GATEWAY_URL",
        "SMS_GATEWAY_TOKEN",
    ):
        monkeypatch.delenv(f"MEMBERGUARD_{name}", raising=False)
    return monkeypatch


def test_smtp_without_its_url_and_sender_is_refused_at_start(env: pytest.MonkeyPatch) -> None:
    env.setenv("MEMBERGUARD_EMAIL_TRANSPORT", "smtp")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert (
        "MEMBERGUARD_EMAIL_TRANSPORT=smtp needs MEMBERGUARD_SMTP_URL and MEMBERGUARD_SMTP_FROM"
        in (str(caught.value))
    )
    assert "SMS" not in str(caught.value)


def test_the_http_gateway_without_its_url_is_refused_at_start(env: pytest.MonkeyPatch) -> None:
    env.setenv("MEMBERGUARD_SMS_TRANSPORT", "http")
    env.setenv("MEMBERGUARD_SMS_GATEWAY_TOKEN", PASSWORD)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "MEMBERGUARD_SMS_TRANSPORT=http needs MEMBERGUARD_SMS_GATEWAY_URL" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_smtp_cannot_carry_sms(env: pytest.MonkeyPatch) -> None:
    env.setenv("MEMBERGUARD_SMS_TRANSPORT", "smtp")
    with pytest.raises(SettingsError, match="MEMBERGUARD_SMS_TRANSPORT"):
        load_settings()


def test_a_bad_smtp_url_is_refused_at_start_by_name_without_its_password(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("MEMBERGUARD_EMAIL_TRANSPORT", "smtp")
    env.setenv("MEMBERGUARD_SMTP_URL", f"smtp://mailer:{PASSWORD}@mail.example.com?starttls=false")
    env.setenv("MEMBERGUARD_SMTP_FROM", "noreply@example.com")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("MEMBERGUARD_SMTP_URL: ")
    assert "only for a relay on this host" in message
    assert PASSWORD not in message and "mail.example.com" not in message


def test_a_bad_gateway_url_is_refused_at_start_by_name_without_its_key(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("MEMBERGUARD_SMS_TRANSPORT", "http")
    env.setenv("MEMBERGUARD_SMS_GATEWAY_URL", f"http://sms.example.com/{GATEWAY_KEY}")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith("MEMBERGUARD_SMS_GATEWAY_URL: ")
    assert GATEWAY_KEY not in str(caught.value)


def test_a_bad_sender_is_refused_at_start_by_name(env: pytest.MonkeyPatch) -> None:
    env.setenv("MEMBERGUARD_SMTP_FROM", "noreply")
    with pytest.raises(SettingsError, match=r"^MEMBERGUARD_SMTP_FROM: "):
        load_settings()


# -- build_notifier and the routing ----------------------------------------------


def test_by_default_both_channels_go_to_the_outbox(tmp_path: Path) -> None:
    notifier = build_notifier(Settings(home=tmp_path))
    assert isinstance(notifier, OutboxNotifier)
    assert notifier.directory == tmp_path / "outbox"


def test_each_channel_gets_the_transport_its_setting_names(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        email_transport="smtp",
        smtp_url=f"smtps://mailer:{PASSWORD}@mail.example.com",
        smtp_from="noreply@example.com",
        sms_transport="http",
        sms_gateway_url=f"https://sms.example.com/{GATEWAY_KEY}",
        notifier_timeout_seconds=3,
    )
    notifier = build_notifier(settings)
    assert isinstance(notifier, RoutingNotifier)
    email, sms = notifier.by_channel["email"], notifier.by_channel["sms"]
    assert isinstance(email, SmtpNotifier) and isinstance(sms, HttpSmsNotifier)
    assert email.endpoint == SmtpEndpoint("mail.example.com", 465, True, False, "mailer", PASSWORD)
    assert email.timeout == sms.timeout == 3
    assert PASSWORD not in repr(notifier.by_channel) and GATEWAY_KEY not in repr(sms)


def test_smtp_for_email_leaves_sms_in_the_outbox(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        email_transport="smtp",
        smtp_url="smtps://mail.example.com",
        smtp_from="noreply@example.com",
    )
    notifier = build_notifier(settings)
    assert isinstance(notifier, RoutingNotifier)
    assert isinstance(notifier.by_channel["sms"], OutboxNotifier)


@dataclass
class Recording:
    sent: list[Message] = field(default_factory=list)

    def send(self, message: Message, *, now: datetime) -> None:
        self.sent.append(message)


def message(channel: str) -> Message:
    return compose(
        "login_code",
        channel=channel,  # type: ignore[arg-type]
        to="x",
        locale="en",
        context={"programme": "P", "code": "1", "minutes": 1},
    )


def test_routing_hands_each_message_to_its_channels_transport() -> None:
    email, sms = Recording(), Recording()
    routing = RoutingNotifier({"email": email, "sms": sms})
    routing.send(message("sms"), now=NOW)
    routing.send(message("email"), now=NOW)
    assert [m.channel for m in sms.sent] == ["sms"]
    assert [m.channel for m in email.sent] == ["email"]


def test_a_channel_without_a_transport_is_a_notifier_error() -> None:
    with pytest.raises(NotifierError, match="no transport for sms"):
        RoutingNotifier({"email": Recording()}).send(message("sms"), now=NOW)
