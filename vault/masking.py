"""Masking views: what a client sees of a field it may not see in the clear.

The outputs here are the product's exact contract (DESIGN, "Masking views
(exact output)"): client systems display them, match on them and test against
them, so a mask changes only with the design table. Each view reveals a fixed,
named part of the value and nothing else: the first 3 and last 4 digits of a
CN phone number, the first character of an email's local part and its domain,
a Chinese name's surname, the year of a birth date, and so on. When a value
does not have the shape a rule expects, the view reveals less (``***``), never
more.

Values arrive already normalised by :mod:`vault.fields` (phone E.164, date
``YYYY-MM-DD``, resident ID 18 characters). Which view applies to which field
is decided by the policy, validated when it is loaded, so asking for a view
that does not exist for a field type is a programming error (``ValueError``).

The ``pseudonym`` view needs the member id and a per-client key rather than the
field value, so it is :func:`pseudonym`, not a case of :func:`apply_view`.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import date
from functools import partial

import phonenumbers

from policies.model import VIEWS_BY_TYPE, FieldSpec

FULL_MASK = "***"

# Chinese compound (two-character) surnames, from the Hundred Family Surnames
# plus the traditional spellings of the most common ones. A name starting with
# one of these keeps both characters; any other Chinese name keeps one.
COMPOUND_SURNAMES = frozenset(
    [
        "欧阳",
        "太史",
        "端木",
        "上官",
        "司马",
        "东方",
        "独孤",
        "南宫",
        "万俟",
        "闻人",
        "夏侯",
        "诸葛",
        "尉迟",
        "公羊",
        "赫连",
        "澹台",
        "皇甫",
        "宗政",
        "濮阳",
        "公冶",
        "太叔",
        "申屠",
        "公孙",
        "慕容",
        "仲孙",
        "钟离",
        "长孙",
        "宇文",
        "司徒",
        "鲜于",
        "司空",
        "闾丘",
        "子车",
        "亓官",
        "司寇",
        "巫马",
        "公西",
        "颛孙",
        "壤驷",
        "公良",
        "漆雕",
        "乐正",
        "宰父",
        "谷梁",
        "拓跋",
        "夹谷",
        "轩辕",
        "令狐",
        "段干",
        "百里",
        "呼延",
        "东郭",
        "南门",
        "羊舌",
        "微生",
        "公户",
        "公玉",
        "公仪",
        "梁丘",
        "公仲",
        "公上",
        "公门",
        "公山",
        "公坚",
        "左丘",
        "公伯",
        "西门",
        "公祖",
        "第五",
        "公乘",
        "贯丘",
        "公皙",
        "南荣",
        "东里",
        "东宫",
        "仲长",
        "子书",
        "子桑",
        "即墨",
        "达奚",
        "褚师",
        "歐陽",
        "司馬",
        "諸葛",
        "東方",
        "尉遲",
        "公孫",
        "長孫",
        "鍾離",
        "閭丘",
        "獨孤",
        "南宮",
        "聞人",
        "軒轅",
    ]
)

# Separators of transliterated names (阿依古丽·买买提); fields.py accepts both.
_NAME_DOTS = frozenset("·•")

# The 34 provincial-level divisions, spelled in full. Matching this closed list
# rather than "anything ending in 省" means free text can never be mistaken
# for a province and revealed as one.
_PROVINCES_WITH_CITIES = [
    "河北省",
    "山西省",
    "辽宁省",
    "吉林省",
    "黑龙江省",
    "江苏省",
    "浙江省",
    "安徽省",
    "福建省",
    "江西省",
    "山东省",
    "河南省",
    "湖北省",
    "湖南省",
    "广东省",
    "海南省",
    "四川省",
    "贵州省",
    "云南省",
    "陕西省",
    "甘肃省",
    "青海省",
    "台湾省",
    "内蒙古自治区",
    "广西壮族自治区",
    "西藏自治区",
    "宁夏回族自治区",
    "新疆维吾尔自治区",
]
# Municipalities and SARs are their own city: the region is the name alone.
_CITY_LEVEL_PROVINCES = ["北京市", "上海市", "天津市", "重庆市", "香港特别行政区", "澳门特别行政区"]

# A prefecture-level city after a province: the shortest run of ideographs
# ending in 市, 自治州, 地区 or 盟, at most 10 characters before the suffix. The
# name part may not contain 市, 区, 县, 镇, 乡, 村, 街, 路, 道, 巷, 弄 or 号, which
# no prefecture-level name contains, so that an address without a city (e.g.
# 湖北省神农架林区…) cannot stretch the "city" to a 市 further along the street.
_CITY_CHAR = r"(?:(?![市区县镇乡村街路道巷弄号])[\u4e00-\u9fff])"
_REGION = re.compile(
    "(?P<region>"
    + "|".join(_CITY_LEVEL_PROVINCES)
    + "|(?:"
    + "|".join(_PROVINCES_WITH_CITIES)
    + ")"
    + _CITY_CHAR
    + "{1,10}?(?:市|自治州|地区|盟)"
    + ")"
)


def apply_view(
    field_type: str,
    view: str,
    value: str | int,
    *,
    bands: Sequence[int] | None = None,
    region_pattern: re.Pattern[str] | None = None,
) -> str | int:
    """Return ``value`` as ``view`` shows it for a field of ``field_type``.

    The views are the policy's (``policies.model.VIEWS_BY_TYPE``), but for
    ``pseudonym``, which shows the member id's pseudonym, not the value.
    ``bands`` and ``region_pattern`` are the field's parameters of the "band"
    view of an integer and the "region" view of a text field.
    """
    _check_view(field_type, view, bands, region_pattern)
    return _show(field_type, view, value, bands, region_pattern)


def _show(
    field_type: str,
    view: str,
    value: str | int,
    bands: Sequence[int] | None,
    region_pattern: re.Pattern[str] | None,
) -> str | int:
    """``apply_view`` once ``_check_view`` has passed (bulk paths check once, then call this)."""
    if view == "clear":
        return value
    if field_type == "integer":
        if not isinstance(value, int):
            raise ValueError("view 'band' of 'integer' needs an integer value")
        assert bands is not None  # _check_view
        return band(value, bands)
    if not isinstance(value, str):
        raise ValueError(f"view {view!r} of {field_type!r} needs a string value")
    if field_type == "date":
        return _date_view(view, value)
    if field_type == "address":
        region = address_region(value)
        if view == "region":
            return region
        return FULL_MASK if region == FULL_MASK else region + FULL_MASK
    if field_type == "text" and view == "region":
        assert region_pattern is not None  # _check_view
        match = region_pattern.match(value)
        return match.group(1) if match and match.group(1) else FULL_MASK
    return _MASKERS[field_type](value)


def _check_view(
    field_type: str,
    view: str,
    bands: Sequence[int] | None,
    region_pattern: re.Pattern[str] | None,
) -> None:
    if view == "pseudonym" or view not in VIEWS_BY_TYPE.get(field_type, frozenset()):
        raise ValueError(f"view {view!r} does not apply to {field_type!r}")
    if view == "band" and not bands:
        raise ValueError("view 'band' needs the field's bands")
    if field_type == "text" and view == "region" and region_pattern is None:
        raise ValueError("view 'region' of a text field needs its region_pattern")


def band(value: int, bounds: Sequence[int]) -> str:
    """The band of ``value`` between strictly increasing lower bounds.

    ``band(1200, [0, 1000, 5000])`` is "1000-4999"; below the first bound is
    "<0", from the last on "5000+".
    """
    index = bisect.bisect_right(bounds, value)
    if index == 0:
        return f"<{bounds[0]}"
    if index == len(bounds):
        return f"{bounds[-1]}+"
    return f"{bounds[index - 1]}-{bounds[index] - 1}"


def view_function(
    field_type: str,
    view: str,
    *,
    bands: Sequence[int] | None = None,
    region_pattern: re.Pattern[str] | None = None,
) -> Callable[[str | int], str | int]:
    """``apply_view`` with the field type, view and parameters fixed, resolved once.

    For bulk paths that apply the same view to many values: the result is
    ``apply_view(field_type, view, value, ...)`` for every value, errors
    included. A view that does not exist for the type raises here already.
    """
    _check_view(field_type, view, bands, region_pattern)
    if view == "clear":
        return _unchanged
    # Checked once here, not again for every value.
    return partial(_show, field_type, view, bands=bands, region_pattern=region_pattern)


def field_view(spec: FieldSpec, view: str) -> Callable[[str | int], str | int]:
    """``view_function`` for a policy field, with the field's own view parameters."""
    pattern = re.compile(spec.region_pattern) if spec.region_pattern is not None else None
    return view_function(spec.type, view, bands=spec.bands, region_pattern=pattern)


def _unchanged(value: str | int) -> str | int:
    return value


def pseudonym(client_key: bytes, member_id: str) -> str:
    """Return the member's pseudonym for one client: 16 hex characters.

    HMAC-SHA256 of the member id under the client's own key, truncated to 64
    bits. The same member always gets the same pseudonym from one client, so
    analytics can join records over time; two clients' pseudonyms for the same
    member cannot be linked without their keys. The key must be a real secret
    (at least 16 bytes): member ids are few enough to enumerate, so a guessable
    key would let anyone reverse the pseudonyms.
    """
    if len(client_key) < 16:
        raise ValueError("a pseudonym key must be at least 16 bytes")
    digest = hmac.new(client_key, member_id.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:16]


class Pseudonymiser:
    """:func:`pseudonym` for one client key, many members (bulk exports).

    The keyed HMAC object is built once (the key schedule is most of the cost
    of a short message) and copied for each member.
    ``Pseudonymiser(key)(m) == pseudonym(key, m)`` always.
    """

    __slots__ = ("_keyed",)

    def __init__(self, client_key: bytes) -> None:
        if len(client_key) < 16:
            raise ValueError("a pseudonym key must be at least 16 bytes")
        self._keyed = hmac.new(client_key, digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return "Pseudonymiser(...)"

    def __call__(self, member_id: str) -> str:
        digest = self._keyed.copy()
        digest.update(member_id.encode("utf-8"))
        return digest.hexdigest()[:16]


def mask_name(name: str) -> str:
    """Chinese names keep the surname; other names become initials.

    - contains a CJK ideograph and a "·": the first character, then every other
      character except "·" as "*" (阿依古丽·买买提 → 阿***·***);
    - contains a CJK ideograph: the surname (two characters for a compound
      surname in a name of three or more characters), then one "*" per other
      character (李小龙 → 李**, 欧阳娜娜 → 欧阳**);
    - otherwise: the first letter of each part separated by spaces or hyphens,
      each followed by "." (John Smith → J. S., Jean-Luc Picard → J. L. P.).
    """
    if any(_is_cjk_ideograph(c) for c in name):
        if any(c in _NAME_DOTS for c in name):
            return name[0] + "".join(c if c in _NAME_DOTS else "*" for c in name[1:])
        # A two-character name is always surname + given name: 东方 alone is
        # more likely 东 + 方 than a bare compound surname, and keeping both
        # characters would reveal the whole name.
        surname = 2 if len(name) > 2 and name[:2] in COMPOUND_SURNAMES else 1
        return name[:surname] + "*" * (len(name) - surname)
    initials = []
    for part in re.split(r"[\s\-]+", name):
        letter = next((c for c in part if unicodedata.category(c).startswith("L")), None)
        if letter is not None:
            initials.append(f"{letter}.")
    return " ".join(initials) if initials else FULL_MASK


def mask_phone(e164: str) -> str:
    """CN: first 3 and last 4 national digits ("138****5678"); elsewhere the
    country code and the last 4 national digits ("+44 ******3456").

    Every other national digit becomes one "*". A number too short for its rule
    to hide anything is masked entirely.
    """
    if e164.startswith("+86") and e164[3:].isascii() and e164[3:].isdigit():
        # Stored numbers are E.164: for +86 the national significant number is
        # simply the rest (China has no leading-zero national numbers), and
        # parsing was most of the cost of a customer-service read's masking.
        country_code, national = 86, e164[3:]
    else:
        try:
            number = phonenumbers.parse(e164, None)
        except phonenumbers.NumberParseException:
            return FULL_MASK
        country_code = number.country_code
        national = phonenumbers.national_significant_number(number)
    if country_code == 86:
        if len(national) < 8:
            return "*" * len(national)
        return national[:3] + "*" * (len(national) - 7) + national[-4:]
    if len(national) < 5:
        return f"+{country_code} " + "*" * len(national)
    return f"+{country_code} " + "*" * (len(national) - 4) + national[-4:]


def mask_email(email: str) -> str:
    """The first character of the local part, "***", then "@" and the domain."""
    local, at, domain = email.rpartition("@")
    if not (local and at and domain):
        return FULL_MASK
    return f"{local[0]}***@{domain}"


def mask_resident_id(resident_id: str) -> str:
    """The first and last characters with 16 "*" between ("1****************X")."""
    if len(resident_id) != 18:
        return "*" * 18
    return resident_id[0] + "*" * 16 + resident_id[-1]


def address_region(address: str) -> str:
    """Province and city, a prefix of the address ("广东省深圳市"), or "***".

    Municipalities and SARs are the whole region ("上海市"). An address that
    does not start with a provincial-level name in full, followed by a city
    where the province has cities, yields "***": a foreign or free-form
    address reveals nothing.
    """
    match = _REGION.match(address)
    return match.group("region") if match else FULL_MASK


def _date_view(view: str, value: str) -> str:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        # A programming error (stored dates are normalised); the message must
        # not carry the value, as date.fromisoformat's would.
        raise ValueError("stored date is not YYYY-MM-DD") from None
    if view == "year":
        return f"{day.year:04d}"
    if view == "month":
        return f"{day.year:04d}-{day.month:02d}"
    if view == "month_day":
        return f"{day.month:02d}-{day.day:02d}"
    return "****-**-**"


_MASKERS: dict[str, Callable[[str], str]] = {
    "name": mask_name,
    "phone": mask_phone,
    "email": mask_email,
    "id_number": mask_resident_id,
    "text": lambda _value: FULL_MASK,
}


def _is_cjk_ideograph(c: str) -> bool:
    # The Unicode name covers the basic block and every extension block.
    return unicodedata.name(c, "").startswith("CJK UNIFIED IDEOGRAPH")
