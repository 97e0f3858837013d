"""The audit ledger's signed checkpoint: the exact bytes an Ed25519 signature covers (one definition, used
by access-svc to sign and by `lawtrail verify` to check). Pure Python.

    "lawtrail.access.v1.Checkpoint\\n" origin "\\n" tree_size "\\n" base64(root_hash) "\\n" unix_millis "\\n"
"""

from __future__ import annotations

import base64

ORIGIN = "lawtrail-audit-ledger"
CHECKPOINT_CONTEXT = b"lawtrail.access.v1.Checkpoint\n"


def checkpoint_body(origin: str, tree_size: int, root_hash: bytes, signed_at_ms: int) -> bytes:
    if "\n" in origin:
        raise ValueError("a checkpoint origin is one line")
    return (
        CHECKPOINT_CONTEXT
        + (f"{origin}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n{signed_at_ms}\n").encode()
    )
