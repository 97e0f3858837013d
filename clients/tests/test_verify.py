"""`lawtrail verify` (R23-3): offline checks of exported ledger entries and checkpoint pairs against a
published public key — accepted as exported, rejected after any one byte changes, or with a foreign key."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import lawtrail_merkle as merkle
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lawtrail.access.v1 import ledger_service_pb2 as lpb
from lawtrail_client.cli import main
from lawtrail_client.verify import CONSISTENCY_FORMAT, ENTRY_FORMAT, key_id
from lawtrail_merkle.checkpoint import ORIGIN, checkpoint_body


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


class Ledger:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        self.leaves: list[bytes] = []
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.range = merkle.CompactRange.empty()

    def append(self, n: int) -> None:
        for _ in range(n):
            i = len(self.leaves)
            data = lpb.LedgerLeaf(
                topic="lawtrail.media.v1.events", ce_id=f"e-{i}", ce_type="x.ContentAccessed"
            )
            leaf = data.SerializeToString(deterministic=True)
            self.leaves.append(leaf)
            for level, index, h in self.range.append(merkle.leaf_hash(leaf)):
                self.nodes[(level, index)] = h

    def checkpoint(self, at_ms: int = 1_780_000_000_123) -> dict[str, object]:
        root = self.range.root()
        body = checkpoint_body(ORIGIN, self.range.size, root, at_ms)
        return {
            "origin": ORIGIN,
            "tree_size": self.range.size,
            "root_hash": b64(root),
            "signed_at_ms": at_ms,
            "key_id": key_id(self.key.public_key()),
            "signature": b64(self.key.sign(body)),
        }

    def entry(self, index: int) -> dict[str, object]:
        return {
            "format": ENTRY_FORMAT,
            "leaf_index": index,
            "leaf": b64(self.leaves[index]),
            "checkpoint": self.checkpoint(),
            "inclusion_proof": [b64(p) for p in merkle.inclusion_proof(index, self.range.size, self.nodes)],
        }


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def pem(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    path = tmp_path / "access-svc-public.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def write(tmp_path: Path, name: str, doc: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_r23_an_exported_entry_verifies_offline(
    tmp_path: Path, key: Ed25519PrivateKey, pem: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    ledger = Ledger(key)
    ledger.append(13)
    path = write(tmp_path, "entry.json", ledger.entry(6))
    assert main(["verify", str(path), "--public-key", str(pem)]) == 0
    assert "OK" in capsys.readouterr().out


def test_r23_changing_any_byte_of_an_entry_is_detected(
    tmp_path: Path, key: Ed25519PrivateKey, pem: Path
) -> None:
    ledger = Ledger(key)
    ledger.append(13)
    good = ledger.entry(6)
    raw = json.dumps(good).encode()
    base = write(tmp_path, "entry.json", good)
    assert main(["verify", str(base), "--public-key", str(pem)]) == 0
    # Flip one byte of every decoded binary field and of every number.
    variants: list[dict[str, object]] = []
    leaf = bytearray(base64.b64decode(str(good["leaf"])))
    leaf[3] ^= 1
    variants.append({**good, "leaf": b64(bytes(leaf))})
    proof = [bytearray(base64.b64decode(p)) for p in good["inclusion_proof"]]  # type: ignore[attr-defined]
    proof[0][0] ^= 0x80
    variants.append({**good, "inclusion_proof": [b64(bytes(p)) for p in proof]})
    variants.append({**good, "leaf_index": 7})
    cp = dict(good["checkpoint"])  # type: ignore[call-overload]
    variants.append({**good, "checkpoint": {**cp, "tree_size": 14}})
    variants.append({**good, "checkpoint": {**cp, "signed_at_ms": cp["signed_at_ms"] + 1}})
    root = bytearray(base64.b64decode(cp["root_hash"]))
    root[-1] ^= 1
    variants.append({**good, "checkpoint": {**cp, "root_hash": b64(bytes(root))}})
    for i, doc in enumerate(variants):
        path = write(tmp_path, f"bad-{i}.json", doc)
        assert main(["verify", str(path), "--public-key", str(pem)]) == 1, f"variant {i} accepted"
    assert json.dumps(good).encode() == raw


def test_r23_an_entry_signed_by_another_key_is_refused(tmp_path: Path, pem: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    ledger = Ledger(Ed25519PrivateKey.generate())
    ledger.append(3)
    path = write(tmp_path, "entry.json", ledger.entry(1))
    assert main(["verify", str(path), "--public-key", str(pem)]) == 1
    assert "not among the given public keys" in capsys.readouterr().out


def test_r23_a_pair_of_checkpoints_proves_append_only_growth(
    tmp_path: Path, key: Ed25519PrivateKey, pem: Path
) -> None:
    ledger = Ledger(key)
    ledger.append(10)
    first = ledger.checkpoint()
    old_nodes = dict(ledger.nodes)
    ledger.append(7)
    second = ledger.checkpoint()
    proof = [b64(p) for p in merkle.consistency_proof(10, 17, ledger.nodes)]
    doc = {"format": CONSISTENCY_FORMAT, "first": first, "second": second, "consistency_proof": proof}
    assert main(["verify", str(write(tmp_path, "c.json", doc)), "--public-key", str(pem)]) == 0

    # A rewritten history (leaf 4 changed), re-signed with the same key, does not extend the first.
    forged = Ledger(key)
    forged.append(17)
    forged.leaves[4] = b"rewritten"
    forged.range, forged.nodes = merkle.CompactRange.empty(), {}
    for leaf in forged.leaves:
        for level, index, h in forged.range.append(merkle.leaf_hash(leaf)):
            forged.nodes[(level, index)] = h
    bad = {
        "format": CONSISTENCY_FORMAT,
        "first": first,
        "second": forged.checkpoint(),
        "consistency_proof": [b64(p) for p in merkle.consistency_proof(10, 17, forged.nodes)],
    }
    assert main(["verify", str(write(tmp_path, "bad.json", bad)), "--public-key", str(pem)]) == 1
    assert old_nodes


def test_r23_unreadable_or_unknown_files_fail_with_a_reason(tmp_path: Path, pem: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "x.json").write_text("{not json")
    assert main(["verify", str(tmp_path / "x.json"), "--public-key", str(pem)]) == 1
    assert "is not JSON" in capsys.readouterr().out
    assert main(["verify", str(write(tmp_path, "y.json", {"format": "zip"})), "--public-key", str(pem)]) == 1
    assert main(["verify", str(tmp_path / "y.json"), "--public-key", str(tmp_path / "missing.pem")]) == 2
