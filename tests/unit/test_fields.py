"""Field validation and normalisation: canonical forms, refusals, and errors
that never echo the submitted value."""

from __future__ import annotations

import contextlib
import re
import string
import unicodedata
from datetime import date

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from core.errors import InvalidInput
from vault.fields import (
    InvalidFieldValue,
    gb11643_check_digit,
    normalise_date,
    normalise_email,
    normalise_phone,
    normalise_resident_id,
    normalise_value,
)

STRING_TYPES = ["name", "phone", "email", "date", "address", "id_number", "enum", "text"]
TIERS = ["普通", "银卡", "金卡", "钻石"]

# Every problem text is written in this alphabet, and a detail adds only the
# field name and ": ", so a submitted value with a character outside
# DETAIL_ALPHABET cannot appear in an error by coincidence.
PROBLEM_ALPHABET = frozenset(string.ascii_lowercase + string.digits + " -^")
DETAIL_ALPHABET = PROBLEM_ALPHABET | frozenset(":_")

INJECTIONS = [
    "Robert'); DROP TABLE members;--",
    "<script>alert(1)</script>",
    "a=b",
    'x" OR "1"="1',
    "${jndi:ldap://evil/a}",
    "`rm -rf /`",
    "a\\b",
]
CONTROLS = ["\x00", "\n", "\r", "\t", "\x1b[31m", "\u200b", "\u202e", "\u2028", "\ufeff"]


def resident_id(first17: str) -> str:
    return first17 + gb11643_check_digit(first17)


def normalise(field_type: str, raw: object) -> str | int:
    return normalise_value(
        field_type, raw, field=field_type, values=TIERS if field_type == "enum" else None
    )


# --- errors -----------------------------------------------------------------


def test_invalid_field_value_is_a_validation_failure_naming_the_field() -> None:
    exc = InvalidFieldValue("phone", "not a valid phone number")
    assert isinstance(exc, InvalidInput)
    assert exc.slug == "validation-failed"
    assert exc.detail == str(exc) == "phone: not a valid phone number"
    assert exc.extra == {"field": "phone"}


@pytest.mark.parametrize(
    ("field_type", "raw"),
    [
        ("phone", "1381234567"),
        ("phone", "+86 138 1234 5678 x12"),
        ("email", "zhang.san@@example.com"),
        ("id_number", "110105194912310021"),
        ("id_number", "110105194913310029"),
        ("name", "Robert'); DROP TABLE members;--"),
        ("address", "广东省深圳市<script>"),
        ("date", "1990-02-30"),
        ("enum", "白金卡"),
    ],
)
def test_error_never_contains_the_submitted_value(field_type: str, raw: str) -> None:
    with pytest.raises(InvalidFieldValue) as caught:
        normalise(field_type, raw)
    assert raw not in str(caught.value)
    assert raw not in repr(caught.value.extra)


@given(field_type=st.sampled_from(STRING_TYPES), raw=st.text(min_size=4, max_size=300))
def test_error_for_any_rejected_string_never_contains_it(field_type: str, raw: str) -> None:
    assume(not set(raw) <= DETAIL_ALPHABET)
    try:
        normalise(field_type, raw)
    except InvalidFieldValue as exc:
        assert set(exc.problem) <= PROBLEM_ALPHABET
        assert not re.search(r"\d{4}", exc.problem)
        assert raw not in str(exc)
        assert exc.extra == {"field": field_type}


@given(
    field_type=st.sampled_from(["phone", "id_number", "date", "enum"]),
    raw=st.text(alphabet="0123456789+- X", min_size=4, max_size=30),
)
def test_error_for_any_rejected_digit_string_never_contains_it(field_type: str, raw: str) -> None:
    # Phone and ID numbers are digits, so this is the leak that matters; it is
    # checkable because no problem text holds a run of four such characters.
    try:
        normalise(field_type, raw)
    except InvalidFieldValue as exc:
        assert not re.search(r"\d{4}", exc.problem)
        assert raw not in str(exc)
        assert raw not in repr(exc.extra)


@given(
    field_type=st.sampled_from([*STRING_TYPES, "integer"]),
    raw=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.binary(),
        st.text(),
        st.lists(st.text(), max_size=2),
        st.dictionaries(st.text(), st.text(), max_size=2),
    ),
)
def test_normalise_value_raises_only_invalid_field_value_for_any_json_value(
    field_type: str, raw: object
) -> None:
    with contextlib.suppress(InvalidFieldValue):
        normalise(field_type, raw)


# --- string checks shared by every string type ---------------------------------


@pytest.mark.parametrize("field_type", STRING_TYPES)
@pytest.mark.parametrize("raw", [13812345678, True, None, b"abc", ["a"]])
def test_string_types_reject_non_strings(field_type: str, raw: object) -> None:
    with pytest.raises(InvalidFieldValue, match="must be a string"):
        normalise(field_type, raw)


@pytest.mark.parametrize("field_type", ["name", "address", "text"])
@pytest.mark.parametrize("control", CONTROLS)
def test_control_and_invisible_characters_are_rejected(field_type: str, control: str) -> None:
    with pytest.raises(InvalidFieldValue, match="control or invisible"):
        normalise(field_type, f"张{control}三")


@pytest.mark.parametrize("field_type", ["name", "address", "text"])
@pytest.mark.parametrize("raw", ["", "   ", "\u3000"])
def test_blank_values_are_rejected(field_type: str, raw: str) -> None:
    with pytest.raises(InvalidFieldValue, match="must not be empty"):
        normalise(field_type, raw)


def test_surrounding_whitespace_is_stripped() -> None:
    assert normalise("name", "  张三 ") == "张三"
    assert normalise("date", " 1990-05-17 ") == "1990-05-17"


def test_values_are_nfc_normalised() -> None:
    decomposed = "Zoe\u0308"  # e + combining diaeresis
    assert normalise("name", decomposed) == "Zo\u00eb"


@pytest.mark.parametrize(("field_type", "limit"), [("name", 100), ("address", 200), ("text", 200)])
def test_default_max_length_is_enforced(field_type: str, limit: int) -> None:
    assert normalise(field_type, "a" * limit) == "a" * limit
    with pytest.raises(InvalidFieldValue, match=f"longer than {limit} characters"):
        normalise(field_type, "a" * (limit + 1))


def test_explicit_max_length_overrides_the_default() -> None:
    assert normalise_value("text", "abcd", field="note", max_length=4) == "abcd"
    with pytest.raises(InvalidFieldValue, match="longer than 3 characters"):
        normalise_value("text", "abcd", field="note", max_length=3)


def test_unknown_field_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown field type"):
        normalise_value("blob", "x", field="x")


# --- name ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "张三",
        "欧阳娜娜",
        "阿依古丽·买买提",
        "O'Brien",
        "O’Brien",
        "Jean-Luc Picard",
        "J. R. R. Tolkien",
        "Zoë Saldaña",
        "Søren Kierkegaard",
        "Иван Петров",
        "김민수",
        "Nguyễn Văn A",
    ],
)
def test_real_names_in_any_script_are_accepted(raw: str) -> None:
    assert normalise("name", raw) == raw


@pytest.mark.parametrize("raw", [*INJECTIONS, "<script>", "Agent 007", "张三@qq", "a_b", "😀"])
def test_names_with_code_digits_or_symbols_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidFieldValue, match="name"):
        normalise("name", raw)


def test_a_name_without_any_letter_is_rejected() -> None:
    with pytest.raises(InvalidFieldValue, match="must contain a letter"):
        normalise("name", "- . '")


@given(st.text(max_size=50))
def test_an_accepted_name_holds_only_letters_marks_spaces_and_name_punctuation(raw: str) -> None:
    try:
        value = normalise("name", raw)
    except InvalidFieldValue:
        return
    assert isinstance(value, str)
    for c in value:
        category = unicodedata.category(c)
        assert category[0] in "LM" or category == "Zs" or c in "·•.'’-"


@given(st.sampled_from(["name", "address", "text", "email", "phone"]), st.text(max_size=60))
def test_normalisation_is_idempotent(field_type: str, raw: str) -> None:
    try:
        once = normalise(field_type, raw)
    except InvalidFieldValue:
        return
    assert normalise(field_type, once) == once


# --- address -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "广东省深圳市南山区科技园路88号",
        "上海市浦东新区世纪大道100号（东门）、2栋",
        "221B Baker Street, London NW1 6XE",
        "Flat 3/12 O'Connell St. #5",
    ],
)
def test_real_addresses_are_accepted(raw: str) -> None:
    assert normalise("address", raw) == raw


@pytest.mark.parametrize("raw", [*INJECTIONS, "科技园路88号; rm", "路<88>号", "a|b", "50%"])
def test_addresses_with_code_characters_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidFieldValue, match="address"):
        normalise("address", raw)


# --- text and enum -------------------------------------------------------------


def test_text_without_pattern_accepts_any_printable_string() -> None:
    assert normalise_value("text", "Store #12 <west>", field="note") == "Store #12 <west>"


def test_text_must_fully_match_its_pattern() -> None:
    pattern = r"[A-Z]{2}-\d{3}"
    assert normalise_value("text", "SZ-001", field="home_store", pattern=pattern) == "SZ-001"
    for raw in ["SZ-0012", "xSZ-001", *INJECTIONS]:
        with pytest.raises(InvalidFieldValue, match="does not match the required format"):
            normalise_value("text", raw, field="home_store", pattern=pattern)


@pytest.mark.parametrize("control", CONTROLS)
def test_text_rejects_control_characters_even_when_the_pattern_allows_them(control: str) -> None:
    with pytest.raises(InvalidFieldValue, match="control or invisible"):
        normalise_value("text", f"SZ{control}001", field="home_store", pattern=r"(?s).*")


def test_enum_accepts_exactly_its_values() -> None:
    assert normalise("enum", "金卡") == "金卡"
    assert normalise("enum", " 金卡 ") == "金卡"
    for raw in ["白金卡", "金", "金卡卡", "GOLD"]:
        with pytest.raises(InvalidFieldValue, match="not one of the allowed values"):
            normalise("enum", raw)


# --- integer -------------------------------------------------------------------


@pytest.mark.parametrize("raw", [0, 1, 12_500, 2**53 - 1])
def test_integers_in_range_are_accepted(raw: int) -> None:
    assert normalise("integer", raw) == raw


@pytest.mark.parametrize("raw", [True, False, "12", 1.0, None])
def test_integer_must_be_an_int_and_not_a_bool(raw: object) -> None:
    with pytest.raises(InvalidFieldValue, match="must be an integer"):
        normalise("integer", raw)


@pytest.mark.parametrize("raw", [-1, 2**53, 10**30])
def test_integer_out_of_range_is_rejected(raw: int) -> None:
    with pytest.raises(InvalidFieldValue, match="non-negative integer below"):
        normalise("integer", raw)


# --- phone ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("13812345678", "+8613812345678"),
        ("+86 138 1234 5678", "+8613812345678"),
        ("138-1234-5678", "+8613812345678"),
        ("１３８１２３４５６７８", "+8613812345678"),
        ("+44 7911 123456", "+447911123456"),
        ("+1 (650) 253-0000", "+16502530000"),
        ("010 1234 5678", "+861012345678"),
    ],
)
def test_valid_phone_numbers_normalise_to_e164(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == e164
    assert normalise("phone", raw) == e164


@pytest.mark.parametrize(
    "raw",
    [
        "1381234567",
        "138123456789",
        "12345678901",
        "+44 7911",
        "phone",
        "13812345678abc",
        "13812345678 ext 12",
        "+86 138 1234 5678;ext=12",
        "1-800-FLOWERS",
        "+",
    ],
)
def test_invalid_phone_numbers_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidFieldValue, match="phone: not a valid phone number"):
        normalise_phone(raw)


def test_phone_default_region_applies_to_numbers_without_country_code() -> None:
    assert normalise_phone("07911 123456", default_region="GB") == "+447911123456"


def test_phone_error_names_the_given_field() -> None:
    with pytest.raises(InvalidFieldValue) as caught:
        normalise_value("phone", "123", field="mobile")
    assert caught.value.extra == {"field": "mobile"}
    assert str(caught.value).startswith("mobile: ")


# --- email ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("zhang.san@example.com", "zhang.san@example.com"),
        ("  Zhang.San@Example.COM ", "zhang.san@example.com"),
        ("ｚｈａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ", "zhang@example.com"),
        ("用户@例子.广告", "用户@例子.广告"),
    ],
)
def test_emails_are_nfkc_trimmed_and_lower_cased(raw: str, normalised: str) -> None:
    assert normalise_email(raw) == normalised
    assert normalise("email", raw) == normalised


@pytest.mark.parametrize(
    "raw",
    [
        "zhang.san",
        "zhang@",
        "@example.com",
        "a@@example.com",
        "a b@example.com",
        "a@localhost",
        "<a@example.com>",
        "a@example.com\n",
    ],
)
def test_invalid_emails_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidFieldValue, match=r"^email: "):
        normalise_email(raw)


def test_emails_longer_than_254_characters_are_rejected() -> None:
    domain = ".".join(["a" * 60] * 4) + ".com"  # 247 characters
    with pytest.raises(InvalidFieldValue, match="longer than 254 characters"):
        normalise_email("abcdefgh@" + domain)


# --- resident ID ---------------------------------------------------------------


def test_check_digit_matches_the_published_example() -> None:
    # The worked example of GB 11643-1999.
    assert gb11643_check_digit("11010519491231002") == "X"
    assert gb11643_check_digit("44052418800101001") == "4"


@pytest.mark.parametrize("bad", ["1101051949123100", "110105194912310021", "1101051949123100a"])
def test_check_digit_needs_exactly_17_ascii_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="17 ASCII digits"):
        gb11643_check_digit(bad)


def test_resident_id_with_correct_check_digit_is_accepted_upper_case() -> None:
    assert normalise_resident_id("11010519491231002x") == "11010519491231002X"
    assert normalise("id_number", "11010519491231002X") == "11010519491231002X"


def test_resident_id_with_wrong_check_digit_is_rejected() -> None:
    with pytest.raises(InvalidFieldValue, match="check digit does not match"):
        normalise_resident_id("110105194912310021")


@given(
    region=st.from_regex(r"[1-9][0-9]{5}", fullmatch=True),
    birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2024, 12, 31)),
    sequence=st.from_regex(r"[0-9]{3}", fullmatch=True),
)
def test_every_generated_resident_id_is_accepted_and_any_other_check_char_is_not(
    region: str, birth: date, sequence: str
) -> None:
    first17 = f"{region}{birth:%Y%m%d}{sequence}"
    valid = resident_id(first17)
    assert normalise_resident_id(valid, today=date(2025, 1, 1)) == valid
    for wrong in set("0123456789X") - {valid[-1]}:
        with pytest.raises(InvalidFieldValue, match="check digit does not match") as caught:
            normalise_resident_id(first17 + wrong, today=date(2025, 1, 1))
        assert not re.search(r"\d{4}", str(caught.value))


@pytest.mark.parametrize(
    "birth", ["18991231", "19490230", "19491301", "19490000", "20250102", "99991231"]
)
def test_resident_id_with_impossible_birth_date_is_rejected(birth: str) -> None:
    raw = resident_id(f"110105{birth}002")
    with pytest.raises(InvalidFieldValue, match="birth date"):
        normalise_resident_id(raw, today=date(2025, 1, 1))


def test_resident_id_born_today_is_accepted() -> None:
    raw = resident_id("11010520250101002")
    assert normalise_resident_id(raw, today=date(2025, 1, 1)) == raw


@pytest.mark.parametrize(
    "raw",
    [
        "11010519491231002",
        "1101051949123100211",
        "01010519491231002X",
        "1101051949123100X2",
        "11010519491231002Y",
        "１１０１０５１９４９１２３１００２Ｘ",
        "110105 19491231002X",
    ],
)
def test_resident_id_must_be_17_digits_then_digit_or_x(raw: str) -> None:
    with pytest.raises(InvalidFieldValue, match="17 digits followed by a digit or x"):
        normalise_resident_id(raw)


# --- date ----------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1990-05-17", "1900-01-01", "2100-12-31", "2024-02-29"])
def test_real_dates_in_range_are_accepted(raw: str) -> None:
    assert normalise_date(raw, field="birthday") == raw


@pytest.mark.parametrize(
    "raw",
    [
        "1990-5-17",
        "19900517",
        "1990/05/17",
        "17-05-1990",
        "1990-05-17T00:00",
        "2024-W01-1",
        "１９９０-０５-１７",
    ],
)
def test_dates_must_be_written_yyyy_mm_dd(raw: str) -> None:
    with pytest.raises(InvalidFieldValue, match="birthday: must be a date written yyyy-mm-dd"):
        normalise_date(raw, field="birthday")


@pytest.mark.parametrize("raw", ["2023-02-29", "1990-13-01", "1990-00-10", "1990-04-31"])
def test_impossible_dates_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidFieldValue, match="not a real calendar date"):
        normalise_date(raw, field="birthday")


@pytest.mark.parametrize("raw", ["1899-12-31", "2101-01-01", "0001-01-01"])
def test_dates_outside_1900_to_2100_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidFieldValue, match="outside the accepted range"):
        normalise_date(raw, field="birthday")


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)))
def test_every_iso_date_in_range_round_trips(day: date) -> None:
    assert normalise_value("date", day.isoformat(), field="birthday") == day.isoformat()
