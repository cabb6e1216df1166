"""The pages' languages: Babel message catalogues, compiled in memory at start-up.

The catalogues are ``web/locale/<locale>/LC_MESSAGES/messages.po``, the source
of truth; no ``.mo`` is committed or written to disk: ``load_translations``
compiles each ``.po`` into a ``BytesIO``. Chinese (``zh_CN``) is the default,
English is chosen with ``?lang=en`` and remembered in a cookie.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from fastapi import Request

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT_LOCALE = "zh_CN"
LOCALES = ("zh_CN", "en")
# ?lang= values, as people type them, to catalogue names.
LANG_PARAM = {"zh": "zh_CN", "zh-cn": "zh_CN", "zh_cn": "zh_CN", "cn": "zh_CN", "en": "en"}
# For <html lang> and the notifier's templates (notify.templates).
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}
NOTIFY_LOCALE = {"zh_CN": "zh-CN", "en": "en"}


def catalogue_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"


def load_translations() -> dict[str, Translations]:
    """Every locale's catalogue, compiled in memory (fuzzy entries left out, as msgfmt does)."""
    compiled: dict[str, Translations] = {}
    for locale in LOCALES:
        with catalogue_path(locale).open("rb") as handle:
            catalogue = read_po(handle, locale=locale)
        buffer = BytesIO()
        write_mo(buffer, catalogue, use_fuzzy=False)
        buffer.seek(0)
        compiled[locale] = Translations(buffer, domain="messages")
    return compiled


def requested_locale(request: Request) -> tuple[str, bool]:
    """The page's locale, and whether it was chosen now (``?lang=``: remember it)."""
    asked = request.query_params.get("lang")
    if asked is not None and asked.lower() in LANG_PARAM:
        return LANG_PARAM[asked.lower()], True
    remembered = request.cookies.get("mg_lang")
    if remembered in LOCALES:
        return remembered, False
    return DEFAULT_LOCALE, False
