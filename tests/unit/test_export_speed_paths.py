"""The bulk export's fast paths give exactly what the reference functions give.

The export decrypts, masks and pseudonymises with helpers resolved once per
member or per export (``open_fields``, ``view_function``, ``Pseudonymiser``,
``Keyring.kek_cipher``). Their outputs are a contract that clients match on,
so each is held to the plain function it speeds up, errors included.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.ids import new_id
from vault.crypto import (
    FORMAT_V1,
    NONCE_BYTES,
    DecryptionFailed,
    _field_aad,
    decrypt_value,
    encrypt_value,
    new_data_key,
    open_fields,
    seal,
    unwrap_data_key,
    wrap_data_key,
)
from vault.keys import Keyring
from vault.masking import Pseudonymiser, apply_view, pseudonym, view_function

KEYRING = Keyring.generate()
# Every JSON value encrypt_value can write (str or int), with escapes,
# control characters, quotes, CJK and astral characters in the strings.
values = st.one_of(
    st.text(max_size=60),
    st.text(alphabet='"\\\x00\x01\x1f\x7f/é张𠀀\u2028 ', max_size=20),
    st.integers(min_value=-(2**70), max_value=2**70),
)
names = st.sampled_from(["name", "birthday", "address", "tier", "points_balance", "home_store"])


def sealed(keyring: Keyring, member: str, fields: dict[str, str | int]) -> tuple[int, bytes, dict]:
    data_key = new_data_key()
    version, wrapped = wrap_data_key(keyring, member, data_key)
    blobs = {name: encrypt_value(data_key, member, name, value) for name, value in fields.items()}
    return version, wrapped, blobs


# --- open_fields ---------------------------------------------------------------------


@given(fields=st.dictionaries(names, values, max_size=6))
def test_open_fields_equals_unwrap_then_decrypt_each_value(fields: dict[str, str | int]) -> None:
    member = new_id()
    version, wrapped, blobs = sealed(KEYRING, member, fields)
    data_key = unwrap_data_key(KEYRING, member, version, wrapped)
    expected = {name: decrypt_value(data_key, member, name, blob) for name, blob in blobs.items()}
    opened = open_fields(KEYRING, member, version, wrapped, blobs)
    assert opened == expected == fields
    assert [type(v) for v in opened.values()] == [type(v) for v in fields.values()]


@given(plaintext=st.one_of(st.text(max_size=40), st.integers()).map(json.dumps))
def test_values_decode_as_json_loads_decodes_them(plaintext: str) -> None:
    """Also for plaintexts written with ASCII escapes (older or other writers)."""
    member, data_key = new_id(), new_data_key()
    for text in (plaintext, json.dumps(json.loads(plaintext), ensure_ascii=False)):
        blob = seal(data_key, text.encode(), _field_aad(member, "name"))
        expected = decode_as_before(text.encode())
        decrypted = decrypt_value(data_key, member, "name", blob)
        assert (type(decrypted), decrypted) == (type(expected), expected)


def decode_as_before(plaintext: bytes) -> str | int:
    """decrypt_value's decoding as it was: json.loads, then the type check."""
    value = json.loads(plaintext)
    if not isinstance(value, str | int):
        raise DecryptionFailed("decrypted value has an unexpected type")
    return value


def outcome(call: Callable[[], object]) -> tuple[str, object]:
    try:
        value = call()
    except Exception as exc:  # the type is what is compared
        return "raises", type(exc)
    return "returns", (type(value), value)


@pytest.mark.parametrize(
    "plaintext",
    [b"1.5", b"[1]", b'{"a": 1}', b"null", b'"a\\', b"01", b"-0", b" 1", b"true", b"\xff"],
)
def test_an_unusual_plaintext_decodes_or_fails_exactly_as_before(plaintext: bytes) -> None:
    member, data_key = new_id(), new_data_key()
    version, wrapped = wrap_data_key(KEYRING, member, data_key)
    blob = seal(data_key, plaintext, _field_aad(member, "name"))
    expected = outcome(lambda: decode_as_before(plaintext))
    assert outcome(lambda: decrypt_value(data_key, member, "name", blob)) == expected
    opened = outcome(lambda: open_fields(KEYRING, member, version, wrapped, {"name": blob})["name"])
    assert opened == expected


def test_open_fields_refuses_a_tampered_value_a_swapped_value_and_a_relabelled_key() -> None:
    member, other = new_id(), new_id()
    version, wrapped, blobs = sealed(KEYRING, member, {"name": "张三", "tier": "金卡"})
    _, other_wrapped, other_blobs = sealed(KEYRING, other, {"name": "李四"})
    tampered = bytearray(blobs["name"])
    tampered[-1] ^= 1
    for bad in (
        {**blobs, "name": bytes(tampered)},
        {"name": blobs["tier"]},  # moved to another field
        {"name": other_blobs["name"]},  # moved from another member
        {"name": b"\x02" + blobs["name"][1:]},  # unknown format
        {"name": FORMAT_V1 + bytes(NONCE_BYTES)},  # too short
    ):
        with pytest.raises(DecryptionFailed):
            open_fields(KEYRING, member, version, wrapped, bad)
    with pytest.raises(DecryptionFailed):
        open_fields(KEYRING, member, version, other_wrapped, blobs)
    rotated = KEYRING.with_new_kek()
    with pytest.raises(DecryptionFailed):
        open_fields(rotated, member, rotated.active_version, wrapped, blobs)


def test_a_data_key_wrapped_before_rotation_opens_with_the_rotated_keyring() -> None:
    member = new_id()
    version, wrapped, blobs = sealed(KEYRING, member, {"tier": "钻石", "points_balance": 7})
    rotated = KEYRING.with_new_kek()
    assert rotated.kek_cipher(version) is rotated.kek_cipher(version)  # built once
    assert open_fields(rotated, member, version, wrapped, blobs) == {
        "tier": "钻石",
        "points_balance": 7,
    }


def test_decryption_errors_carry_no_plaintext() -> None:
    member = new_id()
    version, wrapped, blobs = sealed(KEYRING, member, {"name": "CANARY张三"})
    blob = bytearray(blobs["name"])
    blob[20] ^= 0xFF
    with pytest.raises(DecryptionFailed) as info:
        open_fields(KEYRING, member, version, wrapped, {"name": bytes(blob)})
    assert "CANARY" not in str(info.value) and "张三" not in str(info.value)


# --- pseudonyms ----------------------------------------------------------------------


@given(
    key=st.binary(min_size=16, max_size=200),  # > 64 bytes: HMAC hashes the key first
    member_ids=st.lists(st.text(max_size=40), max_size=5),
)
def test_pseudonymiser_gives_the_pseudonym_for_every_key_and_member(
    key: bytes, member_ids: list[str]
) -> None:
    pseudonymise = Pseudonymiser(key)
    for member_id in member_ids:
        assert pseudonymise(member_id) == pseudonym(key, member_id)
        assert (
            pseudonym(key, member_id)
            == (hmac.new(key, member_id.encode(), hashlib.sha256).hexdigest()[:16])
        )


def test_pseudonymiser_refuses_a_short_key_and_hides_the_key() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Pseudonymiser(b"short")
    key = KEYRING.pseudonym_key_for("client")
    assert key.hex() not in repr(Pseudonymiser(key))


# --- views ---------------------------------------------------------------------------

VIEWS = {
    "name": ["clear", "masked"],
    "phone": ["clear", "masked"],
    "email": ["clear", "masked"],
    "id_number": ["clear", "masked"],
    "date": ["clear", "masked", "year", "month_day"],
    "address": ["clear", "masked", "region"],
    "text": ["clear", "masked"],
    "enum": ["clear"],
    "integer": ["clear"],
}
SAMPLES = {
    "name": ["张三", "欧阳娜娜", "John Smith", "阿依古丽·买买提", ""],
    "phone": ["+8613812345678", "+447911123456", "+861234", "garbage"],
    "email": ["zhang.san@example.com", "no-at-sign", "@x"],
    "id_number": ["11010519491231002X", "123"],
    "date": ["1990-05-17", "2000-02-29"],
    "address": ["广东省深圳市南山区科技园路88号", "上海市浦东新区", "Somewhere else"],
    "text": ["anything"],
    "enum": ["金卡"],
    "integer": [0, 1200],
}


@pytest.mark.parametrize(
    ("field_type", "view"), [(t, v) for t, views in VIEWS.items() for v in views]
)
def test_view_function_gives_what_apply_view_gives(field_type: str, view: str) -> None:
    show = view_function(field_type, view)
    for value in SAMPLES[field_type]:
        assert show(value) == apply_view(field_type, view, value)


@given(day=st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)))
def test_view_function_for_dates_gives_what_apply_view_gives(day: date) -> None:
    for view in VIEWS["date"]:
        assert view_function("date", view)(day.isoformat()) == apply_view(
            "date", view, day.isoformat()
        )


@pytest.mark.parametrize(("field_type", "view"), [("enum", "masked"), ("integer", "year")])
def test_view_function_refuses_a_view_the_type_does_not_have(field_type: str, view: str) -> None:
    with pytest.raises(ValueError, match="does not apply"):
        view_function(field_type, view)


def test_view_function_fails_as_apply_view_does_on_bad_values_without_the_value() -> None:
    with pytest.raises(ValueError) as info:
        view_function("date", "year")("1990-13-45")
    assert "1990" not in str(info.value)
    with pytest.raises(ValueError, match="needs a string"):
        view_function("name", "masked")(5)
