"""Validation and normalisation of member field values.

Every value that enters the vault passes through :func:`normalise_value` first,
so that what is encrypted, blind-indexed and later masked has one canonical
form: a phone number is E.164, an email is NFKC + lower-case, a resident ID is
upper-case, a date is ``YYYY-MM-DD``. The blind index is an HMAC over exactly
these strings, so two spellings of one phone number must normalise to the same
string or lookups miss.

The functions are pure (no I/O). The only clock read is the default "today"
for resident-ID birth dates, which callers may pass in.

Errors are :class:`InvalidFieldValue`, whose detail names the field and the
rule that failed and never the submitted value: the value is personal data,
and error bodies, logs and exception messages must not carry it (DESIGN,
"Plaintext stays out of logs"). Problem texts are kept to lower-case ASCII
rule descriptions without long digit runs, so that no submitted value can be
mistaken for one of them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, date, datetime

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from core.errors import InvalidInput

FIELD_TYPES = frozenset(
    {"name", "phone", "email", "date", "address", "id_number", "enum", "integer", "text"}
)

# Characters that are never part of a legitimate value and that are used to
# smuggle content past reviewers and parsers: controls (NUL, newlines, ANSI
# escapes), format characters (bidi overrides, zero-width joiners), line and
# paragraph separators, lone surrogates, private-use and unassigned code points.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})

# Default upper bounds, in characters after normalisation. They bound what a
# client can make us encrypt and store, and they are generous for real data.
_DEFAULT_MAX_LENGTH = {
    "name": 100,
    "address": 200,
    "text": 200,
    "email": 254,  # RFC 5321 path limit
    "phone": 64,
}

# Name punctuation: the interpunct of transliterated minority and foreign
# names (阿依古丽·买买提, also typed as •), initials, apostrophes (O'Brien,
# including the typographic ’ that phone keyboards substitute) and hyphens.
_NAME_PUNCTUATION = frozenset("·•.'’-")
_ADDRESS_PUNCTUATION = frozenset("-#,./()（）、，·'号")
# What a written phone number may contain besides digits. phonenumbers itself
# is lenient: it maps letters to keypad digits ("13812345678abc" becomes a
# different, longer number) and drops trailing junk, so anything else is
# refused before it is parsed.
_PHONE_PUNCTUATION = frozenset(" +-().")

_MAX_INTEGER = 2**53 - 1  # the largest integer every JSON consumer reads exactly
_DATE_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_RESIDENT_ID_SHAPE = re.compile(r"[1-9]\d{16}[\dX]", re.ASCII)
_EARLIEST_DATE = date(1900, 1, 1)
_LATEST_DATE = date(2100, 12, 31)

# GB 11643-1999 / ISO 7064 MOD 11-2: weight of position i is 2**(17-i) mod 11,
# and the remainder of the weighted sum indexes the check character.
_GB11643_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_GB11643_CHECK_CHARS = "10X98765432"


class InvalidFieldValue(InvalidInput):
    """A submitted field value breaks a rule.

    ``detail`` is ``"<field>: <problem>"`` and ``extra`` holds only the field
    name. Neither ever contains the value.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", field=field)
        self.field = field
        self.problem = problem


def normalise_value(
    field_type: str,
    raw: object,
    *,
    field: str,
    values: Sequence[str] | None = None,
    pattern: str | None = None,
    max_length: int | None = None,
    today: date | None = None,
) -> str | int:
    """Return the canonical form of ``raw`` for a field of ``field_type``.

    ``values`` is the closed set of an enum field and ``pattern`` an optional
    full-match regular expression for a text field, both from the policy.
    ``max_length`` overrides the type's default bound. An unknown field type,
    or an enum without values, is a programming error (policies are validated
    when loaded) and raises ``ValueError``; bad input raises only
    :class:`InvalidFieldValue`. ``today`` bounds dates that cannot be in the
    future (a resident ID's birth date); the gate passes its injected clock's.
    """
    if field_type == "integer":
        return _normalise_integer(raw, field=field)
    limit = max_length if max_length is not None else _DEFAULT_MAX_LENGTH.get(field_type)
    if field_type == "name":
        return _normalise_name(raw, field=field, max_length=limit)
    if field_type == "address":
        return _normalise_address(raw, field=field, max_length=limit)
    if field_type == "text":
        value = _clean_string(raw, field=field, max_length=limit)
        # ASCII: a policy's \d means 0-9, not every script's digits.
        if pattern is not None and re.fullmatch(pattern, value, flags=re.ASCII) is None:
            raise InvalidFieldValue(field, "does not match the required format")
        return value
    if field_type == "enum":
        if values is None:
            raise ValueError(f"enum field {field!r} has no values")
        value = _clean_string(raw, field=field, max_length=limit)
        if value not in values:
            raise InvalidFieldValue(field, "not one of the allowed values")
        return value
    if field_type == "phone":
        return normalise_phone(raw, field=field, max_length=limit or _DEFAULT_MAX_LENGTH["phone"])
    if field_type == "email":
        return normalise_email(raw, field=field, max_length=limit or _DEFAULT_MAX_LENGTH["email"])
    if field_type == "date":
        return normalise_date(raw, field=field)
    if field_type == "id_number":
        return normalise_resident_id(raw, field=field, today=today)
    raise ValueError(f"unknown field type {field_type!r}")


def normalise_phone(
    raw: object,
    *,
    field: str = "phone",
    default_region: str = "CN",
    max_length: int = _DEFAULT_MAX_LENGTH["phone"],
) -> str:
    """Return the E.164 form of a valid phone number ("+8613812345678").

    A number without a country code is read in ``default_region``. NFKC first
    turns full-width digits typed with a Chinese input method into ASCII. Only
    digits and ``+-(). `` are accepted, which also refuses extensions ("x12",
    ";ext=12") rather than silently dropping them from the stored number.
    """
    value = unicodedata.normalize("NFKC", _clean_string(raw, field=field, max_length=max_length))
    if not all(c in _PHONE_PUNCTUATION or unicodedata.category(c) == "Nd" for c in value):
        raise InvalidFieldValue(field, "not a valid phone number")
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        raise InvalidFieldValue(field, "not a valid phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidFieldValue(field, "not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(
    raw: object, *, field: str = "email", max_length: int = _DEFAULT_MAX_LENGTH["email"]
) -> str:
    """Return the NFKC, trimmed, lower-cased form of a syntactically valid address.

    Deliverability is not checked: that needs DNS, and the vault must accept a
    member's address whether or not the resolver is reachable.
    """
    value = (
        unicodedata.normalize("NFKC", _clean_string(raw, field=field, max_length=None))
        .strip()
        .lower()
    )
    if len(value) > max_length:
        raise InvalidFieldValue(field, f"longer than {max_length} characters")
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        # email_validator's own messages quote parts of the address, so they
        # are replaced rather than passed on.
        raise InvalidFieldValue(field, "not a valid email address") from None
    normalised = result.normalized.lower()
    if len(normalised) > max_length:
        raise InvalidFieldValue(field, f"longer than {max_length} characters")
    return normalised


def gb11643_check_digit(first17: str) -> str:
    """Return the GB 11643-1999 check character ("0"-"9" or "X") for 17 digits.

    ``first17`` must be exactly 17 ASCII digits; anything else is a programming
    error and raises ``ValueError`` (callers validate the shape first).
    """
    if len(first17) != 17 or not (first17.isascii() and first17.isdigit()):
        raise ValueError("expected exactly 17 ASCII digits")
    total = sum(int(d) * w for d, w in zip(first17, _GB11643_WEIGHTS, strict=True))
    return _GB11643_CHECK_CHARS[total % 11]


def normalise_resident_id(
    raw: object, *, field: str = "id_number", today: date | None = None
) -> str:
    """Return an 18-character PRC resident identity number, check character upper-case.

    Checks the shape (17 digits, the first not 0, then a digit or X), that the
    embedded birth date is a real date between 1900-01-01 and ``today``
    (default: the current UTC date), and the check character.
    """
    value = _clean_string(raw, field=field, max_length=None).upper()
    if _RESIDENT_ID_SHAPE.fullmatch(value) is None:
        raise InvalidFieldValue(field, "must be 17 digits followed by a digit or x")
    birth = _real_date(value[6:10], value[10:12], value[12:14])
    latest = today if today is not None else datetime.now(UTC).date()
    if birth is None or not _EARLIEST_DATE <= birth <= latest:
        raise InvalidFieldValue(field, "birth date is not a real date in the accepted range")
    if gb11643_check_digit(value[:17]) != value[17]:
        raise InvalidFieldValue(field, "check digit does not match")
    return value


def normalise_date(raw: object, *, field: str) -> str:
    """Return a real calendar date written ``YYYY-MM-DD``, 1900-01-01 to 2100-12-31.

    Only that one spelling is accepted: ``date.fromisoformat`` alone would also
    take week dates and compact forms, which clients should not come to rely on.
    """
    value = _clean_string(raw, field=field, max_length=None)
    if _DATE_SHAPE.fullmatch(value) is None:
        raise InvalidFieldValue(field, "must be a date written yyyy-mm-dd")
    parsed = _real_date(value[0:4], value[5:7], value[8:10])
    if parsed is None:
        raise InvalidFieldValue(field, "not a real calendar date")
    if not _EARLIEST_DATE <= parsed <= _LATEST_DATE:
        raise InvalidFieldValue(field, "date is outside the accepted range")
    return parsed.isoformat()


def _clean_string(raw: object, *, field: str, max_length: int | None) -> str:
    """The checks every string-typed value passes: a ``str`` with no control or
    format characters, NFC-normalised, trimmed, not empty, at most ``max_length``.
    """
    if not isinstance(raw, str):
        raise InvalidFieldValue(field, "must be a string")
    if any(unicodedata.category(c) in _FORBIDDEN_CATEGORIES for c in raw):
        raise InvalidFieldValue(field, "contains control or invisible characters")
    value = unicodedata.normalize("NFC", raw).strip()
    if not value:
        raise InvalidFieldValue(field, "must not be empty")
    if max_length is not None and len(value) > max_length:
        raise InvalidFieldValue(field, f"longer than {max_length} characters")
    return value


def _normalise_name(raw: object, *, field: str, max_length: int | None) -> str:
    """A personal name in any script: letters, combining marks, spaces and
    name punctuation, with at least one letter. Masking relies on this shape.
    """
    value = _clean_string(raw, field=field, max_length=max_length)
    has_letter = False
    for c in value:
        category = unicodedata.category(c)
        if category[0] == "L":
            has_letter = True
        elif not (category[0] == "M" or category == "Zs" or c in _NAME_PUNCTUATION):
            raise InvalidFieldValue(field, "contains characters a name cannot contain")
    if not has_letter:
        raise InvalidFieldValue(field, "must contain a letter")
    return value


def _normalise_address(raw: object, *, field: str, max_length: int | None) -> str:
    """A postal address: letters, marks, digits, spaces and address punctuation,
    with at least one letter or digit.
    """
    value = _clean_string(raw, field=field, max_length=max_length)
    has_content = False
    for c in value:
        category = unicodedata.category(c)
        if category[0] in "LN":
            has_content = True
        elif not (category[0] == "M" or category == "Zs" or c in _ADDRESS_PUNCTUATION):
            raise InvalidFieldValue(field, "contains characters an address cannot contain")
    if not has_content:
        raise InvalidFieldValue(field, "must contain a letter or digit")
    return value


def _normalise_integer(raw: object, *, field: str) -> int:
    # bool is a subclass of int, but true/false is never a count or a balance.
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise InvalidFieldValue(field, "must be an integer")
    if not 0 <= raw <= _MAX_INTEGER:
        raise InvalidFieldValue(field, "must be a non-negative integer below 2^53")
    return raw


def _real_date(year: str, month: str, day: str) -> date | None:
    """The date with these ASCII-digit parts, or None if there is no such day.

    Built from the parts rather than with ``strptime``, whose single-digit
    month and day matching can read a digit string in more than one way.
    """
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        return None
