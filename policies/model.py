"""The policy model and its validation rules.

A policy names every member field the vault may hold and every purpose an
internal system may ask for. A purpose lists the fields it may see and the
view of each; any field it does not list is withheld. The policy version is the
SHA-256 of the canonical JSON of the validated model, so two files that load to
the same policy have the same version, and every audit entry names it.
"""

from __future__ import annotations

import hashlib
import json
import re
import zoneinfo
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

FieldType = Literal[
    "name", "phone", "email", "date", "address", "id_number", "enum", "integer", "text"
]
View = Literal["clear", "masked", "pseudonym", "year", "month", "month_day", "region", "band"]
LegalBasis = Literal[
    "consent",
    "contract",
    "legal_obligation",
    "vital_interests",
    "public_task",
    "legitimate_interests",
]
SeparateConsentGround = Literal["sensitive", "third_party", "cross_border", "public_disclosure"]

SLUG = r"^[a-z][a-z0-9_]{0,63}$"
SLUG_RE = re.compile(SLUG)

# Which views make sense for which field type. vault/masking implements every
# pair listed here (tests/unit/test_policies.py checks that).
VIEWS_BY_TYPE: dict[str, frozenset[str]] = {
    "name": frozenset({"clear", "masked", "pseudonym"}),
    "phone": frozenset({"clear", "masked", "pseudonym"}),
    "email": frozenset({"clear", "masked", "pseudonym"}),
    "date": frozenset({"clear", "masked", "year", "month", "month_day", "pseudonym"}),
    "address": frozenset({"clear", "masked", "region", "pseudonym"}),
    "id_number": frozenset({"clear", "masked", "pseudonym"}),
    "enum": frozenset({"clear", "pseudonym"}),
    # "band" needs the field's ``bands``; "region" of a text field its ``region_pattern``.
    "integer": frozenset({"clear", "band", "pseudonym"}),
    "text": frozenset({"clear", "masked", "region", "pseudonym"}),
}
# Views that show a value many members share (what anonymised exports are
# built from), whatever the field's type ...
GENERALISING_VIEWS = frozenset({"year", "month", "month_day", "region", "band"})
# ... and views that do so only for some types: an enum in clear has a few
# values, a masked name keeps the surname, a masked date or text shows nothing.
_SHARED_VIEWS_BY_TYPE = {
    "enum": frozenset({"clear"}),
    "name": frozenset({"masked"}),
    "date": frozenset({"masked"}),
    "text": frozenset({"masked"}),
    "address": frozenset({"masked"}),
}
SEARCHABLE_TYPES = frozenset({"phone", "email"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    type: FieldType
    category: str = Field(min_length=1, max_length=64)
    description: str = ""
    sensitive: bool = False
    searchable: bool = False
    required: bool = False
    default_view: View = "masked"
    values: tuple[str, ...] | None = None
    pattern: str | None = None
    max_length: int | None = Field(default=None, ge=1, le=2000)
    # The "band" view of an integer field: lower bounds of the bands, strictly
    # increasing ([0, 1000, 5000] shows 1200 as "1000-4999").
    bands: tuple[int, ...] | None = Field(default=None, min_length=1)
    # The "region" view of a text field: a regular expression whose first
    # group is the region ('^([A-Z]{2})-' shows "SZ-012" as "SZ").
    region_pattern: str | None = None

    def view_missing_parameter(self, view: str) -> str | None:
        """What the field must declare before ``view`` applies to it, if anything."""
        if view == "band" and self.bands is None:
            return "bands"
        if view == "region" and self.type == "text" and self.region_pattern is None:
            return "region_pattern"
        return None

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.searchable and self.type not in SEARCHABLE_TYPES:
            raise ValueError(f"only {sorted(SEARCHABLE_TYPES)} fields can be searchable")
        if (self.type == "enum") != (self.values is not None):
            raise ValueError("'values' is required for enum fields and only for them")
        if self.values is not None and len(set(self.values)) != len(self.values):
            raise ValueError("'values' has duplicates")
        if self.pattern is not None:
            if self.type != "text":
                raise ValueError("'pattern' applies to text fields only")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"'pattern' is not a valid regular expression: {exc}") from exc
        if self.bands is not None:
            if self.type != "integer":
                raise ValueError("'bands' applies to integer fields only")
            if list(self.bands) != sorted(set(self.bands)):
                raise ValueError("'bands' must be strictly increasing")
        if self.region_pattern is not None:
            if self.type != "text":
                raise ValueError("'region_pattern' applies to text fields only")
            try:
                groups = re.compile(self.region_pattern).groups
            except re.error as exc:
                raise ValueError(f"'region_pattern' is not a valid regex: {exc}") from exc
            if groups < 1:
                raise ValueError("'region_pattern' needs a group: the region it shows")
        if self.default_view not in VIEWS_BY_TYPE[self.type]:
            raise ValueError(
                f"default_view {self.default_view!r} does not apply to {self.type} fields"
            )
        if (missing := self.view_missing_parameter(self.default_view)) is not None:
            raise ValueError(f"default_view {self.default_view!r} needs '{missing}'")
        return self


class PurposeSpec(_Strict):
    description: str = Field(min_length=1)
    legal_basis: LegalBasis
    separate_consent: bool = False
    separate_consent_ground: SeparateConsentGround | None = None
    third_party: str | None = None
    notice: str | None = Field(default=None, description="Current notice version.")
    accepted_notices: tuple[str, ...] = ()
    retention_days: int | None = Field(default=None, ge=1)
    # "pseudonym": exports carry the per-client pseudonym instead of the member
    # id, so that data sets of different clients cannot be joined, and lookups
    # (which would re-identify them) are refused.
    member_id: Literal["clear", "pseudonym"] = "clear"
    fields: dict[str, View] = Field(default_factory=dict)
    # Fields this purpose may find members by (``POST /v1/members/lookup``).
    # None by default: a lookup answers "which member has this number?", which
    # a purpose that sees the number only masked could otherwise use to unmask
    # it by trying every candidate (the lookup throttle in gate/lookups.py
    # bounds the rate for the purposes that do need it).
    lookup: tuple[str, ...] = ()
    # For a pseudonymous purpose: every combination of the values an export
    # releases (the pseudonym aside) is shared by at least this many members;
    # rows in smaller groups are suppressed (gate/export.py).
    k_anonymity: int = Field(default=5, ge=2, le=1000)

    @model_validator(mode="after")
    def _consistent(self) -> PurposeSpec:
        if self.separate_consent and self.separate_consent_ground is None:
            raise ValueError("separate_consent needs separate_consent_ground")
        if self.separate_consent_ground is not None and not self.separate_consent:
            raise ValueError("separate_consent_ground given but separate_consent is false")
        if self.separate_consent and self.legal_basis != "consent":
            raise ValueError("separate_consent requires legal_basis = 'consent'")
        if self.legal_basis == "consent":
            if self.notice is None:
                raise ValueError("a consent-based purpose needs its current 'notice' version")
            if self.notice not in self.accepted_notices:
                raise ValueError("the current 'notice' must be listed in 'accepted_notices'")
        return self

    @property
    def needs_consent(self) -> bool:
        return self.legal_basis == "consent"


class Programme(_Strict):
    name: str = Field(min_length=1)
    controller: str = Field(min_length=1)
    controller_contact: str = Field(min_length=1)
    jurisdiction: str = Field(min_length=2)
    policy_url: str = Field(min_length=1)
    # Touchpoints where consent is collected; a consent event names one of them.
    channels: tuple[str, ...] = Field(min_length=1)
    # The data protection officer (PIPL Art. 52, GDPR Art. 37): whom members and
    # the authority contact about a breach. None: the controller's contact.
    dpo_contact: str | None = Field(default=None, min_length=1)

    @property
    def dpo(self) -> str:
        return self.dpo_contact or self.controller_contact

    @field_validator("channels")
    @classmethod
    def _slug_channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for channel in value:
            if not SLUG_RE.fullmatch(channel):
                raise ValueError(f"{channel!r} is not a valid channel id")
        return value


class Notice(_Strict):
    url: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


# -- members' rights: deadlines and what needs a DPO ---------------------------

Jurisdiction = Literal["CN", "EU"]
RequestType = Literal["access", "correction", "deletion"]
RuleUnit = Literal["days", "working_days", "months"]

_RULE_RE = re.compile(r"([1-9][0-9]{0,2}) (day|days|working day|working days|month|months)")
RULE_FORMS = "'N days', 'N working days' or 'N months' (N from 1 to 999)"


@dataclass(frozen=True, slots=True)
class DeadlineRule:
    """A period as the policy writes it: "30 days", "15 working days", "1 month".

    The policy keeps the text (it is what the version hashes and what a request
    shows); ``rights.deadlines`` counts with the parsed rule.
    """

    count: int
    unit: RuleUnit
    text: str

    @classmethod
    def parse(cls, text: str) -> DeadlineRule:
        match = _RULE_RE.fullmatch(text)
        if match is None:
            raise ValueError(f"{text!r} is not a period: write {RULE_FORMS}")
        count, word = int(match.group(1)), match.group(2)
        unit: RuleUnit = "days"
        if word.startswith("working"):
            unit = "working_days"
        elif word.startswith("month"):
            unit = "months"
        return cls(count=count, unit=unit, text=text)


def _rule_text(value: str) -> str:
    DeadlineRule.parse(value)
    return value


RuleText = Annotated[str, AfterValidator(_rule_text)]


class RightsDeadlines(_Strict):
    """One period per request type, counted from the day after receipt."""

    access: RuleText
    correction: RuleText
    deletion: RuleText


class RightsCorrection(_Strict):
    # Fields a member may correct at once, without a DPO's approval. Sensitive
    # fields are never self-service (checked against the policy's fields).
    self_service: tuple[str, ...] = ()
    # Fields a correction request may not name at all: records the programme
    # keeps of its own (when the member joined, their points), which the
    # member disputes through customer service rather than rectifies.
    not_correctable: tuple[str, ...] = ()

    @field_validator("self_service", "not_correctable")
    @classmethod
    def _no_duplicates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists a field twice")
        return value

    @model_validator(mode="after")
    def _disjoint(self) -> RightsCorrection:
        both = sorted(set(self.self_service) & set(self.not_correctable))
        if both:
            raise ValueError(f"{', '.join(both)}: both self_service and not_correctable")
        return self


class RightsDeletion(_Strict):
    # True: every deletion waits for a DPO's approval before it runs.
    review: bool = False


class Rights(_Strict):
    """How members' rights requests are handled: the ``[rights]`` table.

    ``jurisdiction`` decides how periods are counted (``rights.deadlines``):
    CN counts working days on China's official calendar and never moves the
    end of a period; EU moves a period that ends on a Saturday, Sunday or
    public holiday to the next working day (Regulation 1182/71).
    """

    jurisdiction: Jurisdiction
    # An IANA zone: the days of a period are this zone's days.
    timezone: str
    # How long an access copy stays downloadable.
    copy_days: int = Field(default=7, ge=1, le=365)
    # The most a deadline may be extended by, once; None: no extension.
    # EU: at most "2 months" (GDPR Art. 12(3)).
    extension_max: RuleText | None = None
    # EU: the member state (ISO 3166-1, e.g. "DE") or region (ISO 3166-2,
    # e.g. "DE-BY") whose public holidays are not working days, from the
    # `holidays` package. None: weekends only.
    public_holidays: str | None = None
    deadlines: RightsDeadlines
    correction: RightsCorrection = Field(default_factory=RightsCorrection)
    deletion: RightsDeletion = Field(default_factory=RightsDeletion)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. 'Asia/Shanghai')") from None
        return value

    @field_validator("public_holidays")
    @classmethod
    def _known_holidays(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import holidays  # imported here: only a policy that names a country needs it

        country, _, subdivision = value.partition("-")
        supported = holidays.list_supported_countries()
        if country not in supported:
            raise ValueError(f"{country!r} is not a country the holidays package knows")
        if subdivision and subdivision not in supported[country]:
            raise ValueError(f"{value!r}: {country} has no subdivision {subdivision!r}")
        return value

    @model_validator(mode="after")
    def _by_jurisdiction(self) -> Rights:
        if self.jurisdiction == "CN" and self.public_holidays is not None:
            raise ValueError(
                "public_holidays applies to the EU jurisdiction only (CN counts on the "
                "State Council's calendar)"
            )
        if self.jurisdiction == "EU" and self.extension_max is not None:
            rule = DeadlineRule.parse(self.extension_max)
            if rule.unit != "months" or rule.count > 2:
                raise ValueError(
                    "extension_max: GDPR Art. 12(3) allows an extension of at most '2 months'"
                )
        return self

    def deadline_rule(self, request_type: RequestType) -> DeadlineRule:
        return DeadlineRule.parse(getattr(self.deadlines, request_type))


# -- personal data breaches: the authority's deadline ---------------------------

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)

_HOURS_RE = re.compile(r"([1-9][0-9]{0,3}) hours?")


def _hours_text(value: str) -> str:
    if _HOURS_RE.fullmatch(value) is None:
        raise ValueError(f"{value!r} is not a period in hours: write 'N hours' (N from 1 to 9999)")
    return value


HoursText = Annotated[str, AfterValidator(_hours_text)]


def hours_of(text: str) -> int:
    """The hours of a validated ``HoursText`` ("72 hours" → 72)."""
    match = _HOURS_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a period in hours")
    return int(match.group(1))


class Breach(_Strict):
    """How personal data breaches are handled: the ``[breach]`` table.

    The authority must be told within ``authority_deadline`` of the moment the
    organisation became aware (GDPR Art. 33(1): 72 hours; PIPL Art. 57 says
    "immediately"). ``authority_deadline_by_severity`` may only shorten it for
    a severity (a sector or national rule for major incidents); a longer one is
    refused, since no severity relaxes the legal deadline.
    """

    authority_deadline: HoursText = "72 hours"
    authority_deadline_by_severity: dict[Severity, HoursText] = Field(default_factory=dict)
    # When the DPO is reminded of an incident the authority has not been told of yet:
    # this long before the deadline (and once more when it has passed).
    remind_before: tuple[HoursText, ...] = ("24 hours", "6 hours")

    @model_validator(mode="after")
    def _stricter_only(self) -> Breach:
        limit = hours_of(self.authority_deadline)
        for severity, text in self.authority_deadline_by_severity.items():
            if hours_of(text) > limit:
                raise ValueError(
                    f"authority_deadline_by_severity.{severity}: {text!r} is longer than "
                    f"authority_deadline ({self.authority_deadline!r}); a severity may only "
                    "shorten it"
                )
        return self

    def deadline_hours(self, severity: Severity) -> tuple[int, str]:
        """The hours the authority must be told within for ``severity``, and the rule's text."""
        text = self.authority_deadline_by_severity.get(severity, self.authority_deadline)
        return hours_of(text), text

    @property
    def reminder_hours(self) -> tuple[int, ...]:
        """The reminder thresholds, furthest first (24, 6)."""
        return tuple(sorted({hours_of(text) for text in self.remind_before}, reverse=True))


class Policy(_Strict):
    programme: Programme
    notices: dict[str, Notice] = Field(default_factory=dict)
    fields: dict[str, FieldSpec]
    purposes: dict[str, PurposeSpec]
    rights: Rights
    # A policy written before breaches had a table gets the defaults (72 hours).
    breach: Breach = Field(default_factory=Breach)

    @model_validator(mode="before")
    @classmethod
    def _resolve_default_views(cls, data: object) -> object:
        """A purpose may list a field as "default": it gets the field's default_view."""
        if not isinstance(data, dict):
            return data
        fields = data.get("fields")
        purposes = data.get("purposes")
        if not isinstance(fields, dict) or not isinstance(purposes, dict):
            return data
        resolved = {}
        for pid, purpose in purposes.items():
            views = purpose.get("fields") if isinstance(purpose, dict) else None
            if isinstance(views, dict) and "default" in views.values():
                views = {
                    name: (
                        fields.get(name, {}).get("default_view", "masked")
                        if view == "default"
                        else view
                    )
                    for name, view in views.items()
                }
                purpose = {**purpose, "fields": views}
            resolved[pid] = purpose
        return {**data, "purposes": resolved}

    @field_validator("fields", "purposes")
    @classmethod
    def _slug_keys(cls, value: dict[str, object]) -> dict[str, object]:
        for key in value:
            if not SLUG_RE.fullmatch(key):
                raise ValueError(f"{key!r} is not a valid id (lower-case letters, digits, _)")
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> Policy:
        for pid, purpose in self.purposes.items():
            for fname, view in purpose.fields.items():
                spec = self.fields.get(fname)
                if spec is None:
                    raise ValueError(f"purposes.{pid}.fields: unknown field {fname!r}")
                if view not in VIEWS_BY_TYPE[spec.type]:
                    raise ValueError(
                        f"purposes.{pid}.fields.{fname}: view {view!r} does not apply to "
                        f"{spec.type} fields"
                    )
                if (missing := spec.view_missing_parameter(view)) is not None:
                    raise ValueError(
                        f"purposes.{pid}.fields.{fname}: view {view!r} needs the field's "
                        f"'{missing}'"
                    )
                # PIPL Art. 29: sensitive personal information in a form that
                # identifies the person needs a separate consent.
                if (
                    spec.sensitive
                    and view in ("clear", "masked")
                    and not (
                        purpose.separate_consent and purpose.separate_consent_ground == "sensitive"
                    )
                ):
                    raise ValueError(
                        f"purposes.{pid}.fields.{fname}: sensitive field needs a purpose with "
                        "separate_consent_ground = 'sensitive'"
                    )
            for fname in purpose.lookup:
                spec = self.fields.get(fname)
                if spec is None or not spec.searchable:
                    raise ValueError(
                        f"purposes.{pid}.lookup: {fname!r} is not a searchable field "
                        f"(searchable: {', '.join(self.searchable_fields) or 'none'})"
                    )
                if purpose.member_id == "pseudonym" or purpose.fields.get(fname) in (
                    None,
                    "pseudonym",
                ):
                    # A lookup answers with member ids: for a pseudonymous
                    # purpose it would re-identify the data set, and a purpose
                    # must see a field (at least masked) to look members up by it.
                    raise ValueError(
                        f"purposes.{pid}.lookup: {fname!r} needs the field listed in the "
                        "purpose's fields with a clear or masked view, and member_id = 'clear'"
                    )
            if purpose.separate_consent_ground == "third_party" and not purpose.third_party:
                raise ValueError(f"purposes.{pid}: third-party sharing must name 'third_party'")
            for version in purpose.accepted_notices:
                if version not in self.notices:
                    raise ValueError(f"purposes.{pid}.accepted_notices: unknown notice {version!r}")
        for fname in self.rights.correction.self_service:
            spec = self.fields.get(fname)
            if spec is None:
                raise ValueError(f"rights.correction.self_service: unknown field {fname!r}")
            # A sensitive field (PIPL Art. 28: an ID number) is corrected only
            # after a DPO has checked the evidence, never on a member's word.
            if spec.sensitive:
                raise ValueError(
                    f"rights.correction.self_service: {fname!r} is sensitive; a DPO approves "
                    "its corrections"
                )
            # A field members sign in by (and are found by) changes only with a
            # DPO's approval: otherwise a stolen 30-minute session could point the
            # sign-in codes at the thief's own address and keep the account.
            if spec.searchable:
                raise ValueError(
                    f"rights.correction.self_service: {fname!r} is searchable (members sign in "
                    "with it); a DPO approves its corrections"
                )
        for fname in self.rights.correction.not_correctable:
            if fname not in self.fields:
                raise ValueError(f"rights.correction.not_correctable: unknown field {fname!r}")
        return self

    def anonymity_warnings(self) -> list[str]:
        """Pseudonymous purposes that release a value unique per member in practice.

        A pseudonymous export is k-anonymous whatever it releases, but an exact
        date or balance splits members into groups of one, which are then all
        suppressed; and it is the kind of value that matched the
        customer-service export in the review. Not an error: a policy author
        may know better of their data.
        """
        warnings = []
        for pid, purpose in self.purposes.items():
            if purpose.member_id != "pseudonym":
                continue
            for fname, view in purpose.fields.items():
                spec = self.fields[fname]
                shared = GENERALISING_VIEWS | _SHARED_VIEWS_BY_TYPE.get(spec.type, frozenset())
                if view in shared or view == "pseudonym":
                    continue
                usable = sorted((VIEWS_BY_TYPE[spec.type] & shared) - {"clear"})
                warnings.append(
                    f"purposes.{pid}.fields.{fname}: a pseudonymous purpose releases this "
                    f"{spec.type} as {view!r}, which can single a member out; "
                    + (f"release it as {' or '.join(map(repr, usable))}" if usable else "drop it")
                )
        return warnings

    @cached_property
    def canonical_json(self) -> bytes:
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()

    @cached_property
    def version(self) -> str:
        return hashlib.sha256(self.canonical_json).hexdigest()

    @cached_property
    def searchable_fields(self) -> tuple[str, ...]:
        return tuple(name for name, spec in self.fields.items() if spec.searchable)

    @cached_property
    def personal_field_names(self) -> frozenset[str]:
        return frozenset(self.fields)
