"""RFC 6962 Merkle tree: hashing, an append-only tree, proofs and their verification.

Hashes are SHA-256 with domain separation: a leaf is ``SHA-256(0x00 || data)`` and an
interior node is ``SHA-256(0x01 || left || right)``. The tree over ``n`` leaves splits at
the largest power of two smaller than ``n`` (RFC 6962 §2.1), so every tree is a sequence
of perfect, aligned subtrees, one per set bit of ``n``. :class:`MerkleTree` stores the
hash of every complete aligned subtree, which makes the root and the proofs of any
historic size a handful of lookups. Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import sha256

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleTree",
    "ProofError",
    "RootAccumulator",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Length in bytes of every hash in the tree (SHA-256)."""

EMPTY_ROOT = sha256(b"").digest()
"""Root hash of the empty tree: SHA-256 of the empty string."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """Hash of a leaf: SHA-256(0x00 || data)."""
    return sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an interior node: SHA-256(0x01 || left || right)."""
    return sha256(_NODE_PREFIX + left + right).digest()


class ProofError(ValueError):
    """An inclusion or consistency proof did not verify; the message says why."""


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_leaf_hash(value: bytes) -> bytes:
    if len(value) != HASH_SIZE:
        raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(value)}")
    return value


class MerkleTree:
    """Append-only in-memory RFC 6962 tree over leaf hashes.

    ``self._levels[k]`` packs, 32 bytes each, the hash of every complete aligned
    subtree of ``2**k`` leaves, in order; level 0 holds the leaf hashes themselves.
    Appending is amortised O(1); the root or a proof for any size up to the current
    one costs O(log n) lookups and hashes. Memory is about 64 bytes per leaf.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return len(self._levels[0]) // HASH_SIZE

    def __len__(self) -> int:
        return self.size

    def append(self, leaf_hash: bytes) -> int:
        """Append a 32-byte leaf hash; return its index."""
        _check_leaf_hash(leaf_hash)
        levels = self._levels
        index = len(levels[0]) // HASH_SIZE
        levels[0] += leaf_hash
        # Each trailing 1-bit of the new size completes one more aligned subtree.
        count = index + 1
        level = 0
        right = bytes(leaf_hash)
        while not count & 1:
            below = levels[level]
            level += 1
            count >>= 1
            right = sha256(_NODE_PREFIX + below[-2 * HASH_SIZE : -HASH_SIZE] + right).digest()
            if level == len(levels):
                levels.append(bytearray())
            levels[level] += right
        return index

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append several leaf hashes in order."""
        for value in leaf_hashes:
            self.append(value)

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        if not 0 <= index < self.size:
            raise ValueError(f"leaf index {index} out of range for tree of size {self.size}")
        return self._node(0, index)

    def _node(self, level: int, index: int) -> bytes:
        """Hash of the complete subtree covering leaves [index * 2**level, (index+1) * 2**level)."""
        offset = index * HASH_SIZE
        return bytes(self._levels[level][offset : offset + HASH_SIZE])

    def _range_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end), where ``start`` is a multiple of a power of two
        at least ``end - start`` (true of every subtree that RFC 6962 recursion visits).

        The range is one perfect subtree per set bit of its length, largest first;
        fold them from the right.
        """
        n = end - start
        acc = b""
        level = 0
        while n:
            if n & 1:
                end -= 1 << level
                h = self._node(level, end >> level)
                acc = sha256(_NODE_PREFIX + h + acc).digest() if acc else h
            n >>= 1
            level += 1
        return acc

    def _check_size(self, size: int, what: str = "size") -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"{what} {size} out of range: the tree has {self.size} leaves")

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the first ``size`` leaves (default: all of them)."""
        if size is None:
            size = self.size
        self._check_size(size)
        return self._range_hash(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 6962 §2.1.1 PATH(index, D[0:size]): sibling hashes from the leaf upwards."""
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} out of range for tree size {size}")
        proof: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            mid = start + _split(end - start)
            if index < mid:
                proof.append(self._range_hash(mid, end))
                end = mid
            else:
                proof.append(self._range_hash(start, mid))
                start = mid
        proof.reverse()
        return proof

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 6962 §2.1.2 PROOF(size1, D[0:size2]); empty when the sizes are equal.

        ``size1`` must be at least 1: a proof from the empty tree is meaningless and
        :func:`verify_consistency` rejects it.
        """
        self._check_size(size2, "size2")
        if not 1 <= size1 <= size2:
            raise ValueError(f"size1 {size1} out of range: need 1 <= size1 <= size2 ({size2})")
        proof: list[bytes] = []
        start, end = 0, size2
        whole = True  # the subtree is a prefix of the old tree (SUBPROOF's flag b)
        while size1 != end:
            mid = start + _split(end - start)
            if size1 <= mid:
                proof.append(self._range_hash(mid, end))
                end = mid
            else:
                proof.append(self._range_hash(start, mid))
                start = mid
                whole = False
        if not whole:
            proof.append(self._range_hash(start, end))
        proof.reverse()
        return proof


class RootAccumulator:
    """Streaming RFC 6962 root (a compact range from 0): O(log n) memory.

    Keeps one hash per set bit of the size, the perfect subtrees the tree so far
    decomposes into, largest first.
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> None:
        """Append a 32-byte leaf hash."""
        h = bytes(_check_leaf_hash(leaf_hash))
        stack = self._stack
        n = self._size
        while n & 1:
            h = sha256(_NODE_PREFIX + stack.pop() + h).digest()
            n >>= 1
        stack.append(h)
        self._size += 1

    def root(self) -> bytes:
        """Root hash of everything appended so far."""
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        acc = stack[-1]
        for h in reversed(stack[:-1]):
            acc = sha256(_NODE_PREFIX + h + acc).digest()
        return acc


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, expected {HASH_SIZE}")


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    for i, value in enumerate(proof):
        _check_hash(f"proof[{i}]", value)


def _path_length(index: int, size: int) -> int:
    """Number of hashes in an inclusion proof for ``index`` in a tree of ``size``."""
    inner = (index ^ (size - 1)).bit_length()  # levels below where index and size-1 diverge
    return inner + (index >> inner).bit_count()  # plus left siblings on the right border


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """Root implied by an inclusion proof (RFC 9162 §2.1.3.2 steps 1-4).

    Raises :class:`ProofError` when the proof cannot be right for any root.
    """
    if index < 0 or size < 0:
        raise ProofError(f"negative leaf index or tree size ({index}, {size})")
    if index >= size:
        raise ProofError(f"leaf index {index} is not less than tree size {size}")
    _check_hash("leaf hash", leaf_hash)
    want = _path_length(index, size)
    if len(proof) != want:
        raise ProofError(
            f"inclusion proof has {len(proof)} hashes, expected {want} "
            f"for leaf {index} in a tree of size {size}"
        )
    _check_proof_hashes(proof)
    fn, sn = index, size - 1
    r = bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    Raises :class:`ProofError` with the reason on failure.
    """
    _check_hash("root hash", root)
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if computed != root:
        raise ProofError(
            f"inclusion proof for leaf {index} leads to root {computed.hex()}, "
            f"not the expected {root.hex()} of the tree of size {size}"
        )


def _consistency_length(size1: int, size2: int) -> int:
    """Number of hashes in a consistency proof for 0 < size1 < size2."""
    shift = (size1 & -size1).bit_length() - 1  # trailing zeros of size1
    fn, sn = (size1 - 1) >> shift, (size2 - 1) >> shift
    seed = 0 if size1 & (size1 - 1) == 0 else 1  # a power of two uses root1 as the seed
    inner = (fn ^ sn).bit_length()
    return seed + inner + (fn >> inner).bit_count()


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size2`` with ``root2`` extends the one of ``size1`` with ``root1``.

    Follows RFC 9162 §2.1.4.2. Equal sizes need an empty proof and equal roots. A
    proof from the empty tree (``size1 == 0``) is rejected as meaningless. Raises
    :class:`ProofError` with the reason on failure.
    """
    if size1 < 0 or size2 < 0:
        raise ProofError(f"negative tree size ({size1}, {size2})")
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) is smaller than size1 ({size1})")
    if size1 == 0:
        raise ProofError("consistency proof from the empty tree (size1 = 0) is meaningless")
    if size1 == size2:
        if proof:
            raise ProofError(f"sizes are equal ({size1}) but the proof is not empty")
        if root1 != root2:
            raise ProofError(f"sizes are equal ({size1}) but the roots differ")
        return
    if not proof:
        raise ProofError(f"empty consistency proof from size {size1} to {size2}")
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    want = _consistency_length(size1, size2)
    if len(proof) != want:
        raise ProofError(
            f"consistency proof has {len(proof)} hashes, expected {want} "
            f"from size {size1} to {size2}"
        )
    _check_proof_hashes(proof)

    path = list(proof)
    if size1 & (size1 - 1) == 0:  # the old tree is a complete subtree: its root is the seed
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if fr != root1:
        raise ProofError(
            f"consistency proof leads to old root {fr.hex()}, "
            f"not the expected {root1.hex()} of size {size1}"
        )
    if sr != root2:
        raise ProofError(
            f"consistency proof leads to new root {sr.hex()}, "
            f"not the expected {root2.hex()} of size {size2}"
        )
