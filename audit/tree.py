"""The Merkle tree as stored: complete subtrees in ``audit_merkle_node``.

``audit.merkle`` holds the RFC 9162 algorithms over a node reader; this module
is that reader for the database, plus the hook that stores the subtrees an
append completes, in the same transaction as the entry.
"""

from __future__ import annotations

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.orm import Session

from audit.merkle import completed_nodes, consistency_proof, inclusion_proof, root
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


class PendingNodes(DbNodes):
    """Subtrees completed by a batch of appends, read back before they are stored."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.pending: list[tuple[int, int, bytes]] = []

    def add_leaf(self, index: int, leaf: bytes) -> None:
        """Compute every subtree that leaf ``index`` completes (the leaf included)."""
        for level, idx, digest in completed_nodes(index, leaf, self):
            self.cache[(level, idx)] = digest
            self.pending.append((level, idx, digest))

    def flush(self) -> None:
        if self.pending:
            self.session.execute(
                insert(AuditMerkleNode.__table__),
                [
                    {"level": lv, "idx": idx, "hash": digest.hex()}
                    for lv, idx, digest in self.pending
                ],
            )
            self.pending = []


def tree_root(session: Session, size: int) -> bytes:
    return root(size, DbNodes(session))


def prove_inclusion(session: Session, index: int, size: int) -> list[bytes]:
    return inclusion_proof(index, size, DbNodes(session))


def prove_consistency(session: Session, old: int, new: int) -> list[bytes]:
    return consistency_proof(old, new, DbNodes(session))
