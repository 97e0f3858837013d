"""What the use cases need from the outside world. Adapters implement these (MongoDB, media-svc over
gRPC, the disc-image writer); unit tests use in-memory fakes that subclass the same abstract classes."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from retention_svc.domain.archive import ArchiveBatch
from retention_svc.domain.copies import CopyDraft, OfflineCopy
from retention_svc.domain.disposal import DisposalOrder
from retention_svc.domain.retention import CaseRecord, RecordingRecord

ProgressSink = Callable[[int, int, str], None]  # (bytes done, bytes total, step), called from any thread


class CaseRecords(abc.ABC):
    """retention-svc's view of cases, one document each (with its outbox)."""

    @abc.abstractmethod
    async def get(self, case_id: str) -> CaseRecord | None: ...

    @abc.abstractmethod
    async def save(self, case: CaseRecord) -> None:
        """Stores the case and its pending events in one write (inserts when `version` is 0); clears them."""

    @abc.abstractmethod
    def exclusive(self, case_id: str) -> AbstractAsyncContextManager[object]:
        """Held across get → decide → save, so writers of one case in this process take turns."""

    @abc.abstractmethod
    async def held_case_ids(self) -> list[str]:
        """Ids of the cases with a hold-placing incident (R13)."""

    @abc.abstractmethod
    async def sent(self, case_id: str) -> None:
        """Waits (briefly) until the events of this process's saves of the case are on Kafka, when
        they are being sent; returns at once otherwise."""


class RecordingRecords(abc.ABC):
    """retention-svc's view of recordings, one document each (with its outbox)."""

    @abc.abstractmethod
    async def get(self, recording_id: str) -> RecordingRecord | None: ...

    @abc.abstractmethod
    async def save(self, recording: RecordingRecord) -> None:
        """Stores the recording and its pending events in one write; clears them."""

    @abc.abstractmethod
    def exclusive(self, recording_id: str) -> AbstractAsyncContextManager[object]: ...


@dataclass(frozen=True)
class ContentHeader:
    recording_id: str
    sha256: str
    size_bytes: int
    grant_id: str


class MediaContent(abc.ABC):
    """Reads recordings through media-svc's verified download (R16, R23-3): every read leaves a
    ContentAccessed in media-svc. Never reads media-svc's store directly."""

    @abc.abstractmethod
    def download(
        self, recording_id: str, *, case_id: str, purpose: str
    ) -> AbstractAsyncContextManager[tuple[ContentHeader, AsyncIterator[bytes]]]: ...

    async def prepare(self, purpose: str, items: Sequence[tuple[str, str]]) -> None:
        """Before a copy or batch: take the access grants its downloads of `items` (recording id, case id)
        need for `purpose`, all at once (access-svc's standing grants). Default: nothing to take."""
        return

    def finished(self, purpose: str) -> None:
        """The copy or batch of `purpose` is over (done or failed): its grants are no longer used."""
        return


class RetentionMetrics:
    """Per-unit counters (R9: the unit is the partition key of metrics). The default counts nothing."""

    def hold_placed(self, unit: str) -> None:
        return None

    def copy_made(self, unit: str, size_bytes: int) -> None:
        return None

    def copy_failed(self, unit: str, reason: str) -> None:
        """An automatic offline copy that could not be made (``reason``: the error class, e.g. NotFound)."""
        return

    def batch_made(self, unit: str, size_bytes: int) -> None:
        return None

    def batch_verified(self, unit: str, ok: bool) -> None:
        return None

    def unit_totals(self, held: dict[str, int], candidates: dict[str, int]) -> None:
        """Per unit: recordings under a long-term hold, and recordings due for disposal review."""
        return

    def oldest_unbacked(self, ages_s: dict[str, float]) -> None:
        """Age in seconds of each unit's oldest recording not yet backed up (0 when none)."""
        return


class CopyInventory(abc.ABC):
    """The inventory of offline copies (which copy holds what, where it is kept)."""

    @abc.abstractmethod
    async def add(self, copy: OfflineCopy) -> None:
        """Records the copy and its OfflineCopyCreated event in one write."""

    @abc.abstractmethod
    async def for_case(self, case_id: str) -> list[OfflineCopy]:
        """The case's copies, oldest first."""


class CopyWriter(abc.ABC):
    """Writes offline copies to the copies directory (a disc image or a folder) and re-reads them."""

    @abc.abstractmethod
    async def stage(self, copy_id: str) -> Path:
        """A fresh staging folder for the copy."""

    @abc.abstractmethod
    async def write_item(self, staging: Path, rel_path: str, chunks: AsyncIterator[bytes]) -> tuple[str, int]:
        """Writes one recording into the staging folder, answering its SHA-256 and size."""

    @abc.abstractmethod
    async def finish(self, staging: Path, draft: CopyDraft, on_progress: ProgressSink) -> tuple[str, str]:
        """Writes manifest, SHA256SUMS and README, then the image or folder; answers (path, root hash)."""

    @abc.abstractmethod
    async def verify(self, path: str, on_progress: ProgressSink) -> tuple[str, list[str]]:
        """Re-reads the copy; answers (root hash, problems)."""

    @abc.abstractmethod
    async def discard(self, staging: Path) -> None:
        """Removes a staging folder left by a failed copy."""


class ArchiveStore(abc.ABC):
    """The archive batches (R11b) and which recording is in which batch."""

    @abc.abstractmethod
    async def add(self, batch: ArchiveBatch) -> None:
        """Records the batch, its ArchiveBatchCreated and the recordings it backs up, in that order."""

    @abc.abstractmethod
    async def record_verification(self, batch: ArchiveBatch) -> None:
        """Stores the result of a re-verification with its ArchiveBatchVerified."""

    @abc.abstractmethod
    async def get(self, batch_id: str) -> ArchiveBatch | None: ...

    @abc.abstractmethod
    async def for_unit(self, unit: str) -> list[ArchiveBatch]:
        """The unit's batches, oldest first."""

    @abc.abstractmethod
    async def all_batches(self) -> list[ArchiveBatch]: ...

    @abc.abstractmethod
    async def backed_up(self, recording_ids: list[str]) -> set[str]:
        """Which of these recordings are in a batch already."""


class IngestedRecordings(abc.ABC):
    """Recordings by unit and ingest time (what the archive backup needs)."""

    @abc.abstractmethod
    async def ingested(self, unit: str | None, before: datetime) -> list[RecordingRecord]:
        """Recordings ingested before `before` (of `unit`, or every unit), oldest ingest first."""


class DisposalOrders(abc.ABC):
    @abc.abstractmethod
    async def add(self, order: DisposalOrder) -> None: ...

    @abc.abstractmethod
    async def get(self, order_id: str) -> DisposalOrder | None: ...

    @abc.abstractmethod
    async def save(self, order: DisposalOrder) -> None:
        """Stores a carried-out order with its DisposalOrderCarriedOut event (optimistic version)."""


class MediaDisposal(abc.ABC):
    """media-svc's DisposalService: carries out one recording of an approved order, or refuses
    (FailedPrecondition naming the hold or the open case)."""

    @abc.abstractmethod
    async def dispose(
        self, recording_id: str, order_id: str, approved_by: tuple[str, str], reason: str
    ) -> None: ...
