"""Opaque random identifiers for members and clients.

24 characters of lower-case base32 (120 random bits). Lower case only, so that
they compare the same under every database collation, including MySQL's
case-insensitive defaults; random, so that they reveal nothing about the
member or the order of registration.
"""

from __future__ import annotations

import base64
import re
import secrets

ID_LENGTH = 24
ID_PATTERN = re.compile(r"[a-z2-7]{24}")


def new_id() -> str:
    return base64.b32encode(secrets.token_bytes(15)).decode("ascii").lower()


def is_valid_id(value: str) -> bool:
    # fullmatch, not match with "$": "$" also matches before a trailing newline,
    # and "<id>\n" is not an id (it would be recorded under a name no member has).
    return ID_PATTERN.fullmatch(value) is not None
