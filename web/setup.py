"""``install(app)``: the web pages, their files and their headers, on the API's app."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse

from core.errors import NotFound
from gate.context import Services
from web import console, privacy
from web.i18n import load_translations
from web.pages import STATIC, STATIC_PREFIX, Pages
from web.security import FormTokens, SecurityHeaders

# Every path the web serves: the security headers go on all of their responses.
WEB_PREFIXES = (privacy.PREFIX, console.PREFIX, STATIC_PREFIX)
_MEDIA_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Web:
    pages: Pages


def _static_router() -> APIRouter:
    """The site's own stylesheet and script, by name only (never a path into the package)."""
    files = {path.name: path for path in STATIC.iterdir() if path.suffix in _MEDIA_TYPES}
    router = APIRouter(include_in_schema=False)

    @router.get(STATIC_PREFIX + "/{name}")
    def static_file(name: str) -> FileResponse:
        path = files.get(name)
        if path is None:
            raise NotFound("no such file")
        return FileResponse(
            path,
            media_type=_MEDIA_TYPES[path.suffix],
            # Revalidated each time: a changed script never outlives a release.
            headers={"Cache-Control": "no-cache"},
        )

    return router


def install(app: FastAPI, services: Services) -> None:
    """The privacy centre and its files. Call after the app's own middleware is added: the
    security headers are then the outermost layer, on every answer under the web's paths
    (the body limit's 413 and the error handlers' pages included)."""
    tokens = FormTokens(services.keyring.web_form_key())
    app.state.web = Web(pages=Pages(load_translations(), tokens))
    app.include_router(privacy.router)
    app.include_router(console.router)
    app.include_router(_static_router())
    app.add_middleware(SecurityHeaders, prefixes=WEB_PREFIXES)
