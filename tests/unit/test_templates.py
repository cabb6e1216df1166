"""Message templates: every one exists in both locales and channels, renders without a
hole, and uses only the context its entry in ``TEMPLATE_VARIABLES`` names."""

from __future__ import annotations

import pytest
from jinja2 import UndefinedError, meta

from core.logging import DEFAULT_PERSONAL_KEYS
from notify import compose
from notify.templates import (
    CHANNELS,
    LOCALES,
    TEMPLATE_DIR,
    TEMPLATE_VARIABLES,
    _environment,
    render,
)

REQUEST_ID = "k3m5n7p2q4r6s2t4u6v2w4x6"
DUE_SOON = ["a2b3c4d5e6f7g2h3i4j5k6l7", "m2n3o4p5q6r7s2t3u4v5w6x7"]
OVERDUE = ["y2z3a4b5c6d7e2f3g4h5i6j7"]

SAMPLE_CONTEXT: dict[str, dict[str, object]] = {
    "login_code": {"programme": "星辰会员", "code": "482913", "minutes": 10},
    "request_received": {
        "programme": "星辰会员",
        "request_id": REQUEST_ID,
        "request_type": "deletion",
        "due_date": "2026-12-21",
    },
    "request_completed": {
        "programme": "星辰会员",
        "request_id": REQUEST_ID,
        "request_type": "access",
        "copy_until": "2026-12-07",
    },
    "request_rejected": {
        "programme": "星辰会员",
        "request_id": REQUEST_ID,
        "request_type": "correction",
        "reason": "The value given is not a date.",
    },
    "request_on_hold": {
        "programme": "星辰会员",
        "request_id": REQUEST_ID,
        "due_date": "2026-12-21",
    },
    "dpo_requests_due": {
        "programme": "星辰会员",
        "due_soon": DUE_SOON,
        "overdue": OVERDUE,
        "working_days": 3,
    },
    "dpo_acks_overdue": {
        "programme": "星辰会员",
        "requests": OVERDUE,
        "deliveries": 4,
        "clients": 2,
        "hours": 72,
    },
    "breach_notice": {
        "programme": "星辰会员",
        "incident_id": REQUEST_ID,
        "detected_date": "2026-11-21",
        "fields": ["phone", "name", "loyalty_code"],
        "consequences": "Unwanted messages may reach you.",
        "measures": "The gateway's key was revoked.",
        "member_advice": "Ignore messages asking for your code.",
        "contact": "dpo@brand.example",
    },
    "dpo_incident_due": {
        "programme": "星辰会员",
        "incident_id": REQUEST_ID,
        "due_at": "2026-11-24 10:00 CST",
        "hours_left": 6,
        "overdue": False,
    },
}

EVERY_RENDERING = [
    pytest.param(template, locale, channel, id=f"{template}-{locale}-{channel}")
    for template in TEMPLATE_VARIABLES
    for locale in LOCALES
    for channel in CHANNELS
]


def template_files(locale: str) -> set[tuple[str, str]]:
    """(template, channel) of every template file of a locale, shared parts ("_…") aside."""
    found = set()
    for path in (TEMPLATE_DIR / locale).glob("*.txt"):
        if path.name.startswith("_"):
            continue
        template, channel, _txt = path.name.rsplit(".", 2)
        found.add((template, channel))
    return found


@pytest.mark.parametrize("locale", LOCALES)
def test_every_template_exists_in_each_locale_for_both_channels(locale: str) -> None:
    expected = {(template, channel) for template in TEMPLATE_VARIABLES for channel in CHANNELS}
    assert template_files(locale) == expected


def test_the_sample_context_covers_every_template() -> None:
    assert set(SAMPLE_CONTEXT) == set(TEMPLATE_VARIABLES)
    for template, variables in TEMPLATE_VARIABLES.items():
        assert set(SAMPLE_CONTEXT[template]) == variables, template


@pytest.mark.parametrize(("template", "locale", "channel"), EVERY_RENDERING)
def test_every_template_renders_in_every_locale_and_channel(
    template: str, locale: str, channel: str
) -> None:
    subject, body = render(
        template, channel=channel, locale=locale, context=SAMPLE_CONTEXT[template]
    )
    # E-mail has a subject (its first line), SMS none; neither keeps template syntax.
    assert bool(subject) == (channel == "email")
    assert "Subject:" not in body
    for text in (subject, body):
        assert "{{" not in text and "{%" not in text and "}}" not in text
    assert body.endswith("\n") and body.strip()
    assert "星辰会员" in subject + body
    if (
        "request_id" in TEMPLATE_VARIABLES[template]
        or "incident_id" in TEMPLATE_VARIABLES[template]
    ):
        assert REQUEST_ID in body


@pytest.mark.parametrize(("template", "locale", "channel"), EVERY_RENDERING)
def test_templates_use_exactly_the_variables_they_declare(
    template: str, locale: str, channel: str
) -> None:
    name = f"{locale}/{template}.{channel}.txt"
    environment = _environment()
    assert environment.loader is not None
    source, _, _ = environment.loader.get_source(environment, name)
    used = meta.find_undeclared_variables(environment.parse(source))
    assert used == TEMPLATE_VARIABLES[template], name


def test_declared_variables_name_no_personal_field() -> None:
    personal = DEFAULT_PERSONAL_KEYS | {"to", "recipient", "member", "address", "body"}
    for template, variables in TEMPLATE_VARIABLES.items():
        assert not variables & personal, template


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("request_type", ["access", "correction", "deletion"])
@pytest.mark.parametrize("template", ["request_received", "request_completed", "request_rejected"])
def test_request_templates_render_every_request_type(
    template: str, request_type: str, channel: str, locale: str
) -> None:
    context = {**SAMPLE_CONTEXT[template], "request_type": request_type}
    if request_type != "access" and template == "request_completed":
        # The download date belongs to an access copy; other types need none.
        del context["copy_until"]
    _, body = render(template, channel=channel, locale=locale, context=context)
    assert REQUEST_ID in body


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("channel", CHANNELS)
def test_a_completed_access_request_says_until_when_the_copy_can_be_downloaded(
    channel: str, locale: str
) -> None:
    _, body = render(
        "request_completed",
        channel=channel,
        locale=locale,
        context=SAMPLE_CONTEXT["request_completed"],
    )
    assert "2026-12-07" in body
    context = {**SAMPLE_CONTEXT["request_completed"], "request_type": "deletion"}
    del context["copy_until"]
    _, body = render("request_completed", channel=channel, locale=locale, context=context)
    assert "2026-12-07" not in body


@pytest.mark.parametrize("locale", LOCALES)
def test_the_dpo_digest_lists_every_request_id_and_the_counts(locale: str) -> None:
    subject, body = render(
        "dpo_requests_due",
        channel="email",
        locale=locale,
        context=SAMPLE_CONTEXT["dpo_requests_due"],
    )
    for request_id in DUE_SOON + OVERDUE:
        assert f"- {request_id}\n" in body
    phrases = {
        "zh-CN": ("2 件将在 3 个工作日内到期", "1 件已逾期"),
        "en": ("2 due within 3 working days", "1 overdue"),
    }
    assert all(phrase in subject for phrase in phrases[locale]), subject


@pytest.mark.parametrize("locale", LOCALES)
def test_the_overdue_acknowledgements_notice_lists_every_request_id_and_the_counts(
    locale: str,
) -> None:
    subject, body = render(
        "dpo_acks_overdue",
        channel="email",
        locale=locale,
        context=SAMPLE_CONTEXT["dpo_acks_overdue"],
    )
    for request_id in OVERDUE:
        assert f"- {request_id}\n" in body
    phrases = {
        "zh-CN": ("2 个接收方尚有 4 项确认逾期未回", "72 小时"),
        "en": ("4 acknowledgements overdue from 2 recipients", "72 hours"),
    }
    counts, hours = phrases[locale]
    assert counts in subject, subject
    assert hours in body, body


def test_a_missing_variable_fails_rather_than_leaving_a_hole() -> None:
    context = {**SAMPLE_CONTEXT["request_received"]}
    del context["due_date"]
    with pytest.raises(UndefinedError):
        render("request_received", channel="sms", locale="en", context=context)


def test_an_unknown_request_type_fails_rather_than_rendering_no_name() -> None:
    context = {**SAMPLE_CONTEXT["request_received"], "request_type": "portability"}
    with pytest.raises(UndefinedError):
        render("request_received", channel="email", locale="zh-CN", context=context)


def test_an_unknown_locale_falls_back_to_chinese() -> None:
    message = compose(
        "request_on_hold",
        channel="sms",
        to="+8613800138000",
        locale="fr",
        context=SAMPLE_CONTEXT["request_on_hold"],
    )
    assert message.body.startswith("【星辰会员】")
    assert message.locale == "zh-CN"


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_breach_notice_names_the_members_fields_in_their_language(channel: str) -> None:
    context = SAMPLE_CONTEXT["breach_notice"]
    _, chinese = render("breach_notice", channel=channel, locale="zh-CN", context=context)
    _, english = render("breach_notice", channel=channel, locale="en", context=context)
    assert "手机号码" in chinese and "姓名" in chinese
    assert "mobile number" in english and "name" in english
    # A field the templates have no name for is shown by its id, not dropped.
    assert "loyalty_code" in chinese and "loyalty_code" in english
    assert str(context["member_advice"]) in english and str(context["contact"]) in chinese
