"""The fixity scrub (R23-2): re-hashes every stored recording and compares it with the SHA-256 recorded
at ingest. A mismatch or missing content marks the recording FAILED, emits IntegrityCheckFailed and
increments an alertable metric. Progress is kept in the database (so any replica answers the status) and
exported as metrics. One run at a time across replicas (a lock with a lease in the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from media_svc.domain.fixity import ScrubRun, ScrubState
from media_svc.service_layer.ports import (
    ContentStore,
    NullMetrics,
    RecordingMetrics,
    RecordingRepository,
    ScrubItem,
    ScrubRunRepository,
)
from media_svc.service_layer.recordings import RecordingHandlers, new_id, utc_now_ms

log = logging.getLogger(__name__)

LOCK_LEASE = timedelta(minutes=5)
PROGRESS_EVERY_S = 2.0
_BATCH = 200


class FixityScrubber:
    def __init__(
        self,
        *,
        recordings: RecordingRepository,
        store: ContentStore,
        runs: ScrubRunRepository,
        recording_handlers: RecordingHandlers,
        metrics: RecordingMetrics | None = None,
        clock: Callable[[], datetime] = utc_now_ms,
    ) -> None:
        self._recordings = recordings
        self._store = store
        self._runs = runs
        self._handlers = recording_handlers
        self._metrics: RecordingMetrics = metrics or NullMetrics()
        self._clock = clock
        self._task: asyncio.Task[ScrubRun | None] | None = None
        self._current: ScrubRun | None = None

    async def start(self, triggered_by: str) -> ScrubRun:
        """Starts a run in the background unless one is running (here or on another replica)."""
        running = await self._runs.running()
        if running is not None:
            return running
        if self._task is not None and not self._task.done() and self._current is not None:
            return self._current
        run = ScrubRun(run_id=new_id(), triggered_by=triggered_by, started_at=self._clock())
        self._current = run
        self._task = asyncio.create_task(self.run(run), name=f"fixity-scrub-{run.run_id}")
        return run

    async def status(self) -> tuple[ScrubRun | None, ScrubRun | None]:
        return await self._runs.running(), await self._runs.last_finished()

    async def run(self, run: ScrubRun | None = None, triggered_by: str = "schedule") -> ScrubRun | None:
        """One full pass; None when another replica holds the lock."""
        run = run or ScrubRun(run_id=new_id(), triggered_by=triggered_by, started_at=self._clock())
        self._current = run
        now = self._clock()
        if not await self._runs.try_lock(run.run_id, now + LOCK_LEASE, now):
            log.info("fixity scrub skipped: another run holds the lock")
            return None
        try:
            run.recordings_total, run.bytes_total = await self._recordings.totals()
            await self._publish(run)
            last_progress = time.monotonic()
            after = ""
            # Pipelined: the next recording is re-hashed (in a thread) while the result of the previous
            # one is written to the database, so the database round trips hide behind the hashing.
            pending: tuple[ScrubItem, asyncio.Future[str | None]] | None = None
            while True:
                batch = await self._recordings.scrub_batch(after, _BATCH)
                if not batch:
                    break
                for item in batch:
                    after = item.recording_id
                    hashing = asyncio.ensure_future(asyncio.to_thread(self._store.digest, item.sha256))
                    if pending is not None:
                        await self._conclude(run, *pending)
                    pending = (item, hashing)
                    if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                        last_progress = time.monotonic()
                        await self._publish(run)
                        now = self._clock()
                        await self._runs.try_lock(run.run_id, now + LOCK_LEASE, now)
            if pending is not None:
                await self._conclude(run, *pending)
            run.finish(self._clock())
            await self._publish(run)
            log.info(
                "fixity scrub finished",
                extra={"run_id": run.run_id, "checked": run.recordings_checked, "failures": run.failures},
            )
            return run
        except BaseException:
            run.abort(self._clock())
            await asyncio.shield(self._publish(run))
            raise
        finally:
            await asyncio.shield(self._runs.release(run.run_id))

    async def _conclude(self, run: ScrubRun, item: ScrubItem, hashing: asyncio.Future[str | None]) -> None:
        actual = await hashing
        ok = actual == item.sha256
        if ok:
            await self._handlers.record_verified(item.recording_id)
        else:
            await self._handlers.record_integrity_failure(
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
        run.checked(item.size_bytes, ok)

    async def _publish(self, run: ScrubRun) -> None:
        await self._runs.put(run)
        self._metrics.scrub_progress(run)

    async def run_every(self, interval: timedelta, initial_delay: timedelta) -> None:
        """The schedule: a run after `initial_delay`, then every `interval` (runs until cancelled)."""
        await asyncio.sleep(initial_delay.total_seconds())
        while True:
            try:
                await self.run(triggered_by="schedule")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fixity scrub failed; next attempt at the next interval")
            await asyncio.sleep(interval.total_seconds())

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


__all__ = ["FixityScrubber", "ScrubState"]
