"""Key material: the keyring and where it comes from.

The keyring holds
- the key-encryption keys (KEKs), by version: wrapping uses the active (newest)
  version, unwrapping uses whichever version a data key names;
- the blind-index root key, separate from the KEKs, from which one HMAC key per
  searchable field is derived with HKDF;
- the pseudonym root key, from which one HMAC key per client is derived, so a
  pseudonym is stable for one client and unlinkable across clients.

Providers: ``local`` (a JSON file created by ``memberguard init`` with mode
0600) and ``env`` (the same document, base64, in an environment variable).
An external KMS plugs in as another provider returning a ``Keyring``.

A long-running process holds its keyring in a ``KeyringSource``, which loads
it again from the provider when the process meets a data key wrapped under a
KEK version it does not hold (another process re-wrapped it under a newer
keyring) and when the provider says it changed (``refresh``: the key file
rewritten by ``memberguard keys rotate`` or ``keys retire``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
import stat
import tempfile
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import SetupError

log = structlog.get_logger("memberguard.keys")

KEY_BYTES = 32
KEYRING_FORMAT = 1
# HKDF's info for the webhook key (``Keyring.webhook_key``). Never change it: every
# stored webhook URL and secret is sealed under the key it derives.
WEBHOOK_KEY_INFO = b"memberguard/webhook/v1"


class KeyringError(SetupError):
    """The keyring is missing, unreadable or malformed. Never carries key material."""


def _derive(root: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(root)


@dataclass(frozen=True, repr=False)
class Keyring:
    keks: dict[int, bytes]
    index_key: bytes = field(repr=False)
    pseudonym_key: bytes = field(repr=False)
    # One AES-GCM cipher per KEK version, built on first use: unwrapping a data
    # key then costs a decryption, not a key schedule too (bulk exports unwrap
    # one key per member).
    _kek_ciphers: dict[int, AESGCM] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # The KeyringSource that handed this keyring out, if any: asked for a KEK
    # version this keyring does not hold (see ``KeyringSource``).
    _source: KeyringSource | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keks:
            raise KeyringError("keyring has no key-encryption key")
        for key in (*self.keks.values(), self.index_key, self.pseudonym_key):
            if len(key) != KEY_BYTES:
                raise KeyringError("every key in the keyring must be 32 bytes")

    def __repr__(self) -> str:
        return f"Keyring(kek_versions={sorted(self.keks)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis's and IPython's printers walk a dataclass's fields, key
        # material included, unless the class says how to print it.
        printer.text(repr(self))

    @property
    def active_version(self) -> int:
        return max(self.keks)

    def kek(self, version: int) -> bytes:
        key = self.keks.get(version)
        if key is not None:
            return key
        newer = self._source.holding(version) if self._source is not None else None
        if newer is None:
            raise KeyringError(f"KEK version {version} is not in the keyring")
        return newer.kek(version)

    def kek_cipher(self, version: int) -> AESGCM:
        cipher = self._kek_ciphers.get(version)
        if cipher is None:
            if version not in self.keks and self._source is not None:
                newer = self._source.holding(version)
                if newer is not None:
                    return newer.kek_cipher(version)
            cipher = self._kek_ciphers[version] = AESGCM(self.kek(version))
        return cipher

    def succeeds(self, other: Keyring) -> bool:
        """Is this ``other`` after rotations and retirements (``keys rotate``, ``keys
        retire``)? The same index and pseudonym keys (blind indexes and pseudonyms
        stay valid), every KEK version both hold unchanged, and any version only
        this one holds newer than ``other``'s active one (a retired version never
        comes back). Versions ``other`` holds and this does not were retired: a
        process that takes this keyring forgets them.
        """
        return (
            self.index_key == other.index_key
            and self.pseudonym_key == other.pseudonym_key
            and self.active_version >= other.active_version
            and all(
                other.keks[version] == key
                if version in other.keks
                else version > other.active_version
                for version, key in self.keks.items()
            )
        )

    def index_key_for(self, field_name: str) -> bytes:
        return _cached_derive(self.index_key, b"memberguard/blind-index/v1/" + field_name.encode())

    def throttle_key_for(self, name: str) -> bytes:
        """The key of keyed digests that name rate-limit counters (a sign-in contact, a
        client address): derived from the index key, so stable across KEK rotations,
        but its own, so that a shared counter store (Redis) holds neither a contact nor
        an address, nor the blind indexes the database holds."""
        return _cached_derive(self.index_key, b"memberguard/throttle/v1/" + name.encode())

    def pseudonym_key_for(self, client_id: str) -> bytes:
        return _cached_derive(self.pseudonym_key, b"memberguard/pseudonym/v1/" + client_id.encode())

    def webhook_key(self) -> bytes:
        """The key webhook URLs and secrets are sealed under (``feed.webhooks``). From the
        index key, which no KEK rotation or retirement changes, so they stay readable
        through ``keys rotate``, ``rewrap`` and ``retire``; its own label keeps it apart
        from the blind-index and throttle keys."""
        return _cached_derive(self.index_key, WEBHOOK_KEY_INFO)

    def web_form_key(self) -> bytes:
        """The key the web pages' CSRF tokens are HMACs under (``web.security``): from the
        index key, so every server process of a deployment shares it with nothing to
        configure and it survives KEK rotations; its own label keeps it apart."""
        return _cached_derive(self.index_key, b"memberguard/web/csrf/v1")

    # -- serialisation -------------------------------------------------------

    @classmethod
    def generate(cls) -> Keyring:
        return cls(
            keks={1: secrets.token_bytes(KEY_BYTES)},
            index_key=secrets.token_bytes(KEY_BYTES),
            pseudonym_key=secrets.token_bytes(KEY_BYTES),
        )

    def with_new_kek(self) -> Keyring:
        keks = dict(self.keks)
        keks[self.active_version + 1] = secrets.token_bytes(KEY_BYTES)
        return Keyring(keks=keks, index_key=self.index_key, pseudonym_key=self.pseudonym_key)

    def without_kek(self, version: int) -> Keyring:
        """This keyring with KEK ``version`` destroyed; never the active one, which
        wraps every new data key."""
        if version not in self.keks:
            raise KeyringError(f"KEK version {version} is not in the keyring")
        if version == self.active_version:
            raise KeyringError(f"KEK version {version} is the active one")
        keks = {v: key for v, key in self.keks.items() if v != version}
        return Keyring(keks=keks, index_key=self.index_key, pseudonym_key=self.pseudonym_key)

    def to_document(self) -> bytes:
        b64 = lambda raw: base64.b64encode(raw).decode("ascii")  # noqa: E731
        return json.dumps(
            {
                "format": KEYRING_FORMAT,
                "keks": {str(v): b64(k) for v, k in sorted(self.keks.items())},
                "index_key": b64(self.index_key),
                "pseudonym_key": b64(self.pseudonym_key),
            },
            indent=2,
        ).encode()

    @classmethod
    def from_document(cls, raw: bytes, *, source: str) -> Keyring:
        try:
            doc: Any = json.loads(raw)
            if doc.get("format") != KEYRING_FORMAT:
                raise KeyringError(f"{source}: unsupported keyring format")
            decode = lambda text: base64.b64decode(text, validate=True)  # noqa: E731
            return cls(
                keks={int(v): decode(k) for v, k in doc["keks"].items()},
                index_key=decode(doc["index_key"]),
                pseudonym_key=decode(doc["pseudonym_key"]),
            )
        except KeyringError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise KeyringError(f"{source}: not a valid keyring document") from None


@lru_cache(maxsize=4096)
def _cached_derive(root: bytes, info: bytes) -> bytes:
    return _derive(root, info)


class KeyringSource:
    """The keyring a long-running process holds, and how to load it again.

    ``current`` is what the process wraps new data keys under (its newest KEK)
    and unwraps with. It is loaded again from the provider (``load``):

    - when a data key names a KEK version it does not hold (``holding``): a
      process that re-wrapped data keys under a newer keyring has been at work.
      At most once per such version, under a lock, so a burst of reads of
      re-wrapped members costs one load; a version still unknown after it
      fails as before (``KeyringError``, a 503 on the read path);
    - when ``refresh`` finds that the provider changed (``changed``: a stamp of
      the key file; a provider without one, like ``env``, never changes under
      a running process).

    A loaded keyring is taken only if it succeeds the one held
    (``Keyring.succeeds``): a key file replaced by another keyring, with a KEK
    version's key changed or with an older newest version, is refused and
    logged, and the process keeps what it has. One without a version the held
    keyring has (``keys retire`` destroyed it) is taken, and the process
    forgets that KEK.
    """

    def __init__(
        self,
        load: Callable[[], Keyring],
        *,
        changed: Callable[[], Hashable] | None = None,
    ) -> None:
        self._load = load
        self._changed = changed
        self._lock = threading.Lock()
        self._tried: set[int] = set()  # versions looked for once already
        self._stamp = changed() if changed is not None else None
        self._current = self._bind(load())

    @property
    def current(self) -> Keyring:
        return self._current

    def holding(self, version: int) -> Keyring | None:
        """A keyring holding KEK ``version``: the current one, or one loaded again."""
        current = self._current
        if version in current.keks:
            return current
        with self._lock:
            current = self._current  # another thread may have loaded it meanwhile
            if version in current.keks:
                return current
            if version in self._tried:
                return None
            self._tried.add(version)
            self._reload(trigger="unknown-kek-version", version=version)
            current = self._current
            return current if version in current.keks else None

    def refresh(self) -> bool:
        """Load the keyring again if the provider changed; True if a newer one was taken."""
        if self._changed is None:
            return False
        stamp = self._changed()
        if stamp == self._stamp:
            return False
        with self._lock:
            if stamp == self._stamp:
                return False
            taken = self._reload(trigger="provider-changed")
            self._stamp = stamp
            return taken

    def _reload(self, **why: object) -> bool:
        """Load and take a keyring that succeeds the current one. Holds the lock."""
        try:
            loaded = self._load()
        except KeyringError as exc:
            log.error("keyring.reload_failed", error=str(exc), **why)
            return False
        except OSError as exc:  # unreadable: the process keeps the keyring it has
            log.error("keyring.reload_failed", error=type(exc).__name__, **why)
            return False
        current = self._current
        if not loaded.succeeds(current):
            log.error("keyring.reload_refused", reason="not-a-successor", **why)
            return False
        if loaded.keks.keys() == current.keks.keys():
            return False
        self._current = self._bind(loaded)
        log.info("keyring.reloaded", kek_versions=sorted(loaded.keks), **why)
        return True

    def _bind(self, keyring: Keyring) -> Keyring:
        """A copy of ``keyring`` that asks this source for versions it lacks (the
        caller's instance is left as it was)."""
        bound = Keyring(
            keks=dict(keyring.keks),
            index_key=keyring.index_key,
            pseudonym_key=keyring.pseudonym_key,
        )
        object.__setattr__(bound, "_source", self)  # frozen: set once, here
        return bound


class LocalKeyFile:
    """A keyring file readable by the service's user only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def stamp(self) -> Hashable:
        """Changes whenever the file is replaced or rewritten (``save`` renames a new file in)."""
        try:
            found = self.path.stat()
        except FileNotFoundError:
            return None
        return (found.st_ino, found.st_mtime_ns, found.st_size)

    def create(self) -> Keyring:
        """Create a new keyring file (mode 0600). Refuses to overwrite one."""
        keyring = Keyring.generate()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(keyring.to_document())
            handle.flush()
            os.fsync(handle.fileno())
        return keyring

    def save(self, keyring: Keyring) -> None:
        """Replace the file atomically: new 0600 file, fsync, rename, fsync the directory.

        ``mkstemp`` creates the temporary file exclusively with mode 0600, so a
        leftover or planted file (or symlink) at a predictable name is never
        written through.
        """
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keyring-", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(keyring.to_document())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def load(self) -> Keyring:
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            raise KeyringError(
                f"{self.path}: no keyring; run `memberguard init` to create one"
            ) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyringError(
                f"{self.path}: the keyring must not be readable by group or others; "
                f"run `chmod 600 {self.path}`"
            )
        return Keyring.from_document(self.path.read_bytes(), source=str(self.path))


class EnvKeyring:
    """The keyring document, base64-encoded, in an environment variable."""

    def __init__(self, variable: str, environ: dict[str, str] | None = None) -> None:
        self.variable = variable
        self.environ = environ if environ is not None else dict(os.environ)

    def load(self) -> Keyring:
        value = self.environ.get(self.variable)
        if not value:
            raise KeyringError(
                f"${self.variable} is not set (the keyring); "
                "generate one with `memberguard keys generate`"
            )
        try:
            raw = base64.b64decode(value, validate=True)
        except binascii.Error:
            raise KeyringError(f"${self.variable} is not valid base64") from None
        return Keyring.from_document(raw, source=f"${self.variable}")

    @staticmethod
    def encode(keyring: Keyring) -> str:
        return base64.b64encode(keyring.to_document()).decode("ascii")
