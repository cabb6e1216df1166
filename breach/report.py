"""The regulator's report of a personal-data breach: what GDPR Art. 33(3) and PIPL Art. 57
ask for, as JSON, printable HTML and (with the ``pdf`` extra) PDF.

Built from the incident as ``breach.incidents.incident_view`` shows it, the policy (who
the controller and the DPO are, what each field is) and the notices' totals. Pure: no
database and no clock; ``generated_at`` is handed in, so one incident at one moment gives
one report.

The report names no member: the incident view holds counts, field names and views only,
and nothing else is passed in. The DPO's texts (title, description, the assessment, the
summary) are untrusted: the HTML escapes them (autoescape), and the PDF renderer fetches
nothing, so no text can make it read a file or a URL.

Headings and fixed phrases come from ``breach/templates/report.<locale>.toml``, not from
this module: a wording is fixed in one file per language.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from breach.terms import REPORT_FORMATS, REPORT_LOCALES
from core.errors import InvalidInput
from policies.model import Policy, View, hours_of

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE = "report.html.j2"
LOCALES = REPORT_LOCALES
DEFAULT_LOCALE = "zh-CN"
# Bumped when a key of the JSON report changes meaning or goes away (adding one does not).
FORMAT_VERSION = 1
FORMATS = REPORT_FORMATS
MEDIA_TYPES = {
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}
NOTICE_STATES = ("queued", "sent", "failed", "unreachable", "not_asked")
# The report's sections, in the order a reader meets them; each has a heading in
# ``[sections]`` of the label files.
SECTIONS = (
    "report",
    "controller",
    "incident",
    "what_happened",
    "data_subjects",
    "records",
    "categories",
    "sensitive_data",
    "likely_consequences",
    "measures_taken",
    "what_members_can_do",
    "contact",
    "authority",
    "member_notices",
    "timeline",
    "closing_summary",
)
# A field the incident names that the current policy no longer has.
UNKNOWN_CATEGORY = "unknown"
# Views from the most revealing to the least, as the policy lists them: a field's
# clear releases come first, its masked ones on their own line after.
_VIEW_ORDER = {view: rank for rank, view in enumerate(get_args(View))}
_TIMELINE_KEYS = frozenset({"at", "step", "actor", "actor_name"})
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9_-]")


class ReportFormatUnavailable(InvalidInput):
    """The format asked for needs an extra this installation lacks (PDF: WeasyPrint).

    A 4xx, not ``Unavailable``: nothing failed and retrying will not help; the
    other formats of the same report are served.
    """

    def __init__(self, fmt: str, extra: str) -> None:
        super().__init__(
            f"the {fmt} format is not available on this server (install memberguard[{extra}])",
            slug="report-format-unavailable",
            errors=[{"field": "format", "problem": f"{fmt} needs memberguard[{extra}]"}],
        )


def report_locale(locale: str | None) -> str:
    """``locale`` if the report is written in it, else zh-CN."""
    return locale if locale in LOCALES else DEFAULT_LOCALE


def build_report(
    incident: Mapping[str, Any],
    *,
    policy: Policy,
    notices: Mapping[str, int],
    generated_at: datetime,
    locale: str,
) -> dict[str, Any]:
    """The report as a JSON-serialisable dict: sections with stable English keys
    (``SECTIONS``), times as ISO 8601 strings, and ``labels``: each section's heading
    in the report's language.

    Art. 33(3)/57 contents: the nature of the breach (``what_happened``, ``incident``),
    categories and approximate numbers of members and records (``data_subjects``,
    ``records``, ``categories``), sensitive data, likely consequences, measures taken,
    what members can do, the DPO's contact; plus the deadline, the members' notices and
    the timeline. Assessment sections are None until the incident is assessed.
    """
    if generated_at.utcoffset() is None:
        raise ValueError("generated_at must be timezone-aware")
    locale = report_locale(locale)
    labels = _labels(locale)
    programme = policy.programme
    affected = incident["affected"]
    assessment = incident["assessment"]
    notified = incident["authority_notified"]
    rule = incident["authority_rule"]
    met = incident["authority_deadline_met"]
    report: dict[str, Any] = {
        "report": {
            "format_version": FORMAT_VERSION,
            "generated_at": generated_at,
            "locale": locale,
            "title": labels["document"]["title"],
            # Times are stored in UTC; the HTML shows them in the policy's zone.
            "timezone": policy.rights.timezone,
        },
        "controller": {
            "programme": programme.name,
            "controller": programme.controller,
            "contact": programme.controller_contact,
            "dpo_contact": programme.dpo,
        },
        "incident": {
            "id": incident["id"],
            "title": incident["title"],
            "severity": incident["severity"],
            "status": incident["status"],
            "detected_at": incident["detected_at"],
            "opened_at": incident["opened_at"],
            "assessed_at": assessment["assessed_at"] if assessment else None,
            "closed_at": incident["closed_at"],
            "scope": dict(incident["scope"]),
        },
        "what_happened": {"description": incident["description"]},
        "data_subjects": {
            "members": affected["members"],
            "shredded": affected["shredded"],
            "identity_only": affected["identity_only"],
        },
        "records": {"count": affected["records"]},
        "categories": _categories(affected, policy),
        "sensitive_data": {
            "involved": bool(affected["sensitive"]),
            "members": affected["sensitive_members"],
            "fields": sorted(
                name
                for name in affected["fields"]
                if (spec := policy.fields.get(name)) is not None and spec.sensitive
            ),
        },
        "likely_consequences": assessment["consequences"] if assessment else None,
        "measures_taken": assessment["measures"] if assessment else None,
        "what_members_can_do": assessment["member_advice"] if assessment else None,
        "contact": {"dpo": programme.dpo, "controller": programme.controller_contact},
        "authority": {
            "deadline_rule": rule,
            "deadline_hours": _hours(rule),
            "due_at": incident["authority_due_at"],
            "notified_at": notified["at"] if notified else None,
            "authority": notified["authority"] if notified else None,
            "reference": notified["reference"] if notified else None,
            "deadline_met": met,
            "deadline_status": {True: "met", False: "missed", None: "pending"}[met],
            "overdue": bool(incident["authority_overdue"]),
        },
        "member_notices": {
            "requested_at": incident["members_notified_at"],
            **{state: int(notices.get(state, 0)) for state in NOTICE_STATES},
        },
        "timeline": [_timeline_line(line) for line in incident["timeline"]],
        "closing_summary": {"closed_at": incident["closed_at"], "summary": incident["summary"]},
        "labels": dict(labels["sections"]),
    }
    return _plain(report)


def render_html(report: Mapping[str, Any]) -> str:
    """A complete, self-contained printable HTML document (inline style, no script, no
    external resource) in the report's language."""
    locale = report_locale(report["report"]["locale"])
    zone = ZoneInfo(report["report"]["timezone"])
    labels = _labels(locale)
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(r=report, L=labels, lang=locale, when=_local_time(zone))
    )


def render_pdf(html: str) -> bytes:
    """``html`` (from ``render_html``) as PDF, with WeasyPrint: the ``pdf`` extra.

    Fetches nothing: no protocol is allowed, so neither a file nor a URL in the HTML is
    read. Chinese needs a CJK font on the machine (Debian: fonts-noto-cjk), otherwise
    its characters print as empty boxes.
    """
    try:
        from weasyprint import HTML
        from weasyprint.urls import URLFetcher
    except (ImportError, OSError) as exc:  # OSError: pango missing
        raise ReportFormatUnavailable("pdf", "pdf") from exc
    document = HTML(string=html, url_fetcher=URLFetcher(allowed_protocols=()))
    pdf: bytes = document.write_pdf()  # no target: the bytes are returned
    return pdf


def report_filename(incident_id: str, fmt: str, locale: str) -> str:
    """The download's file name: ``breach-report-<id>-<locale>.<fmt>``, safe in a
    Content-Disposition header whatever the id holds."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown report format; use one of {', '.join(FORMATS)}")
    safe_id = _UNSAFE_FILENAME.sub("_", incident_id) or "incident"
    return f"breach-report-{safe_id}-{report_locale(locale)}.{fmt}"


def _categories(affected: Mapping[str, Any], policy: Policy) -> list[dict[str, Any]]:
    """One entry per field concerned, its views counted apart (clear first)."""
    entries = []
    for name, members in sorted(affected["fields"].items()):
        spec = policy.fields.get(name)
        views = affected["views"].get(name, {})
        entries.append(
            {
                "field": name,
                "category": spec.category if spec is not None else UNKNOWN_CATEGORY,
                "sensitive": bool(spec is not None and spec.sensitive),
                "members": members,
                "views": {view: views[view] for view in sorted(views, key=_view_rank)},
            }
        )
    return entries


def _view_rank(view: str) -> tuple[int, str]:
    return _VIEW_ORDER.get(view, len(_VIEW_ORDER)), view


def _timeline_line(line: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "at": line["at"],
        "step": line["step"],
        "actor": line.get("actor"),
        "actor_name": line.get("actor_name"),
        # The step's facts as the timeline holds them (ids, counts, the authority's
        # reference: never a member's value, ``breach.models.BreachIncidentEvent``).
        "detail": {key: value for key, value in line.items() if key not in _TIMELINE_KEYS},
    }


def _hours(rule: str) -> int | None:
    try:
        return hours_of(rule)
    except ValueError:
        return None


def _plain(value: Any) -> Any:
    """``value`` with datetimes as ISO 8601 strings and mappings as dicts: JSON-ready."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _local_time(zone: ZoneInfo) -> Callable[[str | None], str | None]:
    """Formats an ISO 8601 time of the report in ``zone``: ``2026-03-02 17:30 (UTC+08:00)``."""

    def when(value: str | None) -> str | None:
        if value is None:
            return None
        local = datetime.fromisoformat(value).astimezone(zone)
        offset = local.strftime("%z")
        return f"{local:%Y-%m-%d %H:%M} (UTC{offset[:3]}:{offset[3:]})"

    return when


@cache
def _labels(locale: str) -> dict[str, Any]:
    with (TEMPLATE_DIR / f"report.{locale}.toml").open("rb") as file:
        return tomllib.load(file)


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        # The DPO's texts are untrusted: every value is escaped unless marked safe,
        # and nothing is.
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
