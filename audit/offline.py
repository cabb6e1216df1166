"""Export the log, and verify an export with no database and no private key.

An export directory holds:

- ``entries.ndjson``: every entry's canonical bytes, one per line, in order
  (canonical JSON never contains a raw newline);
- ``checkpoints/<size>.checkpoint``: every signed checkpoint, as published;
- ``verifier.key``: the log's public key (an auditor should verify against a
  copy obtained independently, not this one);
- ``head.json``: the size and head chain hash at export time (unsigned).

``verify_export`` recomputes every leaf, the hash chain and the Merkle root
at every checkpoint, checks each checkpoint's signature, and so the
consistency of successive checkpoints (all roots come from one sequence of
entries). It names the first failing entry or checkpoint and the reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.checkpoint import KeyFormatError, parse_verifier_key
from audit.log import read_head
from audit.models import AuditCheckpoint, AuditEntry
from audit.verify import LogVerifier

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ExportReport:
    size: int
    checkpoints: int
    head_hash: str


def export_log(
    session: Session,
    directory: Path,
    *,
    verifier_key: str,
    batch: int = 5000,
    progress: Progress | None = None,
) -> ExportReport:
    """Write the log up to its current head (read first) into ``directory``."""
    head = read_head(session)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "checkpoints").mkdir(exist_ok=True)
    last = 0
    with open(directory / "entries.ndjson", "wb") as out:
        while last < head.size:
            rows = session.execute(
                select(AuditEntry.seq, AuditEntry.entry)
                .where(AuditEntry.seq > last, AuditEntry.seq <= head.size)
                .order_by(AuditEntry.seq)
                .limit(batch)
            ).all()
            if not rows:
                break
            for row in rows:
                out.write(bytes(row.entry) + b"\n")
            last = rows[-1].seq
            if progress is not None:
                progress(last, head.size)
        out.flush()
        os.fsync(out.fileno())
    checkpoints = session.execute(
        select(AuditCheckpoint.size, AuditCheckpoint.note)
        .where(AuditCheckpoint.size <= head.size)
        .order_by(AuditCheckpoint.size)
    ).all()
    for row in checkpoints:
        (directory / "checkpoints" / f"{row.size:020d}.checkpoint").write_text(
            row.note, encoding="utf-8"
        )
    (directory / "verifier.key").write_text(verifier_key + "\n", encoding="ascii")
    (directory / "head.json").write_text(
        json.dumps({"size": head.size, "head_hash": head.head_hash}) + "\n", encoding="ascii"
    )
    return ExportReport(size=head.size, checkpoints=len(checkpoints), head_hash=head.head_hash)


@dataclass(frozen=True, slots=True)
class OfflineReport:
    ok: bool
    size: int
    checkpoints: int
    head_hash: str | None = None
    failure: str | None = None


def verify_export(
    directory: Path, *, verifier_key: str, progress: Progress | None = None
) -> OfflineReport:
    """Verify an export; never raises for bad input, it reports it."""
    try:
        parse_verifier_key(verifier_key)
    except KeyFormatError as exc:
        return OfflineReport(False, 0, 0, failure=f"the public key is not a verifier key: {exc}")
    entries_file = directory / "entries.ndjson"
    if not entries_file.is_file():
        return OfflineReport(False, 0, 0, failure=f"{entries_file}: missing")
    try:
        checkpoints = _load_checkpoints(directory / "checkpoints")
        claimed = _load_head(directory / "head.json")
    except ValueError as exc:
        return OfflineReport(False, 0, 0, failure=str(exc))
    total = claimed[0] if claimed else 0

    verifier = LogVerifier(verifier_key)
    pending = iter(checkpoints)
    current = next(pending, None)
    checked = 0
    with open(entries_file, "rb") as handle:
        for line in handle:
            seq = verifier.size + 1
            if not line.endswith(b"\n"):
                return _fail(verifier, checked, f"entry {seq}: truncated (no final newline)")
            _entry, failure = verifier.add(line[:-1])
            if failure:
                return _fail(verifier, checked, f"entry {seq}: {failure}")
            while current is not None and current[0] == seq:
                failure = verifier.check_checkpoint(current[1], size=current[0])
                if failure:
                    return _fail(verifier, checked, f"checkpoint {current[0]}: {failure}")
                checked += 1
                current = next(pending, None)
            if progress is not None and seq % 100_000 == 0:
                progress(seq, total)
    if current is not None:
        return _fail(
            verifier,
            checked,
            f"checkpoint {current[0]}: names a size beyond the {verifier.size} entries",
        )
    if claimed is not None:
        size, head_hash = claimed
        if size != verifier.size:
            return _fail(
                verifier, checked, f"head.json says {size} entries, the export has {verifier.size}"
            )
        if head_hash != verifier.chain.hex():
            return _fail(
                verifier, checked, "head.json's head hash does not match the recomputed chain"
            )
    if progress is not None:
        progress(verifier.size, total)
    return OfflineReport(True, verifier.size, checked, head_hash=verifier.chain.hex())


def _fail(verifier: LogVerifier, checked: int, failure: str) -> OfflineReport:
    return OfflineReport(False, verifier.size, checked, failure=failure)


def _load_checkpoints(directory: Path) -> list[tuple[int, str]]:
    if not directory.is_dir():
        return []
    found: list[tuple[int, str]] = []
    for path in sorted(directory.glob("*.checkpoint")):
        stem = path.name.removesuffix(".checkpoint")
        if not stem.isdigit():
            raise ValueError(f"{path}: not named <size>.checkpoint")
        try:
            # Bytes, not text mode: universal newlines would turn a tampered
            # "\r" back into "\n" and let the signature verify.
            found.append((int(stem), path.read_bytes().decode("utf-8")))
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not UTF-8 text") from None
    return sorted(found)


def _load_head(path: Path) -> tuple[int, str] | None:
    if not path.exists():
        return None
    try:
        head = json.loads(path.read_text(encoding="ascii"))
        size, head_hash = head["size"], head["head_hash"]
        if not isinstance(size, int) or not isinstance(head_hash, str):
            raise TypeError
        return size, head_hash
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        raise ValueError(f"{path}: not a valid head file") from None
