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
CHANNELS = ("sms", "email")

# Every template, in every locale and channel, and the context it renders.
# Only ids, dates, counts, the programme's name and type names: a template
# never needs a member's name, address or other personal data, so a caller
# never has a reason to pass them (tests/unit/test_templates.py holds every
# template to its list). Files whose names start with "_" are shared parts.
TEMPLATE_VARIABLES: dict[str, frozenset[str]] = {
    "login_code": frozenset({"programme", "code", "minutes"}),
    # request_type: access, correction or deletion; due_date: the request's
    # last day, as the member should read it (the policy's time zone).
    "request_received": frozenset({"programme", "request_id", "request_type", "due_date"}),
    # copy_until: the last day the access copy can be downloaded (access only).
    "request_completed": frozenset({"programme", "request_id", "request_type", "copy_until"}),
    # reason: the DPO's reason, written for the member.
    "request_rejected": frozenset({"programme", "request_id", "request_type", "reason"}),
    # A deletion waiting for a legal hold; its deadline keeps running.
    "request_on_hold": frozenset({"programme", "request_id", "due_date"}),
    # To the DPO: lists of request ids, and the "due soon" window.
    "dpo_requests_due": frozenset({"programme", "due_soon", "overdue", "working_days"}),
    # To the DPO: recipients' acknowledgements overdue (change feed): the
    # requests' ids, how many deliveries and clients, and the hours waited.
    "dpo_acks_overdue": frozenset({"programme", "requests", "deliveries", "clients", "hours"}),
    # To a member affected by a breach (GDPR Art. 34, PIPL Art. 57): the incident's id,
    # the day it was detected, the names of their fields concerned, and the DPO's
    # assessment (texts written for members) and contact. No value of the member's.
    "breach_notice": frozenset(
        {
            "programme",
            "incident_id",
            "detected_date",
            "fields",
            "consequences",
            "measures",
            "member_advice",
            "contact",
        }
    ),
    # To the DPO: the authority's deadline for an incident is near (hours_left) or past.
    "dpo_incident_due": frozenset({"programme", "incident_id", "due_at", "hours_left", "overdue"}),
}


def jurisdiction_locale(jurisdiction: str) -> str:
    """The language staff and members are written to when no one chose one: Chinese
    under the CN profile, else English (the DPO's messages, breach notices, reports)."""
    return DEFAULT_LOCALE if jurisdiction == "CN" else "en"


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        undefined=StrictUndefined,
        autoescape=False,  # noqa: S701 - plain-text SMS and e-mail, never rendered as HTML
        keep_trailing_newline=False,
        # A line that holds only a block tag ({% if %}, {% for %}) leaves no line behind.
        trim_blocks=True,
        lstrip_blocks=True,
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
