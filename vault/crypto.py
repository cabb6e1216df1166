"""Envelope encryption with AES-256-GCM, from ``cryptography``'s primitives only.

- Each member has a random 256-bit data key, stored wrapped by a KEK with
  AAD = "member id | KEK version": a wrapped key cannot be moved to another
  member or relabelled with another KEK version.
- Each field value is encrypted with the member's data key under a fresh
  96-bit nonce with AAD = "member id | field name": a ciphertext cannot be
  swapped between members or fields.
- Stored blobs are ``format version (1 byte) | nonce (12) | ciphertext+tag``.

Any tampering, swap or wrong key fails with ``DecryptionFailed``, which says
nothing about the data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.keys import Keyring

FORMAT_V1 = b"\x01"
NONCE_BYTES = 12
_MIN_BLOB = 1 + NONCE_BYTES + 16


class DecryptionFailed(Exception):
    """A ciphertext did not authenticate: wrong key, wrong member/field, or tampered."""


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_V1 + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < _MIN_BLOB or blob[:1] != FORMAT_V1:
        raise DecryptionFailed("unknown ciphertext format")
    try:
        return AESGCM(key).decrypt(blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], aad)
    except InvalidTag:
        raise DecryptionFailed("ciphertext did not authenticate") from None


def _data_key_aad(member_id: str, kek_version: int) -> bytes:
    return b"memberguard/data-key/v1\x00" + member_id.encode() + b"\x00" + str(kek_version).encode()


def _field_aad(member_id: str, field_name: str) -> bytes:
    return b"memberguard/field/v1\x00" + member_id.encode() + b"\x00" + field_name.encode()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_data_key(keyring: Keyring, member_id: str, data_key: bytes) -> tuple[int, bytes]:
    version = keyring.active_version
    return version, _seal(keyring.kek(version), data_key, _data_key_aad(member_id, version))


def unwrap_data_key(keyring: Keyring, member_id: str, kek_version: int, wrapped: bytes) -> bytes:
    return _open(keyring.kek(kek_version), wrapped, _data_key_aad(member_id, kek_version))


def encrypt_value(data_key: bytes, member_id: str, field_name: str, value: str | int) -> bytes:
    # JSON keeps the type (string or integer) through the round trip.
    plaintext = json.dumps(value, ensure_ascii=False).encode()
    return _seal(data_key, plaintext, _field_aad(member_id, field_name))


def decrypt_value(data_key: bytes, member_id: str, field_name: str, blob: bytes) -> str | int:
    plaintext = _open(data_key, blob, _field_aad(member_id, field_name))
    value = json.loads(plaintext)
    if not isinstance(value, str | int):
        raise DecryptionFailed("decrypted value has an unexpected type")
    return value


def blind_index(keyring: Keyring, field_name: str, normalised: str) -> str:
    """HMAC-SHA256 of the normalised value under the field's own index key."""
    key = keyring.index_key_for(field_name)
    return hmac.new(key, normalised.encode(), hashlib.sha256).hexdigest()
