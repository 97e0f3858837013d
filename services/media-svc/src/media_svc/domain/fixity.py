"""Fixity: the content hashes of a recording and the progress of a scrub (R23-2).

`ContentDigest` computes, in one pass over the bytes, the SHA-256 of the whole content (its address and
the proof of the original) and the SHA-256 of every `BLOCK_SIZE` block (so reads can verify each block
before releasing it). Pure Python (hashlib releases the GIL on large buffers, so callers may run it in a
worker thread).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime

from media_svc.domain.recordings import BLOCK_SIZE


class ContentDigest:
    def __init__(self, block_size: int = BLOCK_SIZE) -> None:
        self.block_size = block_size
        self._whole = hashlib.sha256()
        self._block = hashlib.sha256()
        self._in_block = 0
        self._blocks: list[bytes] = []
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        self._whole.update(view)
        self.size += len(view)
        while view:
            take = min(len(view), self.block_size - self._in_block)
            self._block.update(view[:take])
            self._in_block += take
            view = view[take:]
            if self._in_block == self.block_size:
                self._blocks.append(self._block.digest())
                self._block = hashlib.sha256()
                self._in_block = 0

    def hexdigest(self) -> str:
        return self._whole.hexdigest()

    def block_hashes(self) -> bytes:
        """SHA-256 of every block, concatenated; an empty content has one (empty) block."""
        tail = [self._block.digest()] if self._in_block or not self._blocks else []
        return b"".join(self._blocks + tail)


class ScrubState(enum.Enum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    ABORTED = "ABORTED"


@dataclass
class ScrubRun:
    """One pass of the fixity scrub over all stored recordings."""

    run_id: str
    triggered_by: str
    started_at: datetime
    recordings_total: int = 0
    bytes_total: int = 0
    state: ScrubState = ScrubState.RUNNING
    finished_at: datetime | None = None
    recordings_checked: int = 0
    bytes_checked: int = 0
    failures: int = 0

    @property
    def progress(self) -> float:
        """Fraction of bytes re-hashed, 0–1 (by recordings when there are no bytes)."""
        if self.bytes_total:
            return min(1.0, self.bytes_checked / self.bytes_total)
        if self.recordings_total:
            return min(1.0, self.recordings_checked / self.recordings_total)
        return 1.0 if self.state is ScrubState.FINISHED else 0.0

    def checked(self, size_bytes: int, ok: bool) -> None:
        self.recordings_checked += 1
        self.bytes_checked += size_bytes
        if not ok:
            self.failures += 1

    def skipped_disposed(self, size_bytes: int) -> None:
        """A recording disposed of under an order: nothing to re-hash, counted as visited (progress)."""
        self.recordings_checked += 1
        self.bytes_checked += size_bytes

    def finish(self, at: datetime) -> None:
        self.state = ScrubState.FINISHED
        self.finished_at = at

    def abort(self, at: datetime) -> None:
        self.state = ScrubState.ABORTED
        self.finished_at = at
