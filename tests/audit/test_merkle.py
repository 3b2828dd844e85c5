"""Tests for warden.audit.merkle: transparency-dev vectors, a naive RFC 6962 reference,
and property tests."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warden.audit.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    RootAccumulator,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parent / "vectors" / "merkle"
INCLUSION_FILES = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY_FILES = sorted((VECTORS / "consistency").rglob("*.json"))


def _ids(files: list[Path]) -> list[str]:
    return [str(f.relative_to(VECTORS)) for f in files]


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _proof(value: list[str] | None) -> list[bytes]:
    return [_b64(p) for p in value or []]


# --- naive recursive reference (RFC 6962 §2.1, written straight from the text) ---


def ref_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(ref_mth(leaves[:k]), ref_mth(leaves[k:]))


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [ref_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, leaves[:k], whole), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


def ref_proof(m: int, leaves: list[bytes]) -> list[bytes]:
    return ref_subproof(m, leaves, True)


def make_leaves(n: int, salt: str = "") -> list[bytes]:
    return [leaf_hash(f"{salt}leaf-{i}".encode()) for i in range(n)]


def flip_bit(proof: list[bytes], element: int, bit: int) -> list[bytes]:
    out = list(proof)
    b = bytearray(out[element])
    b[bit // 8] ^= 1 << (bit % 8)
    out[element] = bytes(b)
    return out


# --- transparency-dev/merkle vectors ---


def test_vectors_are_present() -> None:
    assert len(INCLUSION_FILES) >= 90
    assert len(CONSISTENCY_FILES) >= 90


@pytest.mark.parametrize("path", INCLUSION_FILES, ids=_ids(INCLUSION_FILES))
def test_inclusion_vector(path: Path) -> None:
    v = _load(path)
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _proof(v["proof"]), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY_FILES, ids=_ids(CONSISTENCY_FILES))
def test_consistency_vector(path: Path) -> None:
    v = _load(path)
    args = (v["size1"], v["size2"], _proof(v["proof"]), _b64(v["root1"]), _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


# The leaves behind the vectors' happy paths (the classic RFC 6962 test tree).
STANDARD_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]


def _standard_tree() -> MerkleTree:
    return MerkleTree(leaf_hash(d) for d in STANDARD_LEAVES)


def test_standard_tree_root() -> None:
    tree = _standard_tree()
    assert tree.root().hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    assert tree.root(0) == EMPTY_ROOT
    assert tree.root(1) == leaf_hash(b"")


def test_tree_generates_the_vectors_happy_proofs() -> None:
    tree = _standard_tree()
    checked = 0
    for path in INCLUSION_FILES:
        v = _load(path)
        if v["wantErr"] or path.parent.name == "single-entry":
            continue
        idx, size = v["leafIdx"], v["treeSize"]
        assert tree.leaf(idx) == _b64(v["leafHash"]), path
        assert tree.root(size) == _b64(v["root"]), path
        assert tree.inclusion_proof(idx, size) == _proof(v["proof"]), path
        checked += 1
    for path in CONSISTENCY_FILES:
        v = _load(path)
        if v["wantErr"] or path.parent.name == "additional":
            continue
        size1, size2 = v["size1"], v["size2"]
        assert tree.root(size1) == _b64(v["root1"]), path
        assert tree.root(size2) == _b64(v["root2"]), path
        assert tree.consistency_proof(size1, size2) == _proof(v["proof"]), path
        checked += 1
    assert checked == 10


# --- hashing basics ---


def test_hash_domain_separation() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) != leaf_hash(a + b)
    assert node_hash(a, b) != node_hash(b, a)


# --- exhaustive agreement with the reference for small trees ---

N_EXHAUSTIVE = 70
LEAVES_70 = make_leaves(N_EXHAUSTIVE)
TREE_70 = MerkleTree(LEAVES_70)


def test_append_returns_index_and_leaf_round_trips() -> None:
    tree = MerkleTree()
    for i, lh in enumerate(LEAVES_70):
        assert tree.append(lh) == i
        assert tree.size == len(tree) == i + 1
    assert [tree.leaf(i) for i in range(tree.size)] == LEAVES_70


def test_roots_match_reference_at_every_size() -> None:
    tree = MerkleTree()
    acc = RootAccumulator()
    assert tree.root() == acc.root() == EMPTY_ROOT
    for n, lh in enumerate(LEAVES_70, start=1):
        tree.append(lh)
        acc.append(lh)
        want = ref_mth(LEAVES_70[:n])
        assert tree.root() == want
        assert acc.root() == want
        assert acc.size == n
    # and every historic size of the finished tree
    for size in range(N_EXHAUSTIVE + 1):
        assert TREE_70.root(size) == ref_mth(LEAVES_70[:size])


@pytest.mark.parametrize("size", range(1, N_EXHAUSTIVE + 1))
def test_inclusion_proofs_match_reference(size: int) -> None:
    root = TREE_70.root(size)
    for index in range(size):
        proof = TREE_70.inclusion_proof(index, size)
        assert proof == ref_path(index, LEAVES_70[:size])
        verify_inclusion(LEAVES_70[index], index, size, proof, root)
        assert root_from_inclusion_proof(LEAVES_70[index], index, size, proof) == root
        for element in range(len(proof)):
            bad = flip_bit(proof, element, (index * 7 + size) % 256)
            with pytest.raises(ProofError):
                verify_inclusion(LEAVES_70[index], index, size, bad, root)


@pytest.mark.parametrize("size2", range(1, N_EXHAUSTIVE + 1))
def test_consistency_proofs_match_reference(size2: int) -> None:
    root2 = TREE_70.root(size2)
    for size1 in range(1, size2 + 1):
        root1 = TREE_70.root(size1)
        proof = TREE_70.consistency_proof(size1, size2)
        assert proof == (ref_proof(size1, LEAVES_70[:size2]) if size1 < size2 else [])
        verify_consistency(size1, size2, proof, root1, root2)
        for element in range(len(proof)):
            bad = flip_bit(proof, element, (size1 * 5 + size2) % 256)
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, bad, root1, root2)
        if size1 < size2:
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, proof, root2, root1)
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, proof[:-1], root1, root2)
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, [*proof, proof[0]], root1, root2)


# --- property tests on bigger trees ---

N_BIG = 1500
LEAVES_BIG = make_leaves(N_BIG, salt="big-")
TREE_BIG = MerkleTree(LEAVES_BIG)


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(min_value=1, max_value=N_BIG))
    index = draw(st.integers(min_value=0, max_value=size - 1))
    return index, size


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(min_value=1, max_value=N_BIG))
    size1 = draw(st.integers(min_value=1, max_value=size2))
    return size1, size2


@settings(max_examples=150, deadline=None)
@given(index_and_size(), st.data())
def test_inclusion_property(pair: tuple[int, int], data: st.DataObject) -> None:
    index, size = pair
    leaves = LEAVES_BIG[:size]
    proof = TREE_BIG.inclusion_proof(index, size)
    assert proof == ref_path(index, leaves)
    root = TREE_BIG.root(size)
    assert root == ref_mth(leaves)
    verify_inclusion(LEAVES_BIG[index], index, size, proof, root)
    if proof:
        element = data.draw(st.integers(0, len(proof) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        with pytest.raises(ProofError):
            verify_inclusion(LEAVES_BIG[index], index, size, flip_bit(proof, element, bit), root)
    # the proof does not fit another leaf or position (a different size can share the
    # same path shape, e.g. leaf 0 of sizes 3 and 4; the root is what pins the size)
    other = (index + 1) % size
    if other != index:
        with pytest.raises(ProofError):
            verify_inclusion(LEAVES_BIG[other], index, size, proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(LEAVES_BIG[index], other, size, proof, root)


@settings(max_examples=150, deadline=None)
@given(two_sizes(), st.data())
def test_consistency_property(sizes: tuple[int, int], data: st.DataObject) -> None:
    size1, size2 = sizes
    proof = TREE_BIG.consistency_proof(size1, size2)
    expected = ref_proof(size1, LEAVES_BIG[:size2]) if size1 < size2 else []
    assert proof == expected
    root1, root2 = TREE_BIG.root(size1), TREE_BIG.root(size2)
    verify_consistency(size1, size2, proof, root1, root2)
    if proof:
        element = data.draw(st.integers(0, len(proof) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, flip_bit(proof, element, bit), root1, root2)
        if size1 > 1:
            with pytest.raises(ProofError):
                verify_consistency(size1 - 1, size2, proof, root1, root2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), max_size=300))
def test_accumulator_matches_tree(items: list[bytes]) -> None:
    tree = MerkleTree()
    acc = RootAccumulator()
    for data in items:
        lh = leaf_hash(data)
        tree.append(lh)
        acc.append(lh)
        assert acc.root() == tree.root()
    assert acc.size == tree.size == len(items)
    assert tree.root() == ref_mth([leaf_hash(d) for d in items])


def test_history_is_stable_while_growing() -> None:
    tree = MerkleTree()
    roots: list[bytes] = []
    for lh in make_leaves(200, salt="grow-"):
        roots.append(tree.root())
        tree.append(lh)
    assert [tree.root(i) for i in range(200)] == roots


# --- argument checking ---


def test_out_of_range_arguments() -> None:
    tree = MerkleTree(make_leaves(5))
    with pytest.raises(ValueError, match="32 bytes"):
        tree.append(b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        RootAccumulator().append(b"\x00" * 33)
    with pytest.raises(ValueError, match="out of range"):
        tree.root(6)
    with pytest.raises(ValueError, match="out of range"):
        tree.root(-1)
    with pytest.raises(ValueError, match="out of range"):
        tree.leaf(5)
    with pytest.raises(ValueError, match="out of range"):
        tree.inclusion_proof(5, 5)
    with pytest.raises(ValueError, match="out of range"):
        tree.inclusion_proof(0, 6)
    with pytest.raises(ValueError, match="out of range"):
        tree.inclusion_proof(-1, 3)
    with pytest.raises(ValueError, match="out of range"):
        tree.consistency_proof(0, 3)
    with pytest.raises(ValueError, match="out of range"):
        tree.consistency_proof(4, 3)
    with pytest.raises(ValueError, match="out of range"):
        tree.consistency_proof(3, 6)
    assert tree.consistency_proof(5, 5) == []
    assert tree.inclusion_proof(0, 1) == []


def test_proof_error_messages() -> None:
    leaves = make_leaves(8)
    tree = MerkleTree(leaves)
    root = tree.root()
    proof = tree.inclusion_proof(3, 8)
    with pytest.raises(ProofError, match="not less than tree size"):
        verify_inclusion(leaves[3], 8, 8, proof, root)
    with pytest.raises(ProofError, match="leaf hash is 9 bytes"):
        verify_inclusion(b"WrongLeaf", 3, 8, proof, root)
    with pytest.raises(ProofError, match="root hash is 0 bytes"):
        verify_inclusion(leaves[3], 3, 8, proof, b"")
    with pytest.raises(ProofError, match="has 2 hashes, expected 3"):
        verify_inclusion(leaves[3], 3, 8, proof[:2], root)
    with pytest.raises(ProofError, match=r"proof\[1\] is 0 bytes"):
        verify_inclusion(leaves[3], 3, 8, [proof[0], b"", proof[2]], root)
    with pytest.raises(ProofError, match="leads to root"):
        verify_inclusion(leaves[4], 3, 8, proof, root)
    with pytest.raises(ProofError, match="negative"):
        verify_inclusion(leaves[3], -1, 8, proof, root)

    r3 = tree.root(3)
    cproof = tree.consistency_proof(3, 8)
    verify_consistency(3, 8, cproof, r3, root)
    with pytest.raises(ProofError, match="smaller than size1"):
        verify_consistency(8, 3, cproof, r3, root)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 8, cproof, EMPTY_ROOT, root)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    with pytest.raises(ProofError, match="proof is not empty"):
        verify_consistency(8, 8, cproof, root, root)
    with pytest.raises(ProofError, match="roots differ"):
        verify_consistency(8, 8, [], r3, root)
    with pytest.raises(ProofError, match="empty consistency proof"):
        verify_consistency(3, 8, [], r3, root)
    with pytest.raises(ProofError, match="root1 is 9 bytes"):
        verify_consistency(3, 8, cproof, b"WrongRoot", root)
    with pytest.raises(ProofError, match="has 5 hashes, expected 4"):
        verify_consistency(3, 8, [*cproof, root], r3, root)
    with pytest.raises(ProofError, match="old root"):
        verify_consistency(3, 8, cproof, tree.root(4), root)
    with pytest.raises(ProofError, match="new root"):
        verify_consistency(3, 8, cproof, r3, tree.root(7))
    verify_consistency(8, 8, [], root, root)
    assert issubclass(ProofError, ValueError)
