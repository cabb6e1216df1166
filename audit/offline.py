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
entries); every ``audit.checkpoint`` entry must have its checkpoint in the
export, and every checkpoint an auditor kept (``kept``) must be one the export
extends. It names the first failing entry or checkpoint and the reason.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import islice
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.checkpoint import (
    CheckpointError,
    KeyFormatError,
    NoteError,
    parse_checkpoint,
    parse_verifier_key,
    unverified_note_text,
)
from audit.entry import parse_entries
from audit.log import read_head
from audit.models import AuditCheckpoint, AuditEntry
from audit.verify import (
    BLOCK,
    CHECKPOINT_ACTION,
    HeldCheckpoint,
    LogVerifier,
    Progress,
    checkpoint_record_failure,
    held_in_order,
    summarise_block,
)


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
    # How many worker processes checked blocks (0: all here). Not part of the
    # verdict, so reports with and without workers compare equal.
    workers: int = field(default=0, compare=False)


def verify_export(
    directory: Path,
    *,
    verifier_key: str,
    progress: Progress | None = None,
    workers: int | None = None,
    kept: Sequence[tuple[str, str]] = (),
) -> OfflineReport:
    """Verify an export; never raises for bad input, it reports it.

    ``kept``: (name, note) of checkpoints an auditor kept, which must verify
    under ``verifier_key`` and which the export must extend.

    ``workers``: processes that check blocks of entries alongside this one
    (``audit.verify.summarise_block``); 0 checks every entry here. By default
    an export large enough to repay starting them gets one per CPU, at most 4.
    None are started while this process runs other threads (see
    ``_Walk.in_blocks``); the report says how many ran. Either way every
    entry gets every check, and a bad one is named by the same sequential
    walk (see ``audit.verify``).
    """
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
        held = held_in_order(
            [
                HeldCheckpoint.read(f"checkpoint {name}", note, verifier_key=verifier_key)
                for name, note in kept
            ]
        )
    except ValueError as exc:  # a HeldCheckpointError too
        return OfflineReport(False, 0, 0, failure=str(exc))
    total = claimed[0] if claimed else 0

    walk = _Walk(LogVerifier(verifier_key), checkpoints, progress, total, held)
    if workers is None:
        workers = default_workers(entries_file)
    with open(entries_file, "rb") as handle:
        failure = walk.held_failure(0) if walk.held_at == 0 else None
        if failure is None:
            failure = walk.in_blocks(handle, workers) if workers > 0 else walk.lines(handle)
    verifier, checked = walk.verifier, walk.checked
    if failure:
        return _fail(walk, failure)
    if walk.next < len(checkpoints):
        size = checkpoints[walk.next][0]
        return _fail(walk, f"checkpoint {size}: names a size beyond the {verifier.size} entries")
    if claimed is not None:
        size, head_hash = claimed
        if size != verifier.size:
            return _fail(walk, f"head.json says {size} entries, the export has {verifier.size}")
        if head_hash != verifier.chain.hex():
            return _fail(walk, "head.json's head hash does not match the recomputed chain")
    if walk.held_next < len(held):
        return _fail(walk, held[walk.held_next].beyond(verifier.size))
    if progress is not None:
        progress(verifier.size, total)
    return OfflineReport(
        True, verifier.size, checked, head_hash=verifier.chain.hex(), workers=walk.workers
    )


# Below this many bytes of entries (about 100,000 entries) starting worker
# processes costs more than it saves.
PARALLEL_MIN_BYTES = 48 << 20
PROGRESS_EVERY = 100_000


def default_workers(entries_file: Path) -> int:
    """How many worker processes ``verify_export`` starts by default for this file."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    if cpus < 2 or entries_file.stat().st_size < PARALLEL_MIN_BYTES:
        return 0
    return min(cpus, 4)


class _Walk:
    """The entries in order, with each checkpoint checked at its size.

    ``checkpoints[next]`` is the next one due; like the entries, checkpoints
    are taken strictly in order, so one that names a size no entry reaches
    (0, or past the end) holds up the rest and is reported at the end."""

    def __init__(
        self,
        verifier: LogVerifier,
        checkpoints: list[tuple[int, str]],
        progress: Progress | None,
        total: int,
        held: list[HeldCheckpoint],
    ) -> None:
        self.verifier = verifier
        self.checkpoints = checkpoints
        self.next = 0
        self.checked = 0
        self.progress = progress
        self.total = total
        self.workers = 0  # worker processes actually started
        # The export's checkpoints by size: what audit.checkpoint entries must name.
        # Read without their signatures, which the walk checks at their sizes,
        # before any entry after them.
        self.roots = _roots(checkpoints)
        # Checkpoints an auditor kept, by size; held_at is the next one's size (-1: none).
        self.held = held
        self.held_next = 0
        self.held_at = held[0].size if held else -1

    def held_failure(self, size: int) -> str | None:
        """The kept checkpoints at ``size`` (the size verified so far) against the
        recomputed root."""
        root = self.verifier.frontier.root()
        held = self.held
        while self.held_next < len(held) and held[self.held_next].size == size:
            if held[self.held_next].root != root:
                return held[self.held_next].mismatch()
            self.held_next += 1
        self.held_at = held[self.held_next].size if self.held_next < len(held) else -1
        return None

    def lines(self, lines: Iterable[bytes]) -> str | None:
        """Check each line in turn; the first failure, as the report words it."""
        verifier, checkpoints = self.verifier, self.checkpoints
        stream = iter(lines)
        while batch := list(islice(stream, 1024)):
            # Decoded a batch at a time when all are canonical (parse_entries);
            # otherwise entry by entry, which says what is wrong.
            raws = [line[:-1] for line in batch]
            entries = parse_entries(raws) if batch[-1].endswith(b"\n") else None
            for index, line in enumerate(batch):
                seq = verifier.size + 1
                if not line.endswith(b"\n"):
                    return f"entry {seq}: truncated (no final newline)"
                if entries is None:
                    entry, failure = verifier.add(raws[index])
                else:
                    entry, failure = verifier.add_parsed(raws[index], entries[index])
                if failure:
                    return f"entry {seq}: {failure}"
                if entry is not None and entry.get("action") == CHECKPOINT_ACTION:
                    failure = checkpoint_record_failure(entry.get("detail"), self.roots)
                    if failure:
                        return f"entry {seq}: {failure}"
                while self.next < len(checkpoints) and checkpoints[self.next][0] == seq:
                    size, note = checkpoints[self.next]
                    failure = verifier.check_checkpoint(note, size=size)
                    if failure:
                        return f"checkpoint {size}: {failure}"
                    self.checked += 1
                    self.next += 1
                if seq == self.held_at:
                    failure = self.held_failure(seq)
                    if failure:
                        return failure
                if self.progress is not None and seq % PROGRESS_EVERY == 0:
                    self.progress(seq, self.total)
        return None

    def in_blocks(self, handle: BinaryIO, workers: int) -> str | None:
        """``lines``, with blocks of entries checked by ``workers`` other processes.

        Blocks go out in order, a few ahead, and come back in order. A block that
        a worker could not pass, or whose first back-links or checkpoints do not
        hold, is walked here entry by entry: that names the failure exactly."""
        # Forked, not spawned: a spawned worker re-imports the caller's main
        # module, which not every caller guards. Forking is safe only while this
        # process has no other thread (one could hold a lock the child inherits);
        # the executor forks all its workers before it starts its own thread.
        if threading.active_count() > 1 or "fork" not in get_all_start_methods():
            return self.lines(handle)
        try:
            pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"))
        except (OSError, ValueError):
            return self.lines(handle)
        self.workers = workers
        sizes = sorted({size for size, _note in self.checkpoints} | {cp.size for cp in self.held})
        in_flight: deque[tuple[int, int, bytes, Future[Any] | None]] = deque()
        blocks = _read_blocks(handle)
        start = 0
        try:
            while True:
                while len(in_flight) < 2 * workers:
                    read = next(blocks, None)
                    if read is None:
                        break
                    data, count, complete = read
                    future = None
                    if complete:
                        wanted = [s for s in sizes if start < s <= start + count]
                        with suppress(Exception):  # a broken pool: walk the block here
                            future = pool.submit(summarise_block, start, data, wanted)
                    in_flight.append((start, count, data, future))
                    start += count
                if not in_flight:
                    return None
                failure = self._block(*in_flight.popleft())
                if failure:
                    return failure
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _block(self, first: int, count: int, data: bytes, future: Future[Any] | None) -> str | None:
        summary = None
        if future is not None:
            try:
                summary = future.result()
            except Exception:  # a worker died (BrokenProcessPool, …): walk the block here
                summary = None
        due = []
        while (
            self.next + len(due) < len(self.checkpoints)
            and first < self.checkpoints[self.next + len(due)][0] <= first + count
        ):
            due.append(self.checkpoints[self.next + len(due)])
        held = []
        while (
            self.held_next + len(held) < len(self.held)
            and first < self.held[self.held_next + len(held)].size <= first + count
        ):
            cp = self.held[self.held_next + len(held)]
            held.append((cp.size, cp.root))
        if (
            summary is None
            or self.verifier.size != first
            or any(checkpoint_record_failure(detail, self.roots) for detail in summary[6])
            or not self.verifier.add_block(summary, count, due, held)
        ):
            # The block's lines as iterating the file gives them: each with its
            # newline, the last perhaps without.
            *lines, tail = data.split(b"\n")
            return self.lines([*(line + b"\n" for line in lines), *([tail] if tail else [])])
        self.next += len(due)
        self.checked += len(due)
        self.held_next += len(held)
        self.held_at = self.held[self.held_next].size if self.held_next < len(self.held) else -1
        if self.progress is not None:
            for seq in range(
                (first // PROGRESS_EVERY + 1) * PROGRESS_EVERY, first + count + 1, PROGRESS_EVERY
            ):
                self.progress(seq, self.total)
        return None


def _fail(walk: _Walk, failure: str) -> OfflineReport:
    return OfflineReport(
        False, walk.verifier.size, walk.checked, failure=failure, workers=walk.workers
    )


def _roots(checkpoints: list[tuple[int, str]]) -> dict[int, str]:
    """size → root (hex) of each checkpoint file, as its text says; a file whose
    text does not parse is left out (the walk names it at its size)."""
    roots = {}
    for size, note in checkpoints:
        try:
            roots[size] = parse_checkpoint(unverified_note_text(note)).root.hex()
        except (NoteError, CheckpointError):
            continue
    return roots


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


def _read_blocks(handle: BinaryIO) -> Iterator[tuple[bytes, int, bool]]:
    """The file in blocks of ``BLOCK`` lines: (their bytes, how many lines, whether
    the last ends in a newline). Only the file's last block can hold fewer lines,
    or end in a line cut short. Reading big chunks and finding the newlines
    costs less than a bytes object per line, and the block goes to a worker
    as one bytes object."""
    buffer = b""
    at_end = False
    while True:
        count = position = 0
        find = buffer.find
        while count < BLOCK:
            newline = find(b"\n", position)
            if newline >= 0:
                count += 1
                position = newline + 1
            elif at_end:
                break
            else:
                more = handle.read(_READ)
                if more:
                    buffer += more
                    find = buffer.find
                else:
                    at_end = True
        if count < BLOCK and at_end and position < len(buffer):  # a last line, cut short
            yield buffer, count + 1, False
            return
        if count:
            yield buffer[:position], count, True
        if at_end and position == len(buffer):
            return
        buffer = buffer[position:]


_READ = 4 << 20
