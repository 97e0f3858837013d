"""In-memory fakes of every port of media-svc's service layer (service_layer/ports.py), honouring the same
contracts as the adapters (the adapter and integration tests check those against MongoDB, the disk and
ffprobe), and `fake_ports` to build the handlers on them through the one composition root
(`media_svc.bootstrap.build_handlers`)."""

from __future__ import annotations

import copy
import hashlib
import io
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from media_svc.bootstrap import MediaPorts
from media_svc.domain.access import AccessGrant
from media_svc.domain.cases import CaseParticulars, CaseView
from media_svc.domain.continuity import Series
from media_svc.domain.devices import Device, MaintenanceRecord, PreUseCheck
from media_svc.domain.errors import DeviceAlreadyRegistered
from media_svc.domain.events import ContentAccessed, DeviceEvent, RecordingsSearched, RecordingViewed
from media_svc.domain.fixity import ContentDigest, ScrubRun, ScrubState
from media_svc.domain.recordings import Recording
from media_svc.service_layer.ports import (
    AccessLog,
    CaseProjection,
    ContentMissing,
    ContentReceiver,
    ContentStore,
    DeviceRepository,
    GrantVerifier,
    MediaProber,
    PartialUpload,
    RecordingRepository,
    ScrubItem,
    ScrubRunRepository,
    SearchCursor,
    SearchQuery,
    SeriesRepository,
    UploadInProgress,
)
from servicekit.errors import AlreadyExists, ConcurrencyConflict, DataLoss, FailedPrecondition, NotFound

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# repositories
# ---------------------------------------------------------------------------------------------


class InMemoryRecordings(RecordingRepository):
    def __init__(self) -> None:
        self.docs: dict[str, Recording] = {}
        self.published: list[object] = []

    async def get(self, recording_id: str) -> Recording | None:
        r = self.docs.get(recording_id)
        return copy.deepcopy(r) if r else None

    async def get_by_sha256(self, sha256: str) -> Recording | None:
        return next((copy.deepcopy(r) for r in self.docs.values() if r.sha256 == sha256), None)

    async def add(self, recording: Recording) -> None:
        if recording.recording_id in self.docs or any(
            r.sha256 == recording.sha256 for r in self.docs.values()
        ):
            raise AlreadyExists("exists")
        recording.version = 1
        self.published.extend(recording.events)
        recording.events.clear()
        self.docs[recording.recording_id] = copy.deepcopy(recording)

    async def save(self, recording: Recording) -> None:
        stored = self.docs.get(recording.recording_id)
        if stored is None:
            raise NotFound("missing")
        if stored.version != recording.version:
            raise ConcurrencyConflict("conflict")
        assert (stored.sha256, stored.size_bytes, stored.block_hashes) == (
            recording.sha256,
            recording.size_bytes,
            recording.block_hashes,
        ), "content identity must never change"
        recording.version += 1
        self.published.extend(recording.events)
        recording.events.clear()
        self.docs[recording.recording_id] = copy.deepcopy(recording)

    async def search(self, query: SearchQuery, after: SearchCursor | None, limit: int) -> list[Recording]:
        def ok(r: Recording) -> bool:
            c = r.classification
            checks = [
                (query.unit, c.unit),
                (query.device_number, c.device_number),
                (query.officer, c.officer),
                (query.case_id, r.link.case_id),
            ]
            if any(want and want != have for want, have in checks):
                return False
            # R17: the declared party and cause and, once linked, the case's (the adapter's arrays).
            if query.party and query.party not in r.search_parties:
                return False
            if query.case_cause and query.case_cause not in r.search_causes:
                return False
            if query.media_kind and c.media_kind is not query.media_kind:
                return False
            if query.recorded_after and not c.recorded_to > query.recorded_after:
                return False
            if query.recorded_before and not c.recorded_from < query.recorded_before:
                return False
            key = (c.recorded_from, r.recording_id)
            return after is None or key > (after.recorded_from, after.recording_id)

        found = sorted(
            (r for r in self.docs.values() if ok(r)),
            key=lambda r: (r.classification.recorded_from, r.recording_id),
        )
        return [copy.deepcopy(r) for r in found[:limit]]

    async def linked_to_case(self, case_id: str, after_id: str, limit: int) -> list[str]:
        return sorted(i for i, r in self.docs.items() if r.link.case_id == case_id and i > after_id)[:limit]

    async def pending_continuity(self, limit: int) -> list[Recording]:
        return [copy.deepcopy(r) for r in self.docs.values() if r.continuity_pending][:limit]

    async def mark_in_series(self, recording_id: str) -> None:
        self.docs[recording_id].continuity_pending = False

    async def scrub_batch(self, after_id: str, limit: int) -> list[ScrubItem]:
        ids = sorted(i for i in self.docs if i > after_id)[:limit]
        return [ScrubItem(i, self.docs[i].sha256, self.docs[i].size_bytes) for i in ids]

    async def totals(self) -> tuple[int, int]:
        return len(self.docs), sum(r.size_bytes for r in self.docs.values())


class InMemorySeries(SeriesRepository):
    def __init__(self) -> None:
        self.docs: dict[str, Series] = {}
        self.published: list[object] = []

    async def get(self, series_id: str) -> Series | None:
        s = self.docs.get(series_id)
        return copy.deepcopy(s) if s else None

    async def add(self, series: Series) -> None:
        if series.series_id in self.docs:
            raise AlreadyExists("exists")
        series.version = 1
        self.published.extend(series.events)
        series.events.clear()
        self.docs[series.series_id] = copy.deepcopy(series)

    async def save(self, series: Series) -> None:
        if self.docs[series.series_id].version != series.version:
            raise ConcurrencyConflict("conflict")
        series.version += 1
        self.published.extend(series.events)
        series.events.clear()
        self.docs[series.series_id] = copy.deepcopy(series)

    async def with_unexplained_gaps(
        self, *, unit: str, case_id: str, longer_than_s: float, after_id: str, limit: int
    ) -> list[Series]:
        found = [
            s
            for sid, s in sorted(self.docs.items())
            if sid > after_id
            and (not unit or s.unit == unit)
            and (not case_id or s.case_id == case_id)
            and s.longest_unexplained_gap.total_seconds() > longer_than_s
        ]
        return [copy.deepcopy(s) for s in found[:limit]]


class InMemoryAccessLog(AccessLog):
    def __init__(self) -> None:
        self.records: list[ContentAccessed] = []
        self.views: list[RecordingViewed | RecordingsSearched] = []

    async def record(self, access: ContentAccessed) -> None:
        self.records.append(access)

    async def record_view(self, view: RecordingViewed | RecordingsSearched) -> None:
        self.views.append(view)


class InMemoryScrubRuns(ScrubRunRepository):
    def __init__(self) -> None:
        self.runs: dict[str, ScrubRun] = {}
        self.holder: str | None = None

    async def try_lock(self, run_id: str, until: datetime, now: datetime) -> bool:
        if self.holder in (None, run_id):
            self.holder = run_id
            return True
        return False

    async def release(self, run_id: str) -> None:
        if self.holder == run_id:
            self.holder = None

    async def put(self, run: ScrubRun) -> None:
        self.runs[run.run_id] = copy.deepcopy(run)

    async def running(self) -> ScrubRun | None:
        return copy.deepcopy(self.runs[self.holder]) if self.holder in self.runs else None

    async def last_finished(self) -> ScrubRun | None:
        done = [r for r in self.runs.values() if r.state is not ScrubState.RUNNING]
        return max(done, key=lambda r: r.finished_at or T0, default=None)


class InMemoryDeviceRepository(DeviceRepository):
    def __init__(self) -> None:
        self.devices: dict[str, Device] = {}
        self.checks: dict[str, PreUseCheck] = {}
        self.maintenance: dict[str, MaintenanceRecord] = {}
        self.published: list[DeviceEvent] = []

    async def get(self, device_number: str) -> Device | None:
        found = self.devices.get(device_number)
        return copy.deepcopy(found) if found else None

    async def add(self, device: Device, events: Sequence[DeviceEvent]) -> None:
        if device.device_number in self.devices:
            raise DeviceAlreadyRegistered(f"device {device.device_number} is already registered")
        device.version = 1
        self.devices[device.device_number] = copy.deepcopy(device)
        self.published.extend(events)

    async def save(self, device: Device, events: Sequence[DeviceEvent]) -> None:
        if self.devices[device.device_number].version != device.version:
            raise ConcurrencyConflict("changed meanwhile")
        device.version += 1
        self.devices[device.device_number] = copy.deepcopy(device)
        self.published.extend(events)
        for c in device.recent_checks:
            self.checks.setdefault(c.check_id, c)
        for m in device.recent_maintenance:
            self.maintenance.setdefault(m.maintenance_id, m)

    async def get_check(self, check_id: str) -> PreUseCheck | None:
        return self.checks.get(check_id)

    async def checks_for(self, device_number: str, since: datetime, until: datetime) -> list[PreUseCheck]:
        found = [
            c
            for c in self.checks.values()
            if c.device_number == device_number and c.shift_start <= until and c.shift_end > since
        ]
        return sorted(found, key=lambda c: c.checked_at)

    async def get_maintenance(self, maintenance_id: str) -> MaintenanceRecord | None:
        return self.maintenance.get(maintenance_id)

    async def maintenance_of(self, device_number: str, limit: int) -> list[MaintenanceRecord]:
        found = [m for m in self.maintenance.values() if m.device_number == device_number]
        return sorted(found, key=lambda m: m.performed_at, reverse=True)[:limit]

    async def list_by_unit(self, unit: str, after: str | None, limit: int) -> list[Device]:
        found = sorted(
            (
                d
                for d in self.devices.values()
                if d.unit == unit and (after is None or d.device_number > after)
            ),
            key=lambda d: d.device_number,
        )
        return [copy.deepcopy(d) for d in found[:limit]]


class AnyDeviceInService(DeviceRepository):
    """Devices for the recordings tests: every device number is registered, in service, and has a passing
    pre-use check covering any recording (so ingest raises no device finding unless a test wants one)."""

    async def get(self, device_number: str) -> Device | None:
        return Device(
            device_number=device_number,
            unit="unit-a",
            model="DSJ-X1",
            registered_by="head-a",
            registered_at=datetime(2000, 1, 1, tzinfo=UTC),
        )

    async def checks_for(self, device_number: str, since: datetime, until: datetime) -> list[PreUseCheck]:
        early, late = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
        return [
            PreUseCheck(
                "c-any", device_number, "unit-a", 100, 10**12, 0.0, "officer-1", early, early, late, True
            )
        ]

    async def add(self, device: Device, events: Sequence[DeviceEvent]) -> None:
        raise AssertionError("the recordings tests register no device")

    async def save(self, device: Device, events: Sequence[DeviceEvent]) -> None:
        raise AssertionError("the recordings tests change no device")

    async def get_check(self, check_id: str) -> PreUseCheck | None:
        return None

    async def get_maintenance(self, maintenance_id: str) -> MaintenanceRecord | None:
        return None

    async def maintenance_of(self, device_number: str, limit: int) -> list[MaintenanceRecord]:
        return []

    async def list_by_unit(self, unit: str, after: str | None, limit: int) -> list[Device]:
        return []


# ---------------------------------------------------------------------------------------------
# content store and ffprobe
# ---------------------------------------------------------------------------------------------


class InMemoryPartial(PartialUpload):
    def __init__(self, store: InMemoryContentStore, sha256: str, data: bytearray) -> None:
        self.sha256 = sha256
        self._store = store
        self.data = data
        self.size = len(data)
        self.synced = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.data += data
        self.size = len(self.data)

    def read_back(self, block: int) -> Iterator[bytes]:
        for i in range(0, self.size, block):
            yield bytes(self.data[i : i + block])

    def local_path(self) -> Path:
        return Path("/in-memory") / self.sha256  # only FakeProber reads it

    def sync(self) -> None:
        self.synced = self.size

    def close(self) -> None:
        self.closed = True
        self._store.busy.discard(self.sha256)


class InMemoryContentStore(ContentStore):
    """Write-once content by SHA-256, partial uploads kept for a resume, like LocalContentStore."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.partials: dict[str, bytearray] = {}
        self.busy: set[str] = set()

    def partial_size(self, sha256: str) -> int:
        return len(self.partials.get(sha256, b""))

    def open_partial(self, sha256: str, offset: int) -> InMemoryPartial:
        if sha256 in self.busy:
            raise UploadInProgress(f"another upload of this content (SHA-256 {sha256}) is in progress")
        held = self.partials.setdefault(sha256, bytearray())
        if offset > len(held):
            raise FailedPrecondition(
                f"the server holds {len(held)} bytes of this upload, fewer than offset {offset}: "
                f"resume from {len(held)} (BeginUpload tells the offset)"
            )
        del held[offset:]
        self.busy.add(sha256)
        return InMemoryPartial(self, sha256, held)

    def discard_partial(self, partial: PartialUpload) -> None:
        self.partials.pop(partial.sha256, None)
        partial.close()

    def commit(self, partial: PartialUpload) -> None:
        assert isinstance(partial, InMemoryPartial)
        assert partial.synced == partial.size, "committed before its bytes were made durable"
        stored = self.objects.get(partial.sha256)
        if stored is not None and hashlib.sha256(stored).hexdigest() != partial.sha256:
            raise DataLoss(f"content {partial.sha256} is already stored but its bytes do not match")
        if stored is None:
            self.objects[partial.sha256] = bytes(partial.data)
        self.partials.pop(partial.sha256, None)
        partial.close()

    def contains(self, sha256: str) -> bool:
        return sha256 in self.objects

    def open_content(self, sha256: str) -> BinaryIO:
        if sha256 not in self.objects:
            raise ContentMissing(f"content {sha256} is missing from the store")
        return io.BytesIO(self.objects[sha256])

    def digest(self, sha256: str) -> str | None:
        data = self.objects.get(sha256)
        return None if data is None else hashlib.sha256(data).hexdigest()


class FakeProber(MediaProber):
    """ffprobe's answer by content: what it was taught for bytes that start with a known file (the tests
    append suffixes to make distinct contents of one video); `{}` (not media) for anything else."""

    def __init__(self, store: InMemoryContentStore) -> None:
        self.store = store
        self.known: list[tuple[bytes, Mapping[str, Any]]] = []
        self.asked = 0

    def teach(self, data: bytes, probe: Mapping[str, Any]) -> None:
        self.known.append((data, probe))

    async def probe(self, path: Path) -> Mapping[str, Any]:
        self.asked += 1
        data = bytes(self.store.partials.get(path.name, b""))
        return next((probe for prefix, probe in self.known if data.startswith(prefix)), {})


class InlineReceiver(ContentReceiver):
    """Writes and hashes each chunk as it comes, in the event loop (the threaded pipeline is an adapter)."""

    async def resume(self, partial: PartialUpload, digest: ContentDigest, offset: int) -> None:
        for data in partial.read_back(1024 * 1024):
            digest.update(data)
        if digest.size != offset:
            raise FailedPrecondition(f"the interrupted upload holds {digest.size} bytes, not {offset}")

    async def receive(
        self, partial: PartialUpload, digest: ContentDigest, chunks: AsyncIterator[bytes]
    ) -> None:
        async for chunk in chunks:
            partial.write(chunk)
            digest.update(chunk)


# ---------------------------------------------------------------------------------------------
# grants and the ports together
# ---------------------------------------------------------------------------------------------


class StaticGrants(GrantVerifier):
    """Decodes "grant:<n>" tokens to grants registered by the test (the signature is tested separately)."""

    def __init__(self) -> None:
        self.grants: dict[str, AccessGrant] = {}
        self.revoked: set[str] = set()

    def decode(self, token: str) -> AccessGrant:
        from servicekit.errors import InvalidArgument

        if token not in self.grants:
            raise InvalidArgument("unknown test grant")
        return self.grants[token]

    async def is_revoked(self, grant_id: str) -> bool:
        return grant_id in self.revoked


class InMemoryCases(CaseProjection):
    """The case projection in memory, with the adapter's idempotence (a repeated CaseOpened keeps a
    later change; activities are a set)."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    async def get(self, case_id: str) -> CaseView | None:
        d = self.docs.get(case_id)
        if d is None or not d.get("opened"):
            return None
        return CaseView(
            case_id,
            d["unit"],
            CaseParticulars(d["cause"], tuple(d["parties"]), d["version"]),
            frozenset(d.get("activities", ())),
            bool(d.get("closed")),
        )

    async def case_opened(self, case_id: str, unit: str, cause: str, parties: Sequence[str]) -> None:
        d = self.docs.setdefault(case_id, {})
        if not d.get("opened"):
            d.update(opened=True, unit=unit, cause=cause, parties=list(parties), version=1)

    async def particulars_changed(self, case_id: str, cause: str, parties: Sequence[str]) -> bool:
        d = self.docs.get(case_id)
        if d is None or not d.get("opened") or (d["cause"], d["parties"]) == (cause, list(parties)):
            return False
        d.update(cause=cause, parties=list(parties), version=d["version"] + 1)
        return True

    async def activity_recorded(self, case_id: str, activity_id: str) -> None:
        self.docs.setdefault(case_id, {}).setdefault("activities", set()).add(activity_id)

    async def case_closed(self, case_id: str) -> None:
        self.docs.setdefault(case_id, {})["closed"] = True

    async def is_closed(self, case_id: str) -> bool:
        return bool(self.docs.get(case_id, {}).get("closed"))


def fake_ports(
    *,
    devices: DeviceRepository | None = None,
    store: ContentStore | None = None,
    prober: MediaProber | None = None,
    receiver: ContentReceiver | None = None,
) -> MediaPorts:
    """Every port faked in memory (the download reader is the real one: it only reads what the store
    hands it). Pass `store`/`prober`/`receiver` to put a real adapter in (the adapter tests do)."""
    store = store or InMemoryContentStore()
    if prober is None:
        assert isinstance(store, InMemoryContentStore), "a FakeProber reads the in-memory store"
        prober = FakeProber(store)
    return MediaPorts(
        recordings=InMemoryRecordings(),
        series=InMemorySeries(),
        devices=devices or AnyDeviceInService(),
        access_log=InMemoryAccessLog(),
        scrub_runs=InMemoryScrubRuns(),
        store=store,
        prober=prober,
        verifier=StaticGrants(),
        cases=InMemoryCases(),
        receiver=receiver or (InlineReceiver() if isinstance(store, InMemoryContentStore) else None),
    )
