"""``audit.verify.LogVerifier`` on hand-built entries: what the bytes alone can prove."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import (
    Checkpoint,
    format_checkpoint,
    generate_signer,
    sign_note,
    verifier_key,
)
from audit.entry import ZERO_HASH, canonical_bytes, chain_hash, leaf_hash
from audit.merkle import root_from_leaves
from audit.verify import (
    HeldCheckpoint,
    HeldCheckpointError,
    LogVerifier,
    checkpoint_record_failure,
)

ORIGIN = "memberguard.test/audit"
ALICE, BOB, CAROL = "a" * 24, "b" * 24, "c" * 24


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return generate_signer(ORIGIN)[0]


def entry(seq: int, members: list[str], prev: dict[str, int] | None = None, **extra: Any) -> bytes:
    """An entry as the log writes it; ``member_prev`` only when it names members."""
    body: dict[str, Any] = {
        "v": 1,
        "seq": seq,
        "at": 1_795_000_000_000_000 + seq,
        "action": "member.read",
        "actor": "crmclient",
        "actor_role": "client",
        "purpose": "customer_service",
        "members": members,
        "fields": {"phone": "masked"},
        "decision": "permit",
        "reason": "contract",
        "policy": "0" * 64,
        "request_id": f"req-{seq}",
        **extra,
    }
    if prev is not None:
        body["member_prev"] = prev
    return canonical_bytes(body)


def history() -> list[bytes]:
    """Five entries whose back-links interleave three members (and one names nobody)."""
    return [
        entry(1, [ALICE], {ALICE: 0}),
        entry(2, [BOB, ALICE], {ALICE: 1, BOB: 0}),
        entry(3, []),
        entry(4, [CAROL, BOB], {BOB: 2, CAROL: 0}),
        entry(5, [ALICE, CAROL], {ALICE: 2, CAROL: 4}),
    ]


def fed(entries: list[bytes], key: str | None = None) -> LogVerifier:
    verifier = LogVerifier(key)
    for raw in entries:
        _entry, failure = verifier.add(raw)
        assert failure is None, failure
    return verifier


def note(private: Ed25519PrivateKey, *, origin: str, size: int, root: bytes) -> str:
    body = format_checkpoint(Checkpoint(origin=origin, size=size, root=root))
    return sign_note(body, name=ORIGIN, private_key=private)


def vkey(private: Ed25519PrivateKey) -> str:
    return verifier_key(ORIGIN, private.public_key())


# -- entries ----------------------------------------------------------------------


def test_back_links_naming_each_members_previous_entry_are_accepted() -> None:
    entries = history()
    verifier = fed(entries)
    assert verifier.size == 5
    assert verifier.last_seen == {ALICE: 5, BOB: 4, CAROL: 5}


def test_verifier_recomputes_the_leaf_chain_and_merkle_root_of_the_entries() -> None:
    entries = history()
    verifier = fed(entries)
    leaves = [leaf_hash(raw) for raw in entries]
    chain = ZERO_HASH
    for leaf in leaves:
        chain = chain_hash(chain, leaf)
    assert verifier.leaf == leaves[-1]
    assert verifier.chain == chain
    assert verifier.frontier.root() == root_from_leaves(leaves)


def test_a_back_link_to_a_later_entry_than_the_members_previous_is_rejected() -> None:
    verifier = fed(history()[:4])
    _entry, failure = verifier.add(entry(5, [ALICE, CAROL], {ALICE: 3, CAROL: 4}))
    assert failure == "member back-links do not name each member's previous entry"


def test_a_back_link_skipping_the_members_previous_entry_is_rejected() -> None:
    verifier = fed(history()[:4])
    _entry, failure = verifier.add(entry(5, [ALICE, CAROL], {ALICE: 1, CAROL: 4}))
    assert failure == "member back-links do not name each member's previous entry"


def test_a_hidden_entry_breaks_the_next_back_link_of_its_member() -> None:
    # The genuine log: ALICE at 1, 2 and 3. Hiding entry 2 and renumbering entry 3 keeps
    # the bytes canonical and the seq contiguous, but 3's back-link still names the
    # hidden entry while the verifier last saw ALICE at 1.
    genuine_third = entry(2, [ALICE], {ALICE: 2})  # entry 3, renumbered to close the gap
    verifier = fed([entry(1, [ALICE], {ALICE: 0})])
    _entry, failure = verifier.add(genuine_third)
    assert failure == "member back-links do not name each member's previous entry"


def test_an_entry_hidden_from_one_member_is_caught_at_that_members_next_entry() -> None:
    # Entry 2 is replaced by one that no longer names BOB; BOB's next entry names 2.
    entries = history()
    entries[1] = entry(2, [ALICE], {ALICE: 1})
    verifier = fed(entries[:3])
    _entry, failure = verifier.add(entries[3])
    assert failure == "member back-links do not name each member's previous entry"


def test_an_entry_with_members_but_no_back_links_is_rejected() -> None:
    verifier = fed(history()[:1])
    _entry, failure = verifier.add(entry(2, [BOB, ALICE]))
    assert failure == "member back-links do not name each member's previous entry"


def test_an_entry_with_back_links_for_only_some_of_its_members_is_rejected() -> None:
    verifier = fed(history()[:1])
    _entry, failure = verifier.add(entry(2, [BOB, ALICE], {ALICE: 1}))
    assert failure == "member back-links do not name each member's previous entry"


def test_an_entry_naming_no_member_but_carrying_back_links_is_rejected() -> None:
    verifier = fed(history()[:2])
    _entry, failure = verifier.add(entry(3, [], {}))
    assert failure == "member back-links in an entry that names no member"


def test_an_entry_without_a_member_list_is_rejected() -> None:
    raw = canonical_bytes({"v": 1, "seq": 1, "action": "member.read"})
    _entry, failure = LogVerifier().add(raw)
    assert failure == "entry has no member list"


@pytest.mark.parametrize("seq", [0, 3, 9, -1], ids=["zero", "skip-one", "far-ahead", "negative"])
def test_an_entry_naming_the_wrong_seq_is_rejected(seq: int) -> None:
    verifier = fed(history()[:1])
    _entry, failure = verifier.add(entry(seq, [BOB], {BOB: 0}))
    assert failure == f"entry bytes name seq {seq}, expected 2"


def test_an_entry_repeating_the_previous_seq_is_rejected() -> None:
    entries = history()
    verifier = fed(entries[:2])
    _entry, failure = verifier.add(entries[1])
    assert failure == "entry bytes name seq 2, expected 3"


def test_a_rejected_entry_does_not_advance_the_verifier() -> None:
    verifier = fed(history()[:2])
    state = (verifier.size, verifier.chain, verifier.frontier.root(), dict(verifier.last_seen))
    assert verifier.add(entry(3, [ALICE], {ALICE: 1}))[1] is not None
    after = (verifier.size, verifier.chain, verifier.frontier.root(), dict(verifier.last_seen))
    assert after == state
    assert verifier.add(history()[2])[1] is None  # the genuine entry 3 still fits


def test_non_canonical_entry_bytes_are_rejected() -> None:
    raw = entry(1, [ALICE], {ALICE: 0})
    spaced = raw.replace(b'"seq":1', b'"seq": 1')
    _entry, failure = LogVerifier().add(spaced)
    assert failure == "entry bytes are invalid: bytes are not in canonical form"


# -- checkpoints ------------------------------------------------------------------


def test_a_checkpoint_signed_by_the_key_for_the_recomputed_root_is_accepted(
    key: Ed25519PrivateKey,
) -> None:
    verifier = fed(history(), vkey(key))
    signed = note(key, origin=ORIGIN, size=5, root=verifier.frontier.root())
    assert verifier.check_checkpoint(signed) is None
    assert verifier.check_checkpoint(signed, size=5) is None


def test_a_checkpoint_with_another_origin_is_rejected(key: Ed25519PrivateKey) -> None:
    verifier = fed(history(), vkey(key))
    # Signed by the right key, but its body names another log.
    signed = note(key, origin="other.example/log", size=5, root=verifier.frontier.root())
    failure = verifier.check_checkpoint(signed)
    assert failure == f"checkpoint origin 'other.example/log' is not the key's log {ORIGIN!r}"


def test_a_checkpoint_of_another_size_is_rejected(key: Ed25519PrivateKey) -> None:
    entries = history()
    verifier = fed(entries, vkey(key))
    root_at_4 = root_from_leaves([leaf_hash(raw) for raw in entries[:4]])
    signed = note(key, origin=ORIGIN, size=4, root=root_at_4)
    assert verifier.check_checkpoint(signed) == "checkpoint names size 4, expected 5"
    assert verifier.check_checkpoint(signed, size=5) == "checkpoint names size 4, expected 5"


def test_a_checkpoint_for_a_size_the_entries_have_not_reached_is_rejected(
    key: Ed25519PrivateKey,
) -> None:
    verifier = fed(history()[:4], vkey(key))
    signed = note(key, origin=ORIGIN, size=5, root=root_from_leaves([b"\x00" * 32] * 5))
    assert verifier.check_checkpoint(signed, size=5) == "checkpoint of size 5 checked at size 4"


def test_a_checkpoint_with_another_root_is_rejected(key: Ed25519PrivateKey) -> None:
    entries = history()
    verifier = fed(entries, vkey(key))
    forked = [*entries[:4], entry(5, [ALICE, CAROL], {ALICE: 2, CAROL: 4}, request_id="forged")]
    other_root = root_from_leaves([leaf_hash(raw) for raw in forked])
    assert other_root != verifier.frontier.root()
    signed = note(key, origin=ORIGIN, size=5, root=other_root)
    assert verifier.check_checkpoint(signed) == (
        "checkpoint root for size 5 does not match the entries"
    )


def test_a_checkpoint_signed_by_another_key_with_the_same_name_is_rejected(
    key: Ed25519PrivateKey,
) -> None:
    verifier = fed(history(), vkey(key))
    impostor = generate_signer(ORIGIN)[0]
    signed = note(impostor, origin=ORIGIN, size=5, root=verifier.frontier.root())
    failure = verifier.check_checkpoint(signed)
    assert failure is not None
    assert failure.startswith("checkpoint does not verify: note has no signature by key")


def test_a_checkpoint_with_a_corrupted_signature_is_rejected(key: Ed25519PrivateKey) -> None:
    verifier = fed(history(), vkey(key))
    signed = note(key, origin=ORIGIN, size=5, root=verifier.frontier.root())
    body, _, line = signed.rstrip("\n").rpartition("\n")
    at = len(line) - 6  # inside the signature, before any base64 padding
    bad = line[:at] + ("A" if line[at] != "A" else "B") + line[at + 1 :]
    failure = verifier.check_checkpoint(f"{body}\n{bad}\n")
    assert failure is not None and failure.startswith("checkpoint does not verify:")


def test_a_checkpoint_cannot_be_accepted_without_a_verifier_key(key: Ed25519PrivateKey) -> None:
    verifier = fed(history())
    signed = note(key, origin=ORIGIN, size=5, root=verifier.frontier.root())
    assert verifier.check_checkpoint(signed) == (
        "no verifier key to check the checkpoint's signature"
    )


# -- the log's own record of a cut, and checkpoints held elsewhere -----------------

ROOT_5 = "ab" * 32


@pytest.mark.parametrize(
    ("detail", "failure"),
    [
        ({"size": 5, "root": ROOT_5, "origin": ORIGIN}, None),
        (
            {"size": 6, "root": ROOT_5, "origin": ORIGIN},
            "the entry records a checkpoint at size 6, which is missing",
        ),
        (
            {"size": 5, "root": "cd" * 32, "origin": ORIGIN},
            "the entry records another root for the checkpoint at size 5",
        ),
        ({"size": "5", "root": ROOT_5}, "the entry records a checkpoint without a tree size"),
        (None, "the entry records a checkpoint without a tree size"),
    ],
    ids=["recorded", "missing", "another-root", "size-as-text", "no-detail"],
)
def test_a_checkpoint_entry_must_name_a_checkpoint_of_the_log(
    detail: Any, failure: str | None
) -> None:
    assert checkpoint_record_failure(detail, {5: ROOT_5}) == failure


def test_a_held_checkpoint_is_read_only_if_it_verifies_under_the_key(
    key: Ed25519PrivateKey,
) -> None:
    root = root_from_leaves([leaf_hash(raw) for raw in history()])
    signed = note(key, origin=ORIGIN, size=5, root=root)
    held = HeldCheckpoint.read("checkpoint kept", signed, verifier_key=vkey(key))
    assert (held.size, held.root, held.published) == (5, root, False)
    other = vkey(generate_signer(ORIGIN)[0])
    with pytest.raises(HeldCheckpointError, match=r"^checkpoint kept does not verify: "):
        HeldCheckpoint.read("checkpoint kept", signed, verifier_key=other)
    with pytest.raises(HeldCheckpointError, match="no verifier key"):
        HeldCheckpoint.read("checkpoint kept", signed, verifier_key=None)


def test_a_published_checkpoint_is_read_unverified_without_a_key_and_by_its_name(
    key: Ed25519PrivateKey,
) -> None:
    signed = note(key, origin=ORIGIN, size=5, root=bytes(32))
    held = HeldCheckpoint.read("p", signed, verifier_key=None, published=True, named_size=5)
    assert (held.size, held.root, held.published) == (5, bytes(32), True)
    with pytest.raises(HeldCheckpointError, match="named for size 7 but holds size 5"):
        HeldCheckpoint.read("p", signed, verifier_key=vkey(key), published=True, named_size=7)
    assert held.beyond(3).endswith("beyond the log's 3 entries: the log was rolled back")
