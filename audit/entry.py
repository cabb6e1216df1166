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

import msgspec

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
    """The entry's canonical bytes; NonCanonicalEntry if it holds anything JSON-canonical can't.

    The definition is ``_canonical_slowly`` (type check, then the json module).
    Appends take a path with the same result in two C calls: msgspec's
    sorted-key encoding, which is byte for byte the json module's for every
    float-free value (``parse_entry`` relies on the same fact, and
    tests/unit/test_verify_speedups.py checks it), decoded back with floats
    refused and compared with the entry. Anything the type check would refuse
    fails that comparison or the decode (a float, a tuple, a non-string key,
    a datetime or bytes, which msgspec would encode as text) and is left to
    the definition, as is anything msgspec refuses to encode: so the bytes,
    and the errors, are always the definition's.
    """
    if not _FAST_PATH:
        return _canonical_slowly(entry)
    try:
        raw = _ENCODER.encode(entry)
        if _DECODER.decode(raw) == entry:
            return raw
    except (msgspec.MsgspecError, ValueError, TypeError, OverflowError, RecursionError):
        pass
    return _canonical_slowly(entry)


def _canonical_slowly(entry: dict[str, Any]) -> bytes:
    _check(entry, "entry")
    return json.dumps(
        entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def parse_entry(raw: bytes) -> dict[str, Any]:
    r"""Decode stored entry bytes, insisting that they are canonical.

    Exactly the bytes ``canonical_bytes`` writes are accepted, checked by
    decoding, re-encoding and comparing, as ``_parse_slowly`` does with the
    json module. msgspec does both halves in C: its sorted-key encoder emits
    byte for byte what ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` emits for every float-free JSON value (the same
    escapes, keys in code-point order, UTF-8 as is), which
    tests/unit/test_verify_speedups.py checks against the json module. So
    anything not canonical differs from its re-encoding: whitespace, key
    order, escapes such as ``\u00e9`` or ``\/``, ``-0``, and duplicate keys
    (the decoded object keeps one of them, so the re-encoding is shorter).
    Floats (``1.0``, ``1e3``) never get that far: the float hook refuses them.

    Where msgspec's limits are not the json module's, the json module decides:
    for anything msgspec refuses (it counts a minus sign against the integer
    digit limit, for one), and for nesting deep enough to meet the recursion
    limit. Both are rare and never in an entry the log wrote. And msgspec
    never has the last word: bytes whose re-encoding differs are handed to the
    definition (``_parse_slowly``) before they are called non-canonical, so
    only the json module's definition can fail an entry. Error texts never
    quote the bytes.
    """
    if not _FAST_PATH:
        return _parse_slowly(raw)
    try:
        entry = _DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return _parse_slowly(raw)
    if len(raw) >= 2 * _DEEP and raw.count(b"[") + raw.count(b"{") >= _DEEP:
        return _parse_slowly(raw)
    if type(entry) is not dict:
        raise NonCanonicalEntry("not a JSON object")
    try:
        canonical = _ENCODER.encode(entry)
    except (msgspec.EncodeError, UnicodeEncodeError, ValueError):
        return _parse_slowly(raw)
    if canonical != raw:
        # msgspec is the fast path, never the judge: bytes it does not
        # reproduce are declared non-canonical only if the definition agrees,
        # so a msgspec release that encodes some value differently can slow
        # verification down but never fail a valid log.
        return _parse_slowly(raw)
    return entry


def parse_entries(raws: list[bytes]) -> list[dict[str, Any]] | None:
    """``[parse_entry(raw) for raw in raws]`` when every one is canonical; None when
    one is not, and for the rare entry that ``parse_entry`` leaves to the json
    module. After None, call ``parse_entry`` on each: it says which and why.

    Cheaper than one call each: the re-encoding is one call for them all, and
    ``encode([e1, e2, ...]) == b"[" + b",".join(raws) + b"]"`` holds exactly when
    ``encode(ei) == rawi`` for each i. Each ``ei`` was decoded from ``rawi`` alone
    and is an object, so a canonical ``encode(ei)`` and the bytes ``rawi`` it came
    from can only differ at a position the comparison sees: one cannot be a
    proper prefix of the other (an object ends at its closing brace, and
    anything msgspec lets follow it is whitespace, never the separating comma).
    """
    if not _FAST_PATH:
        return None
    try:
        entries = [_DECODER.decode(raw) for raw in raws]
        for entry in entries:
            if type(entry) is not dict:
                return None
        canonical = _ENCODER.encode(entries)
    except (msgspec.MsgspecError, UnicodeError, ValueError, RecursionError):
        return None  # NonCanonicalEntry (a float) is a ValueError
    if canonical != b"[" + b",".join(raws) + b"]":
        return None
    if max(map(len, raws), default=0) >= 2 * _DEEP:
        for raw in raws:
            if len(raw) >= 2 * _DEEP and raw.count(b"[") + raw.count(b"{") >= _DEEP:
                return None
    return entries


def _parse_slowly(raw: bytes) -> dict[str, Any]:
    """The canonical-form check with the json module: the definition, and the
    fallback for what msgspec cannot decide the same way."""
    try:
        entry = json.loads(
            raw.decode("utf-8"), parse_float=_reject_float, parse_constant=_reject_float
        )
    except NonCanonicalEntry:
        raise
    except (ValueError, RecursionError) as exc:  # UTF-8, JSON syntax, integer too long
        raise NonCanonicalEntry(f"not UTF-8 JSON ({exc.__class__.__name__})") from None
    if not isinstance(entry, dict):
        raise NonCanonicalEntry("not a JSON object")
    try:
        canonical = _canonical_slowly(entry)
    except NonCanonicalEntry:
        raise
    except (ValueError, RecursionError):  # a lone surrogate has no UTF-8 bytes
        raise NonCanonicalEntry("bytes are not in canonical form") from None
    if canonical != raw:
        raise NonCanonicalEntry("bytes are not in canonical form")
    return entry


def _reject_float(text: str) -> float:
    raise NonCanonicalEntry("floats are not allowed in audit entries")


# Stateless and reentrant, built once: per entry, decoding and re-encoding are
# then one C call each.
_DECODER = msgspec.json.Decoder(float_hook=_reject_float)
_ENCODER = msgspec.json.Encoder(order="sorted")
# Nesting this deep (brackets counted, an upper bound) goes to the json module,
# whose recursion limit (about 990 levels) is lower than msgspec's.
_DEEP = 800

# What the fast path must encode exactly as the definition does: every kind
# of value an entry holds, the escapes JSON allows choices in, keys whose
# code-point order differs from their UTF-16 order, the int64 bounds.
_PROBES: tuple[dict[str, Any], ...] = (
    {"v": 1, "seq": 9_223_372_036_854_775_807, "at": -9_223_372_036_854_775_808, "n": 0},
    {"null": None, "yes": True, "no": False, "empty": {}, "none": [], "nested": [[{"a": [1]}]]},
    {"s": '"\\/\b\f\n\r\t\x00\x1f\x7f\u2028\u2029é张三😀', "\ufb01": 1, "😀": 2, "z": 3},
    {"members": ["a" * 24, "b"], "member_prev": {"a" * 24: 7}, "fields": {"phone": "masked"}},
)


def _agrees_with_definition(encoder: Any) -> bool:
    """Does ``encoder`` write exactly the definition's bytes for every probe?"""
    try:
        return all(encoder.encode(probe) == _canonical_slowly(probe) for probe in _PROBES)
    except Exception:  # an encoder that fails a probe is not the definition
        return False


# Checked once, at import, against the msgspec actually installed: if a
# release encodes anything differently, every entry takes the definition's
# path (slower, never wrong), so msgspec can never write or accept an entry
# the definition would not.
_FAST_PATH = _agrees_with_definition(_ENCODER)


def leaf_hash(raw: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + raw).digest()


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(CHAIN_PREFIX + previous + leaf).digest()
