"""Signed checkpoints of the audit log: C2SP tlog-checkpoint bodies in C2SP signed notes.

Pure functions: keys are passed in, nothing is read or written. The formats are
the ones the Go reference (golang.org/x/mod/sumdb/note) and the C2SP ecosystem
use, so that a checkpoint we publish can be checked by third-party tools and
witnesses, and our verifier can be fed theirs:

    checkpoint body   <origin>\\n<tree size>\\n<base64 root hash>\\n[<extension>\\n]...
    signed note       <body>\\n— <key name> <base64(key id || Ed25519 signature)>\\n...
    key id            SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]
    verifier key      <name>+<hex key id>+<base64(0x01 || public key)>
    signer key        PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || 32-byte seed)>

Everything that parses untrusted text raises only the errors defined here,
with a message naming what is wrong and never echoing key material. Where Go
is lenient and a stricter reading costs nothing we are strict: base64 must be
canonical (so two different strings never carry the same signature or root),
hex key ids are lower case, and *every* signature line by the trusted key must
verify, not only the first one (the spec's SHOULD, which Go does not do for
duplicates).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

ALG_ED25519 = b"\x01"
SIGNATURE_PREFIX = "— "  # U+2014 EM DASH, U+0020 SPACE
MAX_SIGNATURES = 100  # Go's limit; the spec requires accepting at least 16.
MAX_TREE_SIZE = 2**63 - 1  # fits a signed 64-bit column and every tlog client

_ED25519_SIGNATURE_SIZE = 64
_HASH_SIZE = 32
_KEY_ID_SIZE = 4
# ASCII only: int() would also take "١٢", "1_000", " 12" and "+1".
_TREE_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")


class NoteError(ValueError):
    """A signed note is malformed or does not carry a valid signature by the trusted key."""


class CheckpointError(ValueError):
    """A checkpoint body or value breaks the tlog-checkpoint format."""


class KeyFormatError(ValueError):
    """A key name, verifier key or signer key is malformed.

    Kept apart from NoteError: a bad key is a configuration mistake to surface
    loudly, not an untrusted note to reject.
    """


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head. Construction validates, so every instance can be formatted and signed."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin:
            raise CheckpointError("origin must be a non-empty string")
        _check_checkpoint_line(self.origin, "origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise CheckpointError("tree size must be an integer")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise CheckpointError(f"tree size must be between 0 and {MAX_TREE_SIZE}")
        if not isinstance(self.root, bytes) or len(self.root) != _HASH_SIZE:
            raise CheckpointError(f"root hash must be {_HASH_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            raise CheckpointError("extension lines must be a tuple of strings")
        for index, line in enumerate(self.extensions, start=1):
            if not isinstance(line, str) or not line:
                raise CheckpointError(f"extension line {index} must be a non-empty string")
            _check_checkpoint_line(line, f"extension line {index}")


def _check_checkpoint_line(line: str, what: str) -> None:
    # A line that holds a newline would shift every later field; any other
    # control character, or text that is not UTF-8, could never be signed.
    if "\n" in line:
        raise CheckpointError(f"{what} must not contain a newline")
    if not _is_note_text(line):
        raise CheckpointError(f"{what} must be UTF-8 without control characters")


def format_checkpoint(cp: Checkpoint) -> str:
    lines = [cp.origin, str(cp.size), base64.b64encode(cp.root).decode("ascii"), *cp.extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a body strictly, so that formatting the result gives back exactly ``body``."""
    if not body.endswith("\n"):
        raise CheckpointError("checkpoint body must end with a newline")
    if not _is_note_text(body):
        raise CheckpointError(
            "checkpoint body must be UTF-8 without control characters other than newline"
        )
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint body must have origin, tree size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise CheckpointError("checkpoint origin line is empty")
    if _TREE_SIZE.fullmatch(size_text) is None:
        raise CheckpointError(
            "checkpoint tree size must be ASCII decimal without sign or leading zeros"
        )
    root = _b64decode_canonical(root_text)
    if root is None or len(root) != _HASH_SIZE:
        raise CheckpointError(
            f"checkpoint root hash must be the standard base64 of {_HASH_SIZE} bytes"
        )
    for index, line in enumerate(extensions, start=1):
        if not line:
            raise CheckpointError(f"checkpoint extension line {index} is empty")
    return Checkpoint(origin=origin, size=int(size_text), root=root, extensions=tuple(extensions))


def sign_note(body: str, *, name: str, private_key: Ed25519PrivateKey) -> str:
    """Sign ``body`` as a one-signature note that ``verify_note`` (and Go's note.Open) accept."""
    _check_key_name(name)
    if not body.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if not _is_note_text(body):
        raise NoteError("note text must be UTF-8 without control characters other than newline")
    key_id = key_id_for(name, private_key.public_key())
    signature = private_key.sign(body.encode("utf-8"))
    encoded = base64.b64encode(key_id + signature).decode("ascii")
    return f"{body}\n{SIGNATURE_PREFIX}{name} {encoded}\n"


def verify_note(note: str, *, verifier: str) -> str:
    """Return the note text if it carries a signature by ``verifier`` and all of those verify.

    Signature lines by other keys (witnesses, a rotated log key) are ignored,
    as the spec requires, but must still be well formed. ``verifier`` is a
    verifier key as made by ``verifier_key``; a malformed one raises
    KeyFormatError.
    """
    name, key_id, public_key = parse_verifier_key(verifier)
    if not _is_note_text(note):
        raise NoteError("note must be UTF-8 without control characters other than newline")
    # The text ends at the last blank line (the text itself may contain blank lines).
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, signature_block = note[: split + 1], note[split + 2 :]
    if not signature_block:
        raise NoteError("note has no signature lines")
    if not signature_block.endswith("\n"):
        raise NoteError("note must end with a newline")
    signature_lines = signature_block[:-1].split("\n")
    if len(signature_lines) > MAX_SIGNATURES:
        raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")

    message = text.encode("utf-8")
    verified = False
    for number, line in enumerate(signature_lines, start=1):
        line_name, line_key_id, signature = _parse_signature_line(line, number)
        if (line_name, line_key_id) != (name, key_id):
            continue
        if not _ed25519_verifies(public_key, signature, message):
            raise NoteError(f"signature line {number} by key {name}+{key_id.hex()} does not verify")
        verified = True
    if not verified:
        raise NoteError(f"note has no signature by key {name}+{key_id.hex()}")
    return text


def unverified_note_text(note: str) -> str:
    """The text of a signed note, its signatures NOT checked.

    Only for a reader without the signer's key that compares what the text says
    with something it recomputes itself (``audit verify`` holding a log to the
    sizes and roots of published checkpoints): a forged note can then make it
    fail, never pass.
    """
    if not _is_note_text(note):
        raise NoteError("note must be UTF-8 without control characters other than newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    return note[: split + 1]


def _parse_signature_line(line: str, number: int) -> tuple[str, bytes, bytes]:
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError(f"signature line {number} does not start with an em dash and a space")
    line_name, space, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not space or not _is_valid_key_name(line_name):
        raise NoteError(f"signature line {number} has no valid key name followed by a space")
    raw = _b64decode_canonical(encoded)
    if raw is None:
        raise NoteError(f"signature line {number} is not standard base64")
    if len(raw) <= _KEY_ID_SIZE:
        raise NoteError(f"signature line {number} is too short to hold a key id and a signature")
    return line_name, raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:]


def _ed25519_verifies(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    if len(signature) != _ED25519_SIGNATURE_SIZE:
        return False
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def key_id_for(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte key id: a short identifier chosen by the spec, not a security boundary."""
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + ALG_ED25519 + public_key.public_bytes_raw()
    ).digest()
    return digest[:_KEY_ID_SIZE]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    _check_key_name(name)
    key_id = key_id_for(name, public_key)
    encoded = base64.b64encode(ALG_ED25519 + public_key.public_bytes_raw()).decode("ascii")
    return f"{name}+{key_id.hex()}+{encoded}"


def parse_verifier_key(text: str) -> tuple[str, bytes, Ed25519PublicKey]:
    """Return (name, key id, public key), having checked that the key id belongs to the key."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise KeyFormatError("verifier key must be <name>+<key id>+<key>")
    name, key_id_hex, encoded = parts
    _check_key_name(name)
    key_id = _parse_key_id(key_id_hex)
    raw = _b64decode_canonical(encoded)
    if raw is None or len(raw) != 1 + 32:
        raise KeyFormatError(
            "verifier key data must be the base64 of an algorithm byte and 32 bytes"
        )
    if raw[:1] != ALG_ED25519:
        raise KeyFormatError("verifier key algorithm is not Ed25519 (0x01)")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(raw[1:])
    except ValueError:
        raise KeyFormatError("verifier key is not a valid Ed25519 public key") from None
    if key_id_for(name, public_key) != key_id:
        raise KeyFormatError("verifier key id does not match its name and key")
    return name, key_id, public_key


def signer_key(name: str, private_key: Ed25519PrivateKey) -> str:
    """Encode a private key for a secret file. Anyone holding the text can sign as ``name``."""
    _check_key_name(name)
    key_id = key_id_for(name, private_key.public_key())
    encoded = base64.b64encode(ALG_ED25519 + private_key.private_bytes_raw()).decode("ascii")
    return f"PRIVATE+KEY+{name}+{key_id.hex()}+{encoded}"


def parse_signer_key(text: str) -> tuple[str, bytes, Ed25519PrivateKey]:
    """Return (name, key id, private key). Messages never quote the text: it is a secret."""
    parts = text.split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise KeyFormatError("signer key must be PRIVATE+KEY+<name>+<key id>+<key>")
    _, _, name, key_id_hex, encoded = parts
    _check_key_name(name)
    key_id = _parse_key_id(key_id_hex)
    raw = _b64decode_canonical(encoded)
    if raw is None or len(raw) != 1 + 32:
        raise KeyFormatError("signer key data must be the base64 of an algorithm byte and 32 bytes")
    if raw[:1] != ALG_ED25519:
        raise KeyFormatError("signer key algorithm is not Ed25519 (0x01)")
    private_key = Ed25519PrivateKey.from_private_bytes(raw[1:])
    # The id names the public key, so it can only be checked after deriving it.
    if key_id_for(name, private_key.public_key()) != key_id:
        raise KeyFormatError("signer key id does not match its name and key")
    return name, key_id, private_key


def generate_signer(name: str) -> tuple[Ed25519PrivateKey, str, str]:
    """Return a fresh (private key, signer key text, verifier key text) for ``name``."""
    _check_key_name(name)
    private_key = Ed25519PrivateKey.generate()
    return (
        private_key,
        signer_key(name, private_key),
        verifier_key(name, private_key.public_key()),
    )


def _is_valid_key_name(name: str) -> bool:
    # Spec: non-empty, no Unicode spaces, no "+". Control characters are
    # excluded too, since a name must fit on a signature line of a note.
    return (
        bool(name)
        and "+" not in name
        and not any(ch.isspace() for ch in name)
        and _is_note_text(name)
    )


def _check_key_name(name: str) -> None:
    if not isinstance(name, str) or not _is_valid_key_name(name):
        raise KeyFormatError(
            "key name must be non-empty UTF-8 without spaces, plus signs or control characters"
        )


def _parse_key_id(text: str) -> bytes:
    if _KEY_ID_HEX.fullmatch(text) is None:
        raise KeyFormatError("key id must be 8 lower-case hex digits")
    return bytes.fromhex(text)


def _is_note_text(text: str) -> bool:
    """True if ``text`` may appear in a note: valid UTF-8, no control characters but newline."""
    try:
        text.encode("utf-8")  # a str holding lone surrogates is not UTF-8
    except UnicodeEncodeError:
        return False
    return not any(ch < " " and ch != "\n" for ch in text)


def _b64decode_canonical(text: str) -> bytes | None:
    """Decode standard padded base64, or None unless ``text`` is the one encoding of its bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw
