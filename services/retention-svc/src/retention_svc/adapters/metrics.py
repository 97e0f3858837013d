"""retention-svc's Prometheus metrics, defined once per process on the runtime's registry. Labels are units
(R9: the unit is the partition key of metrics), never record ids."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from retention_svc.service_layer.ports import RetentionMetrics


class PrometheusRetentionMetrics(RetentionMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.holds = Counter(
            "lawtrail_retention_recordings_held",
            "Recordings placed under a long-term hold (R13), per unit",
            ["unit"],
            registry=registry,
        )
        self.copies = Counter(
            "lawtrail_retention_offline_copies",
            "Offline copies written and verified (R13), per unit",
            ["unit"],
            registry=registry,
        )
        self.copy_failures = Counter(
            "lawtrail_retention_offline_copy_failures_total",
            "Automatic offline copies of a held case that failed (R13), per unit and reason; the case is "
            "tried again in the next round, the other held cases are not held up",
            ["unit", "reason"],
            registry=registry,
        )
        self.copy_bytes = Counter(
            "lawtrail_retention_offline_copy_bytes",
            "Bytes of recordings written to offline copies, per unit",
            ["unit"],
            registry=registry,
        )

        self.batches = Counter(
            "lawtrail_retention_archive_batches",
            "Monthly archive batches written and verified (R11b), per unit",
            ["unit"],
            registry=registry,
        )
        self.batch_bytes = Counter(
            "lawtrail_retention_archive_bytes",
            "Bytes of recordings backed up to the archive store (R11b), per unit",
            ["unit"],
            registry=registry,
        )
        self.verifications = Counter(
            "lawtrail_retention_archive_verifications",
            "Re-verifications of archive batches, per unit and result (ok / failed: alert on failed)",
            ["unit", "result"],
            registry=registry,
        )
        self.oldest = Gauge(
            "lawtrail_retention_oldest_unbacked_recording_age_seconds",
            "Age of the unit's oldest recording not yet in an archive batch (R11b); alert above ~35 days",
            ["unit"],
            registry=registry,
        )
        self.held_now = Gauge(
            "lawtrail_retention_held_recordings",
            "Recordings under a long-term hold (R13), per unit",
            ["unit"],
            registry=registry,
        )
        self.candidates = Gauge(
            "lawtrail_retention_disposal_candidates",
            "Recordings past retention and not held, awaiting disposal review (R12), per unit",
            ["unit"],
            registry=registry,
        )
        self._units_seen: set[str] = set()

    def hold_placed(self, unit: str) -> None:
        self.holds.labels(unit or "unknown").inc()

    def copy_made(self, unit: str, size_bytes: int) -> None:
        self.copies.labels(unit or "unknown").inc()
        self.copy_bytes.labels(unit or "unknown").inc(size_bytes)

    def copy_failed(self, unit: str, reason: str) -> None:
        self.copy_failures.labels(unit or "unknown", reason).inc()

    def batch_made(self, unit: str, size_bytes: int) -> None:
        self.batches.labels(unit or "unknown").inc()
        self.batch_bytes.labels(unit or "unknown").inc(size_bytes)

    def batch_verified(self, unit: str, ok: bool) -> None:
        self.verifications.labels(unit or "unknown", "ok" if ok else "failed").inc()

    def oldest_unbacked(self, ages_s: dict[str, float]) -> None:
        for unit in self._units_seen - set(ages_s):
            self.oldest.labels(unit).set(0)  # everything of this unit is backed up now
        for unit, age in ages_s.items():
            self.oldest.labels(unit or "unknown").set(age)
        self._units_seen |= set(ages_s)

    def unit_totals(self, held: dict[str, int], candidates: dict[str, int]) -> None:
        for unit, count in held.items():
            self.held_now.labels(unit or "unknown").set(count)
        for unit, count in candidates.items():
            self.candidates.labels(unit or "unknown").set(count)
