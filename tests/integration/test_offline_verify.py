"""Offline verification of an export, and the online verifier's checks of the tree.

The export is made once, the way an operator makes it (``memberguard demo``, then
``audit checkpoint``, ``audit public-key`` and ``audit export``), with a few more
entries naming repeated members so that back-links matter. Each tamper test edits
a copy and runs ``memberguard audit verify --export DIR --pubkey FILE``: exit 1,
a ``FAILED:`` line naming the entry or checkpoint, never a traceback.

An export carries no per-entry hash, so an edit that keeps the bytes canonical
shows at the first signed checkpoint covering it, or at ``head.json`` after the
last one. A consistent rewrite of the unsigned tail (after the last checkpoint,
with ``head.json`` recomputed) cannot be told from a shorter or longer log by an
export alone; auditors compare checkpoints for that, so it is not tested here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, insert, update
from sqlalchemy.orm import Session, sessionmaker

from audit.actions import Record
from audit.checkpoint import (
    Checkpoint,
    format_checkpoint,
    generate_signer,
    parse_signer_key,
    sign_note,
)
from audit.entry import ZERO_HASH, canonical_bytes, chain_hash, leaf_hash
from audit.log import append_entry, read_head
from audit.merkle import root_from_leaves
from audit.models import AuditCheckpoint, AuditMerkleNode
from audit.notary import Notary
from audit.offline import export_log, verify_export
from audit.online import verify_log
from audit.uow import AuditedUnitOfWork
from cli.main import main
from core.db import build_engine, session_factory
from gate.context import Services
from tests.conftest import ORIGIN
from tests.integration.conftest import append_entries, ticking_clock, unguarded_connection

CLI_ORIGIN = "memberguard/audit-log"  # the default origin of a deployment
MEMBERS = ("mmmmmmmmmmmmmmmmmmmmmma1", "mmmmmmmmmmmmmmmmmmmmmmb2", "mmmmmmmmmmmmmmmmmmmmmmc3")
ENV = {
    "MEMBERGUARD_DATABASE_URL": None,
    "MEMBERGUARD_KEY_PROVIDER": None,
    "MEMBERGUARD_AUDIT_ORIGIN": None,
    "MEMBERGUARD_AUDIT_SIGNER_PATH": None,
    "MEMBERGUARD_CHECKPOINT_DIR": None,
}


# -- the export, built once -------------------------------------------------------


@dataclass(frozen=True)
class Built:
    export: Path
    pubkey: Path
    signer: Ed25519PrivateKey
    size: int
    checkpoints: list[int]


def read(n: int) -> Record:
    """A read naming two of three members, so each member recurs every few entries."""
    return Record(
        action="member.read",
        decision="permit",
        reason="contract",
        policy="0" * 64,
        actor="crmclientaaaaaaaaaaaaaaa",
        actor_role="client",
        purpose="customer_service",
        members=(MEMBERS[n % 3], MEMBERS[(n + 1) % 3]),
        fields={"phone": "masked"},
        request_id=f"req-{n:04d}",
    )


def cli(env: dict[str, str | None], *args: str) -> Result:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("offline")
    home = root / "home"
    env = {**ENV, "MEMBERGUARD_HOME": str(home)}
    cli(env, "demo", "--members", "40", "--no-serve")
    engine = build_engine(f"sqlite:///{home / 'memberguard.db'}")
    clock = ticking_clock()
    try:
        for count in (12, 4, 2):  # reads, a checkpoint after the first two batches
            with session_factory(engine)() as session:
                for n in range(count):
                    append_entry(session, read(n), clock=clock)
                session.commit()
            if count != 2:
                cli(env, "audit", "checkpoint")
    finally:
        engine.dispose()
    pubkey = root / "auditor.pub"
    pubkey.write_text(cli(env, "audit", "public-key").output, encoding="ascii")
    export = root / "export"
    cli(env, "audit", "export", str(export))
    signer_text = (home / "keys" / "audit-signer.key").read_text(encoding="ascii").strip()
    head = json.loads((export / "head.json").read_text(encoding="ascii"))
    sizes = sorted(int(p.stem) for p in (export / "checkpoints").glob("*.checkpoint"))
    # demo: 1 import (checkpointed), then clients; 12 reads, cut; 4 reads, cut; 2 reads.
    assert len(sizes) == 3 and sizes[0] == 1 and sizes[1] + 5 == sizes[2] == head["size"] - 3
    return Built(export, pubkey, parse_signer_key(signer_text)[2], head["size"], sizes)


class Export:
    """A copy of the built export, with the edits an attacker would make."""

    def __init__(self, built: Built, directory: Path) -> None:
        self.built = built
        self.dir = directory
        shutil.copytree(built.export, directory)

    @property
    def entries_file(self) -> Path:
        return self.dir / "entries.ndjson"

    def lines(self) -> list[bytes]:
        data = self.entries_file.read_bytes()
        assert data.endswith(b"\n")
        return data[:-1].split(b"\n")

    def write(self, lines: list[bytes], *, fix_head: bool = False) -> None:
        self.entries_file.write_bytes(b"".join(line + b"\n" for line in lines))
        if fix_head:
            chain = ZERO_HASH
            for line in lines:
                chain = chain_hash(chain, leaf_hash(line))
            head = {"size": len(lines), "head_hash": chain.hex()}
            (self.dir / "head.json").write_text(json.dumps(head) + "\n", encoding="ascii")

    def checkpoint_file(self, size: int) -> Path:
        return self.dir / "checkpoints" / f"{size:020d}.checkpoint"

    def sign(
        self, size: int, root: bytes, key: Ed25519PrivateKey, *, origin: str = CLI_ORIGIN
    ) -> None:
        body = format_checkpoint(Checkpoint(origin=origin, size=size, root=root))
        note = sign_note(body, name=origin, private_key=key)
        self.checkpoint_file(size).write_text(note, encoding="utf-8")

    def verify(self, pubkey: Path | None = None, *, kept: tuple[Path, ...] = ()) -> Result:
        key = pubkey or self.built.pubkey
        held = [arg for path in kept for arg in ("--checkpoint", str(path))]
        result = CliRunner().invoke(
            main, ["audit", "verify", "--export", str(self.dir), "--pubkey", str(key), *held]
        )
        # Only a deliberate exit: a traceback would be result.exception of another type.
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        return result


@pytest.fixture
def export(built: Built, tmp_path: Path) -> Export:
    return Export(built, tmp_path / "export")


def assert_failed(result: Result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"FAILED: {message}"), result.stderr
    assert "Traceback" not in result.stderr


def entries(lines: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def rebuilt(bodies: list[dict[str, Any]]) -> list[bytes]:
    """Renumber and re-link a history, as a forger who knows the format would."""
    last: dict[str, int] = {}
    out = []
    for seq, body in enumerate(bodies, start=1):
        body = {**body, "seq": seq}
        members = list(dict.fromkeys(body["members"]))
        if members:
            body["member_prev"] = {m: last.get(m, 0) for m in members}
        for member in members:
            last[member] = seq
        out.append(canonical_bytes(body))
    return out


def root_of(lines: list[bytes]) -> bytes:
    return root_from_leaves([leaf_hash(line) for line in lines])


def a_read_between(lines: list[bytes], low: int, high: int) -> int:
    """The seq of one of this module's reads (``read``: request ids ``req-…``) strictly
    between two sizes; the demo's own reads (its SMS campaign) have other request ids."""
    for seq in range(low + 1, high):
        entry = json.loads(lines[seq - 1])
        if entry["action"] == "member.read" and str(entry.get("request_id")).startswith("req-"):
            return seq
    raise AssertionError(f"no member read between {low} and {high}")


def digit_changed(raw: bytes) -> bytes:
    """One byte of the request id changed: the bytes stay canonical, only hashes can tell."""
    at = raw.index(b'"request_id":"req-') + len(b'"request_id":"req-000')
    return raw[:at] + (b"9" if raw[at : at + 1] != b"9" else b"8") + raw[at + 1 :]


# -- a clean export ---------------------------------------------------------------


def test_a_clean_export_verifies_with_exit_0(built: Built, export: Export) -> None:
    result = export.verify()
    assert result.exit_code == 0, result.output
    head = json.loads((export.dir / "head.json").read_text(encoding="ascii"))
    assert result.stdout == (
        f"OK: {built.size} entries, {len(built.checkpoints)} signed checkpoints, "
        f"head {head['head_hash']}\n"
    )


def test_an_export_from_each_backend_verifies_offline(
    services: Services, session: Session, tmp_path: Path
) -> None:
    # The fixture notary cuts at the first commit and after 50 more entries.
    assert services.notary is not None
    for count in (3, 55, 4):
        with services.uow() as uow:
            append_entries(uow.session, count, clock=ticking_clock())
            uow.commit()
    written = export_log(session, tmp_path, verifier_key=services.notary.verifier_key)
    report = verify_export(tmp_path, verifier_key=services.notary.verifier_key)
    assert (report.ok, report.failure) == (True, None)
    assert (report.size, report.checkpoints, report.head_hash) == (
        written.size,
        2,
        written.head_hash,
    )


# -- tampered entries -------------------------------------------------------------


def test_one_changed_byte_in_a_signed_entry_is_named_at_its_checkpoint(
    built: Built, export: Export
) -> None:
    lines = export.lines()
    first, second = built.checkpoints[:2]
    target = a_read_between(lines, first, second)
    lines[target - 1] = digit_changed(lines[target - 1])
    export.write(lines, fix_head=True)
    assert_failed(
        export.verify(), f"checkpoint {second}: checkpoint root for size {second} does not match"
    )


def test_one_changed_byte_after_the_last_checkpoint_is_caught_by_the_head_hash(
    built: Built, export: Export
) -> None:
    lines = export.lines()
    lines[-1] = digit_changed(lines[-1])
    export.write(lines)
    assert_failed(export.verify(), "head.json's head hash does not match the recomputed chain")


def test_one_changed_byte_that_breaks_the_json_is_named_at_the_entry(
    built: Built, export: Export
) -> None:
    lines = export.lines()
    lines[4] = lines[4][:-1] + b"]"
    export.write(lines)
    assert_failed(export.verify(), "entry 5: entry bytes are invalid")


def test_non_canonical_entry_bytes_are_named_at_the_entry(built: Built, export: Export) -> None:
    lines = export.lines()
    lines[6] = lines[6].replace(b'"decision":', b'"decision": ', 1)
    export.write(lines, fix_head=True)
    assert_failed(
        export.verify(), "entry 7: entry bytes are invalid: bytes are not in canonical form"
    )


def test_a_deleted_entry_is_named_where_the_sequence_breaks(built: Built, export: Export) -> None:
    lines = export.lines()
    del lines[11]
    export.write(lines, fix_head=True)
    assert_failed(export.verify(), "entry 12: entry bytes name seq 13, expected 12")


def test_a_deleted_and_renumbered_entry_breaks_the_next_back_link_of_its_members(
    built: Built, export: Export
) -> None:
    lines = export.lines()
    target = a_read_between(lines, *built.checkpoints[:2])
    bodies = entries(lines)
    hidden = bodies.pop(target - 1)
    renumbered = [canonical_bytes({**b, "seq": n}) for n, b in enumerate(bodies, start=1)]
    # The first later entry naming a member of the hidden one still links to it.
    named = next(
        n
        for n, b in enumerate(bodies, start=1)
        if n >= target and set(b["members"]) & set(hidden["members"])
    )
    export.write(renumbered, fix_head=True)
    assert_failed(
        export.verify(),
        f"entry {named}: member back-links do not name each member's previous entry",
    )


def test_a_deleted_entry_with_the_history_rebuilt_is_caught_by_the_checkpoint(
    built: Built, export: Export
) -> None:
    lines = export.lines()
    first, second = built.checkpoints[:2]
    target = a_read_between(lines, first, second)
    bodies = entries(lines)
    del bodies[target - 1]
    export.write(rebuilt(bodies), fix_head=True)
    assert_failed(
        export.verify(), f"checkpoint {second}: checkpoint root for size {second} does not match"
    )


def test_two_swapped_entries_are_named_at_the_earlier_one(built: Built, export: Export) -> None:
    lines = export.lines()
    lines[10], lines[13] = lines[13], lines[10]
    export.write(lines, fix_head=True)
    assert_failed(export.verify(), "entry 11: entry bytes name seq 14, expected 11")


def test_a_truncated_tail_is_caught_by_the_head_file(built: Built, export: Export) -> None:
    export.write(export.lines()[:-2])
    assert_failed(
        export.verify(), f"head.json says {built.size} entries, the export has {built.size - 2}"
    )


def test_a_tail_truncated_below_the_last_checkpoint_is_caught_with_the_head_file_rewritten(
    built: Built, export: Export
) -> None:
    last = built.checkpoints[-1]
    export.write(export.lines()[: last - 2], fix_head=True)
    assert_failed(export.verify(), f"checkpoint {last}: names a size beyond the {last - 2} entries")


def test_a_forged_entry_inserted_is_named_where_the_sequence_breaks(
    built: Built, export: Export
) -> None:
    lines = export.lines()
    forged = {**json.loads(lines[14]), "request_id": "forged", "members": []}
    forged.pop("member_prev")
    lines.insert(14, canonical_bytes(forged))
    export.write(lines, fix_head=True)
    assert_failed(export.verify(), "entry 16: entry bytes name seq 15, expected 16")


def test_a_forged_entry_inserted_with_the_history_rebuilt_is_caught_by_the_checkpoint(
    built: Built, export: Export
) -> None:
    lines = export.lines()
    first, second = built.checkpoints[:2]
    target = a_read_between(lines, first, second)
    bodies = entries(lines)
    bodies.insert(target, {**bodies[target - 1], "request_id": "forged"})
    export.write(rebuilt(bodies), fix_head=True)
    assert_failed(
        export.verify(), f"checkpoint {second}: checkpoint root for size {second} does not match"
    )


def test_a_file_without_its_final_newline_is_named_as_truncated(
    built: Built, export: Export
) -> None:
    data = export.entries_file.read_bytes()
    export.entries_file.write_bytes(data[:-1])
    assert_failed(export.verify(), f"entry {built.size}: truncated (no final newline)")


def test_a_file_cut_inside_the_last_entry_is_named_as_truncated(
    built: Built, export: Export
) -> None:
    data = export.entries_file.read_bytes()
    export.entries_file.write_bytes(data[:-20])
    assert_failed(export.verify(), f"entry {built.size}: truncated (no final newline)")


# -- tampered checkpoints ---------------------------------------------------------


def test_a_checkpoint_re_signed_with_another_key_of_the_same_name_is_named(
    built: Built, export: Export
) -> None:
    second = built.checkpoints[1]
    impostor = generate_signer(CLI_ORIGIN)[0]
    export.sign(second, root_of(export.lines()[:second]), impostor)
    assert_failed(
        export.verify(),
        f"checkpoint {second}: checkpoint does not verify: note has no signature by key",
    )


def test_a_fork_signed_with_the_right_key_is_named_at_its_checkpoint(
    built: Built, export: Export
) -> None:
    # The log's key signs a different history of the same size (a split view).
    lines = export.lines()
    first, second = built.checkpoints[:2]
    fork = list(lines[:second])
    target = a_read_between(lines, first, second)
    fork[target - 1] = digit_changed(fork[target - 1])
    assert root_of(fork) != root_of(lines[:second])
    export.sign(second, root_of(fork), built.signer)
    assert_failed(
        export.verify(), f"checkpoint {second}: checkpoint root for size {second} does not match"
    )


def test_a_forked_history_under_the_published_checkpoints_is_named(
    built: Built, export: Export
) -> None:
    # The other half of the split view: the forked entries, with the original notes.
    lines = export.lines()
    first, second = built.checkpoints[:2]
    target = a_read_between(lines, first, second)
    lines[target - 1] = digit_changed(lines[target - 1])
    export.write(lines, fix_head=True)
    assert_failed(
        export.verify(), f"checkpoint {second}: checkpoint root for size {second} does not match"
    )


def test_a_checkpoint_with_a_bad_signature_is_named(built: Built, export: Export) -> None:
    second = built.checkpoints[1]
    path = export.checkpoint_file(second)
    text = path.read_text(encoding="utf-8")
    at = len(text) - 10  # inside the signature's base64, before any padding
    path.write_text(text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :], "utf-8")
    assert_failed(
        export.verify(),
        f"checkpoint {second}: checkpoint does not verify: signature line 1 by key",
    )


def test_a_checkpoint_file_of_another_size_is_named(built: Built, export: Export) -> None:
    second, last = built.checkpoints[1:]
    shutil.copy(export.checkpoint_file(last), export.checkpoint_file(second))
    assert_failed(
        export.verify(), f"checkpoint {second}: checkpoint names size {last}, expected {second}"
    )


def test_a_checkpoint_for_a_size_beyond_the_export_is_named(built: Built, export: Export) -> None:
    beyond = built.size + 12
    export.sign(beyond, hashlib.sha256(b"more entries").digest(), built.signer)
    assert_failed(
        export.verify(), f"checkpoint {beyond}: names a size beyond the {built.size} entries"
    )


def test_a_newline_turned_into_a_carriage_return_in_a_checkpoint_is_detected(
    built: Built, export: Export
) -> None:
    path = export.checkpoint_file(built.checkpoints[1])
    data = path.read_bytes()
    at = data.index(b"\n")  # the end of the origin line, inside the signed text
    path.write_bytes(data[:at] + b"\r" + data[at + 1 :])
    assert_failed(export.verify(), f"checkpoint {built.checkpoints[1]}: ")


def test_a_deleted_checkpoint_that_the_log_records_is_named_at_its_entry(
    built: Built, export: Export
) -> None:
    # The entry after each checkpoint is the log's own record of the cut.
    second = built.checkpoints[1]
    export.checkpoint_file(second).unlink()
    assert_failed(
        export.verify(),
        f"entry {second + 1}: the entry records a checkpoint at size {second}, which is missing",
    )


# -- checkpoints an auditor kept (--checkpoint) -----------------------------------


def test_a_kept_checkpoint_that_the_export_extends_passes(
    built: Built, export: Export, tmp_path: Path
) -> None:
    kept = tmp_path / "kept.checkpoint"
    shutil.copy(export.checkpoint_file(built.checkpoints[1]), kept)
    result = export.verify(kept=(kept,))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"OK: {built.size} entries, 3 signed checkpoints, head ")
    assert "the log extends the 1 kept checkpoint" in result.stdout


def keep(path: Path, size: int, root: bytes, key: Ed25519PrivateKey) -> Path:
    """A signed checkpoint as an auditor would have kept it."""
    body = format_checkpoint(Checkpoint(origin=CLI_ORIGIN, size=size, root=root))
    path.write_text(sign_note(body, name=CLI_ORIGIN, private_key=key), encoding="utf-8")
    return path


def test_a_kept_checkpoint_beyond_the_export_is_named(
    built: Built, export: Export, tmp_path: Path
) -> None:
    # A later checkpoint the auditor kept, and an export of a log rolled back since.
    beyond = built.size + 12
    kept = keep(tmp_path / "later", beyond, hashlib.sha256(b"more").digest(), built.signer)
    assert_failed(
        export.verify(kept=(kept,)),
        f"checkpoint {kept} is at size {beyond}, beyond the log's {built.size} entries: "
        "the log does not extend it",
    )


def test_a_kept_checkpoint_of_another_history_is_named(
    built: Built, export: Export, tmp_path: Path
) -> None:
    # Signed by the log's key: the auditor was shown another history of that size.
    second = built.checkpoints[1]
    kept = keep(tmp_path / "fork", second, hashlib.sha256(b"other").digest(), built.signer)
    assert_failed(
        export.verify(kept=(kept,)), f"checkpoint {kept} does not match the log at size {second}"
    )


def test_a_kept_checkpoint_signed_by_another_key_is_named(
    built: Built, export: Export, tmp_path: Path
) -> None:
    second = built.checkpoints[1]
    root = root_of(export.lines()[:second])
    kept = keep(tmp_path / "other", second, root, generate_signer(CLI_ORIGIN)[0])
    assert_failed(export.verify(kept=(kept,)), f"checkpoint {kept} does not verify: ")


# -- bad head file and bad keys: a FAILED line, never a traceback -----------------

GARBAGE_HEADS = {
    "not-json": b"size=28\n",
    "empty": b"",
    "a-list": b"[28]\n",
    "size-as-text": b'{"size": "28", "head_hash": "00"}\n',
    "no-hash": b'{"size": 28}\n',
    "null-hash": b'{"size": 28, "head_hash": null}\n',
    "not-ascii": b'{"size": 28, "head_hash": "\xff\xfe"}\n',
    "nested-deeply": b"[" * 100_000 + b"\n",
    "huge-number": b'{"size": ' + b"9" * 5000 + b', "head_hash": "00"}\n',
}


@pytest.mark.parametrize("content", list(GARBAGE_HEADS.values()), ids=list(GARBAGE_HEADS))
def test_garbage_in_head_json_is_a_failed_line_not_a_traceback(
    export: Export, content: bytes
) -> None:
    (export.dir / "head.json").write_bytes(content)
    assert_failed(export.verify(), f"{export.dir / 'head.json'}: not a valid head file")


def test_the_key_of_another_signer_with_the_same_name_fails_at_the_first_checkpoint(
    built: Built, export: Export, tmp_path: Path
) -> None:
    other = tmp_path / "other.pub"
    other.write_text(generate_signer(CLI_ORIGIN)[2] + "\n", encoding="ascii")
    assert_failed(
        export.verify(other),
        f"checkpoint {built.checkpoints[0]}: checkpoint does not verify: "
        "note has no signature by key",
    )


def test_the_key_of_another_log_fails_at_the_first_checkpoint(
    built: Built, export: Export, tmp_path: Path
) -> None:
    other = tmp_path / "other.pub"
    other.write_text(generate_signer("other.example/log")[2] + "\n", encoding="ascii")
    assert_failed(export.verify(other), f"checkpoint {built.checkpoints[0]}: ")


GARBLED_KEYS = {
    "empty": b"",
    "words": b"not a key\n",
    "truncated": None,  # the real key minus its last characters
    "signer-key": None,  # the private key file given by mistake
    "not-ascii": "clé\n".encode(),
    "binary": b"\xff\xfe\x00\x01",
}


@pytest.mark.parametrize("name", list(GARBLED_KEYS))
def test_a_garbled_public_key_file_is_a_failed_line_not_a_traceback(
    built: Built, export: Export, tmp_path: Path, name: str
) -> None:
    real = built.pubkey.read_text(encoding="ascii").strip()
    content = GARBLED_KEYS[name]
    if name == "truncated":
        content = real[:-5].encode()
    elif name == "signer-key":
        content = (built.export.parent / "home" / "keys" / "audit-signer.key").read_bytes()
    assert content is not None
    key = tmp_path / "garbled.pub"
    key.write_bytes(content)
    result = export.verify(key)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("FAILED: "), result.stderr
    assert "public key" in result.stderr
    assert "Traceback" not in result.stderr


# -- every single-byte flip is detected -------------------------------------------


@pytest.fixture(scope="module")
def export_bytes(built: Built) -> dict[str, bytes]:
    files = {"entries.ndjson": (built.export / "entries.ndjson").read_bytes()}
    files["head.json"] = (built.export / "head.json").read_bytes()
    for path in sorted((built.export / "checkpoints").glob("*.checkpoint")):
        files[f"checkpoints/{path.name}"] = path.read_bytes()
    return files


def verify_files(files: dict[str, bytes], key: str) -> Any:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        (directory / "checkpoints").mkdir()
        for name, data in files.items():
            (directory / name).write_bytes(data)
        return verify_export(directory, verifier_key=key)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_flipping_any_byte_of_the_entries_or_a_checkpoint_is_detected(
    built: Built, export_bytes: dict[str, bytes], data: st.DataObject
) -> None:
    key = built.pubkey.read_text(encoding="ascii").strip()
    targets = [name for name in export_bytes if name != "head.json"]
    name = data.draw(st.sampled_from(targets), label="file")
    original = export_bytes[name]
    at = data.draw(st.integers(0, len(original) - 1), label="offset")
    mask = data.draw(st.integers(1, 255), label="xor")
    files = {
        **export_bytes,
        name: original[:at] + bytes([original[at] ^ mask]) + original[at + 1 :],
    }
    report = verify_files(files, key)
    assert not report.ok and report.failure, (name, at, mask)


def test_the_unflipped_bytes_verify(built: Built, export_bytes: dict[str, bytes]) -> None:
    # The property above would hold trivially if the copy itself did not verify.
    key = built.pubkey.read_text(encoding="ascii").strip()
    assert verify_files(export_bytes, key).ok


def test_a_deeply_nested_entry_line_is_a_failure_not_a_crash(built: Built, export: Export) -> None:
    lines = export.lines()
    lines.append(b"[" * 100_000)
    export.write(lines)
    assert_failed(export.verify(), f"entry {built.size + 1}: entry bytes are invalid")


# -- the online verifier and the stored tree --------------------------------------

TREE_TABLES = ("audit_merkle_node", "audit_checkpoint")


@pytest.fixture
def tree_unguarded(request: pytest.FixtureRequest, backend: str) -> Iterator[Connection]:
    """A connection, inside a transaction, on which the tree tables can be edited."""
    with unguarded_connection(request, backend, TREE_TABLES) as conn:
        yield conn


@dataclass(frozen=True)
class Online:
    sessions: sessionmaker[Session]
    notary: Notary
    checkpoints: list[int]
    size: int


@pytest.fixture
def online(tree_unguarded: Connection, signer: Ed25519PrivateKey) -> Online:
    """14 committed entries with checkpoints at 5 and 11 (each recorded as an entry)."""
    sessions = sessionmaker(
        bind=tree_unguarded,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )
    notary = Notary(origin=ORIGIN, private_key=signer)
    clock = ticking_clock()
    for count in (5, 5):
        # Each cut in a unit of work, which records it as the next entry.
        with AuditedUnitOfWork(
            sessions, notary=notary, clock=clock, policy_version="0" * 64
        ) as uow:
            append_entries(uow.session, count, clock=clock)
            uow.cut_checkpoint()
            uow.commit()
        assert uow.checkpoint is not None
    with sessions() as session:
        append_entries(session, 2, clock=clock)
        session.commit()
        report = verify_log(session, verifier_key=notary.verifier_key)
        assert report.ok, report
        size = read_head(session).size
    assert size == 14
    return Online(sessions, notary, [5, 11], size)


def test_verify_log_names_a_checkpoint_whose_note_was_re_signed_by_another_key(
    tree_unguarded: Connection, online: Online
) -> None:
    size = online.checkpoints[1]
    with online.sessions() as session:
        root = session.get(AuditCheckpoint, size).root_hash  # type: ignore[union-attr]
    impostor = generate_signer(ORIGIN)[0]
    body = format_checkpoint(Checkpoint(origin=ORIGIN, size=size, root=bytes.fromhex(root)))
    forged = sign_note(body, name=ORIGIN, private_key=impostor)
    changed = tree_unguarded.execute(
        update(AuditCheckpoint).where(AuditCheckpoint.size == size).values(note=forged)
    )
    assert changed.rowcount == 1
    with online.sessions() as session:
        report = verify_log(session, verifier_key=online.notary.verifier_key)
    assert (report.ok, report.first_bad_seq) == (False, size)
    assert report.reason is not None
    assert report.reason.startswith("checkpoint does not verify: note has no signature by key")


def completing_seq(level: int, idx: int) -> int:
    """The entry whose append completed subtree (level, idx): its last leaf."""
    return (idx + 1) << level


NODES = pytest.mark.parametrize(
    ("level", "idx"),
    [(3, 0), (0, 2), (1, 4)],
    ids=["on-the-root-path", "a-leaf", "an-inner-node"],
)


def verify_with_node_changed(conn: Connection, online: Online, level: int, idx: int) -> Any:
    forged = hashlib.sha256(b"forged").hexdigest()
    changed = conn.execute(
        update(AuditMerkleNode)
        .where(AuditMerkleNode.level == level, AuditMerkleNode.idx == idx)
        .values(hash=forged)
    )
    assert changed.rowcount == 1
    with online.sessions() as session:
        return verify_log(session, verifier_key=online.notary.verifier_key)


@NODES
def test_verify_log_detects_a_merkle_node_changed_in_the_database(
    tree_unguarded: Connection, online: Online, level: int, idx: int
) -> None:
    report = verify_with_node_changed(tree_unguarded, online, level, idx)
    assert not report.ok, report
    assert report.reason is not None and "Merkle" in report.reason, report.reason


@NODES
def test_verify_log_names_the_entry_that_completed_a_changed_merkle_node(
    tree_unguarded: Connection, online: Online, level: int, idx: int
) -> None:
    # The append of the node's last leaf stored it: that entry is where the tree went bad.
    report = verify_with_node_changed(tree_unguarded, online, level, idx)
    assert report.first_bad_seq == completing_seq(level, idx), report


def test_verify_log_reports_a_checkpoint_row_at_no_entry_instead_of_skipping_the_rest(
    tree_unguarded: Connection, online: Online
) -> None:
    """A planted row at size 0 used to hold back every later checkpoint unchecked."""
    tree_unguarded.execute(
        insert(AuditCheckpoint).values(
            size=0, root_hash="00" * 32, note="planted", cut_at=datetime(2026, 1, 1, tzinfo=UTC)
        )
    )
    with online.sessions() as session:
        report = verify_log(session, verifier_key=online.notary.verifier_key)
    assert not report.ok, report
    assert report.reason == "checkpoint at size 0 is at no entry of the log"
