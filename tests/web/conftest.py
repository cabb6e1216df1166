"""The web pages' fixtures: the app on the suite's savepointed database (tests/api's
fixtures), and a browser-like client that keeps cookies and posts forms with their
CSRF tokens, as a person's browser would."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from api.app import create_app
from gate.context import Services
from tests.api.conftest import (  # noqa: F401 - fixtures, registered here for tests/web
    MEMBER,
    app_client,
    code_in,
    member_id,
    outbox,
    outbox_messages,
)

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: Response) -> str:
    found = CSRF_RE.findall(page.text)
    assert found, f"no form with a CSRF token on {page.url}"
    return html.unescape(found[0])


@dataclass
class Browser:
    """A TestClient used as a browser: cookies kept, forms posted from the page shown."""

    client: TestClient
    outbox: Path

    def get(self, path: str, **kwargs: object) -> Response:
        return self.client.get(path, **kwargs)  # type: ignore[arg-type]

    def submit(
        self, page: str, action: str, data: dict[str, str], *, follow: bool = True
    ) -> Response:
        """Open ``page``, then post ``data`` to ``action`` with that page's CSRF token."""
        shown = self.get(page)
        assert shown.status_code == 200, (page, shown.status_code)
        return self.client.post(
            action, data={"csrf": csrf_of(shown), **data}, follow_redirects=follow
        )

    def sign_in(self, identifier: str = MEMBER["phone"]) -> Response:
        """Sign in with the code the outbox received; the page after signing in."""
        sent = len(outbox_messages(self.outbox))
        asked = self.submit("/privacy/sign-in", "/privacy/sign-in", {"identifier": identifier})
        assert asked.status_code == 200 and asked.url.path == "/privacy/sign-in/code", asked.text
        messages = outbox_messages(self.outbox)
        assert len(messages) == sent + 1, "no code was sent"
        code = code_in(messages[-1])
        return self.submit("/privacy/sign-in/code", "/privacy/sign-in/code", {"code": code})


@pytest.fixture
def browser(services: Services, outbox: Path) -> Iterator[Browser]:  # noqa: F811
    with TestClient(create_app(services=services), raise_server_exceptions=False) as client:
        yield Browser(client, outbox)


@pytest.fixture
def signed_in(browser: Browser, member_id: str) -> Browser:  # noqa: F811
    page = browser.sign_in()
    assert page.status_code == 200 and page.url.path == "/privacy/", page.text
    return browser
