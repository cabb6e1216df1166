"""Envelope encryption, blind indexes and the keyring."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.ids import new_id
from vault.crypto import (
    DecryptionFailed,
    blind_index,
    decrypt_value,
    encrypt_value,
    new_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from vault.keys import EnvKeyring, Keyring, KeyringError, LocalKeyFile

KEYRING = Keyring.generate()
values = st.one_of(st.text(max_size=200), st.integers(min_value=0, max_value=2**53 - 1))
field_names = st.sampled_from(["name", "phone", "email", "address", "id_number", "points_balance"])


@given(value=values, field=field_names)
def test_field_encryption_round_trips(value: str | int, field: str) -> None:
    member, key = new_id(), new_data_key()
    assert decrypt_value(key, member, field, encrypt_value(key, member, field, value)) == value


@given(value=values, field=field_names, position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_flipped_bit_fails_to_decrypt(
    value: str | int, field: str, position: int, bit: int
) -> None:
    member, key = new_id(), new_data_key()
    blob = bytearray(encrypt_value(key, member, field, value))
    blob[position % len(blob)] ^= 1 << bit
    with pytest.raises(DecryptionFailed):
        decrypt_value(key, member, field, bytes(blob))


@given(value=values)
def test_ciphertext_cannot_move_to_another_member_or_field(value: str | int) -> None:
    member, other, key = new_id(), new_id(), new_data_key()
    blob = encrypt_value(key, member, "phone", value)
    with pytest.raises(DecryptionFailed):
        decrypt_value(key, other, "phone", blob)
    with pytest.raises(DecryptionFailed):
        decrypt_value(key, member, "email", blob)
    with pytest.raises(DecryptionFailed):
        decrypt_value(new_data_key(), member, "phone", blob)


def test_same_value_encrypts_differently_each_time() -> None:
    member, key = new_id(), new_data_key()
    assert encrypt_value(key, member, "name", "张三") != encrypt_value(key, member, "name", "张三")


def test_wrapped_data_key_is_bound_to_member_and_kek_version() -> None:
    member, key = new_id(), new_data_key()
    version, wrapped = wrap_data_key(KEYRING, member, key)
    assert unwrap_data_key(KEYRING, member, version, wrapped) == key
    with pytest.raises(DecryptionFailed):
        unwrap_data_key(KEYRING, new_id(), version, wrapped)
    rotated = KEYRING.with_new_kek()
    with pytest.raises(DecryptionFailed):
        unwrap_data_key(rotated, member, rotated.active_version, wrapped)  # relabelled version


def test_rotation_wraps_with_the_newest_kek_and_still_unwraps_the_old() -> None:
    member, key = new_id(), new_data_key()
    old_version, old_wrapped = wrap_data_key(KEYRING, member, key)
    rotated = KEYRING.with_new_kek()
    new_version, _ = wrap_data_key(rotated, member, key)
    assert new_version == old_version + 1
    assert unwrap_data_key(rotated, member, old_version, old_wrapped) == key


def test_unknown_ciphertext_format_is_rejected() -> None:
    with pytest.raises(DecryptionFailed):
        decrypt_value(new_data_key(), "m", "name", b"\x02" + bytes(40))
    with pytest.raises(DecryptionFailed):
        decrypt_value(new_data_key(), "m", "name", b"\x01")


def test_blind_index_is_deterministic_per_field_and_keyed() -> None:
    phone = "+8613812345678"
    assert blind_index(KEYRING, "phone", phone) == blind_index(KEYRING, "phone", phone)
    assert blind_index(KEYRING, "phone", phone) != blind_index(KEYRING, "email", phone)
    assert blind_index(KEYRING, "phone", phone) != blind_index(Keyring.generate(), "phone", phone)
    assert phone not in blind_index(KEYRING, "phone", phone)


def test_index_and_pseudonym_keys_are_independent_of_the_kek() -> None:
    assert KEYRING.index_key_for("phone") not in KEYRING.keks.values()
    assert KEYRING.pseudonym_key_for("client-a") != KEYRING.pseudonym_key_for("client-b")


def test_keyring_repr_shows_no_key_material() -> None:
    text = repr(KEYRING)
    for key in (*KEYRING.keks.values(), KEYRING.index_key, KEYRING.pseudonym_key):
        assert base64.b64encode(key).decode() not in text
        assert key.hex() not in text


def test_local_key_file_is_created_0600_and_reloads(tmp_path: Path) -> None:
    file = LocalKeyFile(tmp_path / "keys" / "keyring.json")
    created = file.create()
    assert stat.S_IMODE(os.stat(file.path).st_mode) == 0o600
    assert file.load().keks == created.keks
    with pytest.raises(FileExistsError):
        file.create()


def test_local_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    file = LocalKeyFile(tmp_path / "keyring.json")
    file.create()
    os.chmod(file.path, 0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        file.load()


def test_missing_or_corrupt_key_file_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="memberguard init"):
        LocalKeyFile(tmp_path / "none.json").load()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    os.chmod(bad, 0o600)
    with pytest.raises(KeyringError, match="not a valid keyring"):
        LocalKeyFile(bad).load()


def test_env_keyring_round_trips_and_reports_problems() -> None:
    encoded = EnvKeyring.encode(KEYRING)
    assert EnvKeyring("MG_KEYS", {"MG_KEYS": encoded}).load().keks == KEYRING.keks
    with pytest.raises(KeyringError, match="is not set"):
        EnvKeyring("MG_KEYS", {}).load()
    with pytest.raises(KeyringError, match="not valid base64"):
        EnvKeyring("MG_KEYS", {"MG_KEYS": "%%%"}).load()


def test_saving_a_rotated_keyring_keeps_every_version(tmp_path: Path) -> None:
    file = LocalKeyFile(tmp_path / "keyring.json")
    rotated = file.create().with_new_kek()
    file.save(rotated)
    assert sorted(file.load().keks) == [1, 2]
    assert stat.S_IMODE(os.stat(file.path).st_mode) == 0o600
