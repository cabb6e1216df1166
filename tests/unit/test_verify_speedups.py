"""The fast verification paths against the straightforward ones they replaced.

``parse_entry`` checks canonical form with msgspec (decode, sorted re-encode,
compare) instead of ``json.loads`` + ``json.dumps``; ``LogVerifier.add`` and
``Frontier.push`` skip allocations. Each is held here to a reference written
the plain way, on random and adversarial input: the fast path must accept
exactly what the reference accepts, and return the same thing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from audit.entry import (
    ZERO_HASH,
    NonCanonicalEntry,
    canonical_bytes,
    chain_hash,
    leaf_hash,
    parse_entries,
    parse_entry,
)
from audit.merkle import Frontier, root_from_leaves
from audit.verify import LogVerifier, summarise_block

# -- the references ---------------------------------------------------------------


def _no_float(text: str) -> Any:
    raise ValueError("floats are not allowed")


def reference_parse(raw: bytes) -> dict[str, Any] | None:
    """The canonical check as it was (json.loads + json.dumps); None when rejected.

    The old code let two inputs escape as other errors (a lone surrogate
    escape and an integer too long to convert): no canonical bytes exist for
    either, so anything raised counts as a rejection here."""
    try:
        entry = json.loads(raw.decode("utf-8"), parse_float=_no_float, parse_constant=_no_float)
        if not isinstance(entry, dict):
            return None
        again = json.dumps(
            entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (ValueError, RecursionError):  # JSON, Unicode and int-size errors are ValueErrors
        return None
    return entry if again == raw else None


def fast_parse(raw: bytes) -> dict[str, Any] | None:
    """parse_entry, with a rejection as None; any other exception fails the test."""
    try:
        return parse_entry(raw)
    except NonCanonicalEntry:
        return None


def assert_same_verdict(raw: bytes) -> dict[str, Any] | None:
    expected = reference_parse(raw)
    got = fast_parse(raw)
    assert (got is None) == (expected is None), (raw, expected, got)
    # Equal values that re-encode to the same bytes: the same types too (1 vs true).
    assert got == expected
    return got


# -- generators -------------------------------------------------------------------

# Values canonical_bytes can write: no floats, any text (no lone surrogates),
# integers of any size it can print.
big_ints = st.integers(min_value=1, max_value=4300).map(lambda n: int("7" * n))
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | big_ints
    | big_ints.map(lambda n: -n)
    | st.text()
    | st.text(st.characters(max_codepoint=0x7F))
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)
entries = st.dictionaries(st.text(), json_values, max_size=8)


# JSON text written by hand: mostly canonical, with every kind of deviation now
# and then. (sampled_from draws about evenly; one_of would not.)
def rarely(strategy: st.SearchStrategy[Any], usual: Any, odds: int = 8) -> st.SearchStrategy[Any]:
    """``usual``, or about one time in ``odds + 1`` something drawn from ``strategy``."""
    return sampled_rarely(strategy, st.just(usual), odds)


def sampled_rarely(
    odd: st.SearchStrategy[Any], usual: st.SearchStrategy[Any], odds: int = 8
) -> st.SearchStrategy[Any]:
    return st.sampled_from([False] * odds + [True]).flatmap(lambda x: odd if x else usual)


ws = rarely(st.sampled_from([" ", "\n", "\t", "\r", "  "]), "")
odd_numbers = st.one_of(
    st.sampled_from(
        [
            "-0",
            "00",
            "01",
            "-01",
            "-",
            "1.0",
            "1.",
            ".5",
            "0.5",
            "1e3",
            "1E3",
            "1e+3",
            "1e-3",
            "-0.0",
            "NaN",
            "-NaN",
            "Infinity",
            "-Infinity",
            "+1",
            "0x10",
            "1_000",
            "9" * 4300,
            "9" * 4301,
            "-" + "9" * 4300,
            "18446744073709551616",
            "-9223372036854775809",
        ]
    ),
    st.tuples(st.integers(), st.sampled_from([".0", "e0", "E1", ".25", "e-1"])).map(
        lambda t: f"{t[0]}{t[1]}"
    ),
)
number_text = sampled_rarely(odd_numbers, st.integers().map(str), 4)


def _escaped(char: str, *, upper: bool = False) -> str:
    code = ord(char)
    if code >= 0x10000:  # a surrogate pair
        code -= 0x10000
        units = [0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)]
    else:
        units = [code]
    text = "".join(f"\\u{unit:04x}" for unit in units)
    return text.upper().replace("\\U", "\\u") if upper else text


canonical_char = st.characters().map(lambda c: json.dumps(c, ensure_ascii=False)[1:-1])
odd_char = st.one_of(
    st.characters(max_codepoint=0x7F).map(lambda c: json.dumps(c)[1:-1]),
    # a \uXXXX escape, in either case, of a character that may need none
    st.characters().map(_escaped),
    st.characters().map(lambda c: _escaped(c, upper=True)),
    # raw characters JSON does not allow unescaped, and odd escapes
    st.characters(max_codepoint=0x1F),
    st.sampled_from(
        [
            '\\"',
            "\\\\",
            "\\/",
            "\\b",
            "\\f",
            "\\n",
            "\\r",
            "\\t",
            "\\u0008",
            "\\u000a",
            "\\u001f",
            "\\u007f",
            "\x7f",
            "\u2028",
            "\\u2028",
            "\\ud800",
            "\\udc00",
            "\\ud83d\\ude00",
            "\\ude00\\ud83d",
            "\\u00e9",
            "\\u00E9",
            "e\u0301",
            "\ufeff",
            "\\x41",
            "\\'",
            "\\",
            "\\u12",
            "\\U0001F600",
        ]
    ),
)
char_forms = sampled_rarely(odd_char, canonical_char, 16)
string_text = st.lists(char_forms, max_size=6).map(lambda parts: '"' + "".join(parts) + '"')
key_text = sampled_rarely(
    string_text, st.text(max_size=5).map(lambda k: json.dumps(k, ensure_ascii=False)), 3
)


def _key_order(text: str) -> tuple[int, str]:
    try:
        return 0, json.loads(text)
    except ValueError:
        return 1, text


@st.composite
def json_text(draw: st.DrawFn, depth: int = 0) -> str:
    kinds = ["scalar", "string", "number"] + (["array", "object", "object"] if depth < 3 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "scalar":
        return draw(
            rarely(st.sampled_from(["nul", "True", "None", "tru"]), "null")
            | st.sampled_from(["true", "false"])
        )
    if kind == "string":
        return draw(string_text)
    if kind == "number":
        return draw(number_text)
    if kind == "array":
        items = draw(st.lists(json_text(depth + 1), max_size=3))
        return "[" + draw(ws) + ("," + draw(ws)).join(items) + draw(ws) + "]"
    return draw(json_object(depth + 1))


@st.composite
def json_object(draw: st.DrawFn, depth: int = 0) -> str:
    pairs = draw(st.lists(st.tuples(key_text, json_text(depth)), max_size=4))
    order = draw(rarely(st.sampled_from(["as drawn", "reversed"]), "sorted"))
    if order == "sorted":
        pairs.sort(key=lambda pair: _key_order(pair[0]))
    elif order == "reversed":
        pairs.sort(key=lambda pair: _key_order(pair[0]), reverse=True)
    if pairs and draw(rarely(st.just(True), False)):  # a duplicate key, same or other value
        at = draw(st.integers(0, len(pairs) - 1))
        value = draw(st.sampled_from([pairs[at][1], "1", '"x"']))
        pairs.insert(at + draw(st.integers(0, 1)), (pairs[at][0], value))
    colon = draw(rarely(st.sampled_from([" :", ": ", ":\n"]), ":"))
    comma = draw(rarely(st.sampled_from([", ", " ,", ",\n"]), ","))
    body = comma.join(f"{key}{colon}{value}" for key, value in pairs)
    return "{" + draw(ws) + body + draw(ws) + "}"


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    top = draw(json_object() if draw(rarely(st.just(False), True)) else json_text())
    text = draw(ws) + top + draw(ws)
    encoding = draw(rarely(st.sampled_from(["utf-8-sig", "utf-16", "latin-1"]), "utf-8"))
    data = text.encode(encoding, errors="surrogatepass" if encoding == "utf-8" else "replace")
    if data and draw(rarely(st.just(True), False)):  # an invalid UTF-8 sequence somewhere
        at = draw(st.integers(0, len(data) - 1))
        data = (
            data[:at] + draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80"])) + data[at:]
        )
    return data


# -- parse_entry: the canonical-form check ------------------------------------------


@settings(max_examples=250)
@given(entries)
def test_every_canonical_entry_is_accepted_and_decoded_as_written(entry: dict[str, Any]) -> None:
    raw = canonical_bytes(entry)
    assert assert_same_verdict(raw) == entry


@settings(max_examples=400)
@given(json_values)
def test_the_sorted_msgspec_encoding_is_byte_for_byte_the_canonical_json(value: Any) -> None:
    # The premise of the fast check: for every float-free JSON value the two
    # encoders agree, so "re-encodes to itself" means the same thing for both.
    # Decoding gives the value back, or refuses (a negative integer of 4,300
    # digits, say) and parse_entry leaves the verdict to the json module.
    reference = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert msgspec.json.encode(value, order="sorted") == reference.encode("utf-8")
    try:
        decoded = msgspec.json.decode(reference.encode("utf-8"))
    except msgspec.ValidationError:
        return
    assert decoded == value


def test_every_character_encodes_and_sorts_as_json_dumps_does() -> None:
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(chars), 16384):
        chunk = chars[start : start + 16384]
        value = {c: c for c in reversed(chunk)}  # keys to sort, across the BMP edge
        value.update({"": "".join(chunk), chunk[0] + chunk[-1]: [chunk[-1], chunk[0]]})
        raw = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert msgspec.json.encode(value, order="sorted") == raw.encode("utf-8")
        assert parse_entry(raw.encode("utf-8")) == value


@settings(max_examples=700)
@given(documents())
def test_hand_written_json_gets_the_same_verdict_as_the_reference(raw: bytes) -> None:
    assert_same_verdict(raw)


@settings(max_examples=300)
@given(entries, st.data())
def test_every_small_edit_of_canonical_bytes_gets_the_same_verdict(
    entry: dict[str, Any], data: st.DataObject
) -> None:
    raw = canonical_bytes(entry)
    at = data.draw(st.integers(0, len(raw)), label="offset")
    edit = data.draw(st.sampled_from(["insert", "delete", "replace", "flip"]), label="edit")
    piece = data.draw(
        st.sampled_from(
            [
                *(b" ", b"\n", b",", b":", b".0", b"e1", b"-", b"0", b"\\", b'"', b"\\/"),
                *(b"}", b"]", b"\\u00e9", b"\xc3\xa9", b"\xff", b"\x00", b'"a":1,', b',"a":1'),
            ]
        ),
        label="piece",
    )
    if edit == "insert":
        edited = raw[:at] + piece + raw[at:]
    elif edit == "delete":
        edited = raw[:at] + raw[at + 1 :]
    elif edit == "replace":
        edited = raw[:at] + piece + raw[at + 1 :]
    else:
        assume(at < len(raw))
        mask = data.draw(st.integers(1, 255), label="xor")
        edited = raw[:at] + bytes([raw[at] ^ mask]) + raw[at + 1 :]
    assert_same_verdict(edited)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_get_the_same_verdict(raw: bytes) -> None:
    assert_same_verdict(raw)


ADVERSARIAL = {
    "duplicate-key-same-value": b'{"a":1,"a":1}',
    "duplicate-key-other-value": b'{"a":1,"a":2}',
    "duplicate-key-in-nested": b'{"a":{"b":1,"b":1}}',
    "duplicate-key-unsorted": b'{"b":1,"a":2,"b":1}',
    "duplicate-escaped-key": b'{"a":1,"\\u0061":1}',
    "escaped-e-acute": b'{"a":"\\u00e9"}',
    "escaped-e-acute-upper": b'{"a":"\\u00E9"}',
    "escaped-solidus": b'{"a":"\\/"}',
    "escaped-ascii": b'{"a":"\\u0041"}',
    "escaped-key": b'{"\\u0061":1}',
    "float": b'{"a":1.5}',
    "integral-float": b'{"a":1.0}',
    "exponent": b'{"a":1e3}',
    "exponent-upper": b'{"a":1E3}',
    "negative-zero": b'{"a":-0}',
    "negative-zero-float": b'{"a":-0.0}',
    "nan": b'{"a":NaN}',
    "infinity": b'{"a":-Infinity}',
    "leading-zero": b'{"a":01}',
    "plus-sign": b'{"a":+1}',
    "big-int": b'{"a":' + b"9" * 4300 + b"}",
    "too-big-int": b'{"a":' + b"9" * 4301 + b"}",
    "lone-high-surrogate": b'{"a":"\\ud800"}',
    "lone-low-surrogate": b'{"a":"\\udc00"}',
    "escaped-pair": b'{"a":"\\ud83d\\ude00"}',
    "encoded-surrogate": b'{"a":"\xed\xa0\x80"}',
    "overlong-utf8": b'{"a":"\xc0\xaf"}',
    "latin-1": b'{"a":"\xe9"}',
    "bom": b'\xef\xbb\xbf{"a":1}',
    "space-after-colon": b'{"a": 1}',
    "space-after-comma": b'{"a":1, "b":2}',
    "leading-space": b' {"a":1}',
    "trailing-newline": b'{"a":1}\n',
    "trailing-garbage": b'{"a":1}x',
    "two-objects": b'{"a":1}{"a":1}',
    "unsorted": b'{"b":1,"a":2}',
    "unsorted-nested": b'{"a":{"c":1,"b":2}}',
    "array": b"[1]",
    "string": b'"a"',
    "number": b"1",
    "empty": b"",
    "raw-newline-in-string": b'{"a":"\n"}',
    "raw-tab-in-string": b'{"a":"\t"}',
    "escaped-tab": b'{"a":"\\t"}',
    "unicode-escaped-tab": b'{"a":"\\u0009"}',
    "escaped-del": b'{"a":"\\u007f"}',
    "raw-del": b'{"a":"\x7f"}',
    "line-separator": b'{"a":"\xe2\x80\xa8"}',
    "escaped-line-separator": b'{"a":"\\u2028"}',
    "astral-key-order": b'{"\xef\xbf\xbd":1,"\xf0\x9f\x98\x80":2}',
    "astral-key-order-utf16": b'{"\xf0\x9f\x98\x80":2,"\xef\xbf\xbd":1}',
    "deep": b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    # Deep enough for the json module to decide, within and beyond its limit.
    "nested-850": b'{"a":' + b"[" * 850 + b"]" * 850 + b"}",
    "nested-850-spaced": b'{"a":' + b"[" * 850 + b" " + b"]" * 850 + b"}",
    "nested-2000": b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}",
    "brackets-in-a-string": b'{"a":"' + b"[" * 2000 + b'"}',
    "negative-4300-digits": b'{"a":-' + b"9" * 4300 + b"}",
    "negative-4301-digits": b'{"a":-' + b"9" * 4301 + b"}",
    "true-as-int": b'{"a":true}',
    "null": b'{"a":null}',
    "empty-object": b"{}",
    "empty-key": b'{"":1}',
}


@pytest.mark.parametrize("raw", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
def test_adversarial_bytes_get_the_same_verdict(raw: bytes) -> None:
    assert_same_verdict(raw)


@pytest.mark.parametrize(
    ("raw", "content"),
    [
        (b'{"member":"\\ud800"}', "ud800"),
        (b'{"member":' + b"9" * 5000 + b"}", "99999"),
        (b'{"member":NaN}', "member"),
        (b'{"member":[1,2.5]}', "2.5"),
    ],
    ids=["lone-surrogate", "too-long-int", "nan", "nested-float"],
)
def test_input_the_old_check_crashed_on_is_a_non_canonical_entry_quoting_nothing(
    raw: bytes, content: str
) -> None:
    with pytest.raises(NonCanonicalEntry) as caught:
        parse_entry(raw)
    assert content not in str(caught.value)
    assert "member" not in str(caught.value)


def test_a_float_is_refused_as_a_float() -> None:
    with pytest.raises(NonCanonicalEntry, match="floats are not allowed"):
        parse_entry(b'{"at":1.0}')


# -- LogVerifier.add against the straightforward version ----------------------------


class ReferenceVerifier:
    """LogVerifier.add as it was written before it was tuned: the specification."""

    def __init__(self) -> None:
        self.size = 0
        self.chain = ZERO_HASH
        self.leaf = b""
        self.leaves: list[bytes] = []
        self.last_seen: dict[str, int] = {}

    def add(self, raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
        seq = self.size + 1
        try:
            entry = parse_entry(raw)
        except NonCanonicalEntry as exc:
            return None, f"entry bytes are invalid: {exc}"
        if entry.get("seq") != seq:
            return None, f"entry bytes name seq {entry.get('seq')!r}, expected {seq}"
        members = entry.get("members")
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            return None, "entry has no member list"
        unique = list(dict.fromkeys(members))
        expected_links = {m: self.last_seen.get(m, 0) for m in unique}
        if unique and entry.get("member_prev") != expected_links:
            return None, "member back-links do not name each member's previous entry"
        if not unique and "member_prev" in entry:
            return None, "member back-links in an entry that names no member"
        self.leaf = leaf_hash(raw)
        self.chain = chain_hash(self.chain, self.leaf)
        self.leaves.append(self.leaf)
        for member in unique:
            self.last_seen[member] = seq
        self.size = seq
        return entry, None


POOL = ["m1", "m2", "m3", "m4"]
link_values = st.one_of(
    st.integers(-1, 12), st.booleans(), st.none(), st.just("1"), st.lists(st.integers(0, 2))
)
members_values = st.one_of(
    st.lists(st.sampled_from(POOL), max_size=3),
    st.lists(st.sampled_from(POOL), min_size=1, max_size=1),
    st.just("m1"),
    st.none(),
    st.just([1]),
    st.just(["m1", 1]),
    st.just({"m1": 0}),
)


@st.composite
def histories(draw: st.DrawFn) -> list[bytes]:
    """Entries with mostly right seqs and back-links, sometimes not, in every shape.

    A reference verifier follows along, so that "right" means right for the
    entries accepted so far and a history goes on past a rejected entry."""
    follow = ReferenceVerifier()
    out: list[bytes] = []
    for n in range(draw(st.integers(1, 14))):
        body: dict[str, Any] = {"v": 1, "action": "member.read", "request_id": f"r{n}"}
        body["seq"] = draw(
            rarely(st.sampled_from([0, True, "1", n + 2, follow.size]), follow.size + 1)
        )
        members = draw(sampled_rarely(members_values, st.sampled_from(POOL).map(lambda m: [m]), 3))
        if members is not None:
            body["members"] = members
        shape = draw(rarely(st.sampled_from(["none", "wrong", "extra", "missing", "{}"]), "right"))
        unique = list(dict.fromkeys(members)) if isinstance(members, list) else []
        right = {m: follow.last_seen.get(m, 0) for m in unique if isinstance(m, str)}
        if shape == "right" and (right or draw(st.booleans())):
            body["member_prev"] = right
        elif shape == "wrong" and right:
            body["member_prev"] = {**right, draw(st.sampled_from(list(right))): draw(link_values)}
        elif shape == "extra":
            body["member_prev"] = {**right, draw(st.sampled_from(POOL)): draw(link_values)}
        elif shape == "missing" and right:
            body["member_prev"] = dict(list(right.items())[1:])
        elif shape == "{}":
            body["member_prev"] = {}
        raw = canonical_bytes(body)
        if draw(rarely(st.just(True), False)):
            raw = raw.replace(b":", b": ", 1)
        out.append(raw)
        follow.add(raw)
    return out


@settings(max_examples=400)
@given(histories())
def test_the_tuned_verifier_accepts_and_rejects_exactly_as_the_reference(
    history: list[bytes],
) -> None:
    fast, reference = LogVerifier(), ReferenceVerifier()
    for raw in history:
        assert fast.add(raw) == reference.add(raw)
        assert (fast.size, fast.chain, fast.leaf) == (
            reference.size,
            reference.chain,
            reference.leaf,
        )
        assert fast.last_seen == reference.last_seen
        assert fast.frontier.root() == root_from_leaves(reference.leaves)


@example(True)
@given(st.booleans())
def test_a_one_member_entry_with_back_links_of_another_shape_is_rejected(bool_link: bool) -> None:
    base = {"v": 1, "seq": 1, "members": ["m1"]}
    for links in ({"m1": 0, "m2": 0}, {"m2": 0}, [0], None, {"m1": "0"}, {"m1": 1}):
        raw = canonical_bytes({**base, "member_prev": links})
        assert LogVerifier().add(raw) == ReferenceVerifier().add(raw)
        assert LogVerifier().add(raw)[1] is not None
    # False == 0 in Python and in the old comparison alike: accepted by both.
    raw = canonical_bytes({**base, "member_prev": {"m1": not bool_link}})
    assert LogVerifier().add(raw) == ReferenceVerifier().add(raw)


# -- Frontier.push ------------------------------------------------------------------


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=140))
def test_push_keeps_the_root_and_records_the_nodes_append_returns(leaves: list[bytes]) -> None:
    pushed, appended = Frontier(), Frontier()
    levels: list[list[bytes]] = [[]]
    expected: list[list[bytes]] = [[]]
    for n, leaf in enumerate(leaves, start=1):
        pushed.push(leaf, levels)
        for level, index, digest in appended.append(leaf):
            if level == 0:
                continue
            while len(expected) <= level:
                expected.append([])
            assert index == len(expected[level])
            expected[level].append(digest)
        assert pushed.size == appended.size == n
        assert pushed.root() == appended.root() == root_from_leaves(leaves[:n])
    assert levels == expected


def test_push_without_levels_records_nothing_and_matches_the_rfc_root() -> None:
    leaves = [hashlib.sha256(bytes([n])).digest() for n in range(37)]
    frontier = Frontier()
    for leaf in leaves:
        frontier.push(leaf)
    assert frontier.root() == root_from_leaves(leaves)


# -- parse_entries: a batch decoded at once -----------------------------------------


def one_by_one(raws: list[bytes]) -> list[dict[str, Any]] | None:
    parsed = [fast_parse(raw) for raw in raws]
    return None if any(entry is None for entry in parsed) else parsed  # type: ignore[misc]


def assert_batch_agrees(raws: list[bytes]) -> None:
    """parse_entries gives what parse_entry gives one by one, or None; None always when
    one of them is not canonical (and for the rare entry only the json module decides)."""
    batch = parse_entries(raws)
    expected = one_by_one(raws)
    if expected is None:
        assert batch is None
    else:
        assert batch is None or batch == expected


@settings(max_examples=300)
@given(st.lists(entries.map(canonical_bytes) | documents(), max_size=6))
def test_a_batch_parses_only_when_every_entry_in_it_parses(raws: list[bytes]) -> None:
    assert_batch_agrees(raws)


def test_a_batch_of_log_entries_parses_at_once() -> None:
    raws = linked_history(50)
    assert parse_entries(raws) == [parse_entry(raw) for raw in raws]


@pytest.mark.parametrize(
    "raws",
    [
        # Lines that are not entries, but join into a canonical array of three.
        [b'{"a":[1', b"2]}", b'{"x":1},{"y":2}'],
        [b'{"a":"x', b'"}', b"{}"],
        [b'{"a":1}', b'{"a":1} '],
        [b' {"a":1}', b'{"a":1}'],
        [b'{"a":1},', b'{"a":1}'],
        [b"{}", b"[]"],
        [b'{"a":1}', b'{"a":1.0}'],
        [b'{"a":1}', b'{"a":' + b"[" * 900 + b"]" * 900 + b"}"],
        [b'{"a":1}', b'{"a":-' + b"9" * 4300 + b"}"],
        [],
    ],
    ids=[
        "split-array",
        "split-string",
        "trailing-space",
        "leading-space",
        "trailing-comma",
        "not-an-object",
        "float",
        "deep",
        "long-negative-int",
        "empty",
    ],
)
def test_a_batch_that_joins_into_canonical_json_is_still_checked_line_by_line(
    raws: list[bytes],
) -> None:
    assert_batch_agrees(raws)


# -- blocks checked in workers, folded in here --------------------------------------


def block_of(history: list[bytes]) -> bytes:
    return b"".join(raw + b"\n" for raw in history)


@settings(max_examples=300)
@given(histories(), st.data())
def test_a_block_is_folded_in_exactly_when_each_of_its_entries_would_be(
    history: list[bytes], data: st.DataObject
) -> None:
    # A log that already has entries for some members, then the block.
    before = LogVerifier()
    for n, member in enumerate(data.draw(st.lists(st.sampled_from(POOL), max_size=3)), 1):
        raw = canonical_bytes(
            {
                "v": 1,
                "seq": n,
                "members": [member],
                "member_prev": {member: before.last_seen.get(member, 0)},
            }
        )
        assert before.add(raw)[1] is None
    # Blocks start at a multiple of BLOCK: pretend these entries were a whole block.
    sequential, blocked = LogVerifier(), LogVerifier()
    sequential.last_seen = dict(before.last_seen)
    blocked.last_seen = dict(before.last_seen)
    accepted = all(sequential.add(raw)[1] is None for raw in history)
    summary = summarise_block(0, block_of(history), [])
    folded = summary is not None and blocked.add_block(summary, len(history), [])
    assert folded == accepted
    if folded:
        assert (blocked.size, blocked.chain, blocked.leaf) == (
            sequential.size,
            sequential.chain,
            sequential.leaf,
        )
        assert blocked.last_seen == sequential.last_seen
        assert blocked.frontier.root() == sequential.frontier.root()
    else:  # nothing changed: the caller walks the block entry by entry from here
        assert (blocked.size, blocked.chain) == (0, ZERO_HASH)
        assert blocked.last_seen == before.last_seen


def linked_history(count: int, members: int = 50) -> list[bytes]:
    last: dict[str, int] = {}
    out = []
    for seq in range(1, count + 1):
        names = [f"m{(seq * 7) % members}", f"m{(seq * 13) % members}"][: 1 + seq % 2]
        unique = list(dict.fromkeys(names))
        out.append(
            canonical_bytes(
                {
                    "v": 1,
                    "seq": seq,
                    "members": names,
                    "member_prev": {m: last.get(m, 0) for m in unique},
                }
            )
        )
        for m in unique:
            last[m] = seq
    return out


def test_blocks_across_block_boundaries_give_the_sequential_state_and_checkpoint_roots() -> None:
    from audit.verify import BLOCK

    history = linked_history(2 * BLOCK + 123)
    sequential = LogVerifier()
    roots = {}
    wanted = [1, 5, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, 2 * BLOCK + 100]
    for raw in history:
        assert sequential.add(raw)[1] is None
        if sequential.size in wanted:
            roots[sequential.size] = sequential.frontier.root()
    blocked = LogVerifier()
    for start in range(0, len(history), BLOCK):
        part = history[start : start + BLOCK]
        sizes = [s for s in wanted if start < s <= start + len(part)]
        summary = summarise_block(start, block_of(part), sizes)
        assert summary is not None
        for size in sizes:
            assert blocked.frontier.root(then=summary[2][size]) == roots[size]
        assert blocked.add_block(summary, len(part), [])
    assert (blocked.size, blocked.chain, blocked.leaf) == (
        sequential.size,
        sequential.chain,
        sequential.leaf,
    )
    assert blocked.last_seen == sequential.last_seen
    assert blocked.frontier.root() == sequential.frontier.root()
    assert blocked.frontier.stack == sequential.frontier.stack


def test_a_block_that_does_not_start_on_a_block_boundary_is_refused() -> None:
    history = linked_history(3)
    verifier = LogVerifier()
    assert verifier.add(history[0])[1] is None
    summary = summarise_block(1, block_of(history[1:]), [])
    assert summary is not None
    assert not verifier.add_block(summary, 2, [])
    assert verifier.size == 1


@pytest.mark.parametrize("height", [0, 1, 3])
def test_push_subtree_equals_pushing_its_leaves(height: int) -> None:
    leaves = [hashlib.sha256(bytes([n])).digest() for n in range(8 + 2**height)]
    one, other = Frontier(), Frontier()
    for leaf in leaves[:8]:
        one.push(leaf)
        other.push(leaf)
    block = leaves[8:]
    for leaf in block:
        one.push(leaf)
    other.push_subtree(root_from_leaves(block), height)
    assert one.size == other.size
    assert one.root() == other.root() == root_from_leaves(leaves)
    with pytest.raises(ValueError, match="cannot start"):
        other.push_subtree(leaves[0], other.size.bit_length())  # not a multiple of its size


def test_a_block_whose_last_line_has_no_newline_is_not_summarised() -> None:
    assert summarise_block(0, block_of(linked_history(3))[:-1], []) is None
