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
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FieldType = Literal[
    "name", "phone", "email", "date", "address", "id_number", "enum", "integer", "text"
]
View = Literal["clear", "masked", "pseudonym", "year", "month_day", "region"]
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
    "date": frozenset({"clear", "masked", "year", "month_day", "pseudonym"}),
    "address": frozenset({"clear", "masked", "region", "pseudonym"}),
    "id_number": frozenset({"clear", "masked", "pseudonym"}),
    "enum": frozenset({"clear", "pseudonym"}),
    "integer": frozenset({"clear", "pseudonym"}),
    "text": frozenset({"clear", "masked", "pseudonym"}),
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
        if self.default_view not in VIEWS_BY_TYPE[self.type]:
            raise ValueError(
                f"default_view {self.default_view!r} does not apply to {self.type} fields"
            )
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


class Policy(_Strict):
    programme: Programme
    notices: dict[str, Notice] = Field(default_factory=dict)
    fields: dict[str, FieldSpec]
    purposes: dict[str, PurposeSpec]

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
            if purpose.separate_consent_ground == "third_party" and not purpose.third_party:
                raise ValueError(f"purposes.{pid}: third-party sharing must name 'third_party'")
            for version in purpose.accepted_notices:
                if version not in self.notices:
                    raise ValueError(f"purposes.{pid}.accepted_notices: unknown notice {version!r}")
        return self

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
