"""The Merkle tree as stored: complete subtrees in ``audit_merkle_node``.

``audit.merkle`` holds the RFC 9162 algorithms over a node reader; this module
is that reader for the database, plus the hook that stores the subtrees an
append completes, in the same transaction as the entry.
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from audit.driver import insert_rows
from audit.merkle import HASH_SIZE, Frontier, consistency_proof, inclusion_proof, root
from audit.models import AuditMerkleNode


class MissingNode(LookupError):
    """A complete subtree the log should have stored is not there (tampering or a bug)."""


class DbNodes:
    """Reads complete subtrees, caching within one use (one proof or one append)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.cache: dict[tuple[int, int], bytes] = {}

    def node(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self.cache:
            found = self.session.scalar(
                select(AuditMerkleNode.hash).where(
                    AuditMerkleNode.level == level, AuditMerkleNode.idx == index
                )
            )
            if found is None:
                raise MissingNode(f"Merkle node ({level}, {index}) is missing")
            self.cache[key] = bytes.fromhex(found)
        return self.cache[key]

    def stored(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Whatever of ``keys`` is stored (no error for missing ones).

        One range query per level: a verifier's keys are contiguous per level,
        and a primary-key range scan is fast on every database (a row-value IN
        list is not, on SQLite).
        """
        by_level: dict[int, list[int]] = {}
        for level, idx in keys:
            by_level.setdefault(level, []).append(idx)
        found: dict[tuple[int, int], bytes] = {}
        for level, indexes in by_level.items():
            rows = self.session.execute(
                select(AuditMerkleNode.idx, AuditMerkleNode.hash).where(
                    AuditMerkleNode.level == level,
                    AuditMerkleNode.idx >= min(indexes),
                    AuditMerkleNode.idx <= max(indexes),
                )
            )
            found.update({(level, row.idx): bytes.fromhex(row.hash) for row in rows})
        return found

    def nodes(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        wanted = [k for k in keys if k not in self.cache]
        if wanted:
            # OR of primary-key equalities: every database answers it from the
            # index (SQLite scans the table for a row-value IN list).
            rows = self.session.execute(
                select(AuditMerkleNode.level, AuditMerkleNode.idx, AuditMerkleNode.hash).where(
                    or_(
                        *(
                            and_(AuditMerkleNode.level == level, AuditMerkleNode.idx == idx)
                            for level, idx in wanted
                        )
                    )
                )
            )
            for row in rows:
                self.cache[(row.level, row.idx)] = bytes.fromhex(row.hash)
        return {k: self.node(*k) for k in keys}


_EDGES: weakref.WeakKeyDictionary[Any, tuple[int, str, tuple[bytes, ...]]] = (
    weakref.WeakKeyDictionary()
)


def edge_keys(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees on the right edge of a tree of ``size`` leaves, largest first."""
    return [(h, (size >> h) - 1) for h in reversed(range(size.bit_length())) if size >> h & 1]


class LogEdge:
    """The log's right edge: what appends need to store the subtrees they complete.

    Appending leaf ``n`` completes one subtree per trailing 1 bit of ``n``, and
    the left half of each is on the right edge of the tree before it, so the
    edge (about log2(n) hashes, a ``merkle.Frontier``) is all an append reads.
    It is kept in memory per database between transactions, together with the
    head it belongs to, and used only by a transaction that locked that very
    head (same size and chain hash, hence the same leaves); any other
    transaction (another process appended, or a rollback) reads it from
    ``audit_merkle_node``, one query.
    """

    def __init__(self, frontier: Frontier) -> None:
        self._frontier = frontier
        self.pending: list[tuple[int, int, bytes]] = []

    @property
    def size(self) -> int:
        return self._frontier.size

    @classmethod
    def resume(cls, session: Session, size: int, head_hash: str) -> LogEdge:
        remembered = _EDGES.get(session.get_bind())
        if remembered is not None and remembered[:2] == (size, head_hash):
            return cls(Frontier.resume(size, remembered[2]))
        keys = edge_keys(size)
        try:
            stored = DbNodes(session).stored(keys)
        except ValueError:  # a hash that is not hex text
            raise MissingNode("a Merkle node on the log's right edge is not a hash") from None
        missing = [key for key in keys if len(stored.get(key, b"")) != HASH_SIZE]
        if missing:
            raise MissingNode(f"Merkle nodes {missing} on the log's right edge are missing")
        return cls(Frontier.resume(size, [stored[key] for key in keys]))

    def add_leaf(self, leaf: bytes) -> None:
        """Append the next leaf; every subtree it completes (the leaf included) is pending."""
        self.pending.extend(self._frontier.append(leaf))

    def flush(self, session: Session) -> None:
        if self.pending:
            insert_rows(
                session,
                AuditMerkleNode.__table__,
                ("level", "idx", "hash"),
                [(level, idx, digest.hex()) for level, idx, digest in self.pending],
            )
            self.pending = []

    def remember(self, session: Session, head_hash: str) -> None:
        """Keep the edge for the next transaction that locks this head."""
        _EDGES[session.get_bind()] = (self.size, head_hash, self._frontier.stack)


def tree_root(session: Session, size: int) -> bytes:
    return root(size, DbNodes(session))


def prove_inclusion(session: Session, index: int, size: int) -> list[bytes]:
    return inclusion_proof(index, size, DbNodes(session))


def prove_consistency(session: Session, old: int, new: int) -> list[bytes]:
    return consistency_proof(old, new, DbNodes(session))
