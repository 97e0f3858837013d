"""RFC 9162 (Certificate Transparency v2.0, section 2.1) Merkle trees: hashing, proof generation over a
node store, and proof verification.

Pure Python (hashlib only) so that the audit ledger in access-svc and the offline verifier
(`lawtrail verify`) share one implementation. Hashes are 32-byte SHA-256 digests:

- leaf hash  = SHA-256(0x00 || leaf)
- node hash  = SHA-256(0x01 || left || right)
- empty tree = SHA-256("")

A *perfect node* ``(level, index)`` is the root of the complete subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 is the leaf hashes themselves. The ledger
stores exactly these nodes (each written once, when its subtree completes) and proofs are assembled
from them: every subtree hash an RFC 9162 proof needs is a right fold of at most log2(n) perfect nodes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "ProofError",
    "consistency_plan",
    "consistency_proof",
    "inclusion_plan",
    "inclusion_proof",
    "leaf_hash",
    "needed_nodes",
    "node_hash",
    "nodes_of",
    "root_of_leaves",
    "verify_consistency",
    "verify_inclusion",
]


class ProofError(ValueError):
    """A proof does not verify (or its input is malformed); the message says which check failed."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """k with k < n <= 2k (n >= 2), the split point of RFC 9162's MTH."""
    return 1 << ((n - 1).bit_length() - 1)


# --- building: the right edge of the tree ------------------------------------------------------------


@dataclass
class CompactRange:
    """The right edge of a tree of `size` leaves: the perfect-subtree roots decomposing [0, size), largest
    first (one per set bit of `size`). Appending needs only this, never a read of older nodes, and each
    append reports the perfect nodes it completed so that a store can keep them."""

    size: int
    hashes: list[bytes]

    @classmethod
    def empty(cls) -> CompactRange:
        return cls(0, [])

    def append(self, leaf_hash_: bytes) -> list[tuple[int, int, bytes]]:
        """Adds one leaf; returns the perfect nodes completed as (level, index, hash), the leaf first."""
        index = self.size
        completed = [(0, index, leaf_hash_)]
        h = leaf_hash_
        level = 0
        while (index >> level) & 1:
            h = node_hash(self.hashes.pop(), h)
            level += 1
            completed.append((level, index >> level, h))
        self.hashes.append(h)
        self.size += 1
        return completed

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r


def root_of_leaves(leaves: Iterable[bytes]) -> bytes:
    """MTH of the given leaf *data* (not hashes)."""
    cr = CompactRange.empty()
    for leaf in leaves:
        cr.append(leaf_hash(leaf))
    return cr.root()


# --- proofs: which nodes, then the hashes --------------------------------------------------------------


def nodes_of(lo: int, hi: int) -> list[tuple[int, int]]:
    """The perfect nodes whose right fold is MTH(D[lo:hi]), largest first. Valid for the ranges RFC 9162
    proofs use (lo a multiple of the largest power of two not above hi - lo). O(log n): each piece is as
    large as both the remaining length and the alignment of `lo` allow."""
    out: list[tuple[int, int]] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        if lo:
            level = min(level, (lo & -lo).bit_length() - 1)
        out.append((level, lo >> level))
        lo += 1 << level
    return out


def _path(m: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """RFC 9162 PATH(m, D[lo:hi]) as ranges, leaf-side first."""
    out: list[tuple[int, int]] = []
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if m < k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
            m -= k
    out.reverse()
    return out


def _subproof(m: int, lo: int, hi: int, whole: bool) -> list[tuple[int, int]]:
    """RFC 9162 SUBPROOF(m, D[lo:hi], b) as ranges."""
    out: list[tuple[int, int]] = []
    while True:
        n = hi - lo
        if m == n:
            if not whole:
                out.append((lo, hi))
            break
        k = _largest_power_of_two_below(n)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
            m -= k
            whole = False
    out.reverse()
    return out


def inclusion_plan(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose MTH form the inclusion proof of leaf `index` in a tree of `size` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of {size} leaves")
    return _path(index, 0, size)


def consistency_plan(size1: int, size2: int) -> list[tuple[int, int]]:
    """The ranges whose MTH form the consistency proof from `size1` to `size2` leaves."""
    if not 0 <= size1 <= size2:
        raise ValueError(f"no consistency proof from {size1} to {size2} leaves (need 0 <= size1 <= size2)")
    if size1 in (0, size2):
        return []
    return _subproof(size1, 0, size2, True)


def _fold(ranges: Sequence[tuple[int, int]], get: Callable[[tuple[int, int]], bytes]) -> list[bytes]:
    proof = []
    for lo, hi in ranges:
        size = hi - lo
        if size & (size - 1) == 0:  # a perfect subtree: one stored node (most ranges of a proof)
            level = size.bit_length() - 1
            proof.append(get((level, lo >> level)))
            continue
        parts = nodes_of(lo, hi)
        r = get(parts[-1])
        for n in reversed(parts[:-1]):
            r = node_hash(get(n), r)
        proof.append(r)
    return proof


def needed_nodes(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Every perfect node a plan reads (fetch them in one batch, then call `inclusion_proof` /
    `consistency_proof` with a mapping)."""
    seen: dict[tuple[int, int], None] = {}
    for lo, hi in ranges:
        for n in nodes_of(lo, hi):
            seen[n] = None
    return list(seen)


def inclusion_proof(
    index: int, size: int, nodes: Mapping[tuple[int, int], bytes] | Callable[[int, int], bytes]
) -> list[bytes]:
    """The proof from stored nodes: a mapping (level, index) → hash, or a function (level, index) → hash."""
    return _fold(inclusion_plan(index, size), _getter(nodes))


def consistency_proof(
    size1: int, size2: int, nodes: Mapping[tuple[int, int], bytes] | Callable[[int, int], bytes]
) -> list[bytes]:
    return _fold(consistency_plan(size1, size2), _getter(nodes))


def _getter(
    nodes: Mapping[tuple[int, int], bytes] | Callable[[int, int], bytes],
) -> Callable[[tuple[int, int]], bytes]:
    if callable(nodes):
        get = nodes
        return lambda n: get(n[0], n[1])
    return nodes.__getitem__


# --- verification (RFC 9162 2.1.3.2 and 2.1.4.2) ------------------------------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE or not isinstance(value, bytes | bytearray):
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte SHA-256 hash")


def _equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(bytes(a), bytes(b))


def verify_inclusion(index: int, size: int, leaf_hash_: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raises ProofError unless `proof` proves that leaf hash `leaf_hash_` sits at `index` in the tree of
    `size` leaves whose root is `root`."""
    if index < 0 or size < 0:
        raise ProofError("negative leaf index or tree size")
    if index >= size:
        raise ProofError(f"leaf index {index} is outside a tree of {size} leaves")
    _check_hash(leaf_hash_, "leaf hash")
    _check_hash(root, "root")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
    fn, sn = index, size - 1
    r = bytes(leaf_hash_)
    sha256 = hashlib.sha256
    for p in proof:
        if sn == 0:
            raise ProofError("proof is longer than the path from the leaf to the root")
        if fn & 1 or fn == sn:
            r = sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is shorter than the path from the leaf to the root")
    if not _equal(r, root):
        raise ProofError("calculated root differs from the expected root")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """Raises ProofError unless `proof` proves that the tree of `size1` leaves with root `root1` is a prefix
    of the tree of `size2` leaves with root `root2` (append-only history)."""
    if size1 < 0 or size2 < 0:
        raise ProofError("negative tree size")
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) is smaller than size1 ({size1})")
    if size1 == 0:
        # Every tree extends the empty one, so such a "proof" proves nothing; refused rather than accepted
        # vacuously (RFC 9162 defines consistency proofs for 0 < size1 < size2 only).
        raise ProofError("no consistency proof from the empty tree (size1 must be at least 1)")
    if size1 == size2:
        # Same tree: nothing to prove, the roots must simply be identical.
        if proof:
            raise ProofError("trees of equal size need an empty proof")
        if not _equal(root1, root2):
            raise ProofError("trees of equal size have different roots")
        return
    _check_hash(root1, "root1")
    _check_hash(root2, "root2")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
    if not proof:
        raise ProofError("empty consistency proof between different non-empty trees")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: root1 is the first node of the path
        path.insert(0, bytes(root1))
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
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
        raise ProofError("consistency proof is too short")
    if not _equal(fr, root1):
        raise ProofError("consistency proof does not reproduce root1")
    if not _equal(sr, root2):
        raise ProofError("consistency proof does not reproduce root2")
