"""The Merkle tree as stored: complete subtrees in ``audit_merkle_node``.

``audit.merkle`` holds the RFC 9162 algorithms over a node reader; this module
is that reader for the database, plus the hook that stores the subtrees an
append completes, in the same transaction as the entry.
"""

from __future__ import annotations

from sqlalchemy import insert, select, tuple_
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
        """Whatever of ``keys`` is stored (no error for missing ones), in chunks."""
        found: dict[tuple[int, int], bytes] = {}
        for start in range(0, len(keys), 1000):
            rows = self.session.execute(
                select(AuditMerkleNode.level, AuditMerkleNode.idx, AuditMerkleNode.hash).where(
                    tuple_(AuditMerkleNode.level, AuditMerkleNode.idx).in_(
                        keys[start : start + 1000]
                    )
                )
            )
            found.update({(row.level, row.idx): bytes.fromhex(row.hash) for row in rows})
        return found

    def nodes(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        wanted = [k for k in keys if k not in self.cache]
        if wanted:
            rows = self.session.execute(
                select(AuditMerkleNode.level, AuditMerkleNode.idx, AuditMerkleNode.hash).where(
                    tuple_(AuditMerkleNode.level, AuditMerkleNode.idx).in_(wanted)
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
