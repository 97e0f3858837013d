"""Carrying out an approved disposal order (R12, R13, R23-5), with media-svc's own refusal.

`DisposalHandlers.dispose` re-checks, from media-svc's own projections, that the recording is not held (the
holds of `DisposalStore`, from retention-svc's events) and not linked to a case that is open or not known to
be closed (the one case projection, `CaseProjection`, from case-svc's events — the view the link checks read
too); then records the tombstone (hash and metadata,
with RecordingDisposed) and only then removes the content. A repeat answers the same tombstone.
`ensure_not_disposed` lets the download refuse a disposed recording with FAILED_PRECONDITION instead of
reporting its missing content as an integrity failure.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from datetime import datetime

from servicekit.clock import utc_now
from servicekit.errors import FailedPrecondition, InvalidArgument

from media_svc.domain.disposal import Tombstone, check_disposable, check_order
from media_svc.domain.errors import RecordingNotFound
from media_svc.service_layer.ports import CaseProjection, RecordingRepository, Tombstones


class DisposalStore(Tombstones):
    @abc.abstractmethod
    async def hold_placed(self, recording_id: str, incident_id: str) -> None: ...

    @abc.abstractmethod
    async def holds_of(self, recording_id: str) -> list[str]: ...

    @abc.abstractmethod
    async def tombstone(self, recording_id: str) -> Tombstone | None: ...

    @abc.abstractmethod
    async def add_tombstone(self, tombstone: Tombstone) -> None:
        """Stores the tombstone with its RecordingDisposed event in one write."""

    async def disposed(self, recording_id: str) -> bool:
        return await self.tombstone(recording_id) is not None


class ContentEraser(abc.ABC):
    @abc.abstractmethod
    def erase(self, sha256: str) -> None:
        """Removes the content with this hash from the store (blocking; run in a thread)."""


class DisposalHandlers:
    def __init__(
        self,
        *,
        recordings: RecordingRepository,
        store: DisposalStore,
        cases: CaseProjection,
        eraser: ContentEraser,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._recordings = recordings
        self._store = store
        self._cases = cases
        self._eraser = eraser
        self._clock = clock
        self._lock = asyncio.Lock()

    async def dispose(
        self, recording_id: str, order_id: str, approved_by: tuple[str, ...], reason: str
    ) -> Tombstone:
        if not recording_id:
            raise InvalidArgument("recording_id is required")
        check_order(order_id, approved_by, reason)
        async with self._lock:
            existing = await self._store.tombstone(recording_id)
            if existing is not None:
                return existing
            recording = await self._recordings.get(recording_id)
            if recording is None:
                raise RecordingNotFound(f"no recording {recording_id!r}")
            case_id = recording.link.case_id
            check_disposable(
                recording_id,
                holds=await self._store.holds_of(recording_id),
                case_id=case_id,
                case_closed=bool(case_id) and await self._cases.is_closed(case_id),
            )
            other = await self._recordings.get_by_sha256(recording.sha256)
            if other is not None and other.recording_id != recording_id:
                raise FailedPrecondition(
                    f"the content of {recording_id} is also recording {other.recording_id}; not removed"
                )
            tombstone = Tombstone(
                recording_id, recording.sha256, recording.size_bytes, recording.unit, case_id, order_id,
                tuple(approved_by), reason, self._clock(),
            )  # fmt: skip
            # The tombstone first: a crash before the removal leaves content a tombstone hides, never
            # content gone without a record of why.
            await self._store.add_tombstone(tombstone)
            await asyncio.to_thread(self._eraser.erase, recording.sha256)
            return tombstone

    async def ensure_not_disposed(self, recording_id: str) -> None:
        """FAILED_PRECONDITION naming the order when the recording was disposed of (a tombstone is left)."""
        tombstone = await self._store.tombstone(recording_id.strip())
        if tombstone is not None:
            raise FailedPrecondition(
                f"recording {recording_id} was disposed of under order {tombstone.order_id} on "
                f"{tombstone.disposed_at.isoformat()}; "
                f"only the tombstone (SHA-256 {tombstone.sha256}) remains"
            )
