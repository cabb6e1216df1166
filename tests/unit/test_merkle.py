"""RFC 9162 Merkle tree: known answers, the transparency-dev vectors, and properties.

The vectors ship with the tests, in ``tests/data/rfc6962`` (see its README).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.entry import leaf_hash
from audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    ProofError,
    completed_nodes,
    consistency_proof,
    inclusion_proof,
    node_hash,
    root,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

VECTOR_DIR = Path(__file__).parents[1] / "data" / "rfc6962"


def _vector_files(kind: str) -> list[Path]:
    return sorted((VECTOR_DIR / kind).rglob("*.json")) if VECTOR_DIR.is_dir() else []


def _vector_id(path: Path) -> str:
    return path.relative_to(VECTOR_DIR).as_posix()


INCLUSION_FILES = _vector_files("inclusion")
CONSISTENCY_FILES = _vector_files("consistency")

# The README's 8 leaf inputs and the roots of their first n leaves.
README_INPUTS = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
README_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
README_LEAVES = [leaf_hash(bytes.fromhex(data)) for data in README_INPUTS]


def _load(path: Path) -> dict:
    vector = json.loads(path.read_text())
    for key in ("root", "leafHash", "root1", "root2"):
        if key in vector:
            vector[key] = base64.b64decode(vector[key])
    vector["proof"] = [base64.b64decode(p) for p in vector["proof"] or []]
    return vector


def test_vector_directory_is_present_with_both_kinds_of_vector() -> None:
    # Without it the parametrised vector tests below would quietly collect nothing.
    assert VECTOR_DIR.is_dir(), f"RFC 6962 test vectors missing at {VECTOR_DIR}"
    for files in (INCLUSION_FILES, CONSISTENCY_FILES):
        verdicts = {_load(path)["wantErr"] for path in files}
        assert verdicts == {True, False}, f"expected passing and failing vectors, got {verdicts}"


@pytest.mark.parametrize("path", INCLUSION_FILES, ids=_vector_id)
def test_inclusion_vector_gets_its_expected_verdict(path: Path) -> None:
    v = _load(path)
    args = (v["leafHash"], v["leafIdx"], v["treeSize"], v["proof"], v["root"])
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY_FILES, ids=_vector_id)
def test_consistency_vector_gets_its_expected_verdict(path: Path) -> None:
    v = _load(path)
    args = (v["size1"], v["size2"], v["root1"], v["root2"], v["proof"])
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


@pytest.mark.parametrize(
    "path", [p for p in INCLUSION_FILES if p.name == "happy-path.json"], ids=_vector_id
)
def test_generated_inclusion_proof_equals_the_happy_path_vector(path: Path) -> None:
    v = _load(path)
    tree = MemoryTree(README_LEAVES)
    assert root(v["treeSize"], tree) == v["root"]
    assert inclusion_proof(v["leafIdx"], v["treeSize"], tree) == v["proof"]


@pytest.mark.parametrize(
    "path", [p for p in CONSISTENCY_FILES if p.name == "happy-path.json"], ids=_vector_id
)
def test_generated_consistency_proof_equals_the_happy_path_vector(path: Path) -> None:
    v = _load(path)
    tree = MemoryTree(README_LEAVES)
    assert (root(v["size1"], tree), root(v["size2"], tree)) == (v["root1"], v["root2"])
    assert consistency_proof(v["size1"], v["size2"], tree) == v["proof"]


@pytest.mark.parametrize("size", range(len(README_ROOTS)))
def test_roots_of_the_readme_leaves_match_the_readme(size: int) -> None:
    expected = bytes.fromhex(README_ROOTS[size])
    assert root_from_leaves(README_LEAVES[:size]) == expected
    assert root(size, MemoryTree(README_LEAVES[:size])) == expected
    assert root(size, MemoryTree(README_LEAVES)) == expected


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert root(0, MemoryTree()) == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_node_hash_prefixes_0x01() -> None:
    left, right = bytes(range(32)), bytes(range(32, 64))
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


# ---- properties over random trees --------------------------------------------------------


@st.composite
def trees(
    draw: st.DrawFn, min_size: int = 1, max_size: int = 300
) -> tuple[list[bytes], MemoryTree]:
    size = draw(st.integers(min_value=min_size, max_value=max_size))
    salt = draw(st.binary(max_size=8))
    leaves = [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(size)]
    return leaves, MemoryTree(leaves)


def _flip(digest: bytes, bit: int) -> bytes:
    tampered = bytearray(digest)
    tampered[bit // 8] ^= 1 << (bit % 8)
    return bytes(tampered)


@given(trees(), st.data())
def test_inclusion_proofs_verify_against_the_reference_root(tree_and_leaves, data) -> None:
    leaves, tree = tree_and_leaves
    size = data.draw(st.integers(min_value=1, max_value=len(leaves)), label="size")
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    proof = inclusion_proof(index, size, tree)
    verify_inclusion(leaves[index], index, size, proof, root_from_leaves(leaves[:size]))


@given(trees(), st.data())
def test_flipping_any_bit_of_an_inclusion_proof_is_detected(tree_and_leaves, data) -> None:
    leaves, tree = tree_and_leaves
    size = len(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    proof = inclusion_proof(index, size, tree)
    reference = root_from_leaves(leaves)
    # Slot -2 is the leaf hash, -1 the root, 0.. the proof elements.
    slot = data.draw(st.integers(min_value=-2, max_value=len(proof) - 1), label="slot")
    bit = data.draw(st.integers(min_value=0, max_value=255), label="bit")
    leaf, claimed_root, tampered = leaves[index], reference, list(proof)
    if slot == -2:
        leaf = _flip(leaf, bit)
    elif slot == -1:
        claimed_root = _flip(claimed_root, bit)
    else:
        tampered[slot] = _flip(tampered[slot], bit)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, tampered, claimed_root)


@given(trees(), st.data())
def test_inclusion_proof_fails_for_another_index_or_size(tree_and_leaves, data) -> None:
    leaves, tree = tree_and_leaves
    size = data.draw(st.integers(min_value=1, max_value=len(leaves)), label="size")
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    proof = inclusion_proof(index, size, tree)
    other_index = data.draw(st.integers(min_value=0, max_value=size), label="other index")
    # Another size is checked against that size's true root: a signed checkpoint binds
    # size and root, so that is the substitution an attacker could attempt.
    other_size = data.draw(st.integers(min_value=1, max_value=len(leaves)), label="size'")
    if other_index != index:
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], other_index, size, proof, root_from_leaves(leaves))
    if other_size != size:
        other_root = root_from_leaves(leaves[:other_size])
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, other_size, proof, other_root)


@given(trees(), st.data())
def test_consistency_proofs_verify_between_any_two_sizes(tree_and_leaves, data) -> None:
    leaves, tree = tree_and_leaves
    new = data.draw(st.integers(min_value=1, max_value=len(leaves)), label="new")
    old = data.draw(st.integers(min_value=1, max_value=new), label="old")
    proof = consistency_proof(old, new, tree)
    old_root, new_root = root_from_leaves(leaves[:old]), root_from_leaves(leaves[:new])
    verify_consistency(old, new, old_root, new_root, proof)


@given(trees(), st.data())
def test_flipping_any_bit_of_a_consistency_proof_is_detected(tree_and_leaves, data) -> None:
    leaves, tree = tree_and_leaves
    new = data.draw(st.integers(min_value=1, max_value=len(leaves)), label="new")
    old = data.draw(st.integers(min_value=1, max_value=new), label="old")
    proof = consistency_proof(old, new, tree)
    roots = [root_from_leaves(leaves[:old]), root_from_leaves(leaves[:new])]
    # Slots -2 and -1 are the old and new roots, 0.. the proof elements.
    slot = data.draw(st.integers(min_value=-2, max_value=len(proof) - 1), label="slot")
    bit = data.draw(st.integers(min_value=0, max_value=255), label="bit")
    tampered = list(proof)
    if slot < 0:
        roots[slot + 2] = _flip(roots[slot + 2], bit)
    else:
        tampered[slot] = _flip(tampered[slot], bit)
    with pytest.raises(ProofError):
        verify_consistency(old, new, roots[0], roots[1], tampered)


@given(trees(min_size=2), st.data())
def test_consistency_proof_fails_for_other_sizes(tree_and_leaves, data) -> None:
    leaves, tree = tree_and_leaves
    new = data.draw(st.integers(min_value=2, max_value=len(leaves)), label="new")
    old = data.draw(st.integers(min_value=1, max_value=new - 1), label="old")
    proof = consistency_proof(old, new, tree)
    other_old = data.draw(st.integers(min_value=1, max_value=new), label="old'")
    other_new = data.draw(st.integers(min_value=old, max_value=len(leaves)), label="new'")
    if other_old != old:
        with pytest.raises(ProofError):
            verify_consistency(
                other_old, new, root_from_leaves(leaves[:other_old]), root(new, tree), proof
            )
    if other_new != new:
        with pytest.raises(ProofError):
            verify_consistency(
                old, other_new, root(old, tree), root_from_leaves(leaves[:other_new]), proof
            )


@given(trees(max_size=130))
def test_stored_complete_subtrees_give_the_reference_root_at_every_size(tree_and_leaves) -> None:
    leaves, tree = tree_and_leaves
    for size in range(len(leaves) + 1):
        assert root(size, tree) == root_from_leaves(leaves[:size])


@given(trees(max_size=130))
def test_each_append_stores_exactly_the_subtrees_it_completes(tree_and_leaves) -> None:
    leaves, _ = tree_and_leaves
    tree = MemoryTree()
    for index, leaf in enumerate(leaves):
        completed = tree.append(leaf)
        expected = [
            (level, ((index + 1) >> level) - 1)
            for level in range(index.bit_length() + 1)
            if (index + 1) % (1 << level) == 0
        ]
        assert [(level, idx) for level, idx, _ in completed] == expected
        for level, idx, digest in completed:
            assert digest == root_from_leaves(leaves[idx << level : (idx + 1) << level])


# ---- cost: O(log n) reads of complete subtrees only -------------------------------------


class SyntheticReader:
    """Answers any complete subtree with a made-up hash, counting reads and refusing any
    subtree that is not complete inside the first ``size`` leaves."""

    def __init__(self, size: int) -> None:
        self.size, self.reads = size, 0

    def node(self, level: int, index: int) -> bytes:
        assert level >= 0 and index >= 0 and (index + 1) << level <= self.size, (level, index)
        self.reads += 1
        return hashlib.sha256(f"{level}/{index}".encode()).digest()


class BatchingReader(SyntheticReader):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.batches = 0

    def nodes(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        self.batches += 1
        return {key: self.node(*key) for key in keys}


def _read_budget(size: int) -> int:
    return 2 * math.ceil(math.log2(size)) + 2


sizes = st.integers(min_value=1, max_value=2**48)


@given(sizes)
def test_root_reads_at_most_popcount_of_size_complete_subtrees(size: int) -> None:
    reader = SyntheticReader(size)
    root(size, reader)
    assert reader.reads == size.bit_count() <= _read_budget(size)


@given(sizes, st.data())
def test_inclusion_proof_reads_logarithmically_many_complete_subtrees(size: int, data) -> None:
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    reader = SyntheticReader(size)
    proof = inclusion_proof(index, size, reader)
    assert len(proof) <= math.ceil(math.log2(size))
    assert reader.reads <= _read_budget(size)


@given(sizes, st.data())
def test_consistency_proof_reads_logarithmically_many_complete_subtrees(size: int, data) -> None:
    old = data.draw(st.integers(min_value=1, max_value=size), label="old")
    reader = SyntheticReader(size)
    proof = consistency_proof(old, size, reader)
    assert len(proof) <= math.ceil(math.log2(size)) + 1
    assert reader.reads <= _read_budget(size)


@given(st.integers(min_value=0, max_value=2**48))
def test_append_reads_only_earlier_complete_subtrees(index: int) -> None:
    reader = SyntheticReader(index)  # only leaves before this one are stored
    completed = completed_nodes(index, bytes(32), reader)
    assert reader.reads == len(completed) - 1 <= index.bit_length()


@given(st.integers(min_value=1, max_value=2**48), st.data())
def test_a_batching_reader_is_asked_once_per_operation(size: int, data) -> None:
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    old = data.draw(st.integers(min_value=1, max_value=size), label="old")
    for operation in (
        lambda r: root(size, r),
        lambda r: inclusion_proof(index, size, r),
        lambda r: consistency_proof(old, size, r),
    ):
        single, batching = SyntheticReader(size), BatchingReader(size)
        assert operation(single) == operation(batching)
        assert batching.batches <= 1


# ---- strict input checks -----------------------------------------------------------------


@cache
def _small_tree() -> tuple[list[bytes], MemoryTree]:
    leaves = [leaf_hash(bytes([i])) for i in range(7)]
    return leaves, MemoryTree(leaves)


def _inclusion_case(index: int = 2, size: int = 7) -> tuple[bytes, int, int, list[bytes], bytes]:
    leaves, tree = _small_tree()
    return leaves[index], index, size, inclusion_proof(index, size, tree), root(size, tree)


def test_valid_inclusion_case_verifies() -> None:
    verify_inclusion(*_inclusion_case())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: (a[0][:31], *a[1:]), "leaf hash must be a 32-byte"),
        (lambda a: (*a[:4], a[4] + b"\x00"), "root hash must be a 32-byte"),
        (lambda a: (*a[:3], [a[3][0][:31], *a[3][1:]], a[4]), "proof hash 0 must be a 32-byte"),
        (lambda a: (*a[:3], [*a[3], a[3][0]], a[4]), "must have 3 hashes, got 4"),
        (lambda a: (*a[:3], a[3][:-1], a[4]), "must have 3 hashes, got 2"),
        (lambda a: (*a[:3], [a[3][0], *a[3]], a[4]), "must have 3 hashes, got 4"),
        (lambda a: (a[0], 7, 7, *a[3:]), "leaf index 7 is not below tree size 7"),
        (lambda a: (a[0], 0, 0, [], EMPTY_ROOT), "empty tree"),
        (lambda a: (a[0], -1, *a[2:]), "non-negative integer"),
        (lambda a: (a[0], True, *a[2:]), "non-negative integer"),
        (lambda a: (*a[:3], b"".join(a[3]), a[4]), "sequence of hashes"),
        (lambda a: (*a[:3], None, a[4]), "sequence of hashes"),
        (lambda a: (a[0].hex(), *a[1:]), "leaf hash must be bytes"),
    ],
    ids=[
        "short-leaf",
        "long-root",
        "short-proof-element",
        "extra-trailing-hash",
        "missing-hash",
        "extra-leading-hash",
        "index-equals-size",
        "size-zero",
        "negative-index",
        "bool-index",
        "proof-as-one-string",
        "proof-none",
        "hex-leaf",
    ],
)
def test_malformed_inclusion_input_is_rejected_with_a_reason(change, message: str) -> None:
    with pytest.raises(ProofError, match=message):
        verify_inclusion(*change(_inclusion_case()))


def _consistency_case(old: int = 3, new: int = 7) -> tuple[int, int, bytes, bytes, list[bytes]]:
    _, tree = _small_tree()
    return old, new, root(old, tree), root(new, tree), consistency_proof(old, new, tree)


def test_valid_consistency_case_verifies() -> None:
    verify_consistency(*_consistency_case())


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ((3, 2, bytes(32), bytes(32), []), "old tree size 3 is larger than new tree size 2"),
        ((0, 0, EMPTY_ROOT, EMPTY_ROOT, []), "empty tree"),
        ((0, 5, EMPTY_ROOT, bytes(32), []), "empty tree"),
        ((4, 4, bytes(32), bytes(32), [bytes(32)]), r"equal tree sizes \(4\) must have 0 hashes"),
        ((4, 4, bytes(32), b"\x01" * 32, []), "two different root hashes"),
        ((4, 5, bytes(31), bytes(32), [bytes(32)]), "old root hash must be a 32-byte"),
        ((-1, 4, bytes(32), bytes(32), []), "non-negative integer"),
    ],
    ids=[
        "old-above-new",
        "both-empty",
        "from-empty",
        "equal-with-proof",
        "equal-roots-differ",
        "short-root",
        "negative-old",
    ],
)
def test_malformed_consistency_input_is_rejected_with_a_reason(case, message: str) -> None:
    with pytest.raises(ProofError, match=message):
        verify_consistency(*case)


def test_consistency_proof_with_a_missing_or_extra_hash_is_rejected() -> None:
    old, new, old_root, new_root, proof = _consistency_case()
    for wrong in (proof[:-1], proof[1:], [*proof, proof[0]], [old_root, *proof]):
        with pytest.raises(ProofError, match=f"must have {len(proof)} hashes"):
            verify_consistency(old, new, old_root, new_root, wrong)


def test_consistency_from_a_power_of_two_does_not_repeat_the_old_root() -> None:
    old, new, old_root, new_root, proof = _consistency_case(old=4)
    assert old_root not in proof
    verify_consistency(old, new, old_root, new_root, proof)


def test_proof_generation_refuses_impossible_sizes() -> None:
    _, tree = _small_tree()
    for call in (
        lambda: inclusion_proof(7, 7, tree),
        lambda: inclusion_proof(0, 0, tree),
        lambda: consistency_proof(0, 3, tree),
        lambda: consistency_proof(4, 3, tree),
        lambda: root(-1, tree),
        lambda: completed_nodes(0, b"short", tree),
    ):
        with pytest.raises(ValueError):
            call()


def test_reading_beyond_the_stored_tree_is_a_lookup_error() -> None:
    _, tree = _small_tree()
    with pytest.raises(LookupError):
        root(8, tree)


def test_a_stored_node_of_the_wrong_length_is_refused() -> None:
    class Corrupt(SyntheticReader):
        def node(self, level: int, index: int) -> bytes:
            return super().node(level, index)[:16]

    with pytest.raises(ValueError, match=r"stored node \(2, 0\) is not a 32-byte hash"):
        root(5, Corrupt(5))


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=200))
def test_frontier_root_equals_the_reference_at_every_size(leaves: list[bytes]) -> None:
    from audit.merkle import Frontier

    frontier = Frontier()
    assert frontier.root() == root_from_leaves([])
    for n, leaf in enumerate(leaves, start=1):
        frontier.append(leaf)
        assert frontier.root() == root_from_leaves(leaves[:n])


@given(st.integers(min_value=0, max_value=70), st.integers(min_value=1, max_value=20))
def test_a_resumed_frontier_continues_as_the_original(size: int, more: int) -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(size + more)]
    original = Frontier()
    for leaf in leaves[:size]:
        original.append(leaf)
    resumed = Frontier.resume(size, original.stack)
    for leaf in leaves[size:]:
        assert resumed.append(leaf) == original.append(leaf)
    assert resumed.root() == original.root() == root_from_leaves(leaves)


def test_resume_refuses_a_stack_that_does_not_fit_the_size() -> None:
    with pytest.raises(ValueError):
        Frontier.resume(3, [bytes(32)])
