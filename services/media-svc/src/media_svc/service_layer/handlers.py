"""The use cases of media-svc: one class, one async handler method per command (domain/commands.py),
plus the queries, wired to their ports by `bootstrap.build_handlers` (production and tests alike).

Every command handler checks the request, loads the one aggregate it concerns, checks R8 against the one
permission policy (domain/permissions.py), lets the aggregate decide, and writes it with its events in
one single-document write — inside servicekit's read–decide–write loop, which decides again on the new
state when a concurrent writer won. After a write, the events the aggregate produced go through one
explicit in-process dispatch (`REACTIONS`): a recording linked to an activity enters its continuity
series (R19c). Nothing is wired by assignment at start-up.

Ingest (architecture flow 2): the server hashes while receiving, stores the content write-once by its
SHA-256 only when every byte arrived and the hash matches, probes it with ffprobe, and only then records
the recording with its `RecordingIngested` event. An interrupted upload keeps its bytes in an invisible
partial keyed by the declared SHA-256, so it can resume from `partial_size`. How the bytes are written
and hashed (threads, batching) is the `ContentReceiver` adapter's; how verified chunks are buffered for
the transport is the `ContentReader` adapter's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

from servicekit import paging
from servicekit.clock import Clock, utc_now
from servicekit.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
)
from servicekit.ids import IdFactory, new_id
from servicekit.paging import decode_page_token, encode_page_token, foreign_page_token
from servicekit.policy import Actor, Role, viewed_from_outside
from servicekit.retry import read_decide_write

from media_svc.domain import commands as c
from media_svc.domain.access import AccessGrant
from media_svc.domain.cases import check_link
from media_svc.domain.continuity import Explanation, Gap, Segment, Series, series_id
from media_svc.domain.devices import (
    Device,
    Fault,
    MaintenanceRecord,
    PreUseCheck,
    PreUseCheckPolicy,
    ShiftSchedule,
    device_findings_for_recording,
)
from media_svc.domain.errors import (
    ContentAlreadyStored,
    DeviceAlreadyRegistered,
    DeviceNotFound,
    HashMismatch,
    IntegrityFailure,
    RecordingNotFound,
    TooManyBytes,
    UploadIncomplete,
    UploadTooLarge,
)
from media_svc.domain.events import (
    ContentAccessed,
    DeviceEvent,
    RecordingLinked,
    RecordingsSearched,
    RecordingViewed,
)
from media_svc.domain.fixity import ContentDigest, ScrubRun
from media_svc.domain.media_facts import interpret_probe
from media_svc.domain.permissions import DEVICES, RECORDINGS, DeviceAction, RecordingAction
from media_svc.domain.recordings import (
    FINDING_LATE_INGEST,
    Attribution,
    Classification,
    IngestPolicy,
    MediaFacts,
    Recording,
    SearchQuery,
    ingest_findings,
    link_ids,
    require_sha256,
)
from media_svc.service_layer.ports import (
    AccessLog,
    BadBlock,
    CaseProjection,
    ContentMissing,
    ContentReader,
    ContentReceiver,
    ContentStore,
    DeviceRepository,
    GrantVerifier,
    MediaProber,
    NoTombstones,
    NullMetrics,
    RecordingMetrics,
    RecordingRepository,
    ScrubItem,
    ScrubRunRepository,
    SearchCursor,
    SeriesRepository,
    Tombstones,
    VerifiedChunk,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MIB = 1024 * 1024
MAX_CHUNK_BYTES = MIB
DEFAULT_MAX_UPLOAD_BYTES = 8 * 1024 * MIB
DEFAULT_GAP_THRESHOLD = timedelta(seconds=60)
MAX_CHECK_RANGE = timedelta(days=31)
# Attempts of the read–decide–write loop where many writers meet (a series, a recording being scrubbed).
BUSY_ATTEMPTS = 10
# The fixity scrub: its cluster-wide lock lease, how often it reports progress, recordings per batch.
LOCK_LEASE = timedelta(minutes=5)
PROGRESS_EVERY_S = 2.0
SCRUB_BATCH = 200
# Recordings of one case updated per batch when its cause or parties change (R17).
FOLLOW_BATCH = 200
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadOffer:
    """Answer to BeginUpload: where to (re)start, or the recording when nothing needs sending."""

    resume_offset: int
    recording: Recording | None
    max_chunk_bytes: int = MAX_CHUNK_BYTES


@dataclass(frozen=True)
class IngestResult:
    recording: Recording
    already_stored: bool


@dataclass(frozen=True)
class RecordingPage:
    recordings: list[Recording]
    next_page_token: str


@dataclass(frozen=True)
class SeriesGap:
    series: Series
    gap: Gap
    explanation: Explanation | None


@dataclass(frozen=True)
class GapPage:
    gaps: list[SeriesGap]
    next_page_token: str
    threshold: timedelta


@dataclass(frozen=True)
class Download:
    recording: Recording
    grant: AccessGrant
    # The verified chunks, in order; raises IntegrityFailure (DATA_LOSS) at the first bad one.
    blocks: AsyncIterator[VerifiedChunk]


@dataclass(frozen=True)
class DevicePage:
    devices: list[Device]
    # Device number to continue after; None when this was the last page.
    next_after: str | None


# ---------------------------------------------------------------------------------------------
# The one in-process dispatch of media-svc's own events
# ---------------------------------------------------------------------------------------------

Reaction = Callable[["MediaHandlers", Any], Awaitable[None]]


async def _enter_linked_segment(handlers: MediaHandlers, event: RecordingLinked) -> None:
    await handlers.enter_segment(event.recording)


# Event type -> what the service does in-process once that event is written. Reactions that must
# survive a crash between the write and the reaction leave a mark in the same write (`continuity_pending`)
# that a background sweep finishes (`settle_pending`).
REACTIONS: Mapping[type, Sequence[Reaction]] = {RecordingLinked: (_enter_linked_segment,)}


class MediaHandlers:
    """Every use case of media-svc (recordings, continuity, downloads, fixity, devices)."""

    def __init__(
        self,
        *,
        recordings: RecordingRepository,
        series: SeriesRepository,
        devices: DeviceRepository,
        access_log: AccessLog,
        scrub_runs: ScrubRunRepository,
        store: ContentStore,
        receiver: ContentReceiver,
        reader: ContentReader,
        prober: MediaProber,
        verifier: GrantVerifier,
        cases: CaseProjection,
        tombstones: Tombstones | None = None,
        ingest_policy: IngestPolicy | None = None,
        pre_use_policy: PreUseCheckPolicy | None = None,
        shifts: ShiftSchedule | None = None,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        gap_threshold: timedelta = DEFAULT_GAP_THRESHOLD,
        blocks_per_chunk: int = 2,
        metrics: RecordingMetrics | None = None,
        clock: Clock = utc_now,
        ids: IdFactory = new_id,
    ) -> None:
        self.recordings = recordings
        self.series = series
        self.devices = devices
        self.access_log = access_log
        self.scrub_runs = scrub_runs
        self.tombstones = tombstones or NoTombstones()
        self.store = store
        self.receiver = receiver
        self.reader = reader
        self.prober = prober
        self.verifier = verifier
        self.cases = cases
        self.ingest_policy = ingest_policy or IngestPolicy()
        self.pre_use_policy = pre_use_policy or PreUseCheckPolicy()
        self.shifts = shifts or ShiftSchedule.parse("08:00,20:00", "Asia/Shanghai")
        self.max_upload_bytes = max_upload_bytes
        self.gap_threshold = gap_threshold
        self.blocks_per_chunk = blocks_per_chunk
        self.metrics: RecordingMetrics = metrics or NullMetrics()
        self.clock = clock
        self.ids = ids
        self.reactions: Mapping[type, Sequence[Reaction]] = REACTIONS
        self._scrub_task: asyncio.Task[ScrubRun | None] | None = None
        self._scrub_current: ScrubRun | None = None

    async def _react(self, events: Sequence[object]) -> None:
        """Hands each event just written to the reactions `REACTIONS` names for its type, in order."""
        for event in events:
            for reaction in self.reactions.get(type(event), ()):
                await reaction(self, event)

    # ================================================================== recordings: upload (ingest)

    def _check_manifest(self, manifest: c.UploadManifest, actor: Actor) -> str:
        sha = require_sha256(manifest.sha256)
        RECORDINGS.authorize(actor, RecordingAction.UPLOAD, manifest.classification.unit)
        if manifest.size_bytes <= 0:
            raise InvalidArgument(
                f"size_bytes must be the file's size, at least 1 byte, got {manifest.size_bytes}"
            )
        if manifest.size_bytes > self.max_upload_bytes:
            self.metrics.upload_rejected("too_large")
            raise UploadTooLarge(
                f"the file is {manifest.size_bytes} bytes, over the upload limit of "
                f"{self.max_upload_bytes} bytes"
            )
        return sha

    async def _existing(self, sha: str, classification: Classification) -> Recording | None:
        existing = await self.recordings.get_by_sha256(sha)
        if existing is None:
            return None
        if not existing.same_classification(classification):
            raise ContentAlreadyStored(
                f"this content (SHA-256 {sha}) is already stored as recording {existing.recording_id} with a "
                "different classification; it is kept as it is (use LinkRecording to link it to a case)"
            )
        return existing

    async def begin_upload(self, cmd: c.BeginUpload, actor: Actor) -> UploadOffer:
        manifest = cmd.manifest
        sha = self._check_manifest(manifest, actor)
        existing = await self._existing(sha, manifest.classification)
        if existing is not None:
            return UploadOffer(resume_offset=manifest.size_bytes, recording=existing)
        held = await asyncio.to_thread(self.store.partial_size, sha)
        return UploadOffer(resume_offset=min(held, manifest.size_bytes), recording=None)

    async def upload_recording(
        self, cmd: c.UploadRecording, chunks: AsyncIterator[bytes], actor: Actor
    ) -> IngestResult:
        """Receives the content from `cmd.offset` on and ingests it (see module doc)."""
        manifest, offset = cmd.manifest, cmd.offset
        sha = self._check_manifest(manifest, actor)
        size = manifest.size_bytes
        # offset == size: every byte already reached the partial but the server stopped before the
        # commit (killed between the last write and the commit). BeginUpload then offers `size`, and
        # a stream with no chunks finishes the upload; refusing it would strand the evidence.
        if offset < 0 or offset > size:
            raise InvalidArgument(f"offset must be 0 ≤ offset ≤ size_bytes ({size}), got {offset}")
        existing = await self._existing(sha, manifest.classification)
        if existing is not None:
            return IngestResult(existing, already_stored=True)

        partial = await asyncio.to_thread(self.store.open_partial, sha, offset)
        discard = False  # True when the partial can never succeed and must not be resumed
        phases: dict[str, float] = {}
        began = time.perf_counter()
        try:
            digest = ContentDigest()
            received = [offset]
            try:
                if offset:
                    await self.receiver.resume(partial, digest, offset)
                await self.receiver.receive(partial, digest, self._checked(chunks, size, received))
                phases["receive_s"] = time.perf_counter() - began
            except TooManyBytes:
                discard = True
                raise
            if received[0] < size:
                self.metrics.upload_rejected("incomplete")
                raise UploadIncomplete(
                    f"the stream ended after {received[0]} of {size} bytes; nothing was stored — resume: "
                    f"call BeginUpload and send from offset {received[0]}"
                )
            if digest.hexdigest() != sha:
                discard = True
                self.metrics.upload_rejected("hash_mismatch")
                raise HashMismatch(
                    f"the bytes received hash to SHA-256 {digest.hexdigest()}, not the declared {sha}; "
                    "nothing was stored — upload the file again from offset 0"
                )
            # Make the bytes durable and probe them at the same time (fsync waits for the disk,
            # ffprobe for its own process; neither needs the other).
            _, probe = await asyncio.gather(
                asyncio.to_thread(partial.sync), self.prober.probe(partial.local_path())
            )
            phases["sync_probe_s"] = time.perf_counter() - began - phases["receive_s"]
            try:
                facts = interpret_probe(probe, manifest.classification.media_kind)
            except InvalidArgument:
                discard = True
                self.metrics.upload_rejected("media_kind")
                raise
            await asyncio.to_thread(self.store.commit, partial)
            phases["commit_s"] = time.perf_counter() - began - phases["receive_s"] - phases["sync_probe_s"]
        except BaseException as error:
            log.info(
                "upload of %s stopped at byte %d of %d: %s",
                sha,
                partial.size,
                size,
                type(error).__name__,
                extra={"sha256": sha, "discarded": discard},
            )
            raise
        finally:
            # Synchronous on purpose: a cancelled RPC may be cancelled again at any await, and the
            # partial's lock must be released whatever happens (both calls are quick).
            if discard:
                self.store.discard_partial(partial)
            else:
                partial.close()
        recorded = time.perf_counter()
        result = await self._record(manifest, sha, facts, digest.block_hashes(), actor)
        phases["record_s"] = time.perf_counter() - recorded
        log.info(
            "upload of %s stored: %d bytes from offset %d in %.3f s",
            sha,
            size,
            offset,
            time.perf_counter() - began,
            extra={"sha256": sha, **{k: round(v, 4) for k, v in phases.items()}},
        )
        return result

    async def _checked(
        self, chunks: AsyncIterator[bytes], size: int, received: list[int]
    ) -> AsyncIterator[bytes]:
        """The upload's chunks, refused as soon as one is too large or the total passes the declared size;
        `received[0]` counts the bytes (from the resume offset on)."""
        async for chunk in chunks:
            if not chunk:
                continue
            if len(chunk) > MAX_CHUNK_BYTES:
                raise InvalidArgument(
                    f"chunk of {len(chunk)} bytes is over the limit of {MAX_CHUNK_BYTES} bytes "
                    "(send 256 KiB–1 MiB chunks)"
                )
            received[0] += len(chunk)
            if received[0] > size:
                self.metrics.upload_rejected("too_many_bytes")
                raise TooManyBytes(
                    f"received more than the declared size_bytes {size}; nothing was stored — "
                    "upload the file again from offset 0 with its real size"
                )
            yield chunk

    async def _record(
        self, manifest: c.UploadManifest, sha: str, facts: MediaFacts, block_hashes: bytes, actor: Actor
    ) -> IngestResult:
        cl = manifest.classification
        now = self.clock()
        device = await self.devices.get(cl.device_number)
        checks = await self.devices.checks_for(cl.device_number, cl.recorded_from, cl.recorded_to)
        device_findings = device_findings_for_recording(device, checks, cl.recorded_from, cl.recorded_to)
        findings = ingest_findings(cl, facts, now, self.ingest_policy, device_findings)
        recording = Recording.ingest(
            recording_id=self.ids(),
            sha256=sha,
            size_bytes=manifest.size_bytes,
            classification=cl,
            facts=facts,
            findings=findings,
            ingested=Attribution(actor.subject, actor.unit, now),
            block_hashes=block_hashes,
        )
        if cl.case_id:
            # R17: linked at upload, it takes its case's cause and parties when media-svc knows the case
            # (the upload is never refused for the link: evidence is always accepted; a case that arrives
            # later is followed by `case_opened`).
            case = await self.cases.get(cl.case_id)
            if case is not None:
                recording.take_case_particulars(case.particulars, case.unit)
        events = list(recording.events)
        try:
            await self.recordings.add(recording)
        except AlreadyExists:
            # A concurrent upload of the same content won the race: that recording is the one.
            existing = await self._existing(sha, cl)
            if existing is None:
                raise
            return IngestResult(existing, already_stored=True)
        late = any(f.code == FINDING_LATE_INGEST for f in findings)
        self.metrics.recording_ingested(
            cl.unit, manifest.size_bytes, recording.ingest_delay.total_seconds(), late
        )
        log.info(
            "recording ingested",
            extra={"recording_id": recording.recording_id, "sha256": sha, "size_bytes": manifest.size_bytes},
        )
        await self._react(events)
        return IngestResult(recording, already_stored=False)

    # ================================================================== recordings: queries

    async def get_recording(self, recording_id: str, actor: Actor) -> Recording:
        """One recording's metadata. R16: a view from outside the owning unit (the legal affairs office,
        inspectors, services) is recorded with its RecordingViewed before the answer; within it, nothing."""
        recording = await self._readable(recording_id, actor)
        if viewed_from_outside(actor, [recording.unit]):
            await self.access_log.record_view(
                RecordingViewed(
                    view_id=self.ids(),
                    recording_id=recording.recording_id,
                    unit=recording.unit,
                    viewer=actor.subject,
                    viewer_unit=actor.unit,
                    at=self.clock(),
                    rpc="GetRecording",
                )
            )
        return recording

    async def _readable(self, recording_id: str, actor: Actor) -> Recording:
        """The recording, if `actor` may read it (R8); the commands load it this way (not a view)."""
        recording = await self.recordings.get(recording_id.strip())
        if recording is None:
            raise RecordingNotFound(f"no recording {recording_id!r}")
        RECORDINGS.authorize(actor, RecordingAction.READ, recording.unit)
        return recording

    async def _searched(
        self, actor: Actor, rpc: str, query: SearchQuery, units: frozenset[str] | None, ids: Sequence[str]
    ) -> None:
        """R16: a search or list across units, or of another unit, is recorded with its RecordingsSearched
        (the criteria and the recordings of the page, so bounded by the page size) before the answer."""
        if viewed_from_outside(actor, units):
            await self.access_log.record_view(
                RecordingsSearched(
                    view_id=self.ids(),
                    viewer=actor.subject,
                    viewer_unit=actor.unit,
                    at=self.clock(),
                    rpc=rpc,
                    query=query,
                    recording_ids=tuple(dict.fromkeys(ids)),
                )
            )

    async def search_recordings(
        self, query: SearchQuery, page_size: int, page_token: str, actor: Actor
    ) -> RecordingPage:
        units = RECORDINGS.listed_units(actor, RecordingAction.READ, query.unit)
        if units is not None:
            (unit,) = units  # the unit asked for, or the caller's own when they may list only theirs
            query = replace(query, unit=unit)
        if (
            query.recorded_after is not None
            and query.recorded_before is not None
            and query.recorded_before <= query.recorded_after
        ):
            raise InvalidArgument("recorded_before must be after recorded_after")
        limit = paging.page_size(page_size)
        after = decode_cursor(page_token)
        found = await self.recordings.search(query, after, limit + 1)
        more = len(found) > limit
        found = found[:limit]
        token = (
            encode_cursor(SearchCursor(found[-1].classification.recorded_from, found[-1].recording_id))
            if more
            else ""
        )
        await self._searched(actor, "SearchRecordings", query, units, [r.recording_id for r in found])
        return RecordingPage(found, token)

    # ================================================================== recordings: link (R5, R17)

    async def link_recording(self, cmd: c.LinkRecording, actor: Actor) -> Recording:
        """Links a recording to a case and activity → RecordingLinked (then enters its series).

        R5: the case must be known to media-svc (its projection of case-svc's events), the activity one of
        the case's, and the case of the recording's unit unless the legal affairs office links it (the
        event then says so). R17: the recording takes the case's cause and parties for search."""
        case_id, activity_id = link_ids(cmd.case_id, cmd.activity_id)
        by_legal_office = actor.has(Role.LEGAL_OFFICE)

        async def attempt() -> tuple[Recording, list[object]]:
            recording = await self._readable(cmd.recording_id, actor)
            RECORDINGS.authorize(actor, RecordingAction.LINK, recording.unit)
            case = await self.cases.get(case_id)
            check_link(
                case,
                case_id=case_id,
                activity_id=activity_id,
                recording_id=recording.recording_id,
                recording_unit=recording.unit,
                by_legal_office=by_legal_office,
            )
            assert case is not None
            by = Attribution(actor.subject, actor.unit, self.clock())
            linked = recording.link_to(case_id, activity_id, by, by_legal_office=by_legal_office)
            took = recording.take_case_particulars(case.particulars, case.unit)
            if not (linked or took):
                return recording, []
            events: list[object] = list(recording.events)
            await self.recordings.save(recording)
            return recording, events

        recording, events = await read_decide_write(attempt, what=f"recording {cmd.recording_id}")
        await self._react(events)
        # A change of the case's particulars that the consumer applied between this link's read of the
        # case and its write walked the case's recordings without this one: read the case again.
        return await self._take_particulars(recording.recording_id) or recording

    # ================================================================== case projection (R5, R17)

    async def case_opened(self, case_id: str, unit: str, cause: str, parties: Sequence[str]) -> int:
        """CaseOpened: the case becomes linkable; recordings linked to it at upload before media-svc knew
        it take its cause and parties. Returns how many recordings changed."""
        await self.cases.case_opened(case_id, unit, cause, parties)
        return await self.follow_case(case_id)

    async def case_particulars_changed(self, case_id: str, cause: str, parties: Sequence[str]) -> int:
        """A new cause or parties of a case: every recording linked to it follows (R17)."""
        if not await self.cases.particulars_changed(case_id, cause, parties):
            return 0
        return await self.follow_case(case_id)

    async def activity_recorded(self, case_id: str, activity_id: str) -> None:
        await self.cases.activity_recorded(case_id, activity_id)

    async def case_closed(self, case_id: str) -> None:
        """CaseClosed or CaseArchived: the disposal refusal (R12) no longer holds the case's recordings back
        for it (service_layer/disposal.py); they are disposed of only once due and not held."""
        await self.cases.case_closed(case_id)

    async def follow_case(self, case_id: str) -> int:
        """Gives every recording linked to `case_id` the case's current cause and parties (R17), in
        index-backed batches by recording id. Idempotent: a recording holding them already is not written."""
        changed, after = 0, ""
        while ids := await self.recordings.linked_to_case(case_id, after, FOLLOW_BATCH):
            for recording_id in ids:
                changed += await self._take_particulars(recording_id) is not None
            after = ids[-1]
        return changed

    async def _take_particulars(self, recording_id: str) -> Recording | None:
        """The recording with its case's current particulars written, or None when nothing changed."""

        async def attempt() -> Recording | None:
            recording = await self.recordings.get(recording_id)
            if recording is None or not recording.link.case_id:
                return None
            case = await self.cases.get(recording.link.case_id)
            if case is None or not recording.take_case_particulars(case.particulars, case.unit):
                return None
            await self.recordings.save(recording)
            return recording

        return await read_decide_write(attempt, what=f"recording {recording_id}", attempts=BUSY_ATTEMPTS)

    # ================================================================== integrity (R23-2)

    async def record_integrity_failure(self, cmd: c.RecordIntegrityFailure) -> None:
        """Marks the recording FAILED and emits IntegrityCheckFailed."""
        self.metrics.integrity_failure(cmd.detected_by)
        log.error(
            "integrity check failed",
            extra={"recording_id": cmd.recording_id, "detected_by": cmd.detected_by, "detail": cmd.detail},
        )

        async def attempt() -> None:
            recording = await self.recordings.get(cmd.recording_id)
            if recording is None:
                return
            recording.integrity_failed(
                actual_sha256=cmd.actual_sha256,
                first_bad_offset=cmd.first_bad_offset,
                detected_by=cmd.detected_by,
                at=self.clock(),
                detail=cmd.detail,
            )
            await self.recordings.save(recording)

        try:
            await read_decide_write(attempt, what=f"recording {cmd.recording_id}", attempts=BUSY_ATTEMPTS)
        except ConcurrencyConflict:
            log.error("could not record the integrity failure of %s: %s", cmd.recording_id, "busy")

    async def record_integrity_verified(self, cmd: c.RecordIntegrityVerified) -> None:
        async def attempt() -> None:
            recording = await self.recordings.get(cmd.recording_id)
            if recording is None:
                return
            recording.integrity_verified(self.clock())
            await self.recordings.save(recording)

        with contextlib.suppress(ConcurrencyConflict):  # the next scrub verifies it again
            await read_decide_write(attempt, what=f"recording {cmd.recording_id}", attempts=BUSY_ATTEMPTS)

    # ================================================================== continuity (R19c)

    async def enter_segment(self, recording: Recording) -> None:
        """Adds the recording's segment to the series of its device and activity (idempotent), then clears
        its `continuity_pending` mark. A recording linked to an activity carries that mark (set in the
        same write as the link) until its segment is in the series document, so a series never misses a
        segment (single-document atomicity only: no transactions)."""
        cl = recording.classification
        if not recording.link.activity_id:
            return
        sid = series_id(recording.link.case_id, recording.link.activity_id, cl.device_number)
        segment = Segment(recording.recording_id, cl.recorded_from, cl.recorded_to)

        async def attempt() -> None:
            current = await self.series.get(sid)
            if current is None:
                new = Series.start(
                    unit=recording.unit,
                    case_id=recording.link.case_id,
                    activity_id=recording.link.activity_id,
                    device_number=cl.device_number,
                )
                new.add_segment(segment)
                await self.series.add(new)
            elif current.add_segment(segment):
                await self.series.save(current)

        try:
            await read_decide_write(
                attempt,
                what=f"series {sid}",
                attempts=BUSY_ATTEMPTS,
                retry_on=(AlreadyExists, ConcurrencyConflict),
            )
        except ConcurrencyConflict:
            log.warning(
                "series %s busy; segment %s left pending for the next sweep", sid, recording.recording_id
            )
            return
        await self.recordings.mark_in_series(recording.recording_id)

    async def settle_pending(self, limit: int = 100) -> int:
        """Enters the segments a crash left pending; answers how many."""
        pending = await self.recordings.pending_continuity(limit)
        for recording in pending:
            await self.enter_segment(recording)
        return len(pending)

    async def explain_interruption(self, cmd: c.ExplainInterruption, actor: Actor) -> SeriesGap:
        """R19c: explains the gap before `cmd.recording_id` → InterruptionExplained."""
        recording = await self._readable(cmd.recording_id, actor)
        RECORDINGS.authorize(actor, RecordingAction.EXPLAIN_INTERRUPTION, recording.unit)
        if not recording.link.activity_id:
            raise FailedPrecondition(
                f"recording {cmd.recording_id} is not linked to an enforcement activity, so it is in no "
                "series; link it first (LinkRecording)"
            )
        spoken: Segment | None = None
        if cmd.spoken_in_recording_id:
            other = await self._readable(cmd.spoken_in_recording_id, actor)
            if other.unit != recording.unit:
                raise InvalidArgument(
                    f"recording {cmd.spoken_in_recording_id} belongs to unit {other.unit!r}, "
                    f"not {recording.unit!r}"
                )
            oc = other.classification
            spoken = Segment(other.recording_id, oc.recorded_from, oc.recorded_to)
        cl = recording.classification
        sid = series_id(recording.link.case_id, recording.link.activity_id, cl.device_number)

        async def attempt() -> SeriesGap:
            series = await self.series.get(sid)
            if series is None or all(s.recording_id != recording.recording_id for s in series.segments):
                await self.enter_segment(recording)
                series = await self.series.get(sid)
            if series is None:
                raise ConcurrencyConflict(
                    f"the series of recording {cmd.recording_id} is being created; try again"
                )
            explanation = series.explain(
                next_recording_id=recording.recording_id,
                explained=Attribution(actor.subject, actor.unit, self.clock()),
                written_text=cmd.written_text,
                spoken_in=spoken,
                spoken_offset=cmd.spoken_offset,
            )
            await self.series.save(series)
            return SeriesGap(series, series.gap_before(recording.recording_id), explanation)

        return await read_decide_write(
            attempt, what=f"the series of recording {cmd.recording_id}", attempts=BUSY_ATTEMPTS
        )

    async def list_unexplained_gaps(
        self, *, unit: str, case_id: str, page_size: int, page_token: str, actor: Actor
    ) -> GapPage:
        """Gaps over the threshold without explanation, per unit or per case (R19c). R16: listed across
        units (a case, by a reader of every unit) or of another unit, the list is logged (RecordingsSearched
        naming the recordings before and after each gap)."""
        if bool(unit) == bool(case_id):
            raise InvalidArgument("give either a unit or a case_id")
        # A case's gaps: of the units the caller may list (the others' series are skipped below).
        units = RECORDINGS.listed_units(actor, RecordingAction.READ, unit)
        page = await self._gap_page(unit, case_id, page_size, page_token, actor)
        ids = [i for g in page.gaps for i in (g.gap.previous_recording_id, g.gap.next_recording_id)]
        await self._searched(
            actor, "ListUnexplainedGaps", SearchQuery(unit=unit, case_id=case_id), units, ids
        )
        return page

    async def _gap_page(
        self, unit: str, case_id: str, page_size: int, page_token: str, actor: Actor
    ) -> GapPage:
        wanted = paging.page_size(page_size)
        after = _decode_series_token(page_token)
        threshold = self.gap_threshold
        out: list[SeriesGap] = []
        last = after
        while True:
            batch = await self.series.with_unexplained_gaps(
                unit=unit,
                case_id=case_id,
                longer_than_s=threshold.total_seconds(),
                after_id=last,
                limit=wanted,
            )
            for i, series in enumerate(batch):
                last = series.series_id
                if RECORDINGS.may(actor, RecordingAction.READ, series.unit):
                    out.extend(SeriesGap(series, g, None) for g in series.unexplained_gaps(threshold))
                if len(out) >= wanted:
                    more = i < len(batch) - 1 or len(batch) == wanted
                    return GapPage(out, encode_page_token([last]) if more else "", threshold)
            if len(batch) < wanted:
                return GapPage(out, "", threshold)

    # ================================================================== verified download (R16, R23-2, R23-3)

    async def download_recording(self, cmd: c.DownloadRecording, actor: Actor) -> Download:
        """1. The access grant is verified (signature, validity, grantee, scope, action, revocation).
        2. `ContentAccessed` is recorded durably *before* the first byte is released.
        3. Each block is compared with the SHA-256 recorded at ingest before it is sent; a mismatch (or
           missing content) stops the stream with DATA_LOSS and records `IntegrityCheckFailed`."""
        token = cmd.access_grant.strip()
        if not token:
            raise PermissionDenied(
                "reading a recording's content needs an access grant approved in access-svc (R16); "
                "pass it in `access_grant`"
            )
        grant = self.verifier.decode(token)
        recording = await self.recordings.get(cmd.recording_id.strip())
        if recording is None:
            raise RecordingNotFound(f"no recording {cmd.recording_id!r}")
        RECORDINGS.authorize(actor, RecordingAction.DOWNLOAD, recording.unit)
        now = self.clock()
        grant.authorize_content_read(
            subject=actor.subject,
            recording_id=recording.recording_id,
            case_id=recording.link.case_id,
            now=now,
        )
        if await self.verifier.is_revoked(grant.grant_id):
            raise PermissionDenied(f"access grant {grant.grant_id} was revoked; ask access-svc for a new one")
        await self.access_log.record(
            ContentAccessed(
                access_id=self.ids(),
                recording_id=recording.recording_id,
                sha256=recording.sha256,
                unit=recording.unit,
                subject=actor.subject,
                subject_unit=actor.unit,
                at=now,
                grant_id=grant.grant_id,
                purpose=grant.purpose,
                approver=grant.approver_subject,
            )
        )
        self.metrics.content_accessed(recording.unit, recording.size_bytes)
        return Download(recording, grant, self._verified_chunks(recording))

    async def _verified_chunks(self, recording: Recording) -> AsyncIterator[VerifiedChunk]:
        try:
            chunks = self.reader.chunks(recording, self.blocks_per_chunk)
        except ContentMissing as missing:
            await self._integrity_failure(recording, BadBlock(-1, "", str(missing.message)))
        try:
            for chunk in chunks:
                if isinstance(chunk, BadBlock):
                    await self._integrity_failure(recording, chunk)
                yield chunk
        finally:
            chunks.close()  # closes the stored file even when the caller stops early

    async def _integrity_failure(self, recording: Recording, bad: BadBlock) -> NoReturn:
        await self.record_integrity_failure(
            c.RecordIntegrityFailure(
                recording.recording_id,
                actual_sha256=bad.actual,
                first_bad_offset=bad.offset,
                detected_by="download",
                detail=bad.detail,
            )
        )
        raise IntegrityFailure(
            f"recording {recording.recording_id}: {bad.detail}; the stream was stopped before releasing "
            "unverified bytes and the failure was reported (IntegrityCheckFailed)"
        )

    # ================================================================== fixity scrub (R23-2)

    async def start_fixity_scrub(self, cmd: c.StartFixityScrub) -> ScrubRun:
        """Starts a run in the background unless one is running (here or on another replica)."""
        running = await self.scrub_runs.running()
        if running is not None:
            return running
        if self._scrub_task is not None and not self._scrub_task.done() and self._scrub_current is not None:
            return self._scrub_current
        run = ScrubRun(run_id=self.ids(), triggered_by=cmd.triggered_by, started_at=self.clock())
        self._scrub_current = run
        self._scrub_task = asyncio.create_task(self.run_fixity_scrub(run), name=f"fixity-scrub-{run.run_id}")
        return run

    async def fixity_scrub_status(self) -> tuple[ScrubRun | None, ScrubRun | None]:
        return await self.scrub_runs.running(), await self.scrub_runs.last_finished()

    async def run_fixity_scrub(
        self, run: ScrubRun | None = None, triggered_by: str = "schedule"
    ) -> ScrubRun | None:
        """One full pass (re-hash every stored recording, compare with the SHA-256 recorded at ingest);
        None when another replica holds the lock. Progress is kept in the database (any replica answers
        the status) and exported as metrics."""
        run = run or ScrubRun(run_id=self.ids(), triggered_by=triggered_by, started_at=self.clock())
        self._scrub_current = run
        now = self.clock()
        if not await self.scrub_runs.try_lock(run.run_id, now + LOCK_LEASE, now):
            log.info("fixity scrub skipped: another run holds the lock")
            return None
        try:
            run.recordings_total, run.bytes_total = await self.recordings.totals()
            await self._publish_scrub(run)
            last_progress = time.monotonic()
            after = ""
            # Pipelined: the next recording is re-hashed (in a thread) while the result of the previous
            # one is written to the database, so the database round trips hide behind the hashing.
            pending: tuple[ScrubItem, asyncio.Future[str | None]] | None = None
            while True:
                batch = await self.recordings.scrub_batch(after, SCRUB_BATCH)
                if not batch:
                    break
                for item in batch:
                    after = item.recording_id
                    hashing = asyncio.ensure_future(asyncio.to_thread(self.store.digest, item.sha256))
                    if pending is not None:
                        await self._conclude_scrub_item(run, *pending)
                    pending = (item, hashing)
                    if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                        last_progress = time.monotonic()
                        await self._publish_scrub(run)
                        now = self.clock()
                        await self.scrub_runs.try_lock(run.run_id, now + LOCK_LEASE, now)
            if pending is not None:
                await self._conclude_scrub_item(run, *pending)
            run.finish(self.clock())
            await self._publish_scrub(run)
            log.info(
                "fixity scrub finished",
                extra={"run_id": run.run_id, "checked": run.recordings_checked, "failures": run.failures},
            )
            return run
        except BaseException:
            run.abort(self.clock())
            await asyncio.shield(self._publish_scrub(run))
            raise
        finally:
            await asyncio.shield(self.scrub_runs.release(run.run_id))

    async def _conclude_scrub_item(
        self, run: ScrubRun, item: ScrubItem, hashing: asyncio.Future[str | None]
    ) -> None:
        actual = await hashing
        ok = actual == item.sha256
        if not ok and await self.tombstones.disposed(item.recording_id):
            # Disposed of under an approved order (R12): its content is gone on purpose, not lost.
            run.skipped_disposed(item.size_bytes)
            return
        if ok:
            await self.record_integrity_verified(c.RecordIntegrityVerified(item.recording_id))
        else:
            await self.record_integrity_failure(
                c.RecordIntegrityFailure(
                    item.recording_id,
                    actual_sha256=actual or "",
                    first_bad_offset=-1,
                    detected_by="scrub",
                    detail=(
                        "stored content is missing"
                        if actual is None
                        else f"stored content hashes to {actual}, not the SHA-256 recorded at ingest"
                    ),
                )
            )
        run.checked(item.size_bytes, ok)

    async def _publish_scrub(self, run: ScrubRun) -> None:
        await self.scrub_runs.put(run)
        self.metrics.scrub_progress(run)

    async def stop_fixity_scrub(self) -> None:
        """Cancels a run this process started (at shutdown)."""
        if self._scrub_task is not None and not self._scrub_task.done():
            self._scrub_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._scrub_task

    # ================================================================== devices (R20, R21)

    async def register_device(self, cmd: c.RegisterDevice, actor: Actor) -> Device:
        """Registers a device in the caller's unit. Registering the same number again with the same
        unit and model returns the existing device (a retried request); anything else is refused."""
        DEVICES.authorize(actor, DeviceAction.REGISTER, cmd.unit.strip() or actor.unit)
        device = Device.register(
            device_number=cmd.device_number,
            unit=cmd.unit,
            model=cmd.model,
            by=actor.subject,
            at=self.clock(),
        )
        existing = await self.devices.get(device.device_number)
        if existing is not None:
            if existing.same_registration(device.unit, device.model):
                return existing
            raise DeviceAlreadyRegistered(
                f"device {device.device_number} is already registered (unit {existing.unit!r}, model "
                f"{existing.model!r}); device numbers are unique"
            )
        await self.devices.add(device, _take_events(device))
        return device

    async def record_pre_use_check(self, cmd: c.RecordPreUseCheck, actor: Actor) -> PreUseCheck:
        check_id = _request_id(cmd.request_id) or self.ids()

        async def attempt() -> PreUseCheck:
            device = await self._device_for(cmd.device_number, actor, DeviceAction.RECORD_PRE_USE_CHECK)
            if cmd.request_id:
                existing = device.recent_check(check_id) or await self.devices.get_check(check_id)
                if existing is not None:
                    return _same_device(
                        existing, existing.device_number, device.device_number, cmd.request_id
                    )
            check = device.record_check(
                check_id=check_id,
                battery_percent=cmd.battery_percent,
                free_storage_bytes=cmd.free_storage_bytes,
                clock_offset_s=cmd.clock_offset_s,
                by=actor.subject,
                at=self.clock(),
                policy=self.pre_use_policy,
                shifts=self.shifts,
            )
            await self.devices.save(device, _take_events(device))
            return check

        return await read_decide_write(attempt, what=f"device {cmd.device_number.strip()}")

    async def record_maintenance(self, cmd: c.RecordMaintenance, actor: Actor) -> MaintenanceRecord:
        maintenance_id = _request_id(cmd.request_id) or self.ids()

        async def attempt() -> MaintenanceRecord:
            device = await self._device_for(cmd.device_number, actor, DeviceAction.RECORD_MAINTENANCE)
            if cmd.request_id:
                existing = device.recent_maintenance_entry(
                    maintenance_id
                ) or await self.devices.get_maintenance(maintenance_id)
                if existing is not None:
                    return _same_device(
                        existing, existing.device_number, device.device_number, cmd.request_id
                    )
            record = device.record_maintenance(
                maintenance_id=maintenance_id, description=cmd.description, by=actor.subject, at=self.clock()
            )
            await self.devices.save(device, _take_events(device))
            return record

        return await read_decide_write(attempt, what=f"device {cmd.device_number.strip()}")

    async def report_fault(self, cmd: c.ReportFault, actor: Actor) -> tuple[Device, Fault]:
        """R21: the device is out of service from this instant."""
        fault_id = _request_id(cmd.request_id) or self.ids()

        async def attempt() -> tuple[Device, Fault]:
            device = await self._device_for(cmd.device_number, actor, DeviceAction.REPORT_FAULT)
            fault = device.report_fault(
                fault_id=fault_id, description=cmd.description, by=actor.subject, at=self.clock()
            )
            events = _take_events(device)
            if events:
                await self.devices.save(device, events)
            return device, fault

        return await read_decide_write(attempt, what=f"device {cmd.device_number.strip()}")

    async def record_repair(self, cmd: c.RecordRepair, actor: Actor) -> tuple[Device, Fault]:
        """R21: the repair record returns the device to service."""
        request_id = _request_id(cmd.request_id) or None

        async def attempt() -> tuple[Device, Fault]:
            device = await self._device_for(cmd.device_number, actor, DeviceAction.RECORD_REPAIR)
            fault = device.record_repair(
                request_id=request_id, note=cmd.note, by=actor.subject, at=self.clock()
            )
            events = _take_events(device)
            if events:
                await self.devices.save(device, events)
            return device, fault

        return await read_decide_write(attempt, what=f"device {cmd.device_number.strip()}")

    async def get_device(self, device_number: str, actor: Actor) -> Device:
        return await self._device_for(device_number, actor, DeviceAction.READ)

    async def recent_maintenance(
        self, device_number: str, actor: Actor, limit: int = 20
    ) -> list[MaintenanceRecord]:
        await self.get_device(device_number, actor)
        return await self.devices.maintenance_of(device_number.strip(), limit)

    async def list_pre_use_checks(
        self, device_number: str, since: datetime, until: datetime, actor: Actor
    ) -> list[PreUseCheck]:
        """Pre-use checks of a device whose shift overlaps [since, until] (R20), oldest first."""
        if until < since:
            raise InvalidArgument(f"until ({until.isoformat()}) is before since ({since.isoformat()})")
        if until - since > MAX_CHECK_RANGE:
            raise InvalidArgument(
                f"the time range may span at most {MAX_CHECK_RANGE.days} days; ask page by page"
            )
        device = await self.get_device(device_number, actor)
        return await self.devices.checks_for(device.device_number, since, until)

    async def list_devices(self, unit: str, page_size: int, after: str | None, actor: Actor) -> DevicePage:
        unit = unit.strip() or actor.unit
        DEVICES.authorize(actor, DeviceAction.READ, unit)
        size = paging.page_size(page_size)
        devices = await self.devices.list_by_unit(unit, after, size + 1)
        if len(devices) > size:
            return DevicePage(devices[:size], devices[size - 1].device_number)
        return DevicePage(devices, None)

    async def _device_for(self, device_number: str, actor: Actor, action: DeviceAction) -> Device:
        number = device_number.strip()
        if not number:
            raise InvalidArgument("device number is required")
        device = await self.devices.get(number)
        if device is None:
            raise DeviceNotFound(f"device {number!r} is not registered; register it first (RegisterDevice)")
        DEVICES.authorize(actor, action, device.unit)
        return device


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _take_events(device: Device) -> list[DeviceEvent]:
    events, device.events = list(device.events), []
    return events


def _request_id(value: str) -> str:
    value = value.strip()
    if value and not _REQUEST_ID.match(value):
        raise InvalidArgument(
            "request_id must be 1–64 characters of letters, digits, '.', '_', ':' or '-' (a UUID works)"
        )
    return value


def _same_device(record: T, recorded_number: str, requested_number: str, request_id: str) -> T:
    if recorded_number != requested_number.strip():
        raise AlreadyExists(
            f"request_id {request_id!r} was already used for device {recorded_number}; use a fresh id"
        )
    return record


def encode_cursor(cursor: SearchCursor) -> str:
    return encode_page_token([int(cursor.recorded_from.timestamp() * 1000), cursor.recording_id])


def decode_cursor(token: str) -> SearchCursor | None:
    position = decode_page_token(token)
    if position is None:
        return None
    try:
        millis, rid = position
        return SearchCursor(datetime.fromtimestamp(int(millis) / 1000, UTC), str(rid))
    except (ValueError, TypeError, OverflowError):
        raise foreign_page_token() from None


def _decode_series_token(token: str) -> str:
    position = decode_page_token(token)
    if position is None:
        return ""
    if len(position) != 1 or not isinstance(position[0], str):
        raise foreign_page_token()
    return position[0]
