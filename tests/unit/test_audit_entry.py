"""Canonical entry bytes and the hash definitions (DESIGN: Audit log)."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.entry import (
    ZERO_HASH,
    NonCanonicalEntry,
    canonical_bytes,
    chain_hash,
    leaf_hash,
    parse_entry,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_canonical_bytes_round_trip_through_parse(entry: dict) -> None:
    raw = canonical_bytes(entry)
    assert parse_entry(raw) == entry
    assert canonical_bytes(parse_entry(raw)) == raw


def test_canonical_form_is_sorted_compact_utf8() -> None:
    assert canonical_bytes({"b": 1, "a": "张"}) == '{"a":"张","b":1}'.encode()


def test_floats_are_refused_when_writing_and_reading() -> None:
    with pytest.raises(NonCanonicalEntry, match="floats"):
        canonical_bytes({"at": 1.5})
    with pytest.raises(NonCanonicalEntry):
        parse_entry(b'{"at":1.5}')


@pytest.mark.parametrize(
    "raw", [b'{"b":1,"a":2}', b'{"a": 2}', b'{"a":"\\u5f20"}', b"[1]", b"\xff", b'{"a":1}\n']
)
def test_non_canonical_bytes_are_rejected(raw: bytes) -> None:
    with pytest.raises(NonCanonicalEntry):
        parse_entry(raw)


def test_hashes_follow_the_design() -> None:
    raw = canonical_bytes({"seq": 1})
    leaf = leaf_hash(raw)
    assert leaf == hashlib.sha256(b"\x00" + raw).digest()
    assert chain_hash(ZERO_HASH, leaf) == hashlib.sha256(b"\x02" + bytes(32) + leaf).digest()


def test_rfc6962_empty_leaf_hash() -> None:
    # RFC 6962 test vector: the leaf hash of the empty entry.
    assert (
        leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


def test_canonical_bytes_match_python_json_for_plain_objects() -> None:
    entry = {"seq": 3, "members": ["a", "b"], "fields": {"phone": "masked"}, "request_id": None}
    assert (
        canonical_bytes(entry) == json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    )
