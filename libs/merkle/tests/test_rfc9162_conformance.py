"""R23-3: the ledger's proof verifier against all 196 RFC 9162 conformance vectors (transparency-dev/merkle,
Apache-2.0; a verbatim copy of ../shared/conformance/rfc9162 lives in tests/vectors so CI needs nothing
outside the repository; LAWTRAIL_RFC9162_VECTORS points the test at another copy). A hostile vector
accepted is a security bug, so each vector is its own test case and the count is checked too (a vector
silently skipped fails)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from lawtrail_merkle import ProofError, verify_consistency, verify_inclusion

VECTORS = Path(os.environ.get("LAWTRAIL_RFC9162_VECTORS", Path(__file__).parent / "vectors" / "rfc9162"))
INCLUSION = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((VECTORS / "consistency").rglob("*.json"))


def _b64(value: Any) -> bytes:
    return b"" if value is None else base64.b64decode(value)


def _proof(values: Any) -> list[bytes]:
    return [_b64(v) for v in values or []]


def _id(path: Path) -> str:
    return str(path.relative_to(VECTORS))


def test_r23_all_196_vectors_are_present() -> None:
    assert VECTORS.is_dir(), f"conformance vectors not found at {VECTORS} (set LAWTRAIL_RFC9162_VECTORS)"
    assert len(INCLUSION) + len(CONSISTENCY) == 196


@pytest.mark.parametrize("path", INCLUSION, ids=_id)
def test_r23_inclusion_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    try:
        verify_inclusion(
            v["leafIdx"], v["treeSize"], _b64(v["leafHash"]), _proof(v["proof"]), _b64(v["root"])
        )
        accepted = True
    except ProofError:
        accepted = False
    assert accepted is not v["wantErr"], f"{v['desc']}: accepted={accepted}, wantErr={v['wantErr']}"


@pytest.mark.parametrize("path", CONSISTENCY, ids=_id)
def test_r23_consistency_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    try:
        verify_consistency(v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), _proof(v["proof"]))
        accepted = True
    except ProofError:
        accepted = False
    assert accepted is not v["wantErr"], f"{v['desc']}: accepted={accepted}, wantErr={v['wantErr']}"
