"""Monthly archive backup (R11b): each unit's recordings ingested in a month are copied to the separate
archive store with a manifest and a root hash, read back and verified → ArchiveBatchCreated; a schedule
re-verifies batches → ArchiveBatchVerified; what is not yet backed up is listed, and the age of each unit's
oldest un-backed-up recording is a metric (alert when it passes a month and a margin).

Content is read through media-svc's verified download, like offline copies (`copies.write_verified`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from servicekit.errors import FailedPrecondition, InvalidArgument, NotFound

from retention_svc.domain.archive import ArchiveBatch, month_bounds, month_of
from retention_svc.domain.copies import CopyDraft, CopyFormat
from retention_svc.domain.permissions import Action, Actor, authorize
from retention_svc.domain.retention import RecordingRecord
from retention_svc.service_layer.copies import SERVICE_SUBJECT, Written, write_verified
from retention_svc.service_layer.ports import (
    ArchiveStore,
    CopyWriter,
    IngestedRecordings,
    MediaContent,
    RetentionMetrics,
)

log = logging.getLogger(__name__)


class ArchiveHandlers:
    def __init__(
        self,
        *,
        store: ArchiveStore,
        recordings: IngestedRecordings,
        media: MediaContent,
        writer: CopyWriter,
        clock: Callable[[], datetime],
        extension_for: Callable[[str, str], str],
        metrics: RetentionMetrics | None = None,
        new_id: Callable[[], str] = lambda: f"batch-{uuid.uuid4()}",
    ) -> None:
        self.store = store
        self.recordings = recordings
        self.media = media
        self.writer = writer
        self.clock = clock
        self.extension_for = extension_for
        self.metrics = metrics or RetentionMetrics()
        self.new_id = new_id
        self._lock = asyncio.Lock()  # one batch at a time: two must never back up the same recording

    async def unbacked(self, unit: str | None, before: datetime | None = None) -> list[RecordingRecord]:
        ingested = await self.recordings.ingested(unit, before or self.clock())
        done = await self.store.backed_up([r.recording_id for r in ingested])
        return [r for r in ingested if r.recording_id not in done]

    async def list_unbacked(self, actor: Actor, unit: str) -> list[RecordingRecord]:
        _require_unit(unit)
        authorize(actor, Action.READ_RETENTION, unit)
        return await self.unbacked(unit)

    async def list_batches(self, actor: Actor, unit: str) -> list[ArchiveBatch]:
        _require_unit(unit)
        authorize(actor, Action.READ_RETENTION, unit)
        return await self.store.for_unit(unit)

    async def create(self, actor: Actor, unit: str, month: str) -> ArchiveBatch:
        _require_unit(unit)
        authorize(actor, Action.ARCHIVE_BACKUP, unit)
        return await self._batch(unit, month, actor.subject)

    async def _batch(self, unit: str, month: str, created_by: str) -> ArchiveBatch:
        start, end = month_bounds(month, now=self.clock())
        async with self._lock:
            todo = [
                r
                for r in await self.unbacked(unit, end)
                if r.ingested_at is not None and r.ingested_at >= start
            ]
            if not todo:
                raise FailedPrecondition(f"unit {unit} has no recording ingested in {month} left to back up")
            batch_id = self.new_id()
            draft = CopyDraft(
                batch_id, "", unit, CopyFormat.FOLDER, self.clock(), created_by, (), {},
                folder=f"{_safe(unit)}/{month}/{batch_id}", kind="archive-batch", month=month,
            )  # fmt: skip
            written: Written | None = None
            async for part in write_verified(
                self.media, self.writer, todo, draft, self.extension_for,
                purpose=f"R11b monthly archive backup {batch_id} of unit {unit}, {month}",
            ):  # fmt: skip
                if isinstance(part, Written):
                    written = part
            assert written is not None
            batch = ArchiveBatch(
                batch_id, unit, month, written.path, written.root_hash, written.items, draft.created_at,
                created_by, last_verified_at=draft.created_at,
            )  # fmt: skip
            await self.store.add(batch)
            self.metrics.batch_made(unit, batch.total_bytes)
            log.info(
                "archive batch %s: %d recordings of %s, %s → %s", batch_id, len(todo), unit, month, batch.path
            )
            return batch

    async def verify(self, actor: Actor, batch_id: str) -> ArchiveBatch:
        if not batch_id:
            raise InvalidArgument("batch_id is required")
        batch = await self.store.get(batch_id)
        if batch is None:
            raise NotFound(f"archive batch {batch_id} does not exist")
        authorize(actor, Action.VERIFY_ARCHIVE, batch.unit)
        return await self._verify(batch)

    async def _verify(self, batch: ArchiveBatch) -> ArchiveBatch:
        root_hash, problems = await self.writer.verify(batch.path, lambda done, total, what: None)
        if root_hash != batch.root_hash:
            problems = [*problems, f"root hash {root_hash or '-'}, recorded {batch.root_hash}"]
        checked = batch.verified(self.clock(), problems)
        await self.store.record_verification(checked)
        self.metrics.batch_verified(batch.unit, checked.last_verification_ok)
        if problems:
            log.error("archive batch %s at %s failed verification: %s", batch.batch_id, batch.path, problems)
        return checked

    # --- scheduled jobs ---
    async def back_up_past_months(self) -> int:
        """Batches every unit's recordings ingested in months before the current one (the monthly job)."""
        now = self.clock()
        first_of_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        groups: defaultdict[tuple[str, str], int] = defaultdict(int)
        for rec in await self.unbacked(None, first_of_month):
            assert rec.ingested_at is not None
            groups[(rec.unit, month_of(rec.ingested_at))] += 1
        for unit, month in sorted(groups):
            await self._batch(unit, month, SERVICE_SUBJECT)
        await self.update_oldest_unbacked()
        return len(groups)

    async def reverify_all(self) -> int:
        """Re-reads every batch (the scheduled check); answers how many failed."""
        failed = 0
        for batch in await self.store.all_batches():
            failed += not (await self._verify(batch)).last_verification_ok
        return failed

    async def update_oldest_unbacked(self) -> dict[str, float]:
        now = self.clock()
        ages: dict[str, float] = {}
        for rec in await self.unbacked(None, now):
            assert rec.ingested_at is not None
            ages.setdefault(rec.unit, (now - rec.ingested_at).total_seconds())
        self.metrics.oldest_unbacked(ages)
        return ages


def _require_unit(unit: str) -> None:
    if not unit or len(unit) > 100:
        raise InvalidArgument("unit is required (1–100 characters)")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"
