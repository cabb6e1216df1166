"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes (DESIGN: Audit log).

The known answers come from golang.org/x/mod/sumdb/note (its package docs and
note_test.go) and from the C2SP tlog-checkpoint spec, so that our notes are
the ones other implementations produce and accept.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from audit.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    CheckpointError,
    KeyFormatError,
    NoteError,
    format_checkpoint,
    generate_signer,
    key_id_for,
    parse_checkpoint,
    parse_signer_key,
    parse_verifier_key,
    sign_note,
    signer_key,
    verifier_key,
    verify_note,
)

# golang.org/x/mod/sumdb/note: package documentation and note_test.go.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
NEUMANN_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"  # noqa: E501
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"  # noqa: E501
PETER_NOTE = NEUMANN_TEXT + "\n" + PETER_SIG

# c2sp.org/tlog-checkpoint: the example checkpoint (its verifier key is not published).
C2SP_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
C2SP_NOTE = (
    C2SP_BODY
    + "\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"  # noqa: E501
)

LOG_NAME = "memberguard.example/audit"


def _key(seed_byte: int) -> Ed25519PrivateKey:
    """A fixed key, so that failures reproduce and nothing random is needed."""
    return Ed25519PrivateKey.from_private_bytes(bytes([seed_byte]) * 32)


LOG_KEY = _key(1)
LOG_VKEY = verifier_key(LOG_NAME, LOG_KEY.public_key())

# Text a note may carry: no control characters (newlines are added by the strategies).
note_chars = st.characters(min_codepoint=0x20, blacklist_categories=("Cs",))
note_bodies = st.lists(st.text(note_chars, max_size=30), min_size=1, max_size=6).map(
    lambda lines: "".join(line + "\n" for line in lines)
)
key_names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="+"),
    min_size=1,
    max_size=24,
).filter(lambda name: not any(ch.isspace() for ch in name))
checkpoints = st.builds(
    Checkpoint,
    origin=st.text(note_chars, min_size=1, max_size=40),
    size=st.integers(min_value=0, max_value=MAX_TREE_SIZE),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(st.text(note_chars, min_size=1, max_size=20), max_size=3).map(tuple),
)


def _with_signature_replaced(note: str, new_b64: str) -> str:
    head, _, _ = note.rstrip("\n").rpartition(" ")
    return f"{head} {new_b64}\n"


# --- known answers -----------------------------------------------------------------------------


def test_peter_neumann_note_from_x_mod_docs_verifies() -> None:
    assert verify_note(PETER_NOTE, verifier=PETER_VKEY) == NEUMANN_TEXT


def test_signing_with_peter_neumann_key_reproduces_the_published_note() -> None:
    name, _, private_key = parse_signer_key(PETER_SKEY)
    assert sign_note(NEUMANN_TEXT, name=name, private_key=private_key) == PETER_NOTE


def test_peter_neumann_keys_parse_to_one_key_and_re_encode_identically() -> None:
    s_name, s_id, private_key = parse_signer_key(PETER_SKEY)
    v_name, v_id, public_key = parse_verifier_key(PETER_VKEY)
    assert (s_name, s_id) == (v_name, v_id) == ("PeterNeumann", bytes.fromhex("c74f20a3"))
    assert private_key.public_key().public_bytes_raw() == public_key.public_bytes_raw()
    assert signer_key("PeterNeumann", private_key) == PETER_SKEY
    assert verifier_key("PeterNeumann", public_key) == PETER_VKEY


def test_key_id_is_truncated_sha256_of_name_newline_algorithm_and_public_key() -> None:
    _, _, public_key = parse_verifier_key(PETER_VKEY)
    expected = hashlib.sha256(b"PeterNeumann\n\x01" + public_key.public_bytes_raw()).digest()[:4]
    assert key_id_for("PeterNeumann", public_key) == expected == bytes.fromhex("c74f20a3")


def test_doubly_signed_note_from_x_mod_tests_verifies_under_either_key() -> None:
    note = NEUMANN_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert verify_note(note, verifier=PETER_VKEY) == NEUMANN_TEXT
    assert verify_note(note, verifier=ENOCH_VKEY) == NEUMANN_TEXT


def test_c2sp_example_checkpoint_body_parses_and_formats_back_identically() -> None:
    cp = parse_checkpoint(C2SP_BODY)
    assert cp == Checkpoint(
        origin="example.com/behind-the-sofa",
        size=20852163,
        root=base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="),
    )
    assert format_checkpoint(cp) == C2SP_BODY


def test_c2sp_example_note_is_well_formed_but_unsigned_by_our_key() -> None:
    # Proves the example parses: the refusal is about the signer, not the syntax.
    with pytest.raises(NoteError, match="no signature by key"):
        verify_note(C2SP_NOTE, verifier=LOG_VKEY)


# --- round trips ------------------------------------------------------------------------------


@given(checkpoints)
def test_checkpoint_round_trips_through_format_and_parse(cp: Checkpoint) -> None:
    assert parse_checkpoint(format_checkpoint(cp)) == cp


@given(note_bodies)
def test_signed_note_verifies_to_its_exact_body(body: str) -> None:
    note = sign_note(body, name=LOG_NAME, private_key=LOG_KEY)
    assert verify_note(note, verifier=LOG_VKEY) == body


@given(checkpoints)
def test_signed_checkpoint_verifies_and_parses_to_the_same_checkpoint(cp: Checkpoint) -> None:
    note = sign_note(format_checkpoint(cp), name=LOG_NAME, private_key=LOG_KEY)
    assert parse_checkpoint(verify_note(note, verifier=LOG_VKEY)) == cp


def test_note_text_may_contain_blank_lines_because_the_last_one_separates() -> None:
    body = "first\n\nsecond\n\n"
    note = sign_note(body, name=LOG_NAME, private_key=LOG_KEY)
    assert verify_note(note, verifier=LOG_VKEY) == body


@given(key_names, st.binary(min_size=32, max_size=32))
def test_verifier_and_signer_keys_round_trip(name: str, seed: bytes) -> None:
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    public_raw = private_key.public_key().public_bytes_raw()
    v_name, v_id, public_key = parse_verifier_key(verifier_key(name, private_key.public_key()))
    s_name, s_id, parsed_private = parse_signer_key(signer_key(name, private_key))
    assert (v_name, v_id) == (s_name, s_id) == (name, key_id_for(name, public_key))
    assert public_key.public_bytes_raw() == public_raw
    assert parsed_private.private_bytes_raw() == seed


def test_generated_signer_signs_notes_its_verifier_key_accepts() -> None:
    private_key, skey, vkey = generate_signer(LOG_NAME)
    note = sign_note("hello\n", name=LOG_NAME, private_key=private_key)
    assert verify_note(note, verifier=vkey) == "hello\n"
    _, _, from_file = parse_signer_key(skey)
    assert from_file.private_bytes_raw() == private_key.private_bytes_raw()


# --- tampering and other keys -----------------------------------------------------------------


@given(note_bodies, st.data())
def test_flipping_any_byte_of_the_body_is_rejected(body: str, data: st.DataObject) -> None:
    raw = bytearray(sign_note(body, name=LOG_NAME, private_key=LOG_KEY).encode("utf-8"))
    index = data.draw(st.integers(0, len(body.encode("utf-8")) - 1), label="index")
    raw[index] ^= data.draw(st.integers(1, 255), label="mask")
    with pytest.raises(NoteError):
        verify_note(raw.decode("utf-8", "surrogateescape"), verifier=LOG_VKEY)


@given(note_bodies, st.data())
def test_flipping_any_byte_of_the_signature_block_is_rejected(
    body: str, data: st.DataObject
) -> None:
    raw = bytearray(sign_note(body, name=LOG_NAME, private_key=LOG_KEY).encode("utf-8"))
    index = data.draw(st.integers(len(body.encode("utf-8")), len(raw) - 1), label="index")
    raw[index] ^= data.draw(st.integers(1, 255), label="mask")
    with pytest.raises(NoteError):
        verify_note(raw.decode("utf-8", "surrogateescape"), verifier=LOG_VKEY)


def test_note_signed_by_a_different_key_under_the_same_name_is_rejected() -> None:
    note = sign_note("size 1\n", name=LOG_NAME, private_key=_key(2))
    with pytest.raises(NoteError, match="no signature by key"):
        verify_note(note, verifier=LOG_VKEY)


def test_signature_claiming_the_trusted_key_id_but_made_by_another_key_is_rejected() -> None:
    forged_sig = _key(2).sign(b"size 1\n")
    key_id = key_id_for(LOG_NAME, LOG_KEY.public_key())
    forged_line = f"— {LOG_NAME} {base64.b64encode(key_id + forged_sig).decode()}\n"
    with pytest.raises(NoteError, match="does not verify"):
        verify_note("size 1\n\n" + forged_line, verifier=LOG_VKEY)


def test_bad_signature_by_the_trusted_key_rejects_the_note_even_beside_a_good_one() -> None:
    good = sign_note("size 1\n", name=LOG_NAME, private_key=LOG_KEY)
    good_line = good.split("\n\n")[1]
    raw = bytearray(base64.b64decode(good_line.rstrip("\n").split(" ")[2]))
    raw[-1] ^= 1
    bad_line = _with_signature_replaced(good_line, base64.b64encode(raw).decode())
    with pytest.raises(NoteError, match=r"line 2 .* does not verify"):
        verify_note(good + bad_line, verifier=LOG_VKEY)


def test_unknown_signature_lines_are_ignored_when_well_formed() -> None:
    witness = sign_note("size 1\n", name="witness.example", private_key=_key(3))
    witness_line = witness.split("\n\n")[1]
    ours = sign_note("size 1\n", name=LOG_NAME, private_key=LOG_KEY)
    assert verify_note(ours + witness_line, verifier=LOG_VKEY) == "size 1\n"
    reordered = "size 1\n\n" + witness_line + ours.split("\n\n")[1]
    assert verify_note(reordered, verifier=LOG_VKEY) == "size 1\n"


def test_one_hundred_signatures_are_accepted_and_one_more_is_rejected() -> None:
    witness_line = sign_note("x\n", name="w", private_key=_key(3)).split("\n\n")[1]
    ours = sign_note("x\n", name=LOG_NAME, private_key=LOG_KEY)
    assert verify_note(ours + witness_line * 99, verifier=LOG_VKEY) == "x\n"
    with pytest.raises(NoteError, match="more than 100"):
        verify_note(ours + witness_line * 100, verifier=LOG_VKEY)


# --- malformed notes --------------------------------------------------------------------------

_PETER_B64 = PETER_SIG.split(" ")[2].rstrip("\n")


@pytest.mark.parametrize(
    ("note", "message"),
    [
        pytest.param(NEUMANN_TEXT, "no blank line", id="no-signatures"),
        pytest.param(NEUMANN_TEXT + "\n", "no signature lines", id="blank-line-only"),
        pytest.param(PETER_NOTE[:-1], "end with a newline", id="missing-final-newline"),
        pytest.param("\x01" + PETER_NOTE, "control characters", id="control-character"),
        pytest.param(PETER_NOTE.replace("\n", "\r\n"), "control characters", id="crlf"),
        pytest.param("\udcff" + PETER_NOTE, "UTF-8", id="not-utf8"),
        pytest.param(PETER_NOTE + "Unexpected line.\n", "line 2", id="trailing-line"),
        pytest.param(PETER_NOTE.replace("—", "–"), "em dash", id="en-dash"),
        pytest.param(PETER_NOTE.replace("— ", "- "), "em dash", id="hyphen"),
        pytest.param(PETER_NOTE.replace("— ", "-- "), "em dash", id="double-hyphen"),
        pytest.param(PETER_NOTE.replace("— ", "—"), "em dash", id="no-space-after-dash"),
        pytest.param(PETER_NOTE.replace("PeterNeumann", "Bad Name"), "base64", id="space-in-name"),
        pytest.param(PETER_NOTE.replace("PeterNeumann ", ""), "key name", id="no-name"),
        pytest.param(
            _with_signature_replaced(PETER_NOTE, _PETER_B64[:-1]), "base64", id="truncated-b64"
        ),
        pytest.param(
            _with_signature_replaced(PETER_NOTE, _PETER_B64.rstrip("=")), "base64", id="no-padding"
        ),
        pytest.param(
            _with_signature_replaced(PETER_NOTE, _PETER_B64[:-2] + "N="),
            "base64",
            id="non-canonical-b64",
        ),
        pytest.param(
            _with_signature_replaced(PETER_NOTE, _PETER_B64.replace("/", "_")),
            "base64",
            id="url-safe-b64",
        ),
        pytest.param(
            _with_signature_replaced(PETER_NOTE, _PETER_B64 + " "), "base64", id="trailing-space"
        ),
        pytest.param(_with_signature_replaced(PETER_NOTE, "AAAAAA=="), "too short", id="short"),
        pytest.param(
            _with_signature_replaced(
                PETER_NOTE,
                base64.b64encode(bytes.fromhex("c74f20a4") + bytes(64)).decode(),
            ),
            "no signature by key",
            id="wrong-key-id",
        ),
        pytest.param(
            _with_signature_replaced(
                PETER_NOTE, base64.b64encode(bytes.fromhex("c74f20a3") + bytes(63)).decode()
            ),
            "does not verify",
            id="short-signature-for-our-key",
        ),
        pytest.param(
            PETER_NOTE.replace("PeterNeumann", "PeterNeuman"),
            "no signature by key",
            id="wrong-name",
        ),
    ],
)
def test_malformed_note_is_rejected_with_a_note_error(note: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        verify_note(note, verifier=PETER_VKEY)


def test_every_truncation_of_a_signed_note_is_rejected() -> None:
    for end in range(len(PETER_NOTE)):
        with pytest.raises(NoteError):
            verify_note(PETER_NOTE[:end], verifier=PETER_VKEY)


_signature_fields = st.one_of(
    st.text(max_size=100),
    st.binary(max_size=80).map(lambda raw: base64.b64encode(raw).decode()),
    st.binary(max_size=70).map(
        lambda raw: base64.b64encode(bytes.fromhex("c74f20a3") + raw).decode()
    ),
)
_almost_notes = st.builds(
    lambda body, name, sig, tail: f"{body}\n— {name} {sig}\n{tail}",
    st.text(max_size=60),
    st.one_of(st.just("PeterNeumann"), st.text(max_size=15)),
    _signature_fields,
    st.one_of(st.just(""), st.text(max_size=20)),
)


@given(st.one_of(st.text(), _almost_notes))
def test_arbitrary_text_raises_only_note_error(note: str) -> None:
    with pytest.raises(NoteError) as raised:
        verify_note(note, verifier=PETER_VKEY)
    assert str(raised.value)


# --- sign_note preconditions ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ["", "no final newline", "tab\there\n", "carriage\r\n", "nul\x00\n", "\ud800\n"],
)
def test_sign_note_refuses_text_that_no_verifier_would_accept(body: str) -> None:
    with pytest.raises(NoteError):
        sign_note(body, name=LOG_NAME, private_key=LOG_KEY)


# --- checkpoints ------------------------------------------------------------------------------

_ROOT = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param("", "end with a newline", id="empty"),
        pytest.param(C2SP_BODY[:-1], "end with a newline", id="missing-final-newline"),
        pytest.param("origin\n1\n", "origin, tree size and root", id="two-lines"),
        pytest.param(f"\n1\n{_ROOT}\n", "origin line is empty", id="empty-origin"),
        pytest.param(f"o\x01\n1\n{_ROOT}\n", "control characters", id="control-in-origin"),
        pytest.param(f"o\n01\n{_ROOT}\n", "leading zeros", id="leading-zero"),
        pytest.param(f"o\n00\n{_ROOT}\n", "leading zeros", id="double-zero"),
        pytest.param(f"o\n-1\n{_ROOT}\n", "sign", id="negative"),
        pytest.param(f"o\n+1\n{_ROOT}\n", "sign", id="plus-sign"),
        pytest.param(f"o\n 1\n{_ROOT}\n", "ASCII decimal", id="space-before-size"),
        pytest.param(f"o\n1_000\n{_ROOT}\n", "ASCII decimal", id="underscore"),
        pytest.param(f"o\n١\n{_ROOT}\n", "ASCII decimal", id="arabic-digit"),
        pytest.param(f"o\n\n{_ROOT}\n", "ASCII decimal", id="empty-size"),
        pytest.param(f"o\n{MAX_TREE_SIZE + 1}\n{_ROOT}\n", "tree size", id="size-too-big"),
        pytest.param(f"o\n{'9' * 5000}\n{_ROOT}\n", "ASCII decimal", id="huge-size"),
        pytest.param(
            f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n", "32 bytes", id="root-31-bytes"
        ),
        pytest.param(
            f"o\n1\n{base64.b64encode(bytes(33)).decode()}\n", "32 bytes", id="root-33-bytes"
        ),
        pytest.param(f"o\n1\n{_ROOT[:-1]}\n", "base64", id="root-unpadded"),
        pytest.param(f"o\n1\n{_ROOT[:-2]}J=\n", "base64", id="root-non-canonical"),
        pytest.param(f"o\n1\n{_ROOT.replace('/', '_')}\n", "base64", id="root-url-safe"),
        pytest.param(f"o\n1\n{_ROOT} \n", "base64", id="root-trailing-space"),
        pytest.param(f"o\n1\n{_ROOT}\n\n", "extension line 1 is empty", id="empty-extension"),
        pytest.param(C2SP_BODY.replace("\n", "\r\n"), "control characters", id="crlf"),
    ],
)
def test_malformed_checkpoint_body_is_rejected_with_a_checkpoint_error(
    body: str, message: str
) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_checkpoint(body)


@given(
    st.one_of(
        st.text(),
        st.lists(st.text(max_size=50), min_size=1, max_size=5).map(lambda ls: "\n".join(ls)),
        st.tuples(st.text(max_size=20), st.text("0123456789-+ ", max_size=22), st.text()).map(
            lambda t: f"{t[0]}\n{t[1]}\n{_ROOT}\n{t[2]}"
        ),
    )
)
def test_parse_checkpoint_accepts_only_canonical_bodies_and_raises_only_checkpoint_error(
    body: str,
) -> None:
    try:
        cp = parse_checkpoint(body)
    except CheckpointError as error:
        assert str(error)
    else:
        assert format_checkpoint(cp) == body


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"origin": ""}, id="empty-origin"),
        pytest.param({"origin": "a\nb"}, id="newline-in-origin"),
        pytest.param({"origin": "a\x1bb"}, id="escape-in-origin"),
        pytest.param({"size": -1}, id="negative-size"),
        pytest.param({"size": MAX_TREE_SIZE + 1}, id="size-too-big"),
        pytest.param({"size": True}, id="bool-size"),
        pytest.param({"size": 1.0}, id="float-size"),
        pytest.param({"root": bytes(31)}, id="short-root"),
        pytest.param({"root": "A" * 32}, id="str-root"),
        pytest.param({"extensions": ("",)}, id="empty-extension"),
        pytest.param({"extensions": ("a\nb",)}, id="newline-in-extension"),
        pytest.param({"extensions": ["x"]}, id="list-of-extensions"),
    ],
)
def test_checkpoint_refuses_values_that_cannot_be_formatted(fields: dict) -> None:
    values = {"origin": "o", "size": 1, "root": bytes(32), "extensions": ()} | fields
    with pytest.raises(CheckpointError):
        Checkpoint(**values)


# --- keys -------------------------------------------------------------------------------------


def _mangled(text: str) -> list[str]:
    """Every proper substring and every one-character increment (as in x/mod's tests)."""
    substrings = {text[i:j] for i in range(len(text) + 1) for j in range(i + 1, len(text) + 1)} - {
        text
    }
    bumped = {text[:i] + chr(ord(text[i]) + 1) + text[i + 1 :] for i in range(len(text))}
    return sorted(substrings | bumped)


def test_every_mangled_verifier_key_is_rejected() -> None:
    for mangled in _mangled(PETER_VKEY):
        with pytest.raises(KeyFormatError):
            parse_verifier_key(mangled)


def test_every_mangled_signer_key_is_rejected() -> None:
    for mangled in _mangled(PETER_SKEY):
        with pytest.raises(KeyFormatError):
            parse_signer_key(mangled)


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        pytest.param(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "32 bytes",
            id="wrong-key-length",
        ),
        pytest.param(
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "algorithm",
            id="unknown-algorithm",
        ),
        pytest.param(PETER_VKEY.replace("c74f20a3", "C74F20A3"), "lower-case hex", id="upper-hex"),
        pytest.param(PETER_VKEY.replace("c74f20a3", "c74f20a4"), "does not match", id="wrong-id"),
        pytest.param(PETER_VKEY.replace("Peter", "Paul"), "does not match", id="wrong-name"),
    ],
)
def test_verifier_key_with_a_bad_field_is_rejected(vkey: str, message: str) -> None:
    with pytest.raises(KeyFormatError, match=message):
        parse_verifier_key(vkey)


def test_malformed_verifier_key_passed_to_verify_note_is_a_key_format_error() -> None:
    with pytest.raises(KeyFormatError):
        verify_note(PETER_NOTE, verifier=PETER_VKEY[:-1])


def test_signer_key_errors_never_quote_the_secret() -> None:
    wrong_id = PETER_SKEY.replace("c74f20a3", "c74f20a4")
    with pytest.raises(KeyFormatError) as raised:
        parse_signer_key(wrong_id)
    assert "AYEKFALV" not in str(raised.value)


@pytest.mark.parametrize(
    "name",
    ["", "a b", "a+b", "a\tb", "a\nb", "a\x00b", "a\u00a0b", "a\u2028b", "a\u3000b", "\ud800"],
)
def test_invalid_key_names_are_refused_everywhere(name: str) -> None:
    public_key = LOG_KEY.public_key()
    with pytest.raises(KeyFormatError):
        verifier_key(name, public_key)
    with pytest.raises(KeyFormatError):
        signer_key(name, LOG_KEY)
    with pytest.raises(KeyFormatError):
        sign_note("x\n", name=name, private_key=LOG_KEY)
    with pytest.raises(KeyFormatError):
        generate_signer(name)


@pytest.mark.parametrize("name", ["example.com/log42", "张三", "PeterNeumann", "a—b"])
def test_valid_key_names_are_accepted(name: str) -> None:
    note = sign_note("x\n", name=name, private_key=LOG_KEY)
    assert verify_note(note, verifier=verifier_key(name, LOG_KEY.public_key())) == "x\n"
