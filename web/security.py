"""What keeps the web pages safe: security headers, cookies and CSRF tokens.

- **Headers.** Every response under a web prefix carries a strict
  Content-Security-Policy (no inline script or style at all: the pages load one
  stylesheet and one script of their own, from this server), ``nosniff``,
  ``no-referrer`` and ``no-store`` (pages show personal data; a shared
  computer's back button must not bring it back from the cache).
- **Cookies.** ``HttpOnly`` and ``SameSite=Strict`` always, ``Secure`` when the
  request came over HTTPS (behind a proxy, as uvicorn sees it: ``memberguard
  serve`` trusts ``X-Forwarded-Proto`` from ``MEMBERGUARD_TRUSTED_PROXIES`` only).
  A cookie holds a session token, a challenge or a random browser id: never a
  personal value.
- **CSRF.** Every form carries a token, an HMAC (under ``Keyring.web_form_key``)
  of the browser's random id and of the session it is signed in with, if any;
  a POST without the right one is refused before anything runs. SameSite=Strict
  already keeps other sites' forms from sending the cookies; the token also
  covers browsers that do not honour it and the sign-in forms (no session yet).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from fastapi import Request, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors, for browsers that predate it
    "Cross-Origin-Opener-Policy": "same-origin",
}

# The cookies. None holds a personal value.
BROWSER_COOKIE = "mg_browser"  # a random id the CSRF tokens are bound to
SESSION_COOKIE = "mg_session"  # the member's session token (mgm_…)
CONSOLE_COOKIE = "mg_console"  # a staff member's console session token (mgs_…)
CONSOLE_PREFIX = "/console"
CHALLENGE_COOKIE = "mg_challenge"  # the sign-in challenge between its two forms
LANG_COOKIE = "mg_lang"  # the language chosen with ?lang=
FLASH_COOKIE = "mg_flash"  # a message code for the page after a redirect

CSRF_FIELD = "csrf"
BROWSER_MAX_AGE = 365 * 24 * 3600


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` (and ``Cache-Control: no-store`` unless the response set
    its own) to every response whose path is under one of ``prefixes``.

    A pure ASGI middleware, so that it also covers the responses the app's error
    handlers and other middleware make for those paths.
    """

    def __init__(self, app: ASGIApp, *, prefixes: Sequence[str]) -> None:
        self.app = app
        self.prefixes = tuple(prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def is_https(request: Request) -> bool:
    """Did the browser reach us over HTTPS? uvicorn puts a trusted proxy's
    ``X-Forwarded-Proto`` into the scheme, and nothing else does."""
    return request.url.scheme == "https"


def set_cookie(
    request: Request,
    response: Response,
    name: str,
    value: str,
    *,
    max_age: int | None,
    path: str = "/",
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def delete_cookie(request: Request, response: Response, name: str, *, path: str = "/") -> None:
    response.delete_cookie(
        name, path=path, httponly=True, samesite="strict", secure=is_https(request)
    )


class FormTokens:
    """CSRF tokens: HMAC-SHA256(key, browser id ‖ session token's hash), compared in
    constant time. Nothing is stored: a server restart or another process checks them
    alike, and a token stops working when its session ends."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, browser: str, session: str | None) -> str:
        bound = hashlib.sha256((session or "").encode()).hexdigest()
        digest = hmac.new(self._key, f"{browser}\n{bound}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def token_for(self, request: Request) -> str:
        return self._mac(browser_id(request), request.cookies.get(session_cookie_of(request)))

    def check(self, request: Request, token: object) -> bool:
        browser = request.cookies.get(BROWSER_COOKIE)
        if not isinstance(token, str) or not browser or len(token) > 100:
            return False
        expected = self._mac(browser, request.cookies.get(session_cookie_of(request)))
        return hmac.compare_digest(expected.encode(), token.encode())


def session_cookie_of(request: Request) -> str:
    """The session cookie of the section a request is for: the console's (sent to
    ``/console`` only) or the privacy centre's. A form's token is bound to it."""
    return CONSOLE_COOKIE if request.url.path.startswith(CONSOLE_PREFIX) else SESSION_COOKIE


def browser_id(request: Request) -> str:
    """The browser's random id: its cookie's, or a new one that ``remember_browser``
    sets on the response (the page that shows the first form)."""
    known = request.cookies.get(BROWSER_COOKIE)
    if known and 20 <= len(known) <= 64:
        return known
    fresh = getattr(request.state, "new_browser_id", None)
    if fresh is None:
        fresh = secrets.token_urlsafe(32)
        request.state.new_browser_id = fresh
    return fresh


def remember_browser(request: Request, response: Response) -> None:
    fresh = getattr(request.state, "new_browser_id", None)
    if fresh is not None:
        set_cookie(request, response, BROWSER_COOKIE, fresh, max_age=BROWSER_MAX_AGE)
