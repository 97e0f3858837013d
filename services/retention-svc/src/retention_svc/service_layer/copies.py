"""Offline copies of held cases (R13 刻录光盘 / 移动存储).

1. The case's held recordings are read one by one through media-svc's verified download, under
   retention-svc's service credential with a stated purpose (media-svc records a ContentAccessed for each);
   each is hashed while it is written to a staging folder and must match the SHA-256 recorded at ingest.
2. manifest.json, SHA256SUMS and README.txt are written; then the ISO image (or the folder) is made.
3. The copy is re-read from where it was written and every hash checked (DATA_LOSS otherwise).
4. Only then is it recorded in the inventory with OfflineCopyCreated. A failure leaves no inventory entry
   and removes the staging folder; nothing half-written is ever listed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from servicekit.errors import DataLoss, DomainError, FailedPrecondition, InvalidArgument, NotFound

from retention_svc.domain.copies import (
    CopyDraft,
    CopyFormat,
    CopyItem,
    OfflineCopy,
    Progress,
    check_storage_location,
)
from retention_svc.domain.permissions import Action, Actor, authorize
from retention_svc.domain.retention import RecordingRecord
from retention_svc.service_layer.ports import (
    CaseRecords,
    CopyInventory,
    CopyWriter,
    MediaContent,
    RecordingRecords,
    RetentionMetrics,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
SERVICE_SUBJECT = "retention-svc"
AUTO_LOCATION = "retention-svc copies directory (automatic copy after a hold; move to the archive room)"
PROGRESS_EVERY_S = 0.5


class CopyHandlers:
    def __init__(
        self,
        *,
        cases: CaseRecords,
        recordings: RecordingRecords,
        inventory: CopyInventory,
        media: MediaContent,
        writer: CopyWriter,
        clock: Callable[[], datetime],
        new_id: Callable[[], str],
        default_format: CopyFormat = CopyFormat.ISO,
        extension_for: Callable[[str, str], str] = lambda format_name, media_kind: ".bin",
        metrics: RetentionMetrics | None = None,
    ) -> None:
        self.cases = cases
        self.recordings = recordings
        self.inventory = inventory
        self.media = media
        self.writer = writer
        self.clock = clock
        self.new_id = new_id
        self.default_format = default_format
        self.extension_for = extension_for
        self.metrics = metrics or RetentionMetrics()
        # One copy of a case at a time: a second request waits and then finds it already made.
        self._case_locks: dict[str, asyncio.Lock] = {}

    async def list_copies(self, actor: Actor, case_id: str) -> list[OfflineCopy]:
        if not case_id:
            raise InvalidArgument("case_id is required")
        case = await self.cases.get(case_id)
        if case is None:
            raise NotFound(f"case {case_id} is unknown to retention-svc")
        authorize(actor, Action.READ_RETENTION, case.unit)
        return await self.inventory.for_case(case_id)

    async def held_recordings(self, case_id: str) -> list[RecordingRecord]:
        case = await self.cases.get(case_id)
        if case is None:
            raise NotFound(f"case {case_id} is unknown to retention-svc")
        records = [await self.recordings.get(r) for r in sorted(case.recording_ids)]
        return [r for r in records if r is not None and r.held and r.sha256]

    async def create(
        self, actor: Actor, case_id: str, fmt: CopyFormat | None, storage_location: str
    ) -> AsyncIterator[Progress | OfflineCopy]:
        if not case_id:
            raise InvalidArgument("case_id is required")
        location = check_storage_location(storage_location)
        case = await self.cases.get(case_id)
        if case is None:
            raise NotFound(f"case {case_id} is unknown to retention-svc")
        authorize(actor, Action.MAKE_OFFLINE_COPY, case.unit)
        async for part in self._make(case_id, case.unit, fmt or self.default_format, location, actor.subject):
            yield part

    async def copy_new_holds(self) -> int:
        """Makes a copy of every held case whose held recordings are not all on a copy yet (the automatic
        follow-up of a hold, R13); answers how many copies were made.

        A case whose copy fails (media-svc does not serve one of its recordings, content that does not
        match its ingest hash...) is logged with the reason, counted in
        `lawtrail_retention_offline_copy_failures` and tried again in the next round; it does not hold
        up the copies of the other held cases."""
        made = 0
        for case_id in await self.cases.held_case_ids():
            held = {r.recording_id for r in await self.held_recordings(case_id)}
            copied: set[str] = set()
            for copy in await self.inventory.for_case(case_id):
                copied |= copy.recording_ids
            if not held or held <= copied:
                continue
            case = await self.cases.get(case_id)
            assert case is not None
            try:
                async for _ in self._make(
                    case_id, case.unit, self.default_format, AUTO_LOCATION, SERVICE_SUBJECT
                ):
                    pass
            except DomainError as error:
                self.metrics.copy_failed(case.unit, type(error).__name__)
                log.error(
                    "automatic offline copy of held case %s (unit %s) failed: %s; tried again next round",
                    case_id,
                    case.unit,
                    error,
                )
                continue
            made += 1
        return made

    async def _make(
        self, case_id: str, unit: str, fmt: CopyFormat, location: str, created_by: str
    ) -> AsyncIterator[Progress | OfflineCopy]:
        lock = self._case_locks.setdefault(case_id, asyncio.Lock())
        async with lock:
            held = await self.held_recordings(case_id)
            if not held:
                raise FailedPrecondition(
                    f"case {case_id} has no held recording (R13: only held material is copied offline)"
                )
            copy_id = self.new_id()
            draft = CopyDraft(copy_id, case_id, unit, fmt, self.clock(), created_by, (), {})
            written: Written | None = None
            async for part in write_verified(
                self.media, self.writer, held, draft, self.extension_for,
                purpose=f"R13 offline copy {copy_id} of held case {case_id}",
            ):  # fmt: skip
                if isinstance(part, Progress):
                    yield part
                else:
                    written = part
            assert written is not None
            copy = OfflineCopy(
                copy_id, case_id, unit, fmt, written.path, location, written.root_hash,
                written.items, draft.created_at, created_by,
            )  # fmt: skip
            await self.inventory.add(copy)
            self.metrics.copy_made(unit, copy.total_bytes)
            log.info(
                "offline copy %s of case %s written to %s (root %s)",
                copy_id,
                case_id,
                written.path,
                written.root_hash,
            )
            yield copy


@dataclass(frozen=True)
class Written:
    path: str
    root_hash: str
    items: tuple[CopyItem, ...]


async def write_verified(
    media: MediaContent,
    writer: CopyWriter,
    recordings: Sequence[RecordingRecord],
    draft: CopyDraft,
    extension_for: Callable[[str, str], str],
    *,
    purpose: str,
) -> AsyncIterator[Progress | Written]:
    """Reads `recordings` through media-svc's verified download into a staging folder (each checked against
    its ingest SHA-256), writes the manifest and the image or folder, re-reads it and checks every hash;
    yields progress, then what was written. Raises DataLoss on any mismatch; removes the staging folder
    on failure (R13 offline copies and R11b archive batches share it)."""
    total = sum(r.size_bytes for r in recordings)
    done = 0
    staging = await writer.stage(draft.copy_id)
    staging_done = False  # once the image or folder is made, the staging folder is gone
    try:
        items: list[CopyItem] = []
        classification: dict[str, dict[str, str]] = {}
        yield Progress(0, total, 0, len(recordings), "taking the access grants from access-svc")
        await media.prepare(purpose, [(r.recording_id, r.case_id) for r in recordings])
        yield Progress(0, total, 0, len(recordings), "reading recordings through media-svc")
        for n, rec in enumerate(recordings, start=1):
            rel = f"recordings/{rec.recording_id}{extension_for(rec.format_name, rec.media_kind)}"
            async with media.download(rec.recording_id, case_id=rec.case_id, purpose=purpose) as (
                header,
                chunks,
            ):
                if header.sha256 != rec.sha256:
                    raise DataLoss(
                        f"media-svc serves recording {rec.recording_id} as SHA-256 {header.sha256}, "
                        f"but it was ingested with {rec.sha256}"
                    )
                digest, size = await writer.write_item(staging, rel, chunks)
            if digest != rec.sha256:
                raise DataLoss(
                    f"recording {rec.recording_id} read as SHA-256 {digest}, ingested as {rec.sha256}"
                )
            items.append(CopyItem(rec.recording_id, rel, digest, size))
            classification[rec.recording_id] = _classification(rec)
            done += size
            yield Progress(done, total, n, len(recordings), f"copied recording {rec.recording_id}")
        media.finished(purpose)
        full = replace(draft, items=tuple(items), classification=classification)
        step = "writing the disc image" if draft.format is CopyFormat.ISO else "writing the folder"
        path, root_hash = "", ""
        async for part in _with_progress(
            lambda sink: writer.finish(staging, full, sink), len(recordings), step
        ):
            if isinstance(part, Progress):
                yield part
            else:
                path, root_hash = part
        staging_done = True
        read_back: tuple[str, list[str]] = ("", [])
        async for part2 in _with_progress(
            lambda sink: writer.verify(path, sink), len(recordings), "verifying the copy by reading it back"
        ):
            if isinstance(part2, Progress):
                yield part2
            else:
                read_back = part2
        verified_hash, problems = read_back
        if problems or verified_hash != root_hash:
            raise DataLoss(
                f"the copy at {path} did not verify after writing: "
                + ("; ".join(problems) or f"root hash {verified_hash}, written {root_hash}")
            )
        yield Written(path, root_hash, tuple(items))
    except BaseException:
        media.finished(purpose)
        if not staging_done:
            await writer.discard(staging)
        raise


async def _with_progress(
    work: Callable[[Callable[[int, int, str], None]], Awaitable[T]], files: int, step: str
) -> AsyncIterator[Progress | T]:
    """Runs `work(sink)`, yielding a Progress every PROGRESS_EVERY_S from what it reports, then its result."""
    latest: list[tuple[int, int, str]] = [(0, 0, step)]

    def sink(done: int, total: int, what: str) -> None:
        latest[0] = (done, total, what)  # a plain store: safe from the writer's thread

    task = asyncio.ensure_future(work(sink))
    try:
        while not task.done():
            await asyncio.wait([task], timeout=PROGRESS_EVERY_S)
            done, total, what = latest[0]
            yield Progress(done, total, files, files, what or step)
        yield task.result()
    finally:
        if not task.done():
            task.cancel()


def _classification(rec: RecordingRecord) -> dict[str, str]:
    values = {
        "unit": rec.unit,
        "device_number": rec.device_number,
        "officer": rec.officer,
        "media_kind": rec.media_kind,
        "recorded_from": rec.recorded_from.isoformat() if rec.recorded_from else "",
        "recorded_to": rec.recorded_to.isoformat() if rec.recorded_to else "",
        "case_id": rec.case_id,
        "holds": ", ".join(f"{h.incident_kind} ({h.incident_id})" for h in rec.holds.values()),
    }
    return {k: v for k, v in values.items() if v}
