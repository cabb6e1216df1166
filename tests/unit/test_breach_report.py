"""The regulator's report of a breach (breach/report.py): every GDPR Art. 33(3) and PIPL
Art. 57 content, in Chinese and English, as JSON and as escaped, self-contained HTML."""

from __future__ import annotations

import json
import struct
import sys
import tomllib
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from breach.report import (
    SECTIONS,
    TEMPLATE_DIR,
    ReportFormatUnavailable,
    build_report,
    render_html,
    render_pdf,
    report_filename,
)
from core.errors import InvalidInput
from policies import load_policy
from tests.conftest import weasyprint_or_skip

POLICY = load_policy()
DETECTED = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
GENERATED = DETECTED + timedelta(days=2)
INCIDENT_ID = "k3m5n7p2q4r6s2t4u6v2w4x6"
NOTICES = {"queued": 2, "sent": 100, "failed": 1, "unreachable": 4, "not_asked": 13}
SCRIPT = "<script>alert(1)</script>"

ZH_HEADINGS = {
    "report": "个人信息安全事件报告",
    "controller": "个人信息处理者",
    "incident": "事件概况",
    "what_happened": "事件经过",
    "data_subjects": "涉及的个人",
    "records": "涉及的记录",
    "categories": "涉及的个人信息种类",
    "sensitive_data": "敏感个人信息",
    "likely_consequences": "可能造成的危害",
    "measures_taken": "已采取的补救措施",
    "what_members_can_do": "个人可以采取的减轻危害的措施",
    "contact": "联系方式",
    "authority": "向监管部门报告",
    "member_notices": "通知受影响的个人",
    "timeline": "处置时间线",
    "closing_summary": "结案总结",
}
EN_HEADINGS = {
    "report": "Personal Data Breach Report",
    "controller": "Controller",
    "incident": "The incident",
    "what_happened": "What happened",
    "data_subjects": "Data subjects concerned",
    "records": "Records concerned",
    "categories": "Categories of personal data concerned",
    "sensitive_data": "Sensitive personal data",
    "likely_consequences": "Likely consequences",
    "measures_taken": "Measures taken",
    "what_members_can_do": "What members can do to mitigate the harm",
    "contact": "Contact",
    "authority": "Notification of the supervisory authority",
    "member_notices": "Notification of the members concerned",
    "timeline": "Timeline",
    "closing_summary": "Closing summary",
}
HEADINGS = {"zh-CN": ZH_HEADINGS, "en": EN_HEADINGS}


def incident(**changes: Any) -> dict[str, Any]:
    """An incident as ``breach.incidents.incident_view`` shows it: assessed, the authority
    told in time, members being told, a client scope over three days."""
    view: dict[str, Any] = {
        "id": INCIDENT_ID,
        "status": "members_notified",
        "title": "CRM vendor's API key leaked",
        "description": "The CRM vendor's API key was published in a public repository.",
        "severity": "high",
        "scope": {
            "kind": "client",
            "client": "crm",
            "from": (DETECTED - timedelta(days=3)).isoformat(),
            "to": DETECTED.isoformat(),
        },
        "detected_at": DETECTED,
        "opened_at": DETECTED + timedelta(hours=1),
        "authority_due_at": DETECTED + timedelta(hours=72),
        "authority_rule": "72 hours",
        "authority_overdue": False,
        "authority_deadline_met": True,
        "authority_seconds_left": None,
        "authority_notified": {
            "at": DETECTED + timedelta(hours=30),
            "authority": "深圳市互联网信息办公室",
            "reference": "SZ-2026-0042",
        },
        "assessment": {
            "consequences": "Phishing calls using the members' phone numbers.",
            "measures": "The key was revoked and the vendor's access suspended.",
            "member_advice": "Ignore calls asking for a verification code.",
            "assessed_at": DETECTED + timedelta(hours=5),
        },
        "affected": {
            "members": 120,
            "records": 345,
            "fields": {"id_number": 7, "phone": 100},
            "views": {"id_number": {"clear": 7}, "phone": {"clear": 20, "masked": 80}},
            "identity_only": 10,
            "sensitive": True,
            "sensitive_members": 7,
            "shredded": 4,
        },
        "members_notified_at": DETECTED + timedelta(hours=40),
        "closed_at": None,
        "summary": None,
        "timeline": [
            {
                "at": DETECTED + timedelta(hours=1),
                "step": "opened",
                "actor": "key-dpo-1",
                "actor_name": "Wang Fang",
                "members": 120,
            },
            {
                "at": DETECTED + timedelta(hours=30),
                "step": "authority_notified",
                "actor": "key-dpo-1",
                "actor_name": None,
                "reference": "SZ-2026-0042",
            },
        ],
    }
    view.update(changes)
    return view


def affected(**changes: Any) -> dict[str, Any]:
    return {**incident()["affected"], **changes}


def report(locale: str = "zh-CN", **changes: Any) -> dict[str, Any]:
    return build_report(
        incident(**changes), policy=POLICY, notices=NOTICES, generated_at=GENERATED, locale=locale
    )


def html(locale: str = "zh-CN", **changes: Any) -> str:
    return render_html(report(locale, **changes))


def category(built: dict[str, Any], field: str) -> dict[str, Any]:
    (entry,) = [entry for entry in built["categories"] if entry["field"] == field]
    return entry


# -- JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_report_has_every_section_and_a_heading_for_each(locale: str) -> None:
    built = report(locale)
    assert list(built) == [*SECTIONS, "labels"]
    assert built["labels"] == HEADINGS[locale]


def test_report_is_json_serialisable_with_times_as_iso_strings() -> None:
    built = report()
    assert json.loads(json.dumps(built)) == built
    assert built["incident"]["detected_at"] == "2026-03-02T09:30:00+00:00"
    assert built["report"]["generated_at"] == "2026-03-04T09:30:00+00:00"
    assert built["timeline"][0]["at"] == "2026-03-02T10:30:00+00:00"


def test_report_header_names_format_version_locale_and_title() -> None:
    assert report("en")["report"] == {
        "format_version": 1,
        "generated_at": GENERATED.isoformat(),
        "locale": "en",
        "title": "Personal Data Breach Report",
        "timezone": "Asia/Shanghai",
    }


def test_unknown_locale_falls_back_to_chinese() -> None:
    built = report("fr")
    assert built["report"]["locale"] == "zh-CN"
    assert built["labels"] == ZH_HEADINGS
    assert '<html lang="zh-CN">' in render_html(built)


def test_controller_and_dpo_contact_come_from_the_policy() -> None:
    built = report()
    assert built["controller"] == {
        "programme": "Brand Loyalty Club",
        "controller": "Example Retail (Shenzhen) Co., Ltd.",
        "contact": "privacy@brand.example",
        "dpo_contact": "dpo@brand.example",
    }
    assert built["contact"] == {"dpo": "dpo@brand.example", "controller": "privacy@brand.example"}


def test_report_states_members_records_shredded_and_identity_only_counts() -> None:
    built = report()
    assert built["data_subjects"] == {"members": 120, "shredded": 4, "identity_only": 10}
    assert built["records"] == {"count": 345}
    assert built["sensitive_data"] == {"involved": True, "members": 7, "fields": ["id_number"]}


def test_categories_take_category_and_sensitivity_from_the_policy() -> None:
    built = report()
    assert category(built, "id_number") == {
        "field": "id_number",
        "category": "government_id",
        "sensitive": True,
        "members": 7,
        "views": {"clear": 7},
    }
    assert category(built, "phone")["category"] == "contact"
    assert category(built, "phone")["sensitive"] is False


def test_masked_releases_are_counted_apart_from_clear_ones() -> None:
    assert category(report(), "phone")["views"] == {"clear": 20, "masked": 80}


def test_a_field_that_left_the_policy_has_category_unknown() -> None:
    built = report(
        affected=affected(fields={"loyalty_card": 3}, views={"loyalty_card": {"clear": 3}})
    )
    assert category(built, "loyalty_card")["category"] == "unknown"
    assert category(built, "loyalty_card")["sensitive"] is False


def test_unassessed_incident_has_no_consequences_measures_or_advice() -> None:
    built = report(assessment=None, status="open")
    assert built["likely_consequences"] is None
    assert built["measures_taken"] is None
    assert built["what_members_can_do"] is None
    assert built["incident"]["assessed_at"] is None


def test_assessment_texts_are_reported_as_written() -> None:
    built = report()
    assert built["likely_consequences"] == "Phishing calls using the members' phone numbers."
    assert built["measures_taken"] == "The key was revoked and the vendor's access suspended."
    assert built["what_members_can_do"] == "Ignore calls asking for a verification code."


@pytest.mark.parametrize(("met", "status"), [(True, "met"), (False, "missed"), (None, "pending")])
def test_authority_section_says_whether_the_deadline_was_met(met: bool | None, status: str) -> None:
    authority = report(authority_deadline_met=met)["authority"]
    assert authority["deadline_met"] is met
    assert authority["deadline_status"] == status


def test_authority_section_holds_rule_due_date_and_notification() -> None:
    assert report()["authority"] == {
        "deadline_rule": "72 hours",
        "deadline_hours": 72,
        "due_at": "2026-03-05T09:30:00+00:00",
        "notified_at": "2026-03-03T15:30:00+00:00",
        "authority": "深圳市互联网信息办公室",
        "reference": "SZ-2026-0042",
        "deadline_met": True,
        "deadline_status": "met",
        "overdue": False,
    }


def test_member_notices_hold_the_counts_and_default_missing_ones_to_zero() -> None:
    assert report()["member_notices"] == {
        "requested_at": "2026-03-04T01:30:00+00:00",
        **NOTICES,
    }
    built = build_report(
        incident(), policy=POLICY, notices={"sent": 3}, generated_at=GENERATED, locale="en"
    )
    assert built["member_notices"]["sent"] == 3
    assert built["member_notices"]["failed"] == 0


def test_timeline_separates_the_steps_facts_from_who_and_when() -> None:
    assert report()["timeline"][0] == {
        "at": "2026-03-02T10:30:00+00:00",
        "step": "opened",
        "actor": "key-dpo-1",
        "actor_name": "Wang Fang",
        "detail": {"members": 120},
    }


def test_keys_the_report_does_not_know_are_not_copied_into_it() -> None:
    # A key a later incident view might add (say, member ids) stays out of the report
    # until the report deliberately takes it.
    built = report(member_ids=["m2n3o4p5q6r7s2t3u4v5w6x7"])
    assert "m2n3o4p5q6r7s2t3u4v5w6x7" not in json.dumps(built)


def test_report_refuses_a_naive_generation_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_report(
            incident(),
            policy=POLICY,
            notices=NOTICES,
            generated_at=GENERATED.replace(tzinfo=None),
            locale="zh-CN",
        )


def test_closing_summary_holds_the_summary_once_closed() -> None:
    closed = DETECTED + timedelta(days=10)
    built = report(status="closed", closed_at=closed, summary="Vendor re-audited.")
    assert built["closing_summary"] == {
        "closed_at": closed.isoformat(),
        "summary": "Vendor re-audited.",
    }


def test_label_files_hold_the_same_keys_in_both_locales() -> None:
    def keys(locale: str) -> set[tuple[str, str]]:
        with (TEMPLATE_DIR / f"report.{locale}.toml").open("rb") as file:
            labels = tomllib.load(file)
        return {(table, key) for table, entries in labels.items() for key in entries}

    assert keys("zh-CN") == keys("en")
    assert {key for table, key in keys("en") if table == "sections"} == set(SECTIONS)


# -- HTML ---------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_html_has_every_section_heading_in_the_reports_language(locale: str) -> None:
    page = html(locale)
    assert page.startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale}">' in page
    assert f"<h1>{HEADINGS[locale]['report']}</h1>" in page
    for section, heading in HEADINGS[locale].items():
        if section != "report":
            assert f'<section id="{section}">\n<h2>{heading}</h2>' in page


@pytest.mark.parametrize(
    ("locale", "facts"),
    [
        (
            "zh-CN",
            [
                '<th scope="row">发现时间</th><td>2026-03-02 17:30 (UTC+08:00)</td>',
                '<th scope="row">受影响的个人数量</th><td>120 人</td>',
                '<th scope="row">涉及的记录数量</th><td>345 条</td>',
                '<th scope="row">严重程度</th><td>高</td>',
                "<td>身份证件信息</td>",
                '<th scope="row">报告时限</th><td>72 小时（自发现时起算）</td>',
                '<th scope="row">已发送</th><td>100 人</td>',
                "<td>登记事件</td>",
                "<td>Wang Fang</td>",
            ],
        ),
        (
            "en",
            [
                '<th scope="row">Detected (became aware)</th><td>2026-03-02 17:30 (UTC+08:00)</td>',
                '<th scope="row">Members concerned (approximate number)</th><td>120</td>',
                '<th scope="row">Records concerned (approximate number)</th><td>345</td>',
                '<th scope="row">Severity</th><td>High</td>',
                "<td>Government identifier</td>",
                '<th scope="row">Deadline</th><td>72 hours from detection</td>',
                '<th scope="row">Sent</th><td>100</td>',
                "<td>Incident recorded</td>",
                "<td>Wang Fang</td>",
            ],
        ),
    ],
)
def test_html_states_the_facts_in_the_reports_language(locale: str, facts: list[str]) -> None:
    page = html(locale)
    for fact in facts:
        assert fact in page


def test_html_names_the_fields_with_their_categories_and_sensitivity() -> None:
    page = html("en")
    assert (
        '<tr class="field" data-field="id_number">\n<td>id_number</td>\n'
        "<td>Government identifier</td>\n<td>Yes</td>\n<td>7</td>"
    ) in page
    assert (
        '<tr class="field" data-field="phone">\n<td>phone</td>\n'
        "<td>Contact details</td>\n<td>No</td>\n<td>100</td>"
    ) in page


@pytest.mark.parametrize(
    ("locale", "clear", "masked"),
    [
        (
            "zh-CN",
            '<li data-view="clear">明文：20 人</li>',
            '<li data-view="masked">脱敏（部分遮盖）：80 人</li>',
        ),
        ("en", '<li data-view="clear">In clear: 20</li>', '<li data-view="masked">Masked: 80</li>'),
    ],
)
def test_html_lists_masked_releases_apart_from_clear_ones(
    locale: str, clear: str, masked: str
) -> None:
    page = html(locale)
    assert clear in page
    assert masked in page


@pytest.mark.parametrize(
    ("locale", "statement"),
    [
        ("zh-CN", "其中 4 人的个人信息在事件登记前已被加密销毁"),
        ("zh-CN", "无法向其发送通知"),
        ("en", "4 of them had been crypto-shredded"),
        ("en", "they can no longer be reached, so they cannot be notified"),
    ],
)
def test_html_says_shredded_members_cannot_be_notified(locale: str, statement: str) -> None:
    assert statement in html(locale)


def test_html_says_when_no_member_was_shredded() -> None:
    page = html("en", affected=affected(shredded=0))
    assert "None of the members concerned had been crypto-shredded." in page
    assert "crypto-shredded (their encryption keys destroyed)" not in page


@pytest.mark.parametrize(
    ("locale", "met", "notified", "wording"),
    [
        ("en", True, True, "Met: the authority was notified before the deadline."),
        ("en", False, True, "Missed: the authority was notified after the deadline."),
        (
            "en",
            False,
            False,
            "Missed: the deadline has passed and the authority has not been notified.",
        ),
        ("en", None, False, "Pending: the authority has not been notified yet"),
        ("zh-CN", True, True, "已按时报告：在截止时间前报告了监管部门。"),
        ("zh-CN", False, True, "未按时报告：报告监管部门时已超过截止时间。"),
        ("zh-CN", False, False, "已逾期：截止时间已过，尚未报告监管部门。"),
        ("zh-CN", None, False, "待报告：尚未报告监管部门，截止时间未到。"),
    ],
)
def test_html_says_whether_the_deadline_was_met_in_words(
    locale: str, met: bool | None, notified: bool, wording: str
) -> None:
    changes: dict[str, Any] = {"authority_deadline_met": met}
    if not notified:
        changes |= {"authority_notified": None, "authority_overdue": met is False}
    assert wording in html(locale, **changes)


@pytest.mark.parametrize(("locale", "phrase"), [("zh-CN", "尚未评估"), ("en", "Not yet assessed")])
def test_html_says_an_unassessed_incident_is_not_yet_assessed(locale: str, phrase: str) -> None:
    page = html(locale, assessment=None, status="open")
    # Consequences, measures, what members can do, and the assessment's date.
    assert page.count(f'<p class="missing">{phrase}</p>') == 3
    assert f'<td class="missing">{phrase}</td>' in page


def test_html_escapes_the_dpos_texts() -> None:
    page = html(
        title=SCRIPT,
        description=SCRIPT,
        assessment={
            "consequences": SCRIPT,
            "measures": SCRIPT,
            "member_advice": SCRIPT,
            "assessed_at": DETECTED,
        },
        authority_notified={"at": DETECTED, "authority": SCRIPT, "reference": SCRIPT},
        status="closed",
        closed_at=DETECTED + timedelta(days=9),
        summary=SCRIPT,
    )
    assert "<script" not in page
    # Title, description, the three assessment texts, authority, reference, summary.
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 8


@settings(max_examples=50)
@given(st.text(min_size=1, max_size=40))
def test_no_dpo_text_adds_markup_to_the_html(text: str) -> None:
    def markup(value: str) -> int:
        page = html("en", description=value, summary=value, closed_at=GENERATED, status="closed")
        return page.count("<")

    assert markup(text) == markup("x")


def test_html_is_self_contained_without_script_or_external_resource() -> None:
    page = html()
    assert "<style>" in page
    for forbidden in ("<script", "<link", "src=", "http://", "https://", "@import", "url("):
        assert forbidden not in page


@pytest.mark.parametrize(
    ("scope", "wording"),
    [
        ({"kind": "members", "members": 3}, "指定的 3 名会员：其存储的全部数据"),
        ({"kind": "all"}, "会员数据库或其密钥：全部会员的全部数据"),
        (
            {
                "kind": "client",
                "client": "crm",
                "from": "2026-02-27T09:30:00+00:00",
                "to": "2026-03-02T09:30:00+00:00",
            },
            "下游系统 crm 被入侵：2026-02-27 17:30 (UTC+08:00) 至 2026-03-02 17:30 (UTC+08:00)",
        ),
    ],
)
def test_html_describes_each_kind_of_scope(scope: dict[str, Any], wording: str) -> None:
    assert wording in html(scope=scope)


def test_html_shows_the_closing_summary_once_closed() -> None:
    open_page = html("en")
    assert (
        '<section id="closing_summary">\n<h2>Closing summary</h2>\n'
        '<p class="missing">Not closed yet</p>' in open_page
    )
    closed_page = html("en", status="closed", closed_at=GENERATED, summary="Vendor re-audited.")
    assert '<p class="text">Vendor re-audited.</p>' in closed_page


# -- downloads ----------------------------------------------------------------------------


def test_report_filename_names_incident_locale_and_format() -> None:
    assert report_filename(INCIDENT_ID, "pdf", "en") == f"breach-report-{INCIDENT_ID}-en.pdf"
    assert report_filename(INCIDENT_ID, "html", "xx") == f"breach-report-{INCIDENT_ID}-zh-CN.html"


def test_report_filename_keeps_header_breaking_characters_out() -> None:
    assert report_filename('a"b\r\n/c', "json", "en") == "breach-report-a_b___c-en.json"


def test_report_filename_refuses_an_unknown_format() -> None:
    with pytest.raises(InvalidInput):
        report_filename(INCIDENT_ID, "docx", "en")


def test_render_pdf_without_weasyprint_raises_report_format_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # makes the import fail
    with pytest.raises(ReportFormatUnavailable) as raised:
        render_pdf(html())
    assert raised.value.slug == "report-format-unavailable"
    assert isinstance(raised.value, InvalidInput)


def test_render_pdf_produces_a_pdf() -> None:
    weasyprint_or_skip()
    assert render_pdf(html("en")).startswith(b"%PDF")


def test_render_pdf_fetches_no_file_or_url(tmp_path: Path) -> None:
    weasyprint = weasyprint_or_skip()
    image = tmp_path / "pixel.png"
    image.write_bytes(one_pixel_png())
    page = f'<html><body><p>x</p><img src="{image.as_uri()}"></body></html>'
    # The control: WeasyPrint's own fetcher reads the file and embeds it.
    assert b"/Subtype /Image" in weasyprint.HTML(string=page).write_pdf()
    assert b"/Subtype /Image" not in render_pdf(page)


def one_pixel_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )
