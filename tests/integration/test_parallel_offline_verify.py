"""Offline verification with worker processes reports exactly what the sequential walk does.

The export here is written directly (no database) with more than two blocks of
entries (``audit.verify.BLOCK``), checkpoints on and around block edges, and then
tampered with in the ways an attacker would. Each case is verified twice, with
``workers=0`` and ``workers=2``: the reports must be equal, failure text included.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from audit.checkpoint import Checkpoint, format_checkpoint, generate_signer, sign_note
from audit.entry import ZERO_HASH, canonical_bytes, chain_hash, leaf_hash
from audit.merkle import root_from_leaves
from audit.offline import OfflineReport, verify_export
from audit.verify import BLOCK

ORIGIN = "memberguard.test/parallel"
SIZE = 2 * BLOCK + 300
CHECKPOINTS = (1, 100, BLOCK, BLOCK + 1, 2 * BLOCK, 2 * BLOCK + 10, SIZE)
# Checkpoints the log records itself, as a cut does, by the entry after them: one
# inside a block, one whose entry starts the next block, one in the last block.
RECORDED = (100, 2 * BLOCK, 2 * BLOCK + 10)


@dataclass(frozen=True)
class Built:
    directory: Path
    key: str
    signer: Any


def body(seq: int, last: dict[str, int]) -> dict[str, Any]:
    members = [f"member{(seq * 7) % 997:04d}", f"member{(seq * 13) % 991:04d}"][: 1 + seq % 2]
    unique = list(dict.fromkeys(members))
    entry: dict[str, Any] = {
        "v": 1,
        "seq": seq,
        "at": 1_795_000_000_000_000 + seq,
        "action": "member.read",
        "actor": f"client{seq % 3}",
        "actor_role": "client",
        "purpose": "customer_service",
        "members": members,
        "fields": {"phone": "masked"},
        "decision": "permit",
        "reason": "contract",
        "policy": "0" * 64,
        "request_id": f"req-{seq:06d}",
    }
    if seq % 500 == 0:
        entry["members"] = []  # now and then an entry that names nobody
    else:
        entry["member_prev"] = {m: last.get(m, 0) for m in unique}
        for m in unique:
            last[m] = seq
    return entry


def write_export(directory: Path, lines: list[bytes], signer: Any, sizes: tuple[int, ...]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "entries.ndjson").write_bytes(b"".join(line + b"\n" for line in lines))
    leaves = [leaf_hash(line) for line in lines]
    (directory / "checkpoints").mkdir(exist_ok=True)
    for size in sizes:
        sign(directory, size, root_from_leaves(leaves[:size]), signer)
    chain = ZERO_HASH
    for leaf in leaves:
        chain = chain_hash(chain, leaf)
    head = {"size": len(lines), "head_hash": chain.hex()}
    (directory / "head.json").write_text(json.dumps(head) + "\n", encoding="ascii")


def sign(directory: Path, size: int, root: bytes, signer: Any, *, name: str | None = None) -> None:
    note = sign_note(
        format_checkpoint(Checkpoint(origin=ORIGIN, size=size, root=root)),
        name=ORIGIN,
        private_key=signer,
    )
    path = directory / "checkpoints" / (name or f"{size:020d}.checkpoint")
    path.write_text(note, encoding="utf-8")


def cut_entry(seq: int, lines: list[bytes]) -> dict[str, Any]:
    """The entry that records the checkpoint at ``seq - 1``, cut over ``lines``."""
    root = root_from_leaves([leaf_hash(line) for line in lines])
    return {
        "v": 1,
        "seq": seq,
        "at": 1_795_000_000_000_000 + seq,
        "action": "audit.checkpoint",
        "members": [],
        "decision": "permit",
        "reason": "checkpoint",
        "policy": "0" * 64,
        "detail": {"size": seq - 1, "root": root.hex(), "origin": ORIGIN},
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    signer, _, key = generate_signer(ORIGIN)
    last: dict[str, int] = {}
    lines: list[bytes] = []
    for seq in range(1, SIZE + 1):
        entry = cut_entry(seq, lines) if seq - 1 in RECORDED else body(seq, last)
        lines.append(canonical_bytes(entry))
    directory = tmp_path_factory.mktemp("parallel") / "export"
    write_export(directory, lines, signer, CHECKPOINTS)
    return Built(directory, key, signer)


class Copy:
    def __init__(self, built: Built, directory: Path) -> None:
        shutil.copytree(built.directory, directory)
        self.dir = directory
        self.built = built

    @property
    def file(self) -> Path:
        return self.dir / "entries.ndjson"

    def lines(self) -> list[bytes]:
        return self.file.read_bytes()[:-1].split(b"\n")

    def write(self, lines: list[bytes]) -> None:
        self.file.write_bytes(b"".join(line + b"\n" for line in lines))

    def edit(self, seq: int, change: Callable[[dict[str, Any]], None]) -> None:
        lines = self.lines()
        entry = json.loads(lines[seq - 1])
        change(entry)
        lines[seq - 1] = canonical_bytes(entry)
        self.write(lines)


def both(
    directory: Path,
    key: str,
    monkeypatch: pytest.MonkeyPatch,
    kept: list[tuple[str, str]] | None = None,
) -> list[OfflineReport]:
    """The report without and with workers, and proof that a worker checked a block."""
    from audit import offline

    from_workers = []
    original = offline._Walk._block

    def spy(self: Any, first: int, count: int, data: bytes, future: Any) -> str | None:
        from_workers.append(future is not None)
        return original(self, first, count, data, future)

    sequential = verify_export(directory, verifier_key=key, workers=0, kept=kept or [])
    assert not from_workers
    with monkeypatch.context() as patch:
        patch.setattr(offline._Walk, "_block", spy)
        parallel = verify_export(directory, verifier_key=key, workers=2, kept=kept or [])
    assert any(from_workers), "no block went to a worker"
    assert (sequential.workers, parallel.workers) == (0, 2)  # the reports say so
    return [sequential, parallel]


def flip_digit(entry: dict[str, Any]) -> None:
    entry["request_id"] = entry["request_id"][:-1] + (
        "9" if entry["request_id"][-1] != "9" else "8"
    )


def wrong_link(entry: dict[str, Any]) -> None:
    member = entry["members"][0]
    entry["member_prev"][member] += 1


def drop_links(entry: dict[str, Any]) -> None:
    entry.pop("member_prev")


def tamper_line(copy: Copy, seq: int, change: Callable[[bytes], bytes]) -> None:
    lines = copy.lines()
    lines[seq - 1] = change(lines[seq - 1])
    copy.write(lines)


CASES: dict[str, Callable[[Copy], None]] = {
    "clean": lambda copy: None,
    "still-canonical-change-in-block-2": lambda copy: copy.edit(BLOCK + 50, flip_digit),
    "change-after-the-last-checkpoint-but-one": lambda copy: copy.edit(SIZE - 5, flip_digit),
    "non-canonical-at-the-end-of-block-1": lambda copy: tamper_line(
        copy, BLOCK, lambda raw: raw.replace(b'"seq":', b'"seq": ', 1)
    ),
    "wrong-back-link-at-the-start-of-block-2": lambda copy: copy.edit(BLOCK + 1, wrong_link),
    "wrong-back-link-inside-block-1": lambda copy: copy.edit(3001, wrong_link),
    "no-back-links-in-block-3": lambda copy: copy.edit(2 * BLOCK + 7, drop_links),
    "a-float": lambda copy: tamper_line(copy, 3, lambda raw: raw.replace(b'"v":1', b'"v":1.0')),
    "not-json": lambda copy: tamper_line(copy, BLOCK + 2, lambda raw: raw[:-1] + b"]"),
    "deleted-entry": lambda copy: copy.write(copy.lines()[:4999] + copy.lines()[5000:]),
    "swapped-entries": lambda copy: copy.write(
        [
            *copy.lines()[: BLOCK - 1],
            copy.lines()[BLOCK],
            copy.lines()[BLOCK - 1],
            *copy.lines()[BLOCK + 1 :],
        ]
    ),
    "truncated-last-line": lambda copy: copy.file.write_bytes(copy.file.read_bytes()[:-1]),
    "cut-inside-the-last-line": lambda copy: copy.file.write_bytes(copy.file.read_bytes()[:-30]),
    "checkpoint-with-another-root": lambda copy: sign(
        copy.dir, BLOCK + 1, b"\x07" * 32, copy.built.signer
    ),
    "checkpoint-of-size-0-holds-up-the-rest": lambda copy: sign(
        copy.dir, 0, b"\x07" * 32, copy.built.signer
    ),
    "two-files-for-one-size": lambda copy: shutil.copy(
        copy.dir / "checkpoints" / f"{100:020d}.checkpoint",
        copy.dir / "checkpoints" / "100.checkpoint",
    ),
    "checkpoint-beyond-the-entries": lambda copy: sign(
        copy.dir, SIZE + 1, b"\x07" * 32, copy.built.signer
    ),
    "head-of-another-size": lambda copy: (copy.dir / "head.json").write_text(
        json.dumps({"size": SIZE - 1, "head_hash": "00"}) + "\n", encoding="ascii"
    ),
    "tail-cut-with-head-fixed": lambda copy: write_export(
        copy.dir, copy.lines()[: SIZE - 10], copy.built.signer, CHECKPOINTS[:-1]
    ),
    "a-recorded-checkpoint-deleted-inside-a-block": lambda copy: (
        copy.dir / "checkpoints" / f"{100:020d}.checkpoint"
    ).unlink(),
    "a-recorded-checkpoint-deleted-at-a-block-edge": lambda copy: (
        copy.dir / "checkpoints" / f"{2 * BLOCK:020d}.checkpoint"
    ).unlink(),
}


@pytest.mark.parametrize("case", list(CASES))
def test_workers_report_exactly_what_the_sequential_walk_reports(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    copy = Copy(built, tmp_path / "export")
    CASES[case](copy)
    sequential, parallel = both(copy.dir, built.key, monkeypatch)
    assert parallel == sequential
    # A second copy of a good checkpoint is a good checkpoint: checked twice.
    assert sequential.ok == (case in ("clean", "two-files-for-one-size")), sequential
    if case == "clean":
        assert (sequential.size, sequential.checkpoints) == (SIZE, len(CHECKPOINTS))


# size, root (None: the log's own), whether the log extends it.
KEPT = {
    "in-block-2": ([(BLOCK + 77, None)], True),
    "at-a-block-edge-and-in-the-tail": ([(BLOCK, None), (SIZE - 3, None)], True),
    "of-the-empty-log": ([(0, None)], True),
    "another-root-in-block-2": ([(BLOCK + 77, b"\x07" * 32)], False),
    "another-root-after-a-good-one": ([(100, None), (2 * BLOCK + 1, b"\x07" * 32)], False),
    "beyond-the-log": ([(SIZE + 5, b"\x07" * 32)], False),
}


@pytest.mark.parametrize("case", list(KEPT))
def test_workers_hold_the_log_to_kept_checkpoints_as_the_sequential_walk_does(
    built: Built, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    wanted, extends = KEPT[case]
    lines = (built.directory / "entries.ndjson").read_bytes()[:-1].split(b"\n")
    kept = []
    for number, (size, root) in enumerate(wanted):
        if root is None:
            root = root_from_leaves([leaf_hash(line) for line in lines[:size]])
        body = format_checkpoint(Checkpoint(origin=ORIGIN, size=size, root=root))
        kept.append((f"kept-{number}", sign_note(body, name=ORIGIN, private_key=built.signer)))
    sequential, parallel = both(built.directory, built.key, monkeypatch, kept)
    assert parallel == sequential
    assert sequential.ok == extends, sequential
    if not extends:
        assert sequential.failure is not None
        assert sequential.failure.startswith(f"checkpoint kept-{len(wanted) - 1} "), sequential


def test_progress_is_reported_at_the_same_counts(built: Built) -> None:
    seen: dict[int, list[tuple[int, int]]] = {0: [], 2: []}
    for workers, calls in seen.items():
        report = verify_export(
            built.directory,
            verifier_key=built.key,
            workers=workers,
            progress=lambda done, total, calls=calls: calls.append((done, total)),
        )
        assert report.ok
    assert seen[0] == seen[2]
    assert seen[0][-1] == (SIZE, SIZE)
