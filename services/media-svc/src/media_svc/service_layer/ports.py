"""What media-svc's use cases need from the outside world: repositories, the content store, ffprobe, the
grant verifier, the upload pipeline and the verified reader, metrics. Adapters implement these; unit tests
of the service layer use in-memory fakes that subclass the same classes (tests/unit/fakes.py)."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from servicekit.errors import ConcurrencyConflict, DataLoss

from media_svc.domain.access import AccessGrant
from media_svc.domain.cases import CaseView
from media_svc.domain.continuity import Series
from media_svc.domain.devices import Device, MaintenanceRecord, PreUseCheck
from media_svc.domain.events import ContentAccessed, DeviceEvent, RecordingsSearched, RecordingViewed
from media_svc.domain.fixity import ContentDigest, ScrubRun
from media_svc.domain.recordings import Recording, SearchQuery

# ---------------------------------------------------------------------------------------------
# Repositories
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchCursor:
    """Position after the last item of a page: recordings are ordered by (recorded_from, recording_id)."""

    recorded_from: datetime
    recording_id: str


@dataclass(frozen=True)
class ScrubItem:
    recording_id: str
    sha256: str
    size_bytes: int


class RecordingRepository(abc.ABC):
    @abc.abstractmethod
    async def get(self, recording_id: str) -> Recording | None: ...

    @abc.abstractmethod
    async def get_by_sha256(self, sha256: str) -> Recording | None: ...

    @abc.abstractmethod
    async def add(self, recording: Recording) -> None:
        """Inserts the recording with its pending events in one write; raises `AlreadyExists` when a
        recording with the same SHA-256 (or id) exists."""

    @abc.abstractmethod
    async def save(self, recording: Recording) -> None:
        """Writes changed state and pending events in one conditional write (optimistic concurrency on
        `version`; `ConcurrencyConflict` when someone else wrote first). Never changes sha256 or size."""

    @abc.abstractmethod
    async def search(self, query: SearchQuery, after: SearchCursor | None, limit: int) -> list[Recording]: ...

    @abc.abstractmethod
    async def linked_to_case(self, case_id: str, after_id: str, limit: int) -> list[str]:
        """Ids of the recordings linked to `case_id`, ordered by id, after `after_id` (index-backed)."""

    @abc.abstractmethod
    async def pending_continuity(self, limit: int) -> list[Recording]:
        """Recordings linked to an activity whose segment is not yet in its continuity series."""

    @abc.abstractmethod
    async def mark_in_series(self, recording_id: str) -> None: ...

    @abc.abstractmethod
    async def scrub_batch(self, after_id: str, limit: int) -> list[ScrubItem]:
        """Recordings ordered by id, after `after_id` ("" = from the start)."""

    @abc.abstractmethod
    async def totals(self) -> tuple[int, int]:
        """(number of recordings, total bytes)."""


class Tombstones(abc.ABC):
    """Which recordings were disposed of (R12, R23-5): their content is gone on purpose, under an order."""

    @abc.abstractmethod
    async def disposed(self, recording_id: str) -> bool: ...


class NoTombstones(Tombstones):
    """A store where nothing was ever disposed of (tests of the other use cases)."""

    async def disposed(self, recording_id: str) -> bool:
        return False


class CaseProjection(abc.ABC):
    """media-svc's view of case-svc's cases (domain/cases.py), kept from case-svc's events. Every write is
    idempotent (a redelivered or replayed event changes nothing)."""

    @abc.abstractmethod
    async def get(self, case_id: str) -> CaseView | None:
        """The case, or None when its CaseOpened has not been seen."""

    @abc.abstractmethod
    async def case_opened(self, case_id: str, unit: str, cause: str, parties: Sequence[str]) -> None:
        """Records the case's unit, cause and parties (particulars version 1; a repeat changes nothing)."""

    @abc.abstractmethod
    async def particulars_changed(self, case_id: str, cause: str, parties: Sequence[str]) -> bool:
        """Records a new cause and parties of a known case, raising the particulars version when they
        differ from the stored ones; returns whether they changed."""

    @abc.abstractmethod
    async def activity_recorded(self, case_id: str, activity_id: str) -> None:
        """Adds an activity id to the case (a set: a repeat changes nothing)."""

    @abc.abstractmethod
    async def case_closed(self, case_id: str) -> None:
        """Marks the case closed (CaseClosed or CaseArchived). A flag that is only ever set: case-svc has no
        reopening, and a repeat or a replay changes nothing."""

    @abc.abstractmethod
    async def is_closed(self, case_id: str) -> bool:
        """Whether a closure of the case was seen; False for a case not known (not known to be closed)."""


class DeviceRepository(abc.ABC):
    @abc.abstractmethod
    async def get(self, device_number: str) -> Device | None:
        """The device with its faults and recent checks, or None when no such device is registered."""

    @abc.abstractmethod
    async def add(self, device: Device, events: Sequence[DeviceEvent]) -> None:
        """Inserts a new device with its events; raises `DeviceAlreadyRegistered` if the number exists."""

    @abc.abstractmethod
    async def save(self, device: Device, events: Sequence[DeviceEvent]) -> None:
        """Writes the device's changed state (faults, recent checks and maintenance) and its events in one
        write if nobody changed it since it was read (version), else raises
        `servicekit.errors.ConcurrencyConflict`. Checks and maintenance entries are kept as history too."""

    @abc.abstractmethod
    async def get_check(self, check_id: str) -> PreUseCheck | None:
        """A pre-use check of any device by its id (history), or None."""

    @abc.abstractmethod
    async def checks_for(self, device_number: str, since: datetime, until: datetime) -> list[PreUseCheck]:
        """Pre-use checks of the device whose shift overlaps [since, until], oldest first."""

    @abc.abstractmethod
    async def get_maintenance(self, maintenance_id: str) -> MaintenanceRecord | None:
        """A maintenance entry of any device by its id (history), or None."""

    @abc.abstractmethod
    async def maintenance_of(self, device_number: str, limit: int) -> list[MaintenanceRecord]:
        """The device's most recent maintenance entries, newest first."""

    @abc.abstractmethod
    async def list_by_unit(self, unit: str, after: str | None, limit: int) -> list[Device]:
        """Devices of `unit` ordered by device number, starting after the number `after`."""


class SeriesRepository(abc.ABC):
    @abc.abstractmethod
    async def get(self, series_id: str) -> Series | None: ...

    @abc.abstractmethod
    async def add(self, series: Series) -> None:
        """Inserts; `AlreadyExists` when another writer created it first."""

    @abc.abstractmethod
    async def save(self, series: Series) -> None:
        """Conditional write with its pending events (`ConcurrencyConflict` on a lost race)."""

    @abc.abstractmethod
    async def with_unexplained_gaps(
        self, *, unit: str, case_id: str, longer_than_s: float, after_id: str, limit: int
    ) -> list[Series]:
        """Series of `unit` (or of `case_id`) whose longest unexplained gap exceeds `longer_than_s`,
        ordered by series id, after `after_id`."""


class AccessLog(abc.ABC):
    """R16, R23-3: reads of content under a grant, and views and searches from outside the owning unit."""

    @abc.abstractmethod
    async def record(self, access: ContentAccessed) -> None:
        """Durably records the access and its ContentAccessed event (before any byte is released)."""

    @abc.abstractmethod
    async def record_view(self, view: RecordingViewed | RecordingsSearched) -> None:
        """Durably records a view or search from outside the unit with its event (before the answer)."""


class ScrubRunRepository(abc.ABC):
    @abc.abstractmethod
    async def try_lock(self, run_id: str, until: datetime, now: datetime) -> bool:
        """Takes the cluster-wide scrub lock for `run_id` until `until` (False when another run holds it)."""

    @abc.abstractmethod
    async def release(self, run_id: str) -> None: ...

    @abc.abstractmethod
    async def put(self, run: ScrubRun) -> None:
        """Inserts or replaces the run's progress record."""

    @abc.abstractmethod
    async def running(self) -> ScrubRun | None: ...

    @abc.abstractmethod
    async def last_finished(self) -> ScrubRun | None: ...


class UploadInProgress(ConcurrencyConflict):
    """Another stream is uploading the same content right now."""


class ContentMissing(DataLoss):
    """Stored content is gone (R23-5: destruction outside the system is detected)."""


# ---------------------------------------------------------------------------------------------
# Content store: write-once, content-addressed (blocking calls; the handlers run them in threads)
# ---------------------------------------------------------------------------------------------


class PartialUpload(abc.ABC):
    """An upload being received. Invisible (not addressable as content) until committed."""

    sha256: str
    # Bytes currently held.
    size: int

    @abc.abstractmethod
    def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def read_back(self, block: int) -> Iterator[bytes]:
        """The bytes held so far, in order (to resume hashing after an interruption)."""

    @abc.abstractmethod
    def local_path(self) -> Path:
        """A local file holding the bytes, for ffprobe."""

    @abc.abstractmethod
    def sync(self) -> None:
        """Makes the bytes held so far durable (fsync)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the partial (keeping its bytes for a resume)."""


class ContentStore(abc.ABC):
    """Write-once content addressed by SHA-256. There is no delete and no overwrite: `commit` of content
    that is already stored verifies it instead (R23-2). The local implementation is a directory tree; an
    S3 implementation with Object Lock (compliance mode) fits the same interface."""

    @abc.abstractmethod
    def partial_size(self, sha256: str) -> int:
        """Bytes held by an interrupted upload of this content (0 when none)."""

    @abc.abstractmethod
    def open_partial(self, sha256: str, offset: int) -> PartialUpload:
        """Opens (or creates) the partial upload of this content positioned at `offset`, dropping any
        bytes after it. Raises `FailedPrecondition` when `offset` exceeds the bytes held and
        `UploadInProgress` when another stream holds it."""

    @abc.abstractmethod
    def discard_partial(self, partial: PartialUpload) -> None:
        """Drops an upload that can never succeed (hash mismatch, too many bytes, wrong media kind)."""

    @abc.abstractmethod
    def commit(self, partial: PartialUpload) -> None:
        """Makes the partial the durable, read-only content of `partial.sha256` (temp → fsync → read-only →
        rename → fsync directory). When that content is already stored, verifies it and drops the partial;
        raises `DataLoss` if the stored copy does not match (it is never replaced)."""

    @abc.abstractmethod
    def contains(self, sha256: str) -> bool: ...

    @abc.abstractmethod
    def open_content(self, sha256: str) -> BinaryIO:
        """Opens stored content for reading; raises `ContentMissing` when it is gone."""

    @abc.abstractmethod
    def digest(self, sha256: str) -> str | None:
        """SHA-256 of the stored content as read now (fixity scrub); None when it is missing."""


# ---------------------------------------------------------------------------------------------
# Other ports
# ---------------------------------------------------------------------------------------------


class MediaProber(abc.ABC):
    @abc.abstractmethod
    async def probe(self, path: Path) -> Mapping[str, Any]:
        """ffprobe's JSON (format and streams) of the file; `{}` when it is not readable media."""


class ContentReceiver(abc.ABC):
    """Writes and hashes an upload's bytes as they arrive. The adapter decides how (worker threads,
    batching); the service layer only sees that every byte was written to the partial and hashed."""

    @abc.abstractmethod
    async def resume(self, partial: PartialUpload, digest: ContentDigest, offset: int) -> None:
        """Re-hashes the `offset` bytes an interrupted upload holds (`FailedPrecondition` if it holds
        another number of bytes)."""

    @abc.abstractmethod
    async def receive(
        self, partial: PartialUpload, digest: ContentDigest, chunks: AsyncIterator[bytes]
    ) -> None:
        """Writes every chunk to `partial` and adds it to `digest`, in order, until `chunks` ends. An error
        raised by `chunks` or by a write surfaces here, after what was handed over is written."""


@dataclass(frozen=True)
class BadBlock:
    """Where stored content stopped matching what was recorded at ingest."""

    offset: int
    actual: str
    detail: str


class VerifiedChunk(Protocol):
    """Verified bytes of a recording's content (valid until the next chunk is asked for)."""

    def __len__(self) -> int: ...


class ContentReader(abc.ABC):
    """Reads stored content chunk by chunk, each block verified against the SHA-256 recorded at ingest
    before it is handed out (R23-2). How the bytes are buffered for the transport is the adapter's."""

    @abc.abstractmethod
    def chunks(
        self, recording: Recording, blocks_per_chunk: int
    ) -> Generator[VerifiedChunk | BadBlock, None, None]:
        """The verified chunks in order; a `BadBlock` (bad hash, short or long content) ends them. Opens the
        content at once: raises `ContentMissing` (here, not at the first chunk) when it is gone; closing
        the generator closes the content."""


class GrantVerifier(abc.ABC):
    @abc.abstractmethod
    def decode(self, token: str) -> AccessGrant:
        """Checks the token's format and signature (steps 1–2 of access_grant.proto) and decodes it;
        raises `InvalidArgument` or `PermissionDenied`."""

    @abc.abstractmethod
    async def is_revoked(self, grant_id: str) -> bool:
        """Step 6: whether access-svc revoked the grant."""


class RecordingMetrics(Protocol):
    def recording_ingested(self, unit: str, size_bytes: int, delay_s: float, late: bool) -> None: ...

    def upload_rejected(self, reason: str) -> None: ...

    def integrity_failure(self, detected_by: str) -> None: ...

    def content_accessed(self, unit: str, size_bytes: int) -> None: ...

    def scrub_progress(self, run: ScrubRun) -> None: ...


class NullMetrics:
    def recording_ingested(self, unit: str, size_bytes: int, delay_s: float, late: bool) -> None:
        pass

    def upload_rejected(self, reason: str) -> None:
        pass

    def integrity_failure(self, detected_by: str) -> None:
        pass

    def content_accessed(self, unit: str, size_bytes: int) -> None:
        pass

    def scrub_progress(self, run: ScrubRun) -> None:
        pass


__all__: Sequence[str] = [
    "AccessLog",
    "BadBlock",
    "ContentMissing",
    "ContentReader",
    "ContentReceiver",
    "ContentStore",
    "DeviceRepository",
    "GrantVerifier",
    "MediaProber",
    "NullMetrics",
    "PartialUpload",
    "RecordingMetrics",
    "RecordingRepository",
    "ScrubItem",
    "ScrubRunRepository",
    "SearchCursor",
    "SearchQuery",
    "SeriesRepository",
    "UploadInProgress",
    "VerifiedChunk",
]
