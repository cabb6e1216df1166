"""Canonical entry bytes and the hashes over them. Pure functions.

Canonical form: JSON with sorted keys, no insignificant whitespace, UTF-8 (not
ASCII-escaped), integers only (no floats anywhere), times as integer
microseconds since the epoch in UTC. The stored bytes are the hashed bytes;
verification re-parses them and checks that re-encoding gives the same bytes,
so a non-canonical entry is detected even if its hash was recomputed.

    leaf_hash_n  = SHA-256(0x00 || entry_n)                      (RFC 6962 leaf)
    chain_hash_n = SHA-256(0x02 || chain_hash_{n-1} || leaf_hash_n),  chain_hash_0 = 0^32
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

ENTRY_VERSION = 1
ZERO_HASH = bytes(32)
LEAF_PREFIX = b"\x00"
CHAIN_PREFIX = b"\x02"


class NonCanonicalEntry(ValueError):
    pass


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        raise NonCanonicalEntry(f"{path}: floats are not allowed in audit entries")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NonCanonicalEntry(f"{path}: keys must be strings")
            _check(item, f"{path}.{key}")
        return
    raise NonCanonicalEntry(f"{path}: {type(value).__name__} is not allowed in audit entries")


def canonical_bytes(entry: dict[str, Any]) -> bytes:
    _check(entry, "entry")
    return json.dumps(
        entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def parse_entry(raw: bytes) -> dict[str, Any]:
    """Decode stored entry bytes, insisting that they are canonical."""
    try:
        entry = json.loads(raw.decode("utf-8"), parse_float=_reject_float)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise NonCanonicalEntry(f"not UTF-8 JSON ({exc.__class__.__name__})") from None
    if not isinstance(entry, dict):
        raise NonCanonicalEntry("not a JSON object")
    if canonical_bytes(entry) != raw:
        raise NonCanonicalEntry("bytes are not in canonical form")
    return entry


def _reject_float(text: str) -> float:
    raise NonCanonicalEntry("floats are not allowed in audit entries")


def leaf_hash(raw: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + raw).digest()


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(CHAIN_PREFIX + previous + leaf).digest()
