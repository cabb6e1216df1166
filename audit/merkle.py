"""RFC 9162 Merkle tree over the audit log's leaf hashes. Pure functions, no I/O.

    leaf hash  = SHA-256(0x00 || entry bytes)      (``audit.entry.leaf_hash``)
    node hash  = SHA-256(0x01 || left || right)
    empty root = SHA-256("")

Storage model. A *complete subtree* ``(level, index)`` is the tree over the
leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the leaf
hashes. Once full, a complete subtree never changes, so it is the only thing a
log stores (append-only, like its entries). Any range ``[start, end)`` that
the RFC recursion asks for starts at a multiple of a power of two at least as
large as the range, so it splits into at most ``log2(end - start) + 1``
complete subtrees, taken by the binary digits of its length. Hence a root or a
proof for *any* tree size reads O(log n) stored nodes and never a partial one.

Functions first plan which complete subtrees they need (integer arithmetic
only), then read them in one batch (``nodes``, when the reader has it), then
hash: a database answers a proof with one query.

The verifiers follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step, after
strict checks of sizes, hash lengths and proof length, so that every rejection
says what is wrong. Their messages reach users as "the proof is invalid: ...".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol

HASH_SIZE = 32
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256

Key = tuple[int, int]
"""(level, index) of a complete subtree."""
Range = tuple[int, int]
"""[start, end) of leaves."""


class ProofError(ValueError):
    """A proof, or the sizes and hashes it is checked against, does not verify."""


class NodeReader(Protocol):
    def node(self, level: int, index: int) -> bytes:
        """Hash of the complete subtree over leaves [index * 2**level, (index + 1) * 2**level)."""
        ...


class BatchNodeReader(NodeReader, Protocol):
    def nodes(self, keys: list[Key]) -> dict[Key, bytes]:
        """The hashes of all ``keys`` at once (one query instead of one per node)."""
        ...


def read_nodes(reader: NodeReader, keys: list[Key]) -> list[bytes]:
    """Hashes for ``keys``, in order: one ``nodes`` call if the reader batches, else ``node``
    per key. A stored node that is not a 32-byte hash is corruption and is refused here."""
    if not keys:
        return []
    batch = getattr(reader, "nodes", None)
    if batch is None:
        hashes = [reader.node(level, index) for level, index in keys]
    else:
        found = batch(keys)
        missing = [key for key in keys if key not in found]
        if missing:
            raise LookupError(f"node reader did not return the complete subtrees {missing}")
        hashes = [found[key] for key in keys]
    for key, digest in zip(keys, hashes, strict=True):
        if not isinstance(digest, bytes) or len(digest) != HASH_SIZE:
            raise ValueError(f"stored node {key} is not a {HASH_SIZE}-byte hash")
    return hashes


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 2.1.1 interior node; the 0x01 prefix keeps nodes and leaves (0x00) apart."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def completed_nodes(index: int, leaf: bytes, reader: NodeReader) -> list[tuple[int, int, bytes]]:
    """Every complete subtree that appending leaf ``index`` completes, bottom up, as
    ``(level, index, hash)``: the leaf itself, then one parent per trailing 1 bit of
    ``index``. Each parent's left sibling completed earlier, so it is read from ``reader``;
    storing all of the result keeps the invariant "every complete subtree is stored"."""
    _require_count(index, "leaf index", ValueError)
    _require_hash(leaf, "leaf hash", ValueError)
    trailing_ones = (index ^ (index + 1)).bit_length() - 1
    siblings = read_nodes(reader, [(lv, (index >> lv) - 1) for lv in range(trailing_ones)])
    completed = [(0, index, leaf)]
    digest = leaf
    for level, sibling in enumerate(siblings, start=1):
        digest = node_hash(sibling, digest)
        completed.append((level, index >> level, digest))
    return completed


def root(size: int, reader: NodeReader) -> bytes:
    """MTH(D[size]) (RFC 9162 2.1.1) from the popcount(size) complete subtrees of [0, size)."""
    _require_count(size, "tree size", ValueError)
    if size == 0:
        return EMPTY_ROOT
    return _resolve([(0, size)], reader)[0]


def inclusion_proof(index: int, size: int, reader: NodeReader) -> list[bytes]:
    """PATH(index, D[size]), RFC 9162 2.1.3.1: sibling subtree hashes, leaf to root."""
    _require_count(index, "leaf index", ValueError)
    _require_count(size, "tree size", ValueError)
    if index >= size:
        raise ValueError(f"leaf index {index} is not below tree size {size}")
    return _resolve(_inclusion_ranges(index, size), reader)


def consistency_proof(old: int, new: int, reader: NodeReader) -> list[bytes]:
    """PROOF(old, D[new]), RFC 9162 2.1.4.1; empty when ``old == new``."""
    _require_count(old, "old tree size", ValueError)
    _require_count(new, "new tree size", ValueError)
    if not 0 < old <= new:
        raise ValueError(f"consistency needs 0 < old <= new, got old {old} and new {new}")
    return _resolve(_consistency_ranges(old, new), reader)


def _inclusion_ranges(index: int, size: int) -> list[Range]:
    """The leaf ranges whose MTHs form PATH(index, D[size]), in proof order. Invariant:
    ``start`` is a multiple of a power of two >= ``end - start`` (see the module doc)."""
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:  # PATH(m, D[0:k]) : MTH(D[k:n])
            ranges.append((mid, end))
            end = mid
        else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            ranges.append((start, mid))
            start = mid
    ranges.reverse()  # the recursion appends on the way back up: deepest sibling first
    return ranges


def _consistency_ranges(old: int, new: int) -> list[Range]:
    """The leaf ranges whose MTHs form PROOF(old, D[new]) = SUBPROOF(old, D[new], true)."""
    ranges: list[Range] = []
    start, end, whole_old_tree = 0, new, True
    while old < end:
        mid = start + _split(end - start)
        if old <= mid:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            ranges.append((mid, end))
            end = mid
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            ranges.append((start, mid))
            start, whole_old_tree = mid, False
    if not whole_old_tree:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def _split(n: int) -> int:
    """k of RFC 9162 2.1.1: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_keys(start: int, end: int) -> list[Key]:
    """The complete subtrees covering [start, end), left to right, largest first."""
    keys: list[Key] = []
    while start < end:
        level = (end - start).bit_length() - 1
        keys.append((level, start >> level))
        start += 1 << level
    return keys


def _resolve(ranges: list[Range], reader: NodeReader) -> list[bytes]:
    """MTH of each range, with one batched read for all of them. MTH of a range is its
    complete subtrees folded from the right, which is the RFC recursion unrolled."""
    plans = [_subtree_keys(start, end) for start, end in ranges]
    hashes = iter(read_nodes(reader, [key for plan in plans for key in plan]))
    result = []
    for plan in plans:
        parts = [next(hashes) for _ in plan]
        digest = parts[-1]
        for left in reversed(parts[:-1]):
            digest = node_hash(left, digest)
        result.append(digest)
    return result


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless ``proof`` shows ``leaf_hash`` at ``index`` in the tree of
    ``size`` leaves whose root is ``root``. RFC 9162 2.1.3.2, after strict input checks."""
    _require_count(index, "leaf index", ProofError)
    _require_count(size, "tree size", ProofError)
    if size == 0:
        raise ProofError("the empty tree (size 0) includes no leaves")
    if index >= size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    _require_hash(leaf_hash, "leaf hash", ProofError)
    _require_hash(root, "root hash", ProofError)
    _require_proof(proof, len(_inclusion_ranges(index, size)), f"leaf {index} of tree size {size}")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    if r != root:
        raise ProofError("inclusion proof does not lead to the root hash")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ProofError unless ``proof`` shows the tree of ``old`` leaves with ``old_root``
    is a prefix of the tree of ``new`` leaves with ``new_root``. RFC 9162 2.1.4.2, after
    strict input checks; ``old == new`` needs an empty proof and equal roots, and
    ``old == 0`` is refused: a proof from the empty tree proves nothing."""
    _require_count(old, "old tree size", ProofError)
    _require_count(new, "new tree size", ProofError)
    if old > new:
        raise ProofError(f"old tree size {old} is larger than new tree size {new}")
    if old == 0:
        raise ProofError("a consistency proof from the empty tree (size 0) proves nothing")
    if old == new:
        # Nothing is hashed: the claim holds exactly when the two roots are the
        # same bytes. (The upstream vectors check this with 12-byte stand-ins,
        # so the 32-byte rule applies only where roots are computed with.)
        _require_proof(proof, 0, f"equal tree sizes ({old})")
        if not isinstance(old_root, bytes) or not isinstance(new_root, bytes):
            raise ProofError("root hashes must be bytes")
        if old_root != new_root:
            raise ProofError(f"tree size {old} is claimed with two different root hashes")
        return
    _require_hash(old_root, "old root hash", ProofError)
    _require_hash(new_root, "new root hash", ProofError)
    _require_proof(proof, len(_consistency_ranges(old, new)), f"tree size {old} to {new}")
    if not proof:  # step 1
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if old & (old - 1) == 0:  # the old tree is one complete subtree: its root starts the path
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root hash")
    if sr != new_root:
        raise ProofError("consistency proof does not lead to the new root hash")


def _require_count(value: object, name: str, error: type[ValueError]) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise error(f"{name} must be a non-negative integer, got {value!r}")


def _require_hash(value: object, name: str, error: type[ValueError]) -> None:
    if not isinstance(value, bytes):
        raise error(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise error(f"{name} must be a {HASH_SIZE}-byte SHA-256 hash, got {len(value)} bytes")


def _require_proof(proof: Sequence[bytes], expected: int, what: str) -> None:
    """The proof shape is fixed by the sizes alone, so a wrong count is refused up front
    (the RFC steps would also refuse it, with a less specific message)."""
    if not isinstance(proof, Sequence) or isinstance(proof, bytes | str):
        raise ProofError(f"proof must be a sequence of hashes, got {type(proof).__name__}")
    for position, element in enumerate(proof):
        _require_hash(element, f"proof hash {position}", ProofError)
    if len(proof) != expected:
        raise ProofError(f"proof for {what} must have {expected} hashes, got {len(proof)}")


class MemoryTree:
    """Every complete subtree in lists per level: a NodeReader for tests and for the offline
    verifier. Invariant: ``levels[lv][i]`` is subtree ``(lv, i)``, and levels only grow,
    because subtrees complete in index order at every level."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add the next leaf hash; returns the subtrees it completed (what a log stores)."""
        completed = completed_nodes(self.size, leaf, self)
        for level, _, digest in completed:
            if level == len(self.levels):
                self.levels.append([])
            self.levels[level].append(digest)
        return completed

    def node(self, level: int, index: int) -> bytes:
        if 0 <= level < len(self.levels) and 0 <= index < len(self.levels[level]):
            return self.levels[level][index]
        raise LookupError(f"no complete subtree ({level}, {index}) in a tree of {self.size}")


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """MTH by the RFC 9162 2.1.1 recursion over leaf hashes: the reference for tests."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(root_from_leaves(leaves[:k]), root_from_leaves(leaves[k:]))


class Frontier:
    """The right edge of a growing tree: O(log n) perfect subtrees, enough for every root.

    Verifiers that stream millions of leaves use this instead of a MemoryTree:
    it holds about log2(n) hashes, and ``root()`` at any moment is the RFC 9162
    MTH of the leaves appended so far (folding the subtrees from the right).

    Invariant: ``_stack`` holds one perfect subtree per 1 bit of ``size``,
    largest (leftmost) first, so the subtrees' heights are implied by ``size``
    and need not be stored: appending leaf ``index`` merges one subtree per
    trailing 1 bit of ``index``.
    """

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self.size = 0

    @classmethod
    def resume(cls, size: int, stack: Sequence[bytes]) -> Frontier:
        """The frontier of a tree of ``size`` leaves, from its perfect subtrees
        (one per 1 bit of ``size``, largest first: what ``stack`` returns)."""
        if size < 0 or len(stack) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} edge subtrees")
        frontier = cls()
        frontier._stack = list(stack)
        frontier.size = size
        return frontier

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add the next leaf; returns the (level, index, hash) subtrees it completed."""
        index = self.size
        digest = leaf
        completed = [(0, index, leaf)]
        stack = self._stack
        height, bits = 0, index
        while bits & 1:
            digest = node_hash(stack.pop(), digest)
            height += 1
            completed.append((height, index >> height, digest))
            bits >>= 1
        stack.append(digest)
        self.size = index + 1
        return completed

    def push(self, leaf: bytes, levels: list[list[bytes]] | None = None) -> None:
        """``append`` without building its result, for verifiers (once per entry).

        With ``levels``, each interior node completed is appended to
        ``levels[height]`` (grown as needed), so a level's list is in index order.
        """
        bits = self.size
        stack = self._stack
        if bits & 1:
            digest = leaf
            height = 0
            while bits & 1:
                digest = _sha256(NODE_PREFIX + stack.pop() + digest).digest()
                height += 1
                if levels is not None:
                    if height == len(levels):
                        levels.append([])
                    levels[height].append(digest)
                bits >>= 1
            stack.append(digest)
        else:
            stack.append(leaf)
        self.size += 1

    @property
    def stack(self) -> tuple[bytes, ...]:
        """The perfect subtrees, largest (leftmost) first: one per 1 bit of ``size``."""
        return tuple(self._stack)

    def push_subtree(self, digest: bytes, height: int) -> None:
        """Append a whole perfect subtree of ``2**height`` leaves, given its hash.

        Only where one can start: ``size`` a multiple of ``2**height``. This is how
        a verifier folds in a block of leaves whose subtree was hashed elsewhere."""
        if self.size & ((1 << height) - 1):
            raise ValueError(f"a subtree of height {height} cannot start at leaf {self.size}")
        bits = self.size >> height
        stack = self._stack
        while bits & 1:
            digest = _sha256(NODE_PREFIX + stack.pop() + digest).digest()
            bits >>= 1
        stack.append(digest)
        self.size += 1 << height

    def root(self, *, then: Sequence[bytes] = ()) -> bytes:
        """MTH of the leaves so far; with ``then``, of the leaves so far followed by the
        perfect subtrees ``then`` (a frontier's stack further right, largest first)."""
        stack = [*self._stack, *then] if then else self._stack
        if not stack:
            return EMPTY_ROOT
        digest = stack[-1]
        for left in reversed(stack[:-1]):
            digest = node_hash(left, digest)
        return digest
