"""The pages' message catalogues: every text the templates use is translated in both."""

from __future__ import annotations

import re

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from web.i18n import LOCALES, catalogue_path, load_translations
from web.pages import TEMPLATES

PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def template_msgids() -> set[str | tuple[str, ...]]:
    return {
        message
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(TEMPLATES),
            method_map=[("**.html", "jinja2.ext:babel_extract")],
            options_map={"**.html": {"extensions": "jinja2.ext.i18n"}},
        )
    }


def catalogue(locale: str) -> Catalog:
    with catalogue_path(locale).open("rb") as handle:
        return read_po(handle, locale=locale)


def test_the_templates_use_many_messages() -> None:
    # An extraction that finds nothing would make the test below pass vacuously.
    assert len(template_msgids()) > 150


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_of_the_templates_is_translated(locale: str) -> None:
    messages = catalogue(locale)
    missing = []
    for msgid in template_msgids():
        found = messages.get(msgid)
        strings = (
            [] if found is None else found.string if isinstance(msgid, tuple) else [found.string]
        )
        if found is None or found.fuzzy or not strings or not all(strings):
            missing.append(msgid)
    assert missing == []


@pytest.mark.parametrize("locale", LOCALES)
def test_translations_keep_the_placeholders_and_hold_no_markup(locale: str) -> None:
    # A translation is marked safe by Jinja's i18n extension (only its variables are
    # escaped), so it must hold no markup or quote that could break out of an attribute.
    for message in catalogue(locale):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple | list) else (message.string,)
        wanted = set(PLACEHOLDER.findall(ids[-1])) - {"num"}
        for string in strings:
            assert set(PLACEHOLDER.findall(string)) - {"num"} == wanted, message.id
            assert not set(string) & set('<>"'), message.id


def test_the_catalogues_compile_in_memory_and_translate() -> None:
    translations = load_translations()
    assert translations["zh_CN"].gettext("My data") == "我的数据"
    assert translations["en"].gettext("My data") == "My data"
    assert (
        translations["zh_CN"]
        .ngettext("due in %(num)s day, on %(date)s", "due in %(num)s days, on %(date)s", 3)
        .startswith("还有")
    )
