"""The SMS gateway transport against a real HTTP server on the loopback interface."""

from __future__ import annotations

import traceback
from datetime import UTC, datetime

import pytest

from notify import NotifierError, compose
from notify.http import HttpSmsNotifier
from notify.message import Message
from tests.integration.notify_servers import closed_port, sms_gateway

NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
TO = "+8613912345670"
CODE = "482913"
TOKEN = "gw-token-7f3a9c"  # a test credential
GATEWAY_KEY = "k-51e0d2"  # the gateway's key, in its URL's path


def login_code(channel: str = "sms") -> Message:
    return compose(
        "login_code",
        channel=channel,  # type: ignore[arg-type]
        to=TO if channel == "sms" else "zhou@example.org",
        locale="zh-CN",
        context={"programme": "星辰会员", "code": CODE, "minutes": 10},
    )


def assert_says_nothing_personal(exc: BaseException, *secrets: str) -> None:
    shown = str(exc) + repr(exc) + "".join(traceback.format_exception(exc))
    for secret in (TO, "13912345670", CODE, "验证码", GATEWAY_KEY, TOKEN, *secrets):
        assert secret not in shown, secret


def test_an_sms_is_posted_as_json_with_its_id_as_idempotency_key_and_the_token() -> None:
    message = login_code()
    with sms_gateway() as gateway:
        url = f"http://127.0.0.1:{gateway.port}/{GATEWAY_KEY}/send"
        HttpSmsNotifier(url, token=TOKEN, timeout=5).send(message, now=NOW)
    (request,) = gateway.requests
    assert request.path == f"/{GATEWAY_KEY}/send"
    assert request.payload == {
        "to": TO,
        "body": message.body,
        "template": "login_code",
        "id": message.id,
    }
    assert "您的登录验证码是 482913" in request.payload["body"]
    assert request.headers["idempotency-key"] == message.id
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"


def test_without_a_token_no_authorization_header_is_sent() -> None:
    with sms_gateway() as gateway:
        url = f"http://127.0.0.1:{gateway.port}/send"
        HttpSmsNotifier(url, token=None, timeout=5).send(login_code(), now=NOW)
    (request,) = gateway.requests
    assert "authorization" not in request.headers


@pytest.mark.parametrize("status", [500, 400, 302])
def test_an_answer_other_than_2xx_is_a_notifier_error_without_the_gateways_body(
    status: int,
) -> None:
    # Gateways like to repeat what they refused: the number and the text.
    answer = f'{{"error": "cannot deliver to {TO}", "text": "您的登录验证码是 {CODE}"}}'
    with sms_gateway(status=status, answer=answer.encode()) as gateway:
        url = f"http://127.0.0.1:{gateway.port}/{GATEWAY_KEY}/send"
        with pytest.raises(NotifierError) as caught:
            HttpSmsNotifier(url, token=TOKEN, timeout=5).send(login_code(), now=NOW)
    assert len(gateway.requests) == 1
    assert str(caught.value) == f"sms gateway (http): answered {status}"
    assert_says_nothing_personal(caught.value, "cannot deliver")


def test_an_unreachable_gateway_is_a_notifier_error_without_the_url() -> None:
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/{GATEWAY_KEY}/send"
        with pytest.raises(NotifierError) as caught:
            HttpSmsNotifier(url, token=TOKEN, timeout=5).send(login_code(), now=NOW)
    assert str(caught.value) == "sms gateway (http): the request failed (ConnectError)"
    assert_says_nothing_personal(caught.value, str(port))


def test_a_gateway_that_does_not_answer_in_time_is_a_notifier_error() -> None:
    with sms_gateway(hang=True) as gateway:
        url = f"http://127.0.0.1:{gateway.port}/send"
        with pytest.raises(NotifierError) as caught:
            HttpSmsNotifier(url, token=None, timeout=0.2).send(login_code(), now=NOW)
    assert str(caught.value) == "sms gateway (http): no answer in time (ReadTimeout)"
    assert_says_nothing_personal(caught.value)


def test_an_email_message_is_refused_by_the_sms_transport() -> None:
    with sms_gateway() as gateway:
        url = f"http://127.0.0.1:{gateway.port}/send"
        with pytest.raises(NotifierError, match="SMS only"):
            HttpSmsNotifier(url, token=None, timeout=5).send(login_code("email"), now=NOW)
    assert gateway.requests == []


def test_a_plain_http_gateway_elsewhere_than_this_host_is_refused() -> None:
    with pytest.raises(ValueError, match="https://") as caught:
        HttpSmsNotifier(f"http://sms.example.com/{GATEWAY_KEY}", token=None, timeout=5)
    assert GATEWAY_KEY not in str(caught.value)
