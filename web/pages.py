"""Rendering pages, redirecting after a form, and turning the use cases' errors into pages.

``Pages`` holds one Jinja2 environment per locale (autoescaping every template,
with the i18n extension bound to that locale's catalogue: an environment's
translations are global to it, so one per locale is what keeps concurrent
requests in different languages apart). ``web_route_class`` makes the route
class of a section of the site (the privacy centre, the console): a route whose
caller is not signed in is sent to the section's sign-in page, a form without a
valid CSRF token is refused with a 403 page, and a use case's ``DomainError`` is
shown as a page with its status, in the page's language, never echoing values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.support import Translations
from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from api.problems import status_for
from core.errors import DomainError, RateLimited, Unauthenticated
from gate.context import Services
from web.i18n import HTML_LANG, LOCALES, requested_locale
from web.security import (
    CSRF_FIELD,
    FLASH_COOKIE,
    LANG_COOKIE,
    SESSION_COOKIE,
    FormTokens,
    delete_cookie,
    remember_browser,
    set_cookie,
)

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
STATIC_PREFIX = "/static"
# A flash is a code the next page's template turns into words: never a value.
_FLASH = re.compile(r"[a-z][a-z0-9-]{0,39}")


class SignInRequired(Exception):
    """The page needs a signed-in caller; the route class redirects to sign in."""


class FormRefused(Exception):
    """A POST without a valid CSRF token: refused before anything ran."""


def _format_day(value: date | datetime | str | None, *, locale: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        value = value.date()  # already in the zone it is shown in
    return format_date(value, format="long", locale=locale)


def _format_moment(value: datetime | str | None, *, locale: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return format_datetime(value, format="medium", tzinfo=value.tzinfo, locale=locale)


# What every template may ask; a page passes its own.
_PAGE_DEFAULTS: dict[str, Any] = {
    "signed_in": False,
    "section": None,
    "problem": None,
    "retry_minutes": None,
    "role": None,  # the console's: a staff session's role
    "actor_name": None,
}


class Pages:
    def __init__(self, translations: dict[str, Translations], tokens: FormTokens) -> None:
        self.tokens = tokens
        self.envs: dict[str, Environment] = {}
        for locale in LOCALES:
            env = Environment(
                loader=FileSystemLoader(TEMPLATES),
                autoescape=True,
                extensions=["jinja2.ext.i18n"],
                undefined=StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
            )
            env.install_gettext_translations(translations[locale], newstyle=True)  # type: ignore[attr-defined]
            env.filters["day"] = partial(_format_day, locale=locale)
            env.filters["moment"] = partial(_format_moment, locale=locale)
            self.envs[locale] = env

    def render(
        self, request: Request, template: str, *, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        locale, chosen = requested_locale(request)
        flash = request.cookies.get(FLASH_COOKIE)
        body = (
            self.envs[locale]
            .get_template(template)
            .render(
                lang=HTML_LANG[locale],
                locale=locale,
                path=request.url.path,
                csrf=self.tokens.token_for(request),
                flash=flash if flash and _FLASH.fullmatch(flash) else None,
                static=lambda name: f"{STATIC_PREFIX}/{name}",
                **{**_PAGE_DEFAULTS, **context},
            )
        )
        response = HTMLResponse(body, status_code=status_code)
        remember_browser(request, response)
        if chosen:
            set_cookie(request, response, LANG_COOKIE, locale, max_age=365 * 24 * 3600)
        if flash is not None:
            delete_cookie(request, response, FLASH_COOKIE)
        return response


def days_until(services: Services, due_at: str) -> int:
    """Whole days from today to the day of ``due_at`` (ISO 8601), in the policy's zone,
    today by the services' clock: 0 today, negative once past."""
    zone = ZoneInfo(services.policy.rights.timezone)
    due = datetime.fromisoformat(due_at).astimezone(zone).date()
    return (due - services.clock().astimezone(zone).date()).days


def pages_of(request: Request) -> Pages:
    return request.app.state.web.pages


def redirect(request: Request, to: str, *, flash: str | None = None) -> RedirectResponse:
    """303 See Other to a path of this site (POST → redirect → GET), with a message code for
    the next page. Only ever a path: never a URL a form could point elsewhere."""
    if urlsplit(to).netloc or not to.startswith("/"):
        raise ValueError("redirects stay on this site")
    response = RedirectResponse(to, status_code=303)
    if flash is not None:
        if not _FLASH.fullmatch(flash):
            raise ValueError("a flash is a message code")
        set_cookie(request, response, FLASH_COOKIE, flash, max_age=300)
    return response


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def web_route_class(
    *,
    sign_in: str,
    error_template: str,
    session_cookie: str = SESSION_COOKIE,
    cookie_path: str = "/",
) -> type[APIRoute]:
    """The route class of a section whose sign-in page is ``sign_in`` and whose session
    is in the cookie ``session_cookie`` (set on ``cookie_path``)."""

    class WebRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                # The navigation shows when a session cookie is there (a stale one's
                # links lead to the sign-in page).
                signed_in = session_cookie in request.cookies
                try:
                    return await handler(request)
                except (SignInRequired, Unauthenticated):
                    # No session, or one that ended (expired, signed out, deleted).
                    response: Response = redirect(
                        request, sign_in, flash="session-ended" if signed_in else None
                    )
                    delete_cookie(request, response, session_cookie, path=cookie_path)
                    return response
                except FormRefused:
                    problem, status, retry = "form-refused", 403, None
                except RequestValidationError:
                    problem, status, retry = "form-incomplete", 400, None
                except DomainError as exc:
                    problem, status, retry = exc.slug, status_for(exc), _retry_minutes(exc)
                response = pages_of(request).render(
                    request,
                    error_template,
                    status_code=status,
                    problem=problem,
                    retry_minutes=retry,
                    signed_in=signed_in,
                )
                if retry is not None:
                    response.headers["Retry-After"] = str(retry * 60)
                return response

            return guarded

    return WebRoute


def retry_minutes(exc: RateLimited) -> int:
    """A refusal's ``Retry-After`` as the whole minutes a page says to wait (at least 1)."""
    return max(1, -(-exc.retry_after // 60))


def _retry_minutes(exc: DomainError) -> int | None:
    return retry_minutes(exc) if isinstance(exc, RateLimited) else None


async def checked_form(request: Request) -> None:
    """Every POST of a section: the form's CSRF token must be this browser's (and this
    section's session's); refused before the route's use case runs."""
    form = await request.form()
    if not pages_of(request).tokens.check(request, form.get(CSRF_FIELD)):
        raise FormRefused()


CheckedForm = Depends(checked_form)
