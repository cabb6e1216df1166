"""/docs works offline: Swagger UI's files come from this server, never a CDN."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from swagger_ui_bundle import swagger_ui_path

from api.app import create_app
from gate.context import Services
from tests.api.conftest import auth
from tests.conftest import Keys

# Every URL an HTML page can make the browser fetch.
FETCHED = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*['"]([^'"]+)['"]""")


def fetched_urls(html: str) -> list[str]:
    return [a or b for a, b in FETCHED.findall(html)]


def test_the_docs_page_loads_swagger_ui_only_from_this_server(
    app_client: TestClient, keys: Keys
) -> None:
    page = app_client.get("/docs", headers=auth(keys.auditor))
    assert page.status_code == 200
    urls = fetched_urls(page.text)
    assert len(urls) >= 4  # the script, the style sheet, the icon, the OpenAPI document
    assert "http://" not in page.text and "https://" not in page.text, page.text
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        served = app_client.get(url, headers=auth(keys.auditor))
        assert served.status_code == 200, url
        assert served.content, url
    types = {
        app_client.get(url, headers=auth(keys.auditor)).headers["content-type"].split(";")[0]
        for url in urls
    }
    assert {"text/javascript", "text/css", "image/png", "application/json"} <= types


def test_swagger_ui_files_need_a_key_like_the_docs_page(app_client: TestClient, keys: Keys) -> None:
    page = app_client.get("/docs", headers=auth(keys.sms)).text
    urls = fetched_urls(page)
    assert len(urls) >= 3  # the script, the stylesheet, the icon: not an empty loop
    for url in urls:
        response = app_client.get(url)
        assert response.status_code == 401, url
        assert response.json()["type"] == "unauthenticated"


@pytest.fixture
def public_docs(services: Services) -> Iterator[TestClient]:
    settings = services.settings.model_copy(update={"docs_public": True})
    app = create_app(services=dataclasses.replace(services, settings=settings))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_public_docs_serve_their_files_without_a_key(public_docs: TestClient) -> None:
    page = public_docs.get("/docs")
    assert page.status_code == 200
    urls = fetched_urls(page.text)
    assert len(urls) >= 3  # not an empty loop
    for url in urls:
        assert public_docs.get(url).status_code == 200, url
    # Nothing else became public with them.
    assert public_docs.get("/v1/audit/head").status_code == 401


@pytest.mark.parametrize(
    "name", ["index.html", "swagger-ui.js.map", "..%2F__init__.py", "%2E%2E", "nope.css"]
)
def test_only_the_files_the_page_names_are_served(public_docs: TestClient, name: str) -> None:
    response = public_docs.get(f"/docs/assets/{name}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_the_bundled_swagger_ui_renders_the_openapi_version_the_app_writes(
    app_client: TestClient, keys: Keys
) -> None:
    """Swagger UI 4 refuses OpenAPI 3.1 ("Unable to render this definition"): /docs would
    load and show nothing. swagger-ui-bundle 1.1 ships Swagger UI 4.15."""
    version = app_client.get("/openapi.json", headers=auth(keys.sms)).json()["openapi"]
    match = re.fullmatch(r"swagger-ui-(\d+)\.(\d+)\.(\d+)", Path(swagger_ui_path).name)
    assert match is not None, swagger_ui_path
    major = int(match.group(1))
    assert version.startswith(("3.0.", "3.1.")), version
    assert version.startswith("3.0.") or major >= 5, (version, swagger_ui_path)
