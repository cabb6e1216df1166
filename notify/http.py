"""SMS through a gateway's HTTP endpoint (``MEMBERGUARD_SMS_TRANSPORT=http``).

Each message is one ``POST`` of ``{"to", "body", "template", "id"}`` (JSON,
UTF-8) to ``MEMBERGUARD_SMS_GATEWAY_URL``, with ``Authorization: Bearer
<MEMBERGUARD_SMS_GATEWAY_TOKEN>`` when a token is set and ``Idempotency-Key:
<message id>``, so that a gateway which honours the key sends a retried message
once. Any answer but 2xx is a failure; redirects are not followed.

The URL must be ``https://``, but for a gateway on this host (``http://`` to
localhost or a loopback address): the request carries a phone number and a
code. The URL is a secret as well (gateways often take their key in it).
A ``NotifierError`` names the transport, the failure's class or the status
code: never the URL, the recipient, or what the gateway answered.
"""

from __future__ import annotations

import logging
from datetime import datetime

import httpx
import structlog

from notify.hosts import is_this_host
from notify.message import Message, NotifierError

log = structlog.get_logger("memberguard.notify")

TRANSPORT = "sms gateway (http)"


def check_gateway_url(url: str) -> str:
    """``url`` if it can be the gateway's, else ``ValueError`` naming the rule (never the URL)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise ValueError("not a URL such as https://sms.example.com/send") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("must be an https:// URL with a host")
    if parsed.scheme == "http" and not is_this_host(parsed.host):
        raise ValueError(
            "http:// is only for a gateway on this host (localhost or a loopback address); "
            "use https://"
        )
    return url


class _HideGatewayUrls(logging.Filter):
    """httpx logs every request's full URL at INFO ("HTTP Request: POST https://…"):
    in the line about a gateway request, its URL becomes its scheme and host."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and self.urls:
            record.args = tuple(
                _origin(arg) if isinstance(arg, httpx.URL) and str(arg) in self.urls else arg
                for arg in record.args
            )
        return True


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}/…"


_HIDE_GATEWAY_URLS = _HideGatewayUrls()


class HttpSmsNotifier:
    """Sends SMS messages to the gateway, one request (and connection) per message."""

    transport = "http"

    def __init__(self, url: str, *, token: str | None, timeout: float) -> None:
        self._url = check_gateway_url(url)
        self._token = token
        self.timeout = timeout
        # Built once: loading the CA bundle is most of the cost of a new client.
        self._tls = httpx.create_ssl_context()
        # Once per process is enough (a logger keeps one copy of a filter);
        # the set grows by one URL per gateway, which is one.
        _HIDE_GATEWAY_URLS.urls.add(str(httpx.URL(url)))
        logging.getLogger("httpx").addFilter(_HIDE_GATEWAY_URLS)

    def __repr__(self) -> str:
        return "HttpSmsNotifier(...)"

    def send(self, message: Message, *, now: datetime) -> None:
        if message.channel != "sms":
            raise NotifierError(f"{TRANSPORT}: cannot send a {message.channel} message (SMS only)")
        headers = {"Idempotency-Key": message.id}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        payload = {
            "to": message.to,
            "body": message.body,
            "template": message.template,
            "id": message.id,
        }
        try:
            with httpx.Client(
                verify=self._tls, timeout=self.timeout, follow_redirects=False
            ) as client:
                response = client.post(self._url, json=payload, headers=headers)
        except httpx.TimeoutException as exc:
            raise NotifierError(f"{TRANSPORT}: no answer in time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            # Not chained: httpx's own messages may carry the URL.
            raise NotifierError(f"{TRANSPORT}: the request failed ({type(exc).__name__})") from None
        if not response.is_success:
            # The status only: a gateway's error body may repeat the number or the text.
            raise NotifierError(f"{TRANSPORT}: answered {response.status_code}")
        log.info(
            "message sent",
            transport=self.transport,
            channel=message.channel,
            template=message.template,
            message_id=message.id,
        )
