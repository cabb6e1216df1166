"""Recomputing the log from its entry bytes: the part every verifier shares.

``LogVerifier`` takes the entries in order and checks what the bytes alone
can prove: canonical form, contiguous sequence numbers, the per-member
back-links, and it recomputes the leaf hashes, the hash chain and the RFC 9162
root (with O(log n) memory). Checkpoints are checked against the recomputed
root at their size, and their signatures against the verifier key. The online
verifier (``audit.online.verify_log``) adds the database's own columns; the
offline verifier (``audit.offline``) reads an export.

Both also hold the log to two things outside its entries' bytes: every
``audit.checkpoint`` entry (the log's own record of a cut) must have its
checkpoint among the log's (``checkpoint_record_failure``), and every checkpoint
held elsewhere (``HeldCheckpoint``: published on the host, or kept by an
auditor) must be one the log extends: its size at most the log's, its root the
one recomputed at that size. A rollback past a checkpoint leaves a log that is
consistent in itself; only a copy held elsewhere remembers that it was larger.

``add`` runs once per entry over logs of millions of entries, so it is written
for speed: the hashes are inlined (they are ``audit.entry.leaf_hash`` and
``chain_hash``; tests/unit/test_log_verifier.py holds them to those), the
common one-member entry skips building the expected back-link dict, and the
Merkle frontier is a bare stack of hashes. Every check of the straightforward
version is still made, in the same order, with the same messages
(tests/unit/test_verify_speedups.py compares the two on random histories).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit.actions import Action
from audit.checkpoint import (
    CheckpointError,
    NoteError,
    parse_checkpoint,
    parse_verifier_key,
    unverified_note_text,
    verify_note,
)
from audit.entry import (
    CHAIN_PREFIX,
    LEAF_PREFIX,
    ZERO_HASH,
    NonCanonicalEntry,
    parse_entries,
    parse_entry,
)
from audit.merkle import NODE_PREFIX, Frontier

_sha256 = hashlib.sha256
# Verification progress: (entries verified, entries in all).
Progress = Callable[[int, int], None]

_MISSING = object()

BAD_LINKS = "member back-links do not name each member's previous entry"
NO_MEMBER_LIST = "entry has no member list"
# The action of the entry a cut records itself with (``audit.actions.checkpoint_cut``).
CHECKPOINT_ACTION = Action.AUDIT_CHECKPOINT.value


def checkpoint_record_failure(detail: Any, roots: Mapping[int, str]) -> str | None:
    """Why an ``audit.checkpoint`` entry's ``detail`` names no checkpoint of the log.

    ``roots``: the log's own checkpoints (stored rows, or an export's files),
    size → root in hex, each checked against the entries at its size by the
    walk. The entry is written in the transaction that stores the checkpoint,
    so a checkpoint it names that is not there was deleted.
    """
    size = detail.get("size") if type(detail) is dict else None
    if type(size) is not int:
        return "the entry records a checkpoint without a tree size"
    root = roots.get(size)
    if root is None:
        return f"the entry records a checkpoint at size {size}, which is missing"
    if detail.get("root") != root:
        return f"the entry records another root for the checkpoint at size {size}"
    return None


class HeldCheckpointError(ValueError):
    """A checkpoint held outside the log does not verify, or cannot be read."""


@dataclass(frozen=True, slots=True)
class HeldCheckpoint:
    """A checkpoint held outside the log's tables, that the log must extend.

    ``source`` names it in a failure (``published checkpoint <file>``,
    ``checkpoint <file>``); ``published`` says it is one of the host's own
    published copies, so a size beyond the log's is a rollback.
    """

    source: str
    size: int
    root: bytes
    published: bool = False

    @classmethod
    def read(
        cls,
        source: str,
        note: str,
        *,
        verifier_key: str | None,
        published: bool = False,
        named_size: int | None = None,
    ) -> HeldCheckpoint:
        """Check ``note``'s signature under ``verifier_key`` and take its size and root.

        Without a key only a published copy is accepted, its text unverified: a
        forged copy can then make verification fail, never pass. ``named_size``:
        the size its file name gives, which the note must say too.
        """
        try:
            if verifier_key is not None:
                origin = parse_verifier_key(verifier_key)[0]
                checkpoint = parse_checkpoint(verify_note(note, verifier=verifier_key))
                if checkpoint.origin != origin:
                    raise HeldCheckpointError(
                        f"{source} is of the log {checkpoint.origin!r}, not {origin!r}"
                    )
            elif published:
                checkpoint = parse_checkpoint(unverified_note_text(note))
            else:
                raise HeldCheckpointError(f"{source}: no verifier key to check its signature with")
        except (NoteError, CheckpointError) as exc:
            raise HeldCheckpointError(f"{source} does not verify: {exc}") from None
        if named_size is not None and checkpoint.size != named_size:
            raise HeldCheckpointError(
                f"{source} is named for size {named_size} but holds size {checkpoint.size}"
            )
        return cls(source, checkpoint.size, checkpoint.root, published)

    def mismatch(self) -> str:
        return f"{self.source} does not match the log at size {self.size}"

    def beyond(self, log_size: int) -> str:
        why = "the log was rolled back" if self.published else "the log does not extend it"
        return f"{self.source} is at size {self.size}, beyond the log's {log_size} entries: {why}"


def held_in_order(held: Sequence[HeldCheckpoint]) -> list[HeldCheckpoint]:
    """By size (as the walks meet them); published copies first at a size."""
    return sorted(held, key=lambda cp: (cp.size, not cp.published))


class LogVerifier:
    """Verifies entries in log order. A rejected entry leaves the state untouched.

    ``record_nodes=True`` keeps every interior Merkle node the entries
    complete, in ``levels[level]`` (level >= 1, in index order), for a caller
    that compares them with a stored tree and then empties the lists. Level 0
    (the leaves) is not kept: the caller has each ``leaf`` as it goes.
    """

    def __init__(self, verifier_key: str | None = None, *, record_nodes: bool = False) -> None:
        self.verifier_key = verifier_key
        self.origin = parse_verifier_key(verifier_key)[0] if verifier_key else None
        self.size = 0
        self.chain = ZERO_HASH
        self.leaf = b""
        self.frontier = Frontier()
        self.levels: list[list[bytes]] | None = [[]] if record_nodes else None
        # Each member's latest entry so far: what the next entry's back-link must name.
        self.last_seen: dict[str, int] = {}

    def add(self, raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
        """Take the next entry's bytes; returns (entry, None) or (None, why it is bad)."""
        try:
            entry = parse_entry(raw)
        except NonCanonicalEntry as exc:
            return None, f"entry bytes are invalid: {exc}"
        return self.add_parsed(raw, entry)

    def add_parsed(
        self, raw: bytes, entry: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, str | None]:
        """``add``, for a caller that has ``entry = parse_entry(raw)`` already (from
        ``parse_entries``, which decodes a batch for less)."""
        seq = self.size + 1
        # parse_entry yields only plain JSON types (dict, list, str, int, bool,
        # None), so exact type tests say what isinstance would.
        if entry.get("seq") != seq:
            return None, f"entry bytes name seq {entry.get('seq')!r}, expected {seq}"
        members = entry.get("members")
        if type(members) is not list:
            return None, NO_MEMBER_LIST
        last_seen = self.last_seen
        if len(members) == 1:
            # The common case (one member per gated read): the back-links
            # must be exactly {member: its previous seq}.
            member = members[0]
            if type(member) is not str:
                return None, NO_MEMBER_LIST
            links = entry.get("member_prev")
            if (
                type(links) is not dict
                or len(links) != 1
                or links.get(member, _MISSING) != last_seen.get(member, 0)
            ):
                return None, BAD_LINKS
            unique: list[str] = members
        else:
            for member in members:
                if type(member) is not str:
                    return None, NO_MEMBER_LIST
            unique = list(dict.fromkeys(members))
            if unique:
                expected = {m: last_seen.get(m, 0) for m in unique}
                if entry.get("member_prev") != expected:
                    return None, BAD_LINKS
            elif "member_prev" in entry:
                return None, "member back-links in an entry that names no member"
        # The entry is good: fold it in.
        leaf = _sha256(LEAF_PREFIX + raw).digest()
        self.leaf = leaf
        self.chain = _sha256(CHAIN_PREFIX + self.chain + leaf).digest()
        self.frontier.push(leaf, self.levels)
        for member in unique:
            last_seen[member] = seq
        self.size = seq
        return entry, None

    def add_block(
        self,
        summary: BlockSummary,
        count: int,
        checkpoints: list[tuple[int, str]],
        held: Sequence[tuple[int, bytes]] = (),
    ) -> bool:
        """Fold in the next ``count`` entries, summarised by ``summarise_block``, and
        check ``checkpoints`` (size, note) cut among them and the roots ``held``
        (size, root) of checkpoints held elsewhere. False, with nothing changed,
        if anything does not hold: the caller then feeds the entries to ``add``."""
        leaves, stack, snapshots, first_members, first_links, last, _cuts = summary
        start = self.size
        if start & (BLOCK - 1) or not 0 < count <= BLOCK or len(leaves) != 32 * count:
            return False
        last_seen = self.last_seen
        if first_links != [last_seen.get(member, 0) for member in first_members]:
            return False
        for size, note in checkpoints:
            then = snapshots.get(size)
            if then is None or not start < size <= start + count:
                return False
            root = self.frontier.root(then=then)
            if self._checkpoint_failure(note, expected=size, size=size, root=root):
                return False
        for size, expected in held:
            then = snapshots.get(size)
            if then is None or not start < size <= start + count:
                return False
            if self.frontier.root(then=then) != expected:
                return False
        chain = self.chain
        for offset in range(0, 32 * count, 32):
            chain = _sha256(CHAIN_PREFIX + chain + leaves[offset : offset + 32]).digest()
        self.chain = chain
        self.leaf = leaves[-32:]
        # The block's subtrees: one per 1 bit of count, largest first.
        heights = [h for h in range(BLOCK_LEVEL, -1, -1) if count >> h & 1]
        for digest, height in zip(stack, heights, strict=True):
            self.frontier.push_subtree(digest, height)
        last_seen.update(last)
        self.size = start + count
        return True

    def check_checkpoint(self, note: str, *, size: int | None = None) -> str | None:
        """Check a checkpoint cut at the current size: signature, origin, size, root."""
        return self._checkpoint_failure(
            note,
            expected=size if size is not None else self.size,
            size=self.size,
            root=self.frontier.root(),
        )

    def _checkpoint_failure(
        self, note: str, *, expected: int, size: int, root: bytes
    ) -> str | None:
        """Why ``note`` is not a good checkpoint for ``expected`` entries, checked when
        ``size`` entries with Merkle root ``root`` have been verified; None if it is."""
        if self.verifier_key is None:
            return "no verifier key to check the checkpoint's signature"
        try:
            checkpoint = parse_checkpoint(verify_note(note, verifier=self.verifier_key))
        except (NoteError, CheckpointError) as exc:
            return f"checkpoint does not verify: {exc}"
        if checkpoint.origin != self.origin:
            return f"checkpoint origin {checkpoint.origin!r} is not the key's log {self.origin!r}"
        if checkpoint.size != expected:
            return f"checkpoint names size {checkpoint.size}, expected {expected or size}"
        if checkpoint.size != size:
            return f"checkpoint of size {checkpoint.size} checked at size {size}"
        if checkpoint.root != root:
            return f"checkpoint root for size {checkpoint.size} does not match the entries"
        return None


# -- verifying blocks of entries in other processes ----------------------------------
#
# What ``add`` checks about an entry depends on the entries before it only
# through the seq, the back-links and the hashes. A block of consecutive
# entries can therefore be checked elsewhere (``summarise_block``, in a worker
# process) as far as the block alone allows, and folded in here
# (``LogVerifier.add_block``) after the few checks that need what came before:
# each member's first back-link in the block against ``last_seen``, and the
# checkpoints against roots that include the earlier entries. Blocks start at a
# multiple of ``2**BLOCK_LEVEL`` entries and hold at most that many, so every
# Merkle node inside a block hashes leaves of that block only.
#
# A worker that finds anything wrong returns None without saying what: the
# caller then feeds the block to ``add`` one entry at a time, which names the
# first bad entry exactly as a sequential run would. So a block is accepted
# here only if ``add`` would accept each of its entries, and every report of
# a bad log comes from ``add``.

BLOCK_LEVEL = 13
BLOCK = 1 << BLOCK_LEVEL

BlockSummary = tuple[
    bytes,  # the leaf hashes, 32 bytes each, in order
    tuple[bytes, ...],  # the block's own Merkle frontier after its last entry
    dict[int, tuple[bytes, ...]],  # that frontier after each requested size
    list[str],  # members named in the block, in order of their first entry in it
    list[Any],  # the back-link each of those first entries gives that member
    dict[str, int],  # each member's last entry in the block
    list[Any],  # the detail of each audit.checkpoint entry in the block, in order
]


def summarise_block(start: int, data: bytes, sizes: list[int]) -> BlockSummary | None:
    """Check entries ``start + 1 …`` (``data``: their lines, each ending in a newline)
    as far as they can be checked alone; None if any of them is bad. ``sizes``: where
    to keep the block's frontier, for checkpoints. Runs in worker processes."""
    raws = data.split(b"\n")
    if raws.pop() != b"":
        return None
    entries = parse_entries(raws)
    if entries is None:
        return None
    last: dict[str, int] = {}
    first_members: list[str] = []
    first_links: list[Any] = []
    cuts: list[Any] = []
    seq = start
    for entry in entries:
        seq += 1
        if entry.get("seq") != seq:
            return None
        if entry.get("action") == CHECKPOINT_ACTION:
            cuts.append(entry.get("detail"))
        members = entry.get("members")
        if type(members) is not list:
            return None
        for member in members:
            if type(member) is not str:
                return None
        unique = members if len(members) == 1 else list(dict.fromkeys(members))
        if unique:
            # member_prev must equal {member: previous seq}: the same keys, and
            # each value what the member's previous entry was.
            links = entry.get("member_prev")
            if type(links) is not dict or len(links) != len(unique):
                return None
            for member in unique:
                link = links.get(member, _MISSING)
                if link is _MISSING:
                    return None
                previous = last.get(member)
                if previous is None:  # decided by the entries before the block
                    first_members.append(member)
                    first_links.append(link)
                elif link != previous:
                    return None
            for member in unique:
                last[member] = seq
        elif "member_prev" in entry:
            return None
    leaves = [_sha256(LEAF_PREFIX + raw).digest() for raw in raws]
    # The block's Merkle tree, a level at a time: every complete subtree in it.
    levels = [leaves]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append(
            [
                _sha256(NODE_PREFIX + a + b).digest()
                for a, b in zip(below[::2], below[1::2], strict=False)
            ]
        )

    def frontier(count: int) -> tuple[bytes, ...]:
        # After ``count`` leaves: one subtree per 1 bit of count, largest first;
        # the one for bit h is (h, (count >> h) - 1).
        return tuple(
            levels[h][(count >> h) - 1] for h in range(len(levels) - 1, -1, -1) if count >> h & 1
        )

    snapshots = {size: frontier(size - start) for size in sizes if start < size <= seq}
    return (
        b"".join(leaves),
        frontier(seq - start),
        snapshots,
        first_members,
        first_links,
        last,
        cuts,
    )
