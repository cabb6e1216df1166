"""Envelope encryption with AES-256-GCM, from ``cryptography``'s primitives only.

- Each member has a random 256-bit data key, stored wrapped by a KEK with
  AAD = "member id | KEK version": a wrapped key cannot be moved to another
  member or relabelled with another KEK version.
- Each field value is encrypted with the member's data key under a fresh
  96-bit nonce with AAD = "member id | field name": a ciphertext cannot be
  swapped between members or fields.
- Stored blobs are ``format version (1 byte) | nonce (12) | ciphertext+tag``
  (``seal``, ``unseal``): the one sealed format, which ``feed.webhooks`` uses
  too for what it stores encrypted.

Any tampering, swap or wrong key fails with ``DecryptionFailed``, which says
nothing about the data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.keys import Keyring

FORMAT_V1 = b"\x01"
NONCE_BYTES = 12
_MIN_BLOB = 1 + NONCE_BYTES + 16


class DecryptionFailed(Exception):
    """A ciphertext did not authenticate: wrong key, wrong member/field, or tampered."""


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """``plaintext`` under ``key`` (AES-256-GCM) with a fresh random nonce, bound to ``aad``."""
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_V1 + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """What ``seal`` sealed, or ``DecryptionFailed`` (wrong key or AAD, tampered, unknown
    format)."""
    return unseal_with(AESGCM(key), blob, aad)


def unseal_with(cipher: AESGCM, blob: bytes, aad: bytes) -> bytes:
    """``unseal`` with a cipher built once for many blobs under one key."""
    if len(blob) < _MIN_BLOB or blob[:1] != FORMAT_V1:
        raise DecryptionFailed("unknown ciphertext format")
    try:
        return cipher.decrypt(blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], aad)
    except InvalidTag:
        raise DecryptionFailed("ciphertext did not authenticate") from None


# What ``encrypt_value``'s json.dumps(ensure_ascii=False) writes for a string
# with nothing to escape, and for an integer. Such plaintexts decode without
# the JSON parser, to exactly what json.loads would return; anything else
# (escapes, floats, lists, ...) goes through json.loads.
_PLAIN_STRING = re.compile(rb'"[^"\\\x00-\x1f]*"')
_PLAIN_INTEGER = re.compile(rb"-?(?:0|[1-9][0-9]*)")


def _decode_value(plaintext: bytes) -> str | int:
    if _PLAIN_STRING.fullmatch(plaintext):
        # json.loads decodes UTF-8 with "surrogatepass" too.
        return plaintext[1:-1].decode("utf-8", "surrogatepass")
    if _PLAIN_INTEGER.fullmatch(plaintext):
        return int(plaintext)
    value = json.loads(plaintext)
    if not isinstance(value, str | int):
        raise DecryptionFailed("decrypted value has an unexpected type")
    return value


_DATA_KEY_AAD = b"memberguard/data-key/v1\x00"
_FIELD_AAD = b"memberguard/field/v1\x00"


def _data_key_aad(member_id: str, kek_version: int) -> bytes:
    return _DATA_KEY_AAD + member_id.encode() + b"\x00" + str(kek_version).encode()


def _field_aad(member_id: str, field_name: str) -> bytes:
    return _FIELD_AAD + member_id.encode() + b"\x00" + field_name.encode()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_data_key(keyring: Keyring, member_id: str, data_key: bytes) -> tuple[int, bytes]:
    version = keyring.active_version
    return version, seal(keyring.kek(version), data_key, _data_key_aad(member_id, version))


def unwrap_data_key(keyring: Keyring, member_id: str, kek_version: int, wrapped: bytes) -> bytes:
    return unseal_with(
        keyring.kek_cipher(kek_version), wrapped, _data_key_aad(member_id, kek_version)
    )


def encrypt_value(data_key: bytes, member_id: str, field_name: str, value: str | int) -> bytes:
    # JSON keeps the type (string or integer) through the round trip.
    plaintext = json.dumps(value, ensure_ascii=False).encode()
    return seal(data_key, plaintext, _field_aad(member_id, field_name))


def decrypt_value(data_key: bytes, member_id: str, field_name: str, blob: bytes) -> str | int:
    return _decode_value(unseal(data_key, blob, _field_aad(member_id, field_name)))


def open_fields(
    keyring: Keyring,
    member_id: str,
    kek_version: int,
    wrapped_key: bytes,
    blobs: Mapping[str, bytes],
) -> dict[str, str | int]:
    """Unwrap one member's data key and decrypt their fields: the bulk form of
    ``unwrap_data_key`` + ``decrypt_value``, with the same checks and results.

    The data key's cipher is built once for all of the member's fields and the
    KEK's once per keyring, instead of once per value: at export rates the
    key schedule cost as much as the decryption.
    """
    data_key = unwrap_data_key(keyring, member_id, kek_version, wrapped_key)
    cipher = AESGCM(data_key)
    prefix = _FIELD_AAD + member_id.encode() + b"\x00"  # + field name: _field_aad
    return {
        name: _decode_value(unseal_with(cipher, blob, prefix + name.encode()))
        for name, blob in blobs.items()
    }


def blind_index(keyring: Keyring, field_name: str, normalised: str) -> str:
    """HMAC-SHA256 of the normalised value under the field's own index key."""
    key = keyring.index_key_for(field_name)
    return hmac.new(key, normalised.encode(), hashlib.sha256).hexdigest()
