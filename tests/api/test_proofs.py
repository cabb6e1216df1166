"""Proofs for auditors over HTTP: inclusion, consistency, checkpoints, the public key.

Every answer is checked twice: with ``audit.merkle``'s verifiers, and with a
minimal RFC 9162 verifier written here from the RFC's steps (2.1.3.2 and
2.1.4.2), so that a mistake shared by the prover and our own verifier cannot
make the proofs look right. Roots are taken only from checkpoints whose
signature verifies under the key from ``GET /v1/audit/public-key``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.checkpoint import Checkpoint, parse_checkpoint, parse_verifier_key, verify_note
from audit.entry import parse_entry
from audit.log import read_head
from audit.merkle import ProofError, verify_consistency, verify_inclusion
from audit.models import AuditCheckpoint
from gate.context import Services
from principals.clients import create_client
from tests.api.conftest import auth
from tests.conftest import NOW, ORIGIN, Keys
from tests.integration.conftest import append_entries

PROBLEM = "application/problem+json"


# -- an independent RFC 9162 verifier, step by step ------------------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _lsb(n: int) -> int:
    return n & 1


def rfc9162_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2, literally."""
    if index >= size:  # 1
        return False
    fn, sn = index, size - 1  # 2
    r = leaf  # 3
    for p in path:  # 4
        if sn == 0:  # 4a
            return False
        if _lsb(fn) or fn == sn:  # 4b
            r = _h(b"\x01" + p + r)
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = _h(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1  # 4c
    return sn == 0 and r == root  # 5


def rfc9162_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, path: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2, literally (for first < second)."""
    if not path:  # 1
        return False
    path = list(path)
    if first & (first - 1) == 0:  # 2: first is an exact power of 2
        path = [first_hash, *path]
    fn, sn = first - 1, second - 1  # 3
    if _lsb(fn):  # 4
        while _lsb(fn):
            fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]  # 5
    for c in path[1:]:  # 6
        if sn == 0:  # 6a
            return False
        if _lsb(fn) or fn == sn:  # 6b
            fr, sr = _h(b"\x01" + c + fr), _h(b"\x01" + c + sr)
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = _h(b"\x01" + sr + c)
        fn, sn = fn >> 1, sn >> 1  # 6c
    return fr == first_hash and sr == second_hash and sn == 0  # 7


def flipped(digest: bytes) -> bytes:
    return bytes([digest[0] ^ 1]) + digest[1:]


# -- fixtures ---------------------------------------------------------------------


@dataclass(frozen=True)
class Log:
    sizes: list[int]  # checkpointed sizes, ascending
    head: int


@pytest.fixture
def log(
    app_client: TestClient, keys: Keys, member_id: str, services: Services, session: Session
) -> Log:
    """Two checkpoints, both cut by the notary on its own: at the first commit (the first
    client's registration) and once the log has grown by 50, plus entries past the latest
    checkpoint."""
    for purpose in ("customer_service", "membership"):
        read = app_client.get(f"/v1/members/{member_id}?purpose={purpose}", headers=auth(keys.crm))
        assert read.status_code == 200, read.text
    with services.uow() as uow:
        append_entries(uow.session, 50)
        uow.commit()
    read = app_client.get(f"/v1/members/{member_id}?purpose=membership", headers=auth(keys.crm))
    assert read.status_code == 200, read.text
    sizes = list(session.scalars(select(AuditCheckpoint.size).order_by(AuditCheckpoint.size)))
    head = read_head(session).size
    assert len(sizes) == 2 and sizes[-1] < head, (sizes, head)
    return Log(sizes=sizes, head=head)


@pytest.fixture
def verifier(app_client: TestClient, keys: Keys) -> str:
    response = app_client.get("/v1/audit/public-key", headers=auth(keys.auditor))
    assert response.status_code == 200, response.text
    return response.json()["verifier_key"]


def get_ok(client: TestClient, url: str, key: str) -> dict[str, Any]:
    response = client.get(url, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def signed(note: str, verifier: str) -> Checkpoint:
    return parse_checkpoint(verify_note(note, verifier=verifier))


def assert_problem(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert (body["type"], body["status"]) == (slug, status), body


# -- inclusion --------------------------------------------------------------------


def proof_seqs(log: Log) -> list[tuple[int, int | None]]:
    """(seq, size) pairs: first, middle and last leaves, against each checkpoint."""
    first, latest = log.sizes
    pairs: list[tuple[int, int | None]] = [(1, first), (first, first), (first // 2 + 1, first)]
    pairs += [(seq, None) for seq in (1, first, first + 1, latest // 2, latest - 1, latest)]
    return pairs


def test_inclusion_proof_verifies_against_the_root_of_the_signed_checkpoint_it_carries(
    app_client: TestClient, keys: Keys, log: Log, verifier: str
) -> None:
    for seq, size in proof_seqs(log):
        query = "" if size is None else f"?size={size}"
        body = get_ok(app_client, f"/v1/audit/entries/{seq}/proof{query}", keys.auditor)
        checkpoint = signed(body["checkpoint"], verifier)
        assert checkpoint.origin == ORIGIN
        assert checkpoint.size == body["tree_size"] == (size or log.sizes[-1])
        assert body["leaf_index"] == seq - 1
        hashes = [bytes.fromhex(h) for h in body["hashes"]]
        leaf = bytes.fromhex(body["leaf_hash"])
        verify_inclusion(leaf, seq - 1, checkpoint.size, hashes, checkpoint.root)


def test_inclusion_leaf_hash_is_sha256_of_0x00_and_the_base64_entry(
    app_client: TestClient, keys: Keys, log: Log
) -> None:
    for seq, size in proof_seqs(log):
        query = "" if size is None else f"?size={size}"
        body = get_ok(app_client, f"/v1/audit/entries/{seq}/proof{query}", keys.auditor)
        raw = base64.b64decode(body["entry"], validate=True)
        assert parse_entry(raw)["seq"] == seq
        assert body["leaf_hash"] == hashlib.sha256(b"\x00" + raw).hexdigest()


def test_inclusion_proof_verifies_with_an_independent_rfc9162_verifier(
    app_client: TestClient, keys: Keys, log: Log, verifier: str
) -> None:
    for seq, size in proof_seqs(log):
        query = "" if size is None else f"?size={size}"
        body = get_ok(app_client, f"/v1/audit/entries/{seq}/proof{query}", keys.auditor)
        checkpoint = signed(body["checkpoint"], verifier)
        raw = base64.b64decode(body["entry"], validate=True)
        leaf = hashlib.sha256(b"\x00" + raw).digest()
        path = [bytes.fromhex(h) for h in body["hashes"]]
        n, root = checkpoint.size, checkpoint.root
        assert rfc9162_inclusion(leaf, seq - 1, n, path, root), (seq, n)
        # ...and that verifier is not one that accepts anything:
        assert not rfc9162_inclusion(flipped(leaf), seq - 1, n, path, root)
        assert not rfc9162_inclusion(leaf, seq - 1, n, path, flipped(root))
        if path:
            assert not rfc9162_inclusion(leaf, seq - 1, n, [flipped(path[0]), *path[1:]], root)
            assert not rfc9162_inclusion(leaf, seq - 1, n, path[:-1], root)


# -- consistency ------------------------------------------------------------------


def consistency_answer(client: TestClient, key: str, log: Log, verifier: str) -> tuple:
    first, latest = log.sizes
    body = get_ok(client, f"/v1/audit/consistency?from={first}&to={latest}", key)
    assert (body["from"], body["to"]) == (first, latest)
    old, new = signed(body["checkpoint_from"], verifier), signed(body["checkpoint_to"], verifier)
    assert (old.size, new.size) == (first, latest)
    return old, new, [bytes.fromhex(h) for h in body["hashes"]]


def test_consistency_proof_between_two_checkpoints_verifies(
    app_client: TestClient, keys: Keys, log: Log, verifier: str
) -> None:
    old, new, proof = consistency_answer(app_client, keys.auditor, log, verifier)
    verify_consistency(old.size, new.size, old.root, new.root, proof)
    with pytest.raises(ProofError):
        verify_consistency(old.size, new.size, flipped(old.root), new.root, proof)


def test_consistency_proof_verifies_with_an_independent_rfc9162_verifier(
    app_client: TestClient, keys: Keys, log: Log, verifier: str
) -> None:
    old, new, proof = consistency_answer(app_client, keys.auditor, log, verifier)
    assert rfc9162_consistency(old.size, new.size, old.root, new.root, proof)
    # ...and that verifier is not one that accepts anything:
    assert not rfc9162_consistency(old.size, new.size, flipped(old.root), new.root, proof)
    assert not rfc9162_consistency(old.size, new.size, old.root, flipped(new.root), proof)
    assert not rfc9162_consistency(old.size, new.size, old.root, new.root, proof[:-1])
    assert not rfc9162_consistency(
        old.size, new.size, old.root, new.root, [flipped(proof[0]), *proof[1:]]
    )


def test_consistency_of_a_checkpoint_with_itself_is_an_empty_proof(
    app_client: TestClient, keys: Keys, log: Log, verifier: str
) -> None:
    size = log.sizes[0]
    body = get_ok(app_client, f"/v1/audit/consistency?from={size}&to={size}", keys.auditor)
    assert body["hashes"] == []
    cp = signed(body["checkpoint_to"], verifier)
    verify_consistency(size, size, cp.root, cp.root, [])


# -- checkpoints ------------------------------------------------------------------


def test_latest_checkpoint_is_the_largest_cut_and_its_signature_verifies(
    app_client: TestClient, keys: Keys, log: Log, verifier: str, session: Session
) -> None:
    body = get_ok(app_client, "/v1/audit/checkpoint", keys.auditor)
    checkpoint = signed(body["checkpoint"], verifier)
    assert body["size"] == checkpoint.size == log.sizes[-1]
    assert body["root_hash"] == checkpoint.root.hex()
    stored = session.get(AuditCheckpoint, log.sizes[-1])
    assert stored is not None and body["checkpoint"] == stored.note


def test_checkpoint_at_an_existing_size_is_that_checkpoint(
    app_client: TestClient, keys: Keys, log: Log, verifier: str
) -> None:
    size = log.sizes[0]
    body = get_ok(app_client, f"/v1/audit/checkpoint?size={size}", keys.auditor)
    checkpoint = signed(body["checkpoint"], verifier)
    assert body["size"] == checkpoint.size == size
    assert body["root_hash"] == checkpoint.root.hex()


def test_checkpoint_at_a_size_with_no_checkpoint_is_404_no_checkpoint(
    app_client: TestClient, keys: Keys, log: Log
) -> None:
    urls = {
        f"size-{size}": f"/v1/audit/checkpoint?size={size}"
        for size in (log.sizes[0] + 1, log.head, 2**62)
    }
    assert refusals(app_client, keys.auditor, urls, 404, "no-checkpoint") == {}


def test_latest_checkpoint_before_any_cut_is_404_no_checkpoint(
    app_client: TestClient, session: Session, services: Services
) -> None:
    # Every audited commit cuts a checkpoint when none exists yet, so a log with
    # entries and no checkpoint is made below the unit of work: an auditor
    # registered without an entry, and one entry appended and committed raw.
    auditor = create_client(
        session, name="raw-auditor", role="auditor", purposes=[], scopes=[], now=NOW
    )
    append_entries(session, 1)
    session.commit()
    assert read_head(session).size > 0
    assert session.scalar(select(func.count()).select_from(AuditCheckpoint)) == 0
    response = app_client.get("/v1/audit/checkpoint", headers=auth(auditor.key))
    assert_problem(response, 404, "no-checkpoint")


def test_proofs_against_a_size_with_no_checkpoint_are_404_no_checkpoint(
    app_client: TestClient, keys: Keys, log: Log
) -> None:
    first, latest = log.sizes
    urls = {
        "inclusion": f"/v1/audit/entries/1/proof?size={first + 1}",
        "consistency-from": f"/v1/audit/consistency?from={first + 1}&to={latest}",
        "consistency-to": f"/v1/audit/consistency?from={first}&to={latest + 1}",
    }
    assert refusals(app_client, keys.auditor, urls, 404, "no-checkpoint") == {}


# -- bad input --------------------------------------------------------------------

MALFORMED = {
    "seq-zero": "/v1/audit/entries/0/proof",
    "seq-negative": "/v1/audit/entries/-1/proof",
    "seq-not-a-number": "/v1/audit/entries/abc/proof",
    "seq-fraction": "/v1/audit/entries/1.5/proof",
    "seq-exponent": "/v1/audit/entries/1e3/proof",
    "seq-above-limit": f"/v1/audit/entries/{2**62 + 1}/proof",
    "seq-huge": f"/v1/audit/entries/{10**40}/proof",
    "size-zero": "/v1/audit/entries/1/proof?size=0",
    "size-negative": "/v1/audit/entries/1/proof?size=-3",
    "size-not-a-number": "/v1/audit/entries/1/proof?size=abc",
    "size-fraction": "/v1/audit/entries/1/proof?size=2.5",
    "size-huge": f"/v1/audit/entries/1/proof?size={2**63}",
    "checkpoint-size-not-a-number": "/v1/audit/checkpoint?size=abc",
    "checkpoint-size-fraction": "/v1/audit/checkpoint?size=1.5",
    "checkpoint-size-zero": "/v1/audit/checkpoint?size=0",
    "checkpoint-size-huge": f"/v1/audit/checkpoint?size={10**40}",
    "from-and-to-missing": "/v1/audit/consistency",
    "to-missing": "/v1/audit/consistency?from=1",
    "from-missing": "/v1/audit/consistency?to=1",
    "from-not-a-number": "/v1/audit/consistency?from=abc&to=1",
    "to-not-a-number": "/v1/audit/consistency?from=1&to=x",
    "from-fraction": "/v1/audit/consistency?from=1.5&to=2",
    "from-zero": "/v1/audit/consistency?from=0&to=2",
    "from-negative": "/v1/audit/consistency?from=-1&to=2",
    "to-huge": f"/v1/audit/consistency?from=1&to={10**40}",
    "both-above-limit": f"/v1/audit/consistency?from={2**62 + 1}&to={2**62 + 2}",
}


def refusals(client: TestClient, key: str, urls: dict[str, str], status: int, slug: str) -> dict:
    """The cases whose answer is not a problem+json with ``status`` and ``slug``."""
    wrong = {}
    for name, url in urls.items():
        response = client.get(url, headers=auth(key))
        body = response.json() if response.headers["content-type"].startswith(PROBLEM) else {}
        if (response.status_code, body.get("type"), body.get("status")) != (status, slug, status):
            wrong[name] = (response.status_code, response.text[:200])
    return wrong


def test_malformed_numbers_in_proof_requests_are_422_problems(
    app_client: TestClient, keys: Keys, log: Log
) -> None:
    assert refusals(app_client, keys.auditor, MALFORMED, 422, "validation-failed") == {}


def test_inclusion_of_an_entry_beyond_the_checkpoint_size_is_a_422_problem(
    app_client: TestClient, keys: Keys, log: Log
) -> None:
    first, latest = log.sizes
    urls = {
        "after-the-given-checkpoint": f"/v1/audit/entries/{first + 1}/proof?size={first}",
        "logged-after-the-latest": f"/v1/audit/entries/{latest + 1}/proof",
        "not-logged": f"/v1/audit/entries/{log.head + 1000}/proof",
        "at-the-limit": f"/v1/audit/entries/{2**62}/proof",
    }
    assert refusals(app_client, keys.auditor, urls, 422, "validation-failed") == {}


def test_consistency_from_a_larger_to_a_smaller_size_is_a_422_problem(
    app_client: TestClient, keys: Keys, log: Log
) -> None:
    first, latest = log.sizes
    urls = {"from-after-to": f"/v1/audit/consistency?from={latest}&to={first}"}
    assert refusals(app_client, keys.auditor, urls, 422, "validation-failed") == {}


PROOF_ENDPOINTS = {
    "latest-checkpoint": "/v1/audit/checkpoint",
    "checkpoint-at": "/v1/audit/checkpoint?size=1",
    "inclusion": "/v1/audit/entries/1/proof",
    "consistency": "/v1/audit/consistency?from=1&to=2",
    "public-key": "/v1/audit/public-key",
}


def test_client_and_admin_keys_get_403_from_every_proof_endpoint(
    app_client: TestClient, keys: Keys
) -> None:
    for key in (keys.crm, keys.admin):
        assert refusals(app_client, key, PROOF_ENDPOINTS, 403, "role-required") == {}


# -- the verifier key -------------------------------------------------------------


def test_public_key_is_a_name_keyid_base64_verifier_key_that_parses(verifier: str) -> None:
    match = re.fullmatch(r"([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]+={0,2})", verifier)
    assert match is not None, verifier
    name, key_id_hex, encoded = match.groups()
    assert name == ORIGIN
    raw = base64.b64decode(encoded, validate=True)
    assert len(raw) == 33 and raw[0] == 0x01  # Ed25519 algorithm byte, then the key
    parsed_name, key_id, public_key = parse_verifier_key(verifier)
    assert (parsed_name, key_id.hex()) == (name, key_id_hex)
    assert public_key.public_bytes_raw() == raw[1:]
