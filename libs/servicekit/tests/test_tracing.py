"""Tracing (servicekit.tracing): one W3C trace through a gRPC call, the outbox, the relay's publish and
a consumer, carried in the CloudEvents distributed-tracing extension (header ``ce_traceparent``).
The spans are recorded in memory here; tests/integration/test_tracing.py follows one across real
services exporting over OTLP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.wrappers_pb2 import StringValue
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from servicekit.config import ServiceSettings
from servicekit.messaging.consumer import EventConsumer
from servicekit.messaging.envelope import Envelope, decode, to_record
from servicekit.messaging.outbox import OutboundEvent, OutboxRelay, outbox_entries
from servicekit.metrics import Metrics
from servicekit.tracing import configure_tracing, current_traceparent, valid_traceparent

from .conftest import ECHO

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    # The global provider can be set once per process; the first test that needs it sets it.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def _hex(span: ReadableSpan) -> tuple[str, str, str | None]:
    context = span.get_span_context()
    assert context is not None
    parent = f"{span.parent.span_id:016x}" if span.parent else None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}", parent


def test_tracing_is_off_without_an_endpoint() -> None:
    assert configure_tracing(ServiceSettings()) is None


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (CALLER, True),
        (CALLER.encode(), True),
        ("00-xyz-abc-01", False),
        ("", False),
        (None, False),
        (CALLER.upper(), False),
    ],
)
def test_only_well_formed_traceparents_are_kept(value: Any, valid: bool) -> None:
    assert (valid_traceparent(value) is not None) is valid


def _envelope(traceparent: str | None) -> Envelope:
    return Envelope.of(
        StringValue(value="x"), source="/lawtrail/test", subject="s-1", traceparent=traceparent
    )


@dataclass
class _Record:
    """What aiokafka hands a consumer (the fields EventConsumer reads)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _consumed(envelope: Envelope, topic: str = "lawtrail.test.v1.events") -> _Record:
    record = to_record(envelope)
    return _Record(topic, 0, 7, record.key, record.value, list(record.headers))


def test_trace_context_rides_in_the_cloudevents_tracing_extension() -> None:
    record = to_record(_envelope(CALLER))
    assert dict(record.headers)["ce_traceparent"] == CALLER.encode()
    assert decode(_consumed(_envelope(CALLER))).traceparent == CALLER
    assert "ce_traceparent" not in dict(to_record(_envelope(None)).headers)


def test_a_malformed_trace_header_is_dropped_not_refused() -> None:
    record = _consumed(_envelope(None))
    record.headers.append(("ce_traceparent", b"not-a-trace"))
    envelope = decode(record)
    assert envelope.traceparent is None
    assert envelope.subject == "s-1"


async def test_an_rpc_continues_the_callers_trace_in_a_server_span(
    spans: InMemorySpanExporter, channel: grpc.aio.Channel, mint: Any
) -> None:
    call = channel.unary_unary(
        f"/{ECHO}/Unary",
        request_serializer=StringValue.SerializeToString,
        response_deserializer=StringValue.FromString,
    )
    metadata = (("authorization", f"Bearer {mint()}"), ("traceparent", CALLER))
    assert (await call(StringValue(value="hi"), metadata=metadata)).value == "hi"
    with pytest.raises(grpc.aio.AioRpcError):
        await call(StringValue(value="bug"), metadata=metadata)
    ok, failed = spans.get_finished_spans()
    assert ok.name == f"{ECHO}/Unary"
    assert ok.kind == SpanKind.SERVER
    assert _hex(ok)[0] == CALLER_TRACE
    assert _hex(ok)[2] == CALLER_SPAN
    assert ok.attributes is not None
    assert ok.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    assert failed.attributes is not None
    assert failed.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INTERNAL.value[0]
    assert failed.status.status_code.name == "ERROR"


async def test_health_checks_are_not_traced(spans: InMemorySpanExporter, channel: grpc.aio.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert spans.get_finished_spans() == ()


def test_outbox_entries_keep_the_trace_of_the_change(spans: InMemorySpanExporter) -> None:
    event = OutboundEvent("lawtrail.test.v1.events", StringValue(value="x"), subject="s-1")
    assert "traceparent" not in outbox_entries([event], source="/lawtrail/test")[0]
    with trace.get_tracer("test").start_as_current_span("OpenCase"):
        expected = current_traceparent()
        (entry,) = outbox_entries([event], source="/lawtrail/test")
    assert entry["traceparent"] == expected


class _Producer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, topic: str, **record: Any) -> asyncio.Future[None]:
        self.sent.append({"topic": topic, **record})
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_the_relay_publishes_in_a_producer_span_of_the_writers_trace(
    spans: InMemorySpanExporter, metrics: Metrics
) -> None:
    with trace.get_tracer("test").start_as_current_span("LinkRecording") as rpc:
        entries = outbox_entries(
            [OutboundEvent("lawtrail.test.v1.events", StringValue(value="x"), subject="s-1")],
            source="/lawtrail/test",
            now=datetime.now(UTC),
        )
    producer = _Producer()
    relay = OutboxRelay(producer, metrics=metrics)  # type: ignore[arg-type]
    await relay._publish(entries, "s-1", "test")
    assert len(producer.sent) == 1

    rpc_trace = f"{rpc.get_span_context().trace_id:032x}"
    publish = next(s for s in spans.get_finished_spans() if s.kind == SpanKind.PRODUCER)
    assert publish.name == "lawtrail.test.v1.events publish"
    assert _hex(publish)[0] == rpc_trace
    assert _hex(publish)[2] == f"{rpc.get_span_context().span_id:016x}"
    header = dict(producer.sent[0]["headers"])["ce_traceparent"].decode()
    assert header.startswith(f"00-{rpc_trace}-{_hex(publish)[1]}-"), "the record carries the publish span"


async def test_a_consumer_processes_in_a_child_span_of_the_producers(
    spans: InMemorySpanExporter, metrics: Metrics
) -> None:
    seen: list[str | None] = []

    async def handler(envelope: Envelope) -> None:
        seen.append(current_traceparent())

    consumer = EventConsumer(
        ServiceSettings(service_name="case-svc"),
        topics=["lawtrail.test.v1.events"],
        group_id="case-svc.test-events",
        handler=handler,
        producer=_Producer(),  # type: ignore[arg-type]
        metrics=metrics,
    )
    await consumer._process(_consumed(_envelope(CALLER)))  # type: ignore[arg-type]

    (process,) = spans.get_finished_spans()
    assert process.name == "lawtrail.test.v1.events process"
    assert process.kind == SpanKind.CONSUMER
    assert _hex(process)[0] == CALLER_TRACE
    assert _hex(process)[2] == CALLER_SPAN
    assert process.attributes is not None
    assert process.attributes["messaging.consumer.group.name"] == "case-svc.test-events"
    assert seen == [f"00-{CALLER_TRACE}-{_hex(process)[1]}-01"], "the handler runs inside the span"
