"""OpenTelemetry tracing across gRPC calls and Kafka events; off unless an OTLP endpoint is configured.

With ``LAWTRAIL_OTEL_EXPORTER_OTLP_ENDPOINT`` set (e.g. ``http://otel-collector:4318``), the process
exports its spans over OTLP/HTTP, batched. Without it nothing is recorded and nothing is sent: the
OpenTelemetry API's default tracer is a no-op, so every helper here costs next to nothing.

One trace follows a request through the system, with the W3C ``traceparent`` carried:
- into a gRPC call as the ``traceparent`` metadata entry (a server span per RPC, ``TracingInterceptor``);
- from the RPC into the outbox entries its state change writes (``outbox_entries`` keeps the context
  current when the change was written, so the relay, later and maybe on another replica, continues it);
- onto the Kafka record as the CloudEvents distributed-tracing extension (header ``ce_traceparent``),
  set by the relay's publish span;
- into the consumer of another service, whose processing span is that publish span's child.

A malformed ``traceparent`` is ignored (a new trace starts): tracing never refuses a call or an event.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import grpc.aio
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from servicekit.config import ServiceSettings

__all__ = [
    "TracingInterceptor",
    "configure_tracing",
    "context_from",
    "current_traceparent",
    "tracer",
    "valid_traceparent",
]

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
# Probes and reflection are not requests anyone wants to follow.
_UNTRACED = ("grpc.health.v1.", "grpc.reflection.")
# Codes that are the server's failure, not the caller's (the same set as the error-rate SLO).
_SERVER_FAULTS = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
}


def configure_tracing(settings: ServiceSettings) -> Callable[[], None] | None:
    """Export this process's spans over OTLP/HTTP when configured; answers the flush-and-stop
    function to call at shutdown, or None when tracing is off."""
    endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/")
    if not endpoint:
        return None
    # Imported only when tracing is on: the SDK and the exporter are not needed otherwise.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=5))
    )
    trace.set_tracer_provider(provider)
    return provider.shutdown


def tracer() -> trace.Tracer:
    return trace.get_tracer("servicekit")


def valid_traceparent(value: str | bytes | None) -> str | None:
    """``value`` if it is a well-formed W3C traceparent, else None."""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return value if value and _TRACEPARENT.match(value) else None


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, None when there is none (or tracing is off)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_from(traceparent: str | bytes | None) -> Context | None:
    """The context to continue ``traceparent`` in; None (= the current context) when absent or malformed."""
    value = valid_traceparent(traceparent)
    return _PROPAGATOR.extract({"traceparent": value}) if value else None


class TracingInterceptor(grpc.aio.ServerInterceptor):
    """A SERVER span around every RPC, child of the caller's ``traceparent`` metadata if it sent one."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        # Imported here: servicekit.grpc imports this module for its server.
        from servicekit.grpc.interceptors import _wrap

        handler = await continuation(handler_call_details)
        method = handler_call_details.method.lstrip("/")
        if handler is None or method.startswith(_UNTRACED):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        parent = context_from(metadata.get("traceparent"))
        service, _, name = method.rpartition("/")

        @asynccontextmanager
        async def around(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            with tracer().start_as_current_span(
                method,
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                code = grpc.StatusCode.UNKNOWN
                try:
                    yield
                    code = context.code() or grpc.StatusCode.OK
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                finally:
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    if code in _SERVER_FAULTS:
                        span.set_status(Status(StatusCode.ERROR, code.name))

        return _wrap(handler, around)
