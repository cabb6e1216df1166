"""Message templates, one file per template, channel and locale.

``notify/templates/<locale>/<template>.<channel>.txt``: Jinja2, plain text.
An e-mail template's first line is ``Subject: …``. Templates are autoescape-free
plain text (nothing is rendered as HTML), and undefined variables fail rather
than render empty: a notice with a hole in it is not sent.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATE_DIR = Path(__file__).parent / "templates"
LOCALES = ("zh-CN", "en")
DEFAULT_LOCALE = "zh-CN"


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        undefined=StrictUndefined,
        autoescape=False,  # noqa: S701 - plain-text SMS and e-mail, never rendered as HTML
        keep_trailing_newline=False,
    )


def render(
    template: str, *, channel: str, locale: str, context: dict[str, object]
) -> tuple[str, str]:
    """(subject, body); the subject is empty for SMS. Unknown locales fall back to zh-CN."""
    if locale not in LOCALES:
        locale = DEFAULT_LOCALE
    text = _environment().get_template(f"{locale}/{template}.{channel}.txt").render(**context)
    subject = ""
    first, _, rest = text.partition("\n")
    if first.startswith("Subject:"):
        subject, text = first.removeprefix("Subject:").strip(), rest.lstrip("\n")
    return subject, text.strip() + "\n"
