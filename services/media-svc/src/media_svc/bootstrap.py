"""The one composition root of media-svc: settings, and what `servicekit.app.run_service` wires.

Nothing is built at import time. `bootstrap(rt)` builds repositories, the content store, ffprobe, the
grant verifier and the handlers, and answers the `Wiring` (gRPC services, role policy, indexes, outbox
collections). Its `background` loops are the continuity sweep (R19c) and the fixity scrub schedule (R23-2).

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
| `LAWTRAIL_MEDIA_GRANT_PUBLIC_KEYS` | dev key in `<data dir>/keys` | PEM files of trusted grant issuers |
| `LAWTRAIL_MEDIA_CONTINUITY_SWEEP_S` | `30` | how often segments left pending by a crash are settled |
| `LAWTRAIL_MEDIA_DOWNLOAD_BLOCKS_PER_MESSAGE` | `2` | verified 1 MiB blocks per download message (1–3) |
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Self

from lawtrail.media.v1 import recording_service_pb2, recording_service_pb2_grpc
from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode
from servicekit.app import Runtime, Wiring
from servicekit.config import ServiceSettings
from servicekit.grpc import ServiceBinding

from media_svc.adapters.access_grants import Ed25519GrantVerifier, ensure_dev_grant_keys, load_public_keys
from media_svc.adapters.content_store import LocalContentStore
from media_svc.adapters.ffprobe import FfprobeProber
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
from media_svc.device_wiring import device_wiring
from media_svc.domain.recordings import IngestPolicy
from media_svc.entrypoints.recording_api import RECORDING_ROLE_POLICY, SERVICE_NAME, RecordingApi
from media_svc.service_layer.continuity import ContinuityHandlers
from media_svc.service_layer.downloads import DownloadHandlers
from media_svc.service_layer.fixity import FixityScrubber
from media_svc.service_layer.recordings import RecordingHandlers

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

    recordings = MongoRecordingRepository(rt.db, event_source=source, notify=notify)
    series = MongoSeriesRepository(rt.db, event_source=source, notify=notify)
    access_log = MongoAccessLog(rt.db, event_source=source, notify=notify)
    runs = MongoScrubRunRepository(rt.db)
    store = LocalContentStore(settings.media_content_dir)
    metrics = PrometheusRecordingMetrics(rt.metrics.registry)
    key_paths = settings.media_grant_public_keys or [ensure_dev_grant_keys(settings.data_dir)[1]]
    verifier = Ed25519GrantVerifier(load_public_keys(key_paths))
    devices = device_wiring(rt)

    handlers = RecordingHandlers(
        recordings=recordings,
        store=store,
        prober=FfprobeProber(),
        devices=devices.repository,
        policy=settings.ingest_policy(),
        max_upload_bytes=settings.media_max_upload_bytes,
        metrics=metrics,
    )
    continuity = ContinuityHandlers(
        recordings=recordings,
        series=series,
        recording_handlers=handlers,
        gap_threshold=timedelta(seconds=settings.media_gap_threshold_s),
    )
    handlers.on_linked = continuity.enter_segment
    downloads = DownloadHandlers(
        recordings=recordings,
        store=store,
        verifier=verifier,
        access_log=access_log,
        recording_handlers=handlers,
        metrics=metrics,
        blocks_per_chunk=settings.media_download_blocks_per_message,
    )
    scrubber = FixityScrubber(
        recordings=recordings, store=store, runs=runs, recording_handlers=handlers, metrics=metrics
    )

    background: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
        "continuity-sweep": lambda: _every(
            settings.media_continuity_sweep_s, "continuity sweep", continuity.settle_pending
        ),
    }
    if settings.media_scrub_interval_s > 0:
        background["fixity-schedule"] = lambda: scrubber.run_every(
            timedelta(seconds=settings.media_scrub_interval_s),
            timedelta(seconds=settings.media_scrub_initial_delay_s),
        )

    recording_binding = ServiceBinding(
        recording_service_pb2_grpc.add_RecordingServiceServicer_to_server,
        RecordingApi(handlers, continuity, downloads, scrubber),
        recording_service_pb2.DESCRIPTOR.services_by_name[SERVICE_NAME.rsplit(".", 1)[1]],
    )
    return Wiring(
        services=[recording_binding, devices.binding],
        role_policy={**RECORDING_ROLE_POLICY, **devices.role_policy},
        indexes={
            RECORDINGS: MongoRecordingRepository.indexes(),
            SERIES: MongoSeriesRepository.indexes(),
            ACCESS: MongoAccessLog.indexes(),
            **MongoScrubRunRepository.indexes(),
            **devices.indexes,
        },
        outbox_collections=[RECORDINGS, SERIES, ACCESS, *devices.outbox_collections],
        background=background,
    )
