"""The audit ledger's checkpoint (R4, R23-3). Pure Python.

The tree (hashing, proofs, verification) and the signed bytes of a checkpoint are `lawtrail_merkle`
(RFC 9162), shared with the offline verifier `lawtrail verify`; this module holds the checkpoint value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lawtrail_merkle.checkpoint import CHECKPOINT_CONTEXT, ORIGIN
from lawtrail_merkle.checkpoint import checkpoint_body as _body

__all__ = ["CHECKPOINT_CONTEXT", "ORIGIN", "Checkpoint", "checkpoint_body", "unix_millis"]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def unix_millis(at: datetime) -> int:
    # Integer arithmetic: float seconds * 1000 can land one millisecond short, breaking the signature.
    return (at.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)


def checkpoint_body(origin: str, tree_size: int, root_hash: bytes, signed_at: datetime) -> bytes:
    """The signed bytes (access_events.proto, SignedCheckpoint)."""
    return _body(origin, tree_size, root_hash, unix_millis(signed_at))


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    signed_at: datetime
    key_id: str
    signature: bytes

    def body(self) -> bytes:
        return checkpoint_body(self.origin, self.tree_size, self.root_hash, self.signed_at)
