"""Every metric servicekit records, defined once per process and registered explicitly.

Why one object: a Prometheus metric may be registered only once per registry, and a process runs one
gRPC server, one relay and possibly several consumers. Building ``Metrics`` once in the runner and
handing it to each component keeps the definitions in one place and lets tests use a fresh
``CollectorRegistry`` each. Names follow the conventions of go-grpc-prometheus / py-grpc-prometheus
so that standard dashboards and alerts work unchanged. Labels are bounded sets (service, method, code,
topic, group, outcome) — never record ids, which would make one time series per case.
"""

from __future__ import annotations

from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

__all__ = ["Metrics", "MetricsServer", "start_metrics_server"]

_GRPC_LABELS = ("grpc_service", "grpc_method", "grpc_type")
# Seconds; gRPC calls here range from sub-millisecond lookups to multi-minute uploads.
_HANDLING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

# Seconds; notified events are relayed in milliseconds, swept ones within the sweep interval (60 s).
_EVENT_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 900, 3600)


class Metrics:
    """The process's servicekit metrics on ``registry`` (use a fresh registry per test)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.grpc_started = Counter(
            "grpc_server_started_total",
            "RPCs started on the server.",
            _GRPC_LABELS,
            registry=registry,
        )
        self.grpc_handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            (*_GRPC_LABELS, "grpc_code"),
            registry=registry,
        )
        self.grpc_handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its completion on the server.",
            _GRPC_LABELS,
            buckets=_HANDLING_BUCKETS,
            registry=registry,
        )
        self.outbox_published = Counter(
            "lawtrail_outbox_published_total",
            "Outbox events acknowledged by the broker and cleared from their document.",
            ("topic",),
            registry=registry,
        )
        self.outbox_event_lag_seconds = Histogram(
            "lawtrail_outbox_event_lag_seconds",
            "Time from a state change being written (its outbox entry) to the broker's acknowledgement.",
            ("topic",),
            buckets=_EVENT_LAG_BUCKETS,
            registry=registry,
        )
        self.outbox_publish_failures = Counter(
            "lawtrail_outbox_publish_failures_total",
            "Relay passes that failed and will be retried with backoff.",
            registry=registry,
        )
        self.consumer_records = Counter(
            "lawtrail_consumer_records_total",
            "Consumed records by outcome: applied, duplicate, ignored or dead_lettered.",
            ("group", "topic", "outcome"),
            registry=registry,
        )
        self.consumer_retries = Counter(
            "lawtrail_consumer_retries_total",
            "Handler attempts that failed and were retried.",
            ("group", "topic"),
            registry=registry,
        )


@dataclass
class MetricsServer:
    """A running ``/metrics`` HTTP endpoint (a daemon thread of prometheus_client)."""

    _server: WSGIServer

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()


def start_metrics_server(address: str, registry: CollectorRegistry) -> MetricsServer:
    """Serve ``registry`` at ``http://<address>/metrics``; ``address`` is ``host:port`` (port 0 = any)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"metrics address {address!r} must be host:port, e.g. 127.0.0.1:9101")
    server, _thread = start_http_server(int(port), addr=host, registry=registry)
    return MetricsServer(server)
