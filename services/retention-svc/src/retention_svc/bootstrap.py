"""The one composition root of retention-svc: settings, rules, repositories, handlers, API and consumers.

Nothing is built at import time. `build_handlers` wires the use cases to any ports (unit tests pass
in-memory fakes); `bootstrap` wires them to MongoDB, the outbox relay, media-svc, the gRPC server and the
consumer of case and media events, for `servicekit.app.run_service` (see `__main__`).

Settings (environment, prefix `LAWTRAIL_`; the base ones are in docs/development.md; defaults = local):

| variable | default | meaning |
|---|---|---|
| `LAWTRAIL_RETENTION_RULES_FILE` | shipped `config/retention_rules.toml` | retention rules (R12, R13) |
| `LAWTRAIL_RETENTION_COPIES_DIR` | `<data dir>/retention/copies` | where offline copies are written |
| `LAWTRAIL_RETENTION_COPY_FORMAT` | `ISO` | `ISO` (disc image) or `FOLDER` (removable media) |
| `LAWTRAIL_RETENTION_AUTO_COPY_INTERVAL_S` | `60` | held cases lacking a full copy get one; `0` = never |
| `LAWTRAIL_RETENTION_ARCHIVE_DIR` | `<data dir>/retention/archive` | the archive store (R11b) |
| `LAWTRAIL_RETENTION_ARCHIVE_INTERVAL_S` | `3600` | past months backed up; `0` = by RPC only |
| `LAWTRAIL_RETENTION_ARCHIVE_VERIFY_INTERVAL_S` | `86400` | every batch re-verified this often; `0` = never |
| `LAWTRAIL_RETENTION_METRICS_INTERVAL_S` | `300` | held / candidate gauges per unit refreshed |
| `LAWTRAIL_RETENTION_MEDIA_ADDRESS` | `127.0.0.1:50052` | media-svc (verified downloads) |
| `LAWTRAIL_RETENTION_ACCESS_ADDRESS` | `127.0.0.1:50054` | access-svc (standing grants for the downloads) |
| `LAWTRAIL_RETENTION_TOKEN_FILE` | unset | a bearer token (role SERVICE) for media-svc and access-svc |
| `LAWTRAIL_RETENTION_TOKEN_KEY` | `<data dir>/keys/dev-private.pem` | else: signs its own token (local) |
| `LAWTRAIL_RETENTION_CONSUMER_GROUP` | `retention-svc.events` | consumer group (needs `<group>.dlq`) |
"""

from __future__ import annotations

import asyncio
import logging
import re
import tomllib
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

from lawtrail.retention.v1 import retention_service_pb2_grpc
from lawtrail_client.offline_copy import extension_for
from pydantic import Field, model_validator
from servicekit.app import ConsumerSpec, Runtime, Wiring
from servicekit.auth.devtoken import ensure_dev_keys
from servicekit.config import ServiceSettings
from servicekit.grpc import ServiceBinding

from retention_svc.adapters.archive import ARCHIVED, BATCHES, BatchDocuments, MongoArchiveStore
from retention_svc.adapters.copies import COPIES, CopyDocuments, LocalCopyWriter, MongoCopyInventory
from retention_svc.adapters.disposal import ORDERS, MongoDisposalOrders, OrderDocuments
from retention_svc.adapters.media_content import GrpcMediaContent
from retention_svc.adapters.metrics import PrometheusRetentionMetrics
from retention_svc.adapters.repository import (
    CASES,
    RECORDINGS,
    CaseDocuments,
    MongoCaseRecords,
    MongoRecordingRecords,
    RecordingDocuments,
)
from retention_svc.domain.copies import CopyFormat
from retention_svc.domain.rules import RuleBook, RuleError
from retention_svc.entrypoints.consumers import CASE_TOPIC, DEFAULT_GROUP_ID, MEDIA_TOPIC, retention_router
from retention_svc.entrypoints.grpc_api import SERVICE, RetentionApi, role_policy
from retention_svc.service_layer.archive import ArchiveHandlers
from retention_svc.service_layer.copies import CopyHandlers
from retention_svc.service_layer.disposal import DisposalHandlers
from retention_svc.service_layer.handlers import RetentionHandlers
from retention_svc.service_layer.ports import (
    CaseRecords,
    CopyInventory,
    CopyWriter,
    MediaContent,
    RecordingRecords,
    RetentionMetrics,
)

log = logging.getLogger(__name__)


class RetentionSettings(ServiceSettings):
    """retention-svc's settings: servicekit's (prefix LAWTRAIL_) with retention-svc's defaults."""

    service_name: str = "retention-svc"
    grpc_address: str = "127.0.0.1:50053"
    metrics_address: str = "127.0.0.1:9103"
    retention_rules_file: Path | None = None
    retention_copies_dir: Path | None = None
    retention_copy_format: Literal["ISO", "FOLDER"] = "ISO"
    retention_auto_copy_interval_s: float = Field(default=60.0, ge=0)
    retention_archive_dir: Path | None = None
    retention_archive_interval_s: float = Field(default=3600.0, ge=0)
    retention_archive_verify_interval_s: float = Field(default=86400.0, ge=0)
    retention_metrics_interval_s: float = Field(default=300.0, gt=0)
    retention_media_address: str = "127.0.0.1:50052"
    retention_token_file: Path | None = None
    retention_token_key: Path | None = None
    retention_access_address: str = "127.0.0.1:50054"
    retention_consumer_group: str = DEFAULT_GROUP_ID

    @model_validator(mode="after")
    def _derive_retention_defaults(self) -> Self:
        if self.retention_copies_dir is None:
            self.retention_copies_dir = self.data_dir / "retention" / "copies"
        if self.retention_archive_dir is None:
            self.retention_archive_dir = self.data_dir / "retention" / "archive"
        return self


def load_rules(path: Path | None = None) -> RuleBook:
    """The retention rules: `path`, or the default shipped in `retention_svc/config/retention_rules.toml`.
    An invalid file stops the service with the file, the line and the reason."""
    if path is None:
        text = (
            resources.files("retention_svc")
            .joinpath("config/retention_rules.toml")
            .read_text(encoding="utf-8")
        )
        where = "retention_svc/config/retention_rules.toml"
    else:
        text = path.read_text(encoding="utf-8")
        where = str(path)
    try:
        return RuleBook.from_mapping(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise SystemExit(f"retention rules {where} are invalid: {exc}") from exc
    except RuleError as exc:
        raise SystemExit(
            f"retention rules {where}:{line_of(text, exc.path)}: {exc.path}: {exc.reason}"
        ) from exc


def line_of(text: str, path: str) -> int:
    """The line of the rules file where the entry `path` (`case_file.class[2].period`) is written: the key's
    own line if present, else its table's header; 1 when it cannot be told."""
    parts = path.split(".")
    lines = text.splitlines()
    start, end = 0, len(lines)
    key = parts[-1]
    table = ".".join(parts[:-1]) if len(parts) > 1 else parts[0]
    match = re.fullmatch(r"(.+)\[(\d+)\]", table)
    if match:
        header, nth = f"[[{match.group(1)}]]", int(match.group(2))
    else:
        header, nth = f"[{table}]", 1
    seen = 0
    for i, line in enumerate(lines):
        if line.strip() == header:
            seen += 1
            if seen == nth:
                start = i
                break
    else:
        return 1
    for j in range(start + 1, len(lines)):
        if lines[j].lstrip().startswith("["):
            end = j
            break
    for j in range(start + 1, end):
        if re.match(rf"\s*{re.escape(key)}\s*=", lines[j]):
            return j + 1
    return start + 1


def utc_now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def build_handlers(
    cases: CaseRecords,
    recordings: RecordingRecords,
    *,
    rules: RuleBook | None = None,
    clock: Callable[[], datetime] = utc_now,
    metrics: RetentionMetrics | None = None,
) -> RetentionHandlers:
    return RetentionHandlers(cases, recordings, rules or load_rules(), clock, metrics)


def build_copy_handlers(
    cases: CaseRecords,
    recordings: RecordingRecords,
    inventory: CopyInventory,
    media: MediaContent,
    writer: CopyWriter,
    *,
    default_format: CopyFormat = CopyFormat.ISO,
    clock: Callable[[], datetime] = utc_now,
    metrics: RetentionMetrics | None = None,
) -> CopyHandlers:
    return CopyHandlers(
        cases=cases,
        recordings=recordings,
        inventory=inventory,
        media=media,
        writer=writer,
        clock=clock,
        new_id=lambda: f"copy-{uuid.uuid4()}",
        default_format=default_format,
        extension_for=extension_for,
        metrics=metrics,
    )


async def _every(seconds: float, what: str, job: Callable[[], Coroutine[Any, Any, object]]) -> None:
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
    assert isinstance(settings, RetentionSettings), "run retention-svc with RetentionSettings"
    assert settings.retention_copies_dir is not None
    rules = load_rules(settings.retention_rules_file)
    source, notify = settings.event_source, rt.relay.notify
    metrics = PrometheusRetentionMetrics(rt.metrics.registry)
    cases = MongoCaseRecords(
        CaseDocuments(rt.db[CASES], event_source=source, notify=notify, sent=rt.relay.sent)
    )
    recordings = MongoRecordingRecords(
        RecordingDocuments(rt.db[RECORDINGS], event_source=source, notify=notify)
    )
    inventory = MongoCopyInventory(CopyDocuments(rt.db[COPIES], event_source=source, notify=notify))
    handlers = build_handlers(cases, recordings, rules=rules, metrics=metrics)

    token_key = settings.retention_token_key or ensure_dev_keys(settings.data_dir)[0]
    media = GrpcMediaContent(
        settings.retention_media_address,
        token_key_pem=token_key.read_bytes(),
        access_address=settings.retention_access_address,
        token_file=settings.retention_token_file,
    )
    copies = build_copy_handlers(
        cases,
        recordings,
        inventory,
        media,
        LocalCopyWriter(settings.retention_copies_dir),
        default_format=CopyFormat(settings.retention_copy_format),
        metrics=metrics,
    )
    assert settings.retention_archive_dir is not None
    archive = ArchiveHandlers(
        store=MongoArchiveStore(
            BatchDocuments(rt.db[BATCHES], event_source=source, notify=notify), rt.db[ARCHIVED]
        ),
        recordings=recordings,
        media=media,
        writer=LocalCopyWriter(settings.retention_archive_dir),
        clock=utc_now,
        extension_for=extension_for,
        metrics=metrics,
    )
    disposal = DisposalHandlers(
        recordings=recordings,
        ingested=recordings,
        orders=MongoDisposalOrders(OrderDocuments(rt.db[ORDERS], event_source=source, notify=notify)),
        media=media,
        clock=utc_now,
        metrics=metrics,
    )
    background: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
        "unit-metrics": lambda: _every(
            settings.retention_metrics_interval_s, "unit metrics", disposal.update_metrics
        )
    }
    if settings.retention_archive_interval_s > 0:
        background["archive-backup"] = lambda: _every(
            settings.retention_archive_interval_s, "monthly archive backup", archive.back_up_past_months
        )
    if settings.retention_archive_verify_interval_s > 0:
        background["archive-verify"] = lambda: _every(
            settings.retention_archive_verify_interval_s, "archive re-verification", archive.reverify_all
        )
    if settings.retention_auto_copy_interval_s > 0:
        background["offline-copies"] = lambda: _every(
            settings.retention_auto_copy_interval_s, "automatic offline copies", copies.copy_new_holds
        )
    return Wiring(
        services=[
            ServiceBinding(
                retention_service_pb2_grpc.add_RetentionServiceServicer_to_server,
                RetentionApi(handlers, copies, archive, disposal),
                SERVICE,
            )
        ],
        role_policy=role_policy(),
        indexes={
            CASES: CaseDocuments.all_indexes(),
            RECORDINGS: RecordingDocuments.all_indexes(),
            COPIES: CopyDocuments.all_indexes(),
            BATCHES: BatchDocuments.all_indexes(),
            ORDERS: OrderDocuments.all_indexes(),
        },
        outbox_collections=[CASES, RECORDINGS, COPIES, BATCHES, ORDERS],
        consumers=[
            # No inbox: every effect is idempotent by construction (entrypoints/consumers.py), and the
            # inbox's lookup by (source, id) reads the whole collection on FerretDB v1 — measured at
            # ~1 s per event after a few thousand events (bench/retention_bench.py).
            ConsumerSpec(
                [CASE_TOPIC, MEDIA_TOPIC], settings.retention_consumer_group, retention_router(handlers)
            )
        ],
        background=background,
    )
