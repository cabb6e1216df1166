"""canonical_bytes's fast path gives exactly the definition's bytes, or its error."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import audit.entry
from audit.entry import _canonical_slowly, canonical_bytes

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**80)
    | st.floats(allow_nan=True)
    | st.text()
    | st.sampled_from([datetime.date(2026, 1, 1), b"bytes", "\ud800", "é", "\u2028", "/"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.dictionaries(st.integers(), inner, max_size=2)
    ),
    max_leaves=20,
)


def outcome(encode: Any, entry: dict[str, Any]) -> bytes | tuple[str, str]:
    try:
        return encode(entry)
    except Exception as exc:  # the same error, type and text, is part of the contract
        return (type(exc).__name__, str(exc))


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(st.text(max_size=8), values, max_size=6))
def test_fast_path_matches_the_definition(entry: dict[str, Any]) -> None:
    assert outcome(canonical_bytes, entry) == outcome(_canonical_slowly, entry)


def test_an_audit_entry_shape_takes_the_fast_path_with_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = {
        "v": 1,
        "seq": 42,
        "at": 1_795_000_000_000_000,
        "action": "member.read",
        "actor": "01JCLIENT",
        "members": ["01JMEMBER"],
        "member_prev": {"01JMEMBER": 7},
        "fields": {"name": "masked", "phone": "masked"},
        "detail": {"by": "phone", "matched": 1},
        "request_id": None,
    }
    expected = _canonical_slowly(entry)

    def not_taken(_entry: dict[str, Any]) -> bytes:
        raise AssertionError("the entry was left to the definition")

    monkeypatch.setattr(audit.entry, "_canonical_slowly", not_taken)
    assert canonical_bytes(entry) == expected


class _SkewedEncoder:
    """A msgspec encoder that disagrees with the definition (as a future release might)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def encode(self, value: Any) -> bytes:
        return self.real.encode(value).replace(b":", b": ")


def test_the_installed_msgspec_agrees_with_the_definition_so_the_fast_path_is_on() -> None:
    assert audit.entry._agrees_with_definition(audit.entry._ENCODER)
    assert audit.entry._FAST_PATH


def test_an_encoder_that_disagrees_anywhere_fails_the_probe() -> None:
    assert not audit.entry._agrees_with_definition(_SkewedEncoder(audit.entry._ENCODER))

    class Ascii:  # escapes non-ASCII, as json.dumps does by default
        def encode(self, value: Any) -> bytes:
            return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()

    assert not audit.entry._agrees_with_definition(Ascii())


@pytest.fixture
def skewed_msgspec(monkeypatch: pytest.MonkeyPatch) -> None:
    """A msgspec that encodes differently, as the import-time probe finds it."""
    skewed = _SkewedEncoder(audit.entry._ENCODER)
    monkeypatch.setattr(audit.entry, "_ENCODER", skewed)
    monkeypatch.setattr(audit.entry, "_FAST_PATH", audit.entry._agrees_with_definition(skewed))


@pytest.mark.usefixtures("skewed_msgspec")
def test_with_a_disagreeing_msgspec_entries_are_written_and_read_by_the_definition() -> None:
    entry = {"v": 1, "seq": 3, "action": "member.read", "members": ["m"]}
    raw = canonical_bytes(entry)
    assert raw == _canonical_slowly(entry)
    assert audit.entry.parse_entry(raw) == entry
    assert audit.entry.parse_entries([raw, raw]) is None  # the batch defers to parse_entry


@pytest.mark.usefixtures("skewed_msgspec")
@pytest.mark.parametrize("raw", [b'{"seq": 3}', b'{"seq": 3, "v": 1}', b'{"v":1,"seq":3}'])
def test_with_a_disagreeing_msgspec_non_canonical_bytes_are_still_refused(raw: bytes) -> None:
    with pytest.raises(audit.entry.NonCanonicalEntry):
        audit.entry.parse_entry(raw)


def test_bytes_msgspec_re_encodes_differently_go_to_the_definition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Even with the fast path on, msgspec disagreeing with stored bytes is not the verdict."""
    raw = _canonical_slowly({"v": 1, "seq": 3, "action": "member.read", "members": ["m"]})
    monkeypatch.setattr(audit.entry, "_ENCODER", _SkewedEncoder(audit.entry._ENCODER))
    assert audit.entry.parse_entry(raw)["seq"] == 3
