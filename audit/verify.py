"""Recomputing the log from its entry bytes: the part every verifier shares.

``LogVerifier`` takes the entries in order and checks what the bytes alone
can prove: canonical form, contiguous sequence numbers, the per-member
back-links, and it recomputes the leaf hashes, the hash chain and the RFC 9162
root (with O(log n) memory). Checkpoints are checked against the recomputed
root at their size, and their signatures against the verifier key. The online
verifier (``audit.online.verify_log``) adds the database's own columns; the
offline verifier (``audit.offline``) reads an export.
"""

from __future__ import annotations

from typing import Any

from audit.checkpoint import (
    CheckpointError,
    NoteError,
    parse_checkpoint,
    parse_verifier_key,
    verify_note,
)
from audit.entry import ZERO_HASH, NonCanonicalEntry, chain_hash, leaf_hash, parse_entry
from audit.merkle import Frontier


class LogVerifier:
    def __init__(self, verifier_key: str | None = None) -> None:
        self.verifier_key = verifier_key
        self.origin = parse_verifier_key(verifier_key)[0] if verifier_key else None
        self.size = 0
        self.chain = ZERO_HASH
        self.leaf = b""
        self.frontier = Frontier()
        # The Merkle subtrees the last entry completed, for checking a stored tree.
        self.completed: list[tuple[int, int, bytes]] = []
        # Each member's latest entry so far: what the next entry's back-link must name.
        self.last_seen: dict[str, int] = {}

    def add(self, raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
        """Take the next entry's bytes; returns (entry, None) or (None, why it is bad)."""
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
        self.completed = self.frontier.append(self.leaf)
        for member in unique:
            self.last_seen[member] = seq
        self.size = seq
        return entry, None

    def check_checkpoint(self, note: str, *, size: int | None = None) -> str | None:
        """Check a checkpoint cut at the current size: signature, origin, size, root."""
        if self.verifier_key is None:
            return "no verifier key to check the checkpoint's signature"
        try:
            checkpoint = parse_checkpoint(verify_note(note, verifier=self.verifier_key))
        except (NoteError, CheckpointError) as exc:
            return f"checkpoint does not verify: {exc}"
        if checkpoint.origin != self.origin:
            return f"checkpoint origin {checkpoint.origin!r} is not the key's log {self.origin!r}"
        if checkpoint.size != (size if size is not None else self.size):
            return f"checkpoint names size {checkpoint.size}, expected {size or self.size}"
        if checkpoint.size != self.size:
            return f"checkpoint of size {checkpoint.size} checked at size {self.size}"
        if checkpoint.root != self.frontier.root():
            return f"checkpoint root for size {checkpoint.size} does not match the entries"
        return None
