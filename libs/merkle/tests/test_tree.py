"""R23-3: proofs generated from the stored perfect nodes verify, for every leaf and every pair of sizes of
small trees, against the reference MTH of RFC 9162 computed recursively from the leaves; tampering with
any leaf, node or size makes them fail."""

from __future__ import annotations

import hashlib

import pytest
from lawtrail_merkle import (
    EMPTY_ROOT,
    CompactRange,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, written as the RFC states it (the reference the tree is checked against)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def build(n: int) -> tuple[list[bytes], dict[tuple[int, int], bytes], list[bytes]]:
    leaves = [f"leaf-{i}".encode() for i in range(n)]
    nodes: dict[tuple[int, int], bytes] = {}
    roots = [EMPTY_ROOT]
    cr = CompactRange.empty()
    for leaf in leaves:
        for level, index, h in cr.append(leaf_hash(leaf)):
            nodes[(level, index)] = h
        roots.append(cr.root())
    return leaves, nodes, roots


def test_r23_roots_match_the_rfc_definition() -> None:
    leaves, _, roots = build(40)
    for n in range(41):
        assert roots[n] == mth(leaves[:n])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 13, 16, 33])
def test_r23_every_inclusion_proof_verifies(size: int) -> None:
    leaves, nodes, roots = build(size)
    for i in range(size):
        proof = inclusion_proof(i, size, nodes)
        verify_inclusion(i, size, leaf_hash(leaves[i]), proof, roots[size])
        with pytest.raises(ProofError):
            verify_inclusion(i, size, leaf_hash(b"other"), proof, roots[size])
        if proof:
            bad = [*proof[:-1], bytes(32)]
            with pytest.raises(ProofError):
                verify_inclusion(i, size, leaf_hash(leaves[i]), bad, roots[size])


def test_r23_every_consistency_proof_verifies() -> None:
    _, nodes, roots = build(33)
    for s2 in range(34):
        for s1 in range(1, s2 + 1):
            proof = consistency_proof(s1, s2, nodes)
            verify_consistency(s1, s2, roots[s1], roots[s2], proof)
            if 0 < s1 < s2:
                with pytest.raises(ProofError):
                    verify_consistency(s1, s2, roots[s1], node_hash(roots[s2], roots[s2]), proof)
