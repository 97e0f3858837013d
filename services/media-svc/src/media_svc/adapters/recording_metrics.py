"""Prometheus metrics of the recordings part of media-svc, defined once per process on the runtime's
registry. Labels are units or fixed words, never record ids.

Alert on `increase(lawtrail_media_integrity_failures_total[1h]) > 0` (R23-2: tampering or media
failure) and on a stale `lawtrail_media_fixity_scrub_last_finished_timestamp_seconds`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from media_svc.domain.fixity import ScrubRun, ScrubState

# R11a: ingest delay buckets from a minute to a month (the default limit is 24 h).
_DELAY_BUCKETS = (60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 48 * 3600, 7 * 86400, 30 * 86400)


class PrometheusRecordingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.ingest_delay = Histogram(
            "lawtrail_media_ingest_delay_seconds",
            "R11a: time from a recording's end to its durable ingest, per unit",
            ["unit"],
            buckets=_DELAY_BUCKETS,
            registry=registry,
        )
        self.ingested = Counter(
            "lawtrail_media_recordings_ingested_total",
            "Recordings ingested, per unit",
            ["unit"],
            registry=registry,
        )
        self.ingested_bytes = Counter(
            "lawtrail_media_ingested_bytes_total",
            "Content bytes ingested, per unit",
            ["unit"],
            registry=registry,
        )
        self.late = Counter(
            "lawtrail_media_late_ingests_total",
            "R11a: recordings ingested later than the configured limit, per unit",
            ["unit"],
            registry=registry,
        )
        self.rejected = Counter(
            "lawtrail_media_uploads_rejected_total",
            "Uploads refused (nothing stored), by reason",
            ["reason"],
            registry=registry,
        )
        self.integrity_failures = Counter(
            "lawtrail_media_integrity_failures_total",
            "R23-2: stored content found not matching its SHA-256, by detector (download, scrub)",
            ["detected_by"],
            registry=registry,
        )
        self.accessed = Counter(
            "lawtrail_media_content_accessed_total",
            "R16: content reads under an access grant, per owning unit",
            ["unit"],
            registry=registry,
        )
        self.accessed_bytes = Counter(
            "lawtrail_media_content_accessed_bytes_total",
            "Bytes of content released to grantees, per owning unit",
            ["unit"],
            registry=registry,
        )
        self.scrub_running = Gauge(
            "lawtrail_media_fixity_scrub_running",
            "1 while this process runs a fixity scrub",
            registry=registry,
        )
        self.scrub_progress_ratio = Gauge(
            "lawtrail_media_fixity_scrub_progress_ratio",
            "Fraction of content bytes re-hashed by the current (or last) scrub",
            registry=registry,
        )
        self.scrub_checked = Gauge(
            "lawtrail_media_fixity_scrub_recordings_checked",
            "Recordings re-hashed by the current (or last) scrub",
            registry=registry,
        )
        self.scrub_failures = Gauge(
            "lawtrail_media_fixity_scrub_failures",
            "Mismatching recordings found by the current (or last) scrub",
            registry=registry,
        )
        self.scrub_last_finished = Gauge(
            "lawtrail_media_fixity_scrub_last_finished_timestamp_seconds",
            "When the last complete fixity scrub finished (Unix time)",
            registry=registry,
        )

    def recording_ingested(self, unit: str, size_bytes: int, delay_s: float, late: bool) -> None:
        self.ingest_delay.labels(unit).observe(max(0.0, delay_s))
        self.ingested.labels(unit).inc()
        self.ingested_bytes.labels(unit).inc(size_bytes)
        if late:
            self.late.labels(unit).inc()

    def upload_rejected(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def integrity_failure(self, detected_by: str) -> None:
        self.integrity_failures.labels(detected_by).inc()

    def content_accessed(self, unit: str, size_bytes: int) -> None:
        self.accessed.labels(unit).inc()
        self.accessed_bytes.labels(unit).inc(size_bytes)

    def scrub_progress(self, run: ScrubRun) -> None:
        self.scrub_running.set(1 if run.state is ScrubState.RUNNING else 0)
        self.scrub_progress_ratio.set(run.progress)
        self.scrub_checked.set(run.recordings_checked)
        self.scrub_failures.set(run.failures)
        if run.state is ScrubState.FINISHED and run.finished_at is not None:
            self.scrub_last_finished.set(run.finished_at.timestamp())
