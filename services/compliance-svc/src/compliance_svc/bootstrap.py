"""The one composition root of compliance-svc: settings, severity policy, repository, handlers, the
faust app (agent, table, timer) and the gRPC API, for `servicekit.app.run_service` (see `__main__`).

Nothing is built at import time. `build_handlers` wires the use cases to any repository (unit tests
pass an in-memory fake).
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from lawtrail.case.v1 import case_events_pb2
from lawtrail.compliance.v1 import compliance_service_pb2_grpc
from lawtrail.media.v1 import media_events_pb2
from prometheus_client import CollectorRegistry, Gauge
from pydantic import Field, field_validator
from pydantic_settings import NoDecode
from servicekit.app import Runtime, Wiring
from servicekit.auth.devtoken import ensure_dev_keys, mint_token
from servicekit.config import ServiceSettings
from servicekit.grpc import ServiceBinding
from servicekit.topics import events_topic_of
from servicekit.writerlease import WriterLease

from compliance_svc.adapters.access_requests import GrpcAccessFiler
from compliance_svc.adapters.counts import COUNTS, FindingCounts
from compliance_svc.adapters.repository import FINDINGS, MongoFindingRepository
from compliance_svc.adapters.spot_checks import MATERIALS, SPOT_CHECKS, MongoSpotCheckStore
from compliance_svc.domain.model import Finding, Severity, SeverityPolicy, State
from compliance_svc.domain.rules import Deadlines
from compliance_svc.entrypoints.grpc_api import SERVICE, ComplianceApi, role_policy
from compliance_svc.entrypoints.stall import (
    AgentProgress,
    KafkaOffsets,
    StallWatch,
    StreamStalled,
    watch_stream,
)
from compliance_svc.entrypoints.stream import (
    StreamConfig,
    StreamMetrics,
    build_app,
    run_stream_while_leased,
)
from compliance_svc.service_layer.handlers import ComplianceHandlers
from compliance_svc.service_layer.ports import FindingRepository
from compliance_svc.service_layer.spot_checks import SpotCheckHandlers

DAY = 86400.0


class ComplianceSettings(ServiceSettings):
    """compliance-svc's settings (prefix LAWTRAIL_); see docs/compliance-svc.md."""

    service_name: str = "compliance-svc"
    grpc_address: str = "127.0.0.1:50055"
    metrics_address: str = "127.0.0.1:9105"
    # Source topics, comma-separated: adding a service's events is adding its topic here (and its
    # event types to adapters/event_mapping.FACTS). All must exist with `compliance_partitions` partitions.
    compliance_topics: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [events_topic_of(case_events_pb2), events_topic_of(media_events_pb2)]
    )
    compliance_partitions: int = 3
    # faust app id = consumer group and the prefix of its changelog topic; a new id replays every topic.
    # ".v2": the table's changelog is partitioned by key since ADR 0013; the first start of this build
    # replays every topic into a fresh table instead of recovering the old layout (same findings).
    compliance_app_id: str = "compliance-svc.v2"
    compliance_timer_interval_s: float = 60.0
    # Added to server time on the compliance clock that decides deadlines (tests and drills move time
    # forward through configuration instead of sleeping; 0 in production).
    compliance_clock_offset_s: float = 0.0
    # access-svc, where spot-check reviewers' access requests are filed (R22); "" = none are filed.
    compliance_access_address: str = "127.0.0.1:50054"
    # compliance-svc's own service token for access-svc: a file holding one, or a key to sign it with
    # (default: the local dev token key).
    compliance_token_file: Path | None = None
    compliance_token_key: Path | None = None
    compliance_unlinked_after_s: float = 7 * DAY  # R23-4
    compliance_activity_recorded_within_s: float = 3 * DAY  # R23-1
    compliance_gap_explained_within_s: float = 3 * DAY  # R19c
    compliance_gap_threshold_s: float = 60.0  # R19c, as media-svc's MEDIA_GAP_THRESHOLD_S
    # A recording series and a link's marker stay in the table this long after their last event, then
    # are retired (domain/rules.py): the table holds this window of traffic, not the years.
    compliance_state_kept_s: float = 30 * DAY
    compliance_severity_file: Path | None = None
    compliance_metrics_interval_s: float = 15.0
    # At most this many events share one round of database writes (docs/compliance-svc.md).
    compliance_batch_max: int = 500
    # While a backlog waits to be read, a batch is taken once it is full or this long after the storing
    # task became free (writes amortised over more events); without a backlog at once (0 = never wait).
    compliance_batch_linger_s: float = 0.1
    # The stall watchdog (entrypoints/stall.py): the agent reading nothing this long while its source
    # partitions hold unread records stops the process, to be restarted; 0 = no watchdog.
    compliance_stall_s: float = 60.0

    @field_validator("compliance_topics", mode="before")
    @classmethod
    def _split_topics(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("compliance_batch_max")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be >= 1, got {value}")
        return value

    @field_validator("compliance_batch_linger_s", "compliance_stall_s")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"must be >= 0, got {value}")
        return value

    @field_validator(
        "compliance_timer_interval_s",
        "compliance_unlinked_after_s",
        "compliance_activity_recorded_within_s",
        "compliance_gap_explained_within_s",
        "compliance_state_kept_s",
        "compliance_metrics_interval_s",
    )
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"must be > 0, got {value}")
        return value

    def deadlines(self) -> Deadlines:
        return Deadlines(
            unlinked_after=timedelta(seconds=self.compliance_unlinked_after_s),
            activity_recorded_within=timedelta(seconds=self.compliance_activity_recorded_within_s),
            gap_explained_within=timedelta(seconds=self.compliance_gap_explained_within_s),
            gap_threshold=timedelta(seconds=self.compliance_gap_threshold_s),
            kept_after=timedelta(seconds=self.compliance_state_kept_s),
        )


def load_policy(path: Path | None = None) -> SeverityPolicy:
    """The severity policy: `path`, or the default shipped in `compliance_svc/config/severity.toml`."""
    if path is None:
        text = resources.files("compliance_svc").joinpath("config/severity.toml").read_text(encoding="utf-8")
        where = "compliance_svc/config/severity.toml"
    else:
        text = path.read_text(encoding="utf-8")
        where = str(path)
    try:
        return SeverityPolicy.from_mapping(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise SystemExit(f"severity policy {where} is invalid: {exc}") from exc


def compliance_clock(offset_s: float = 0.0) -> Callable[[], datetime]:
    def now() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=offset_s)

    return now


def build_handlers(
    findings: FindingRepository,
    *,
    policy: SeverityPolicy | None = None,
    clock: Callable[[], datetime] | None = None,
) -> ComplianceHandlers:
    return ComplianceHandlers(findings, policy or load_policy(), clock or compliance_clock())


class FindingGauges:
    """`lawtrail_compliance_findings{unit,article,severity,state}` from the counts kept with each write
    of a finding (`finding_counts`: one small document per label set, adapters/counts.py), and the age
    of the oldest open serious finding (index-served reads), every `compliance_metrics_interval_s`.
    Findings change through the API too, so the store is the truth; no finding is read for a count."""

    def __init__(
        self, registry: CollectorRegistry, repository: MongoFindingRepository, clock: Callable[[], datetime]
    ):
        self.repository = repository
        self.clock = clock
        self.count = Gauge(
            "lawtrail_compliance_findings",
            "Compliance findings by unit, article, severity and lifecycle state",
            ["unit", "article", "severity", "state"],
            registry=registry,
        )
        self.oldest = Gauge(
            "lawtrail_compliance_oldest_open_serious_finding_age_seconds",
            "Age of the oldest SERIOUS finding not yet resolved (0 when there is none)",
            registry=registry,
        )

    async def refresh(self) -> None:
        counts = await self.repository.counts.read()
        oldest = await self.repository.oldest(Severity.SERIOUS, [State.OPEN, State.ACKNOWLEDGED])
        self.count.clear()
        for labels, n in counts.items():
            self.count.labels(*labels).set(n)
        self.oldest.set(0 if oldest is None else max((self.clock() - oldest).total_seconds(), 0))

    async def run(self, interval_s: float) -> None:
        while True:
            started = time.monotonic()
            await self.refresh()
            await asyncio.sleep(max(interval_s - (time.monotonic() - started), 0.1))


async def watch_stall(
    app: Any, config: StreamConfig, progress: AgentProgress, metrics: StreamMetrics
) -> None:
    """The stall watchdog beside the faust app (entrypoints/stall.py): checks every sixth of the stall
    time (0.5 s to 10 s) with Kafka clients of its own; raises `StreamStalled` when the agent stalled."""
    offsets = KafkaOffsets(config.broker)
    try:
        await watch_stream(
            app=app,
            group=config.app_id,
            topics=config.topics,
            progress=progress,
            watch=StallWatch(config.stall_s),
            offsets=offsets,
            interval_s=min(max(config.stall_s / 6, 0.5), 10.0),
            report=metrics.idle_with_backlog.set,
        )
    except StreamStalled:
        metrics.stalls.inc()
        raise
    finally:
        await offsets.close()


def access_filer(settings: ComplianceSettings) -> GrpcAccessFiler | None:
    """Files reviewers' access requests in access-svc as service account compliance-svc (role SERVICE)."""
    if not settings.compliance_access_address:
        return None
    token_file, key_path = settings.compliance_token_file, settings.compliance_token_key
    key = None if token_file else (key_path or ensure_dev_keys(settings.data_dir)[0]).read_bytes()

    def token() -> str:
        if token_file is not None:
            return token_file.read_text().strip()
        assert key is not None
        return mint_token(
            key, subject="compliance-svc", unit="lawtrail-services", roles=["SERVICE"], ttl_s=900
        )

    return GrpcAccessFiler(settings.compliance_access_address, token)


async def bootstrap(rt: Runtime) -> Wiring:
    settings = rt.settings
    assert isinstance(settings, ComplianceSettings)
    policy = load_policy(settings.compliance_severity_file)
    clock = compliance_clock(settings.compliance_clock_offset_s)
    repository = MongoFindingRepository(
        rt.db[FINDINGS], rt.db[COUNTS], event_source=settings.event_source, notify=rt.relay.notify
    )
    handlers = build_handlers(repository, policy=policy, clock=clock)
    spot_checks = SpotCheckHandlers(
        MongoSpotCheckStore(rt.db[SPOT_CHECKS], rt.db[MATERIALS], event_source=settings.event_source),
        handlers,
        access=access_filer(settings),
    )
    config = StreamConfig(
        app_id=settings.compliance_app_id,
        broker=settings.kafka_bootstrap_servers,
        topics=tuple(settings.compliance_topics),
        partitions=settings.compliance_partitions,
        data_dir=settings.data_dir / "faust" / settings.compliance_app_id,
        timer_interval_s=settings.compliance_timer_interval_s,
        deadlines=settings.deadlines(),
        batch_max=settings.compliance_batch_max,
        batch_linger_s=settings.compliance_batch_linger_s,
        stall_s=settings.compliance_stall_s,
    )
    stream_metrics = StreamMetrics.register(rt.metrics.registry)
    progress = AgentProgress()
    app, _monitor = build_app(
        config, handlers, clock, stream_metrics, material=spot_checks.note, progress=progress
    )
    gauges = FindingGauges(rt.metrics.registry, repository, clock)

    stream_lease = WriterLease(
        rt.db,
        service=settings.service_name,
        ttl_s=settings.writer_lease_ttl_s,
        name=f"consumer:{settings.compliance_app_id}",
        everywhere=True,
    )

    async def watchdog() -> None:
        await watch_stall(app, config, progress, stream_metrics)

    async def stream() -> None:
        await run_stream_while_leased(app, stream_lease, watchdog if config.stall_s > 0 else None)

    async def finding_metrics() -> None:
        await gauges.run(settings.compliance_metrics_interval_s)

    return Wiring(
        services=[
            ServiceBinding(
                compliance_service_pb2_grpc.add_ComplianceServiceServicer_to_server,
                ComplianceApi(handlers, spot_checks),
                SERVICE,
            )
        ],
        role_policy=role_policy(),
        indexes={
            FINDINGS: MongoFindingRepository.all_indexes(),
            COUNTS: FindingCounts.indexes,
            SPOT_CHECKS: MongoSpotCheckStore.all_indexes(),
            MATERIALS: MongoSpotCheckStore.MATERIAL_INDEXES,
        },
        outbox_collections=[FINDINGS],
        background={"faust": stream, "finding-metrics": finding_metrics},
    )


__all__ = ["ComplianceSettings", "Finding", "bootstrap", "build_handlers", "load_policy"]
