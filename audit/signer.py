"""Where the checkpoint signing key lives: a 0600 file, or an environment variable.

The key is an Ed25519 key in the C2SP/x/mod signer-key text format
(``PRIVATE+KEY+<name>+<key id>+<base64>``). It is separate from the vault's
keys: whoever verifies checkpoints needs only its public half.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import KeyFormatError, generate_signer, parse_signer_key
from core.errors import SetupError


class SignerError(SetupError):
    """The signing key is missing, unreadable or malformed. Never carries key material."""


def create_signer_file(path: Path, *, name: str) -> None:
    _private, signer_text, _verifier = generate_signer(name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(signer_text + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def load_signer_file(path: Path, *, name: str) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SignerError(f"{path}: no checkpoint signing key; run `memberguard init`") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SignerError(
            f"{path}: the signing key must not be readable by group or others; "
            f"run `chmod 600 {path}`"
        )
    return _parse(path.read_text(encoding="ascii").strip(), name=name, source=str(path))


def load_signer_env(variable: str, *, name: str) -> Ed25519PrivateKey:
    value = os.environ.get(variable)
    if not value:
        raise SignerError(
            f"${variable} is not set (the checkpoint signing key); "
            "generate one with `memberguard keys generate-signer`"
        )
    return _parse(value.strip(), name=name, source=f"${variable}")


def _parse(text: str, *, name: str, source: str) -> Ed25519PrivateKey:
    try:
        key_name, _key_id, private_key = parse_signer_key(text)
    except KeyFormatError:
        raise SignerError(f"{source}: not a valid signer key") from None
    if key_name != name:
        raise SignerError(
            f"{source}: the key is named {key_name!r}, but the log's origin is {name!r}"
        )
    return private_key
