"""retention-svc's Prometheus metrics, defined once per process on the runtime's registry. Labels are units
(R9: the unit is the partition key of metrics), never record ids."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

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
        self.copy_bytes = Counter(
            "lawtrail_retention_offline_copy_bytes",
            "Bytes of recordings written to offline copies, per unit",
            ["unit"],
            registry=registry,
        )

    def hold_placed(self, unit: str) -> None:
        self.holds.labels(unit or "unknown").inc()

    def copy_made(self, unit: str, size_bytes: int) -> None:
        self.copies.labels(unit or "unknown").inc()
        self.copy_bytes.labels(unit or "unknown").inc(size_bytes)
