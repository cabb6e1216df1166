from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import fastapi.routing
import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from core.logging import configure_logging
from gate.clients import register_client
from gate.context import Services
from notify.outbox import read_outbox
from principals import OPERATOR_ACTOR
from principals.members import open_session
from tests.conftest import NOW, Keys
from web.setup import WEB_PREFIXES


@pytest.fixture
def app_client(services: Services) -> Iterator[TestClient]:
    app = create_app(services=services)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def all_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, included routers flattened.

    FastAPI 0.130+ keeps an included router as one entry of ``app.routes``, so
    a plain walk over ``app.routes`` sees none of the API; the route contexts
    are FastAPI's own flattening. HEAD is served wherever GET is.
    """
    contexts: Iterable[Any]
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    contexts = iterate(app.routes) if iterate is not None else app.routes
    return sorted(
        (method, context.path)
        for context in contexts
        for method in (getattr(context, "methods", None) or ())
        if method != "HEAD"
    )


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """The API's routes (``all_routes`` less the web pages').

    The web pages (``web.setup.WEB_PREFIXES``) answer with pages and redirects,
    not with the API's contract (bearer credentials, problem+json); tests/web
    walks every one of them the same ways (``web_routes``).
    """
    return [route for route in all_routes(app) if not route[1].startswith(WEB_PREFIXES)]


def web_routes(app: FastAPI) -> list[tuple[str, str]]:
    return [route for route in all_routes(app) if route[1].startswith(WEB_PREFIXES)]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


MEMBER = {
    "name": "张三",
    "phone": "13812345678",
    "email": "Zhang.San@Example.com",
    "birthday": "1990-05-17",
    "gender": "男",
    "address": "广东省深圳市南山区科技园路88号",
    "id_number": "11010519491231002X",
    "tier": "金卡",
    "points_balance": 1200,
    "registered_at": "2021-03-04",
    "channel": "app",
    "home_store": "SZ-012",
}


@pytest.fixture
def member_id(app_client: TestClient, keys: Keys) -> str:
    response = app_client.post("/v1/members", json=MEMBER, headers=auth(keys.crm))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def grant(
    client: TestClient,
    key: str,
    member_id: str,
    purpose: str,
    status: str = "granted",
    at: str = "2026-11-01T10:00:00+08:00",
) -> dict:
    response = client.post(
        f"/v1/members/{member_id}/consents",
        json={"purposes": [purpose], "status": status, "channel": "app", "collected_at": at},
        headers=auth(key),
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """Production logging (JSON, the redacting processors) at DEBUG level.

    Returns a reader for everything written since: what the handler that
    ``configure_logging`` installs renders (redirected to a buffer, so that it
    does not depend on which capture phase owns ``sys.stderr``), plus anything
    else that reached stderr.
    """
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


# -- members signed in ----------------------------------------------------------

CODE_RE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


def outbox_messages(outbox: Path) -> list[dict[str, Any]]:
    return list(read_outbox(outbox))


def code_in(message: dict[str, Any]) -> str:
    """The one-time code in a sign-in message's body."""
    (code,) = CODE_RE.findall(message["body"])
    return code


def sign_in(client: TestClient, outbox: Path, **contact: str) -> str:
    """Sign in as the member holding ``phone=`` or ``email=``: a member token (``mgm_…``)."""
    sent = len(outbox_messages(outbox))
    started = client.post("/v1/me/login", json=contact)
    assert started.status_code == 202, started.text
    messages = outbox_messages(outbox)
    assert len(messages) == sent + 1, "no code was sent"
    verified = client.post(
        "/v1/me/login/verify",
        json={"challenge": started.json()["challenge"], "code": code_in(messages[-1])},
    )
    assert verified.status_code == 200, verified.text
    return verified.json()["token"]


@pytest.fixture
def outbox(services: Services) -> Path:
    return services.settings.resolved_outbox_dir


@pytest.fixture
def member_token(app_client: TestClient, member_id: str, outbox: Path) -> str:
    """The token of the ``member_id`` member, signed in by phone."""
    return sign_in(app_client, outbox, phone=MEMBER["phone"])


# -- members' rights --------------------------------------------------------------


@pytest.fixture
def dpo_key(services: Services) -> str:
    """A DPO's key (role ``dpo``), registered as the CLI does it."""
    return register_client(
        services,
        actor=OPERATOR_ACTOR,
        name="dpo",
        role="dpo",
        purposes=[],
        scopes=[],
        request_id=None,
    ).key


@pytest.fixture
def relay_key(services: Services) -> str:
    """Customer service: relays members' rights requests (scope ``rights:submit``)."""
    return register_client(
        services,
        actor=OPERATOR_ACTOR,
        name="care",
        role="client",
        purposes=[],
        scopes=["rights:submit"],
        request_id=None,
    ).key


@pytest.fixture
def token_for(services: Services) -> Callable[[str], str]:
    """``token_for(member_id)``: a live ``mgm_`` session token for the member, opened as the
    sign-in use case opens one (valid for a year of the suite's clock)."""

    def open_token(member_id: str) -> str:
        with services.sessions() as session:
            opened = open_session(
                session, member_id=member_id, now=NOW, lifetime=timedelta(days=366)
            )
            session.commit()
        return opened.token

    return open_token
