"""The one composition root of media-svc: settings, ports, handlers, API and background loops.

Nothing is built at import time. `build_handlers` wires the use cases to any ports (unit tests pass
in-memory fakes, production the MongoDB repositories, the content store and ffprobe); `bootstrap` builds
those adapters and answers the `Wiring` for `servicekit.app.run_service` (gRPC services, role policy,
indexes, outbox collections). Its `background` loops are the continuity sweep (R19c) and the fixity scrub
schedule (R23-2).

Settings (environment, prefix `LAWTRAIL_`; the base ones are in docs/development.md; defaults = local):

| variable | default | meaning |
|---|---|---|
| `LAWTRAIL_MEDIA_CONTENT_DIR` | `<LAWTRAIL_DATA_DIR>/content` | root of the write-once content store |
| `LAWTRAIL_MEDIA_MAX_UPLOAD_BYTES` | `8589934592` (8 GiB) | larger uploads are RESOURCE_EXHAUSTED |
| `LAWTRAIL_MEDIA_LATE_INGEST_LIMIT_S` | `86400` | R11a: ingest later than this after the end is a finding |
| `LAWTRAIL_MEDIA_DURATION_TOLERANCE_S` / `_RATIO` | `5` / `0.1` | declared vs probed duration tolerance |
| `LAWTRAIL_MEDIA_GAP_THRESHOLD_S` | `60` | R19c: gaps longer than this need an explanation |
| `LAWTRAIL_MEDIA_SCRUB_INTERVAL_S` | `86400` | fixity scrub period; `0` = only StartFixityScrub |
| `LAWTRAIL_MEDIA_SCRUB_INITIAL_DELAY_S` | `600` | first scheduled scrub after start |
| `LAWTRAIL_MEDIA_GRANT_PUBLIC_KEYS` | access-svc dev key (data dir) | PEM files of trusted grant issuers |
| `LAWTRAIL_MEDIA_CONTINUITY_SWEEP_S` | `30` | how often segments left pending by a crash are settled |
| `LAWTRAIL_MEDIA_DOWNLOAD_BLOCKS_PER_MESSAGE` | `2` | verified 1 MiB blocks per download message (1–3) |

Devices (prefix `LAWTRAIL_DEVICE_`, docs/devices.md):

| variable | default | meaning |
|---|---|---|
| `LAWTRAIL_DEVICE_MIN_BATTERY_PERCENT` | `60` | a passing pre-use check has battery ≥ this (%) |
| `LAWTRAIL_DEVICE_MIN_FREE_STORAGE_MIB` | `4096` | … and free storage ≥ this (MiB) |
| `LAWTRAIL_DEVICE_MAX_CLOCK_OFFSET_S` | `5` | … and abs(device clock − reference clock) ≤ this (s) |
| `LAWTRAIL_DEVICE_SHIFT_STARTS` | `08:00,20:00` | local start times of the daily shifts |
| `LAWTRAIL_DEVICE_SHIFT_TIMEZONE` | `Asia/Shanghai` | IANA time zone of those times |
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Self

from lawtrail.media.v1 import device_service_pb2_grpc, disposal_service_pb2_grpc, recording_service_pb2_grpc
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from servicekit.app import ConsumerSpec, Runtime, Wiring
from servicekit.clock import Clock, utc_now
from servicekit.config import ServiceSettings
from servicekit.grpc import ServiceBinding
from servicekit.ids import IdFactory, new_id
from servicekit.mongo import OUTBOX_INDEX

from media_svc.adapters.access_grants import (
    Ed25519GrantVerifier,
    MongoRevocations,
    ensure_dev_grant_keys,
    load_public_keys,
)
from media_svc.adapters.case_projection import MongoCaseProjection
from media_svc.adapters.content_store import LocalContentStore
from media_svc.adapters.device_repository import MongoDeviceRepository
from media_svc.adapters.disposal import TOMBSTONES, LocalContentEraser, MongoDisposalStore
from media_svc.adapters.ffprobe import FfprobeProber
from media_svc.adapters.ingest_pipeline import ThreadedContentReceiver
from media_svc.adapters.recording_metrics import PrometheusRecordingMetrics
from media_svc.adapters.recording_repository import (
    ACCESS,
    RECORDINGS,
    SERIES,
    MongoAccessLog,
    MongoRecordingRepository,
    MongoScrubRunRepository,
    MongoSeriesRepository,
)
from media_svc.adapters.verified_reader import FramedContentReader
from media_svc.domain.devices import PreUseCheckPolicy, ShiftSchedule
from media_svc.domain.recordings import IngestPolicy
from media_svc.entrypoints.access_events import ACCESS_TOPIC, GROUP_ID, access_events_router
from media_svc.entrypoints.case_events import CASE_TOPIC, case_events_router
from media_svc.entrypoints.case_events import GROUP_ID as CASE_GROUP_ID
from media_svc.entrypoints.case_events import INBOX as CASE_INBOX
from media_svc.entrypoints.disposal_api import (
    DISPOSAL_ROLE_POLICY,
    RETENTION_TOPIC,
    DisposalApi,
    DisposalAwareRecordingApi,
    disposal_guard_router,
)
from media_svc.entrypoints.disposal_api import GROUP_ID as DISPOSAL_GROUP_ID
from media_svc.entrypoints.disposal_api import SERVICE as DISPOSAL_SERVICE
from media_svc.entrypoints.grpc_api import (
    DEVICE_SERVICE,
    RECORDING_SERVICE,
    DeviceApi,
    role_policy,
)
from media_svc.service_layer.disposal import DisposalHandlers
from media_svc.service_layer.handlers import MediaHandlers
from media_svc.service_layer.ports import (
    AccessLog,
    CaseProjection,
    ContentReader,
    ContentReceiver,
    ContentStore,
    DeviceRepository,
    GrantVerifier,
    MediaProber,
    RecordingMetrics,
    RecordingRepository,
    ScrubRunRepository,
    SeriesRepository,
    Tombstones,
)

log = logging.getLogger(__name__)


class MediaSettings(ServiceSettings):
    service_name: str = "media-svc"
    grpc_address: str = "127.0.0.1:50052"
    metrics_address: str = "127.0.0.1:9102"

    media_content_dir: Path | None = None
    media_max_upload_bytes: int = Field(default=8 * 1024**3, gt=0)
    media_late_ingest_limit_s: float = Field(default=86400.0, gt=0)
    media_duration_tolerance_s: float = Field(default=5.0, ge=0)
    media_duration_tolerance_ratio: float = Field(default=0.1, ge=0)
    media_gap_threshold_s: float = Field(default=60.0, ge=0)
    media_scrub_interval_s: float = Field(default=86400.0, ge=0)
    media_scrub_initial_delay_s: float = Field(default=600.0, ge=0)
    media_grant_public_keys: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    media_continuity_sweep_s: float = Field(default=30.0, gt=0)
    media_download_blocks_per_message: int = Field(default=2, ge=1, le=3)

    @field_validator("media_grant_public_keys", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(part.strip()) for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _derive_media_defaults(self) -> Self:
        if self.media_content_dir is None:
            self.media_content_dir = self.data_dir / "content"
        return self

    def ingest_policy(self) -> IngestPolicy:
        return IngestPolicy(
            late_ingest_limit=timedelta(seconds=self.media_late_ingest_limit_s),
            duration_tolerance=timedelta(seconds=self.media_duration_tolerance_s),
            duration_tolerance_ratio=self.media_duration_tolerance_ratio,
        )


class DeviceSettings(BaseSettings):
    """What a shift and a passing pre-use check are (R20)."""

    model_config = SettingsConfigDict(env_prefix="LAWTRAIL_DEVICE_")

    min_battery_percent: int = 60
    min_free_storage_mib: int = 4096
    max_clock_offset_s: float = 5.0
    shift_starts: str = "08:00,20:00"
    shift_timezone: str = "Asia/Shanghai"

    @field_validator("shift_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ShiftSchedule.parse("00:00", value)  # raises for an unknown zone
        return value

    def policy(self) -> PreUseCheckPolicy:
        return PreUseCheckPolicy(
            min_battery_percent=self.min_battery_percent,
            min_free_storage_mib=self.min_free_storage_mib,
            max_clock_offset_s=self.max_clock_offset_s,
        )

    def shifts(self) -> ShiftSchedule:
        return ShiftSchedule.parse(self.shift_starts, self.shift_timezone)


@dataclass(frozen=True)
class MediaPorts:
    """Everything the use cases need from outside: production passes the adapters, tests fakes."""

    recordings: RecordingRepository
    series: SeriesRepository
    devices: DeviceRepository
    access_log: AccessLog
    scrub_runs: ScrubRunRepository
    store: ContentStore
    prober: MediaProber
    verifier: GrantVerifier
    # media-svc's view of case-svc's cases (R5 link checks, R17 cause and parties).
    cases: CaseProjection
    # Recordings disposed of under an order: the fixity scrub does not report their content as lost.
    tombstones: Tombstones | None = None
    # How upload bytes are written and hashed, how download chunks are read and verified: the threaded
    # and framed adapters unless a test passes its own.
    receiver: ContentReceiver | None = None
    reader: ContentReader | None = None


def build_handlers(
    ports: MediaPorts,
    settings: MediaSettings | None = None,
    device_settings: DeviceSettings | None = None,
    *,
    metrics: RecordingMetrics | None = None,
    clock: Clock = utc_now,
    ids: IdFactory = new_id,
) -> MediaHandlers:
    """The use cases wired to `ports`, with the policies of `settings` (defaults when None)."""
    settings = settings or MediaSettings()
    device_settings = device_settings or DeviceSettings()
    return MediaHandlers(
        recordings=ports.recordings,
        series=ports.series,
        devices=ports.devices,
        access_log=ports.access_log,
        scrub_runs=ports.scrub_runs,
        store=ports.store,
        receiver=ports.receiver or ThreadedContentReceiver(),
        reader=ports.reader or FramedContentReader(ports.store),
        prober=ports.prober,
        verifier=ports.verifier,
        cases=ports.cases,
        tombstones=ports.tombstones,
        ingest_policy=settings.ingest_policy(),
        pre_use_policy=device_settings.policy(),
        shifts=device_settings.shifts(),
        max_upload_bytes=settings.media_max_upload_bytes,
        gap_threshold=timedelta(seconds=settings.media_gap_threshold_s),
        blocks_per_chunk=settings.media_download_blocks_per_message,
        metrics=metrics,
        clock=clock,
        ids=ids,
    )


async def _every(seconds: float, what: str, job: Callable[[], Awaitable[object]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; retrying in %.0f s", what, seconds)


async def bootstrap(rt: Runtime) -> Wiring:
    settings = rt.settings
    assert isinstance(settings, MediaSettings), "run media-svc with MediaSettings"
    assert settings.media_content_dir is not None
    source, notify = settings.event_source, rt.relay.notify
    devices = MongoDeviceRepository(rt.db, event_source=source, notify=notify)
    # The relay watches the repository's `devices` collection (writes through servicekit's
    # per-document locks, servicekit.doclock), so it is registered here rather than by name below.
    rt.relay.watch(devices.device_collection)
    key_paths = settings.media_grant_public_keys or [ensure_dev_grant_keys(settings.data_dir)[1]]
    revocations = MongoRevocations(rt.db["revoked_grants"])
    verifier = Ed25519GrantVerifier(load_public_keys(key_paths), revocations)
    # Disposal (R12, R13, R23-5): carried out for retention-svc, refused on media-svc's own view of holds
    # (entrypoints/disposal_api.py) and of case closure (the case projection); its tombstones also tell the
    # scrub what is gone.
    disposals = MongoDisposalStore(rt.db, event_source=source, notify=notify)
    # The one view of case-svc's cases: link checks (R5, R17) and the disposal refusal (R12) read it.
    cases = MongoCaseProjection(rt.db)
    ports = MediaPorts(
        recordings=MongoRecordingRepository(rt.db, event_source=source, notify=notify),
        series=MongoSeriesRepository(rt.db, event_source=source, notify=notify),
        devices=devices,
        access_log=MongoAccessLog(rt.db, event_source=source, notify=notify),
        scrub_runs=MongoScrubRunRepository(rt.db),
        store=LocalContentStore(settings.media_content_dir),
        prober=FfprobeProber(),
        verifier=verifier,
        cases=cases,
        tombstones=disposals,
    )
    handlers = build_handlers(ports, settings, metrics=PrometheusRecordingMetrics(rt.metrics.registry))
    assert isinstance(ports.store, LocalContentStore)
    disposal = DisposalHandlers(
        recordings=ports.recordings, store=disposals, cases=cases, eraser=LocalContentEraser(ports.store)
    )

    background: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
        "continuity-sweep": lambda: _every(
            settings.media_continuity_sweep_s, "continuity sweep", handlers.settle_pending
        ),
    }
    if settings.media_scrub_interval_s > 0:
        background["fixity-schedule"] = lambda: _scrub_schedule(
            handlers,
            timedelta(seconds=settings.media_scrub_interval_s),
            timedelta(seconds=settings.media_scrub_initial_delay_s),
        )
    return Wiring(
        services=[
            ServiceBinding(
                recording_service_pb2_grpc.add_RecordingServiceServicer_to_server,
                DisposalAwareRecordingApi(handlers, disposal),
                RECORDING_SERVICE,
            ),
            ServiceBinding(
                disposal_service_pb2_grpc.add_DisposalServiceServicer_to_server,
                DisposalApi(disposal),
                DISPOSAL_SERVICE,
            ),
            ServiceBinding(
                device_service_pb2_grpc.add_DeviceServiceServicer_to_server,
                DeviceApi(handlers),
                DEVICE_SERVICE,
            ),
        ],
        role_policy={**role_policy(), **DISPOSAL_ROLE_POLICY},
        indexes={
            RECORDINGS: MongoRecordingRepository.indexes(),
            SERIES: MongoSeriesRepository.indexes(),
            ACCESS: MongoAccessLog.indexes(),
            **MongoScrubRunRepository.indexes(),
            **MongoDeviceRepository.indexes(),
            TOMBSTONES: [OUTBOX_INDEX],
        },
        outbox_collections=[RECORDINGS, SERIES, ACCESS, TOMBSTONES],
        # One consumer group per topic: each topic's lag, dead letters and replays stay its own.
        consumers=[
            # Disposal guard (R13): media-svc's own view of retention-svc's holds; no inbox, every effect is
            # idempotent by construction.
            ConsumerSpec([RETENTION_TOPIC], DISPOSAL_GROUP_ID, disposal_guard_router(disposals)),
            ConsumerSpec([ACCESS_TOPIC], GROUP_ID, access_events_router(verifier, revocations)),
            # Its one view of case-svc's cases (R5 link checks, R17 cause and parties, R12 closure for the
            # disposal refusal), with an inbox.
            ConsumerSpec(
                [CASE_TOPIC], CASE_GROUP_ID, case_events_router(handlers), inbox_collection=CASE_INBOX
            ),
        ],
        background=background,
    )


async def _scrub_schedule(handlers: MediaHandlers, interval: timedelta, initial_delay: timedelta) -> None:
    """The fixity schedule: a run after `initial_delay`, then every `interval` (runs until cancelled)."""
    await asyncio.sleep(initial_delay.total_seconds())
    while True:
        try:
            await handlers.run_fixity_scrub(triggered_by="schedule")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("fixity scrub failed; next attempt at the next interval")
        await asyncio.sleep(interval.total_seconds())
