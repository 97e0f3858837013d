"""CloudEvents 1.0 in Kafka *binary* mode: attributes in ``ce_*`` headers, the protobuf message as value.

Built on the CloudEvents SDK's Kafka binding (``cloudevents.core.bindings.kafka``), which maps
attributes to ``ce_`` headers and ``datacontenttype`` to ``content-type`` exactly as the binding spec
says. The SDK has no protobuf data format, so ``_ProtobufData`` passes the already-serialized
message through unchanged: the value on the wire is the bare protobuf, readable by any consumer that
has the ``.proto`` — that is the point of binary mode.

Key = ``ce_subject`` = the aggregate id, so one aggregate's events share a partition and stay ordered.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from cloudevents.core.base import BaseCloudEvent, EventFactory
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.v1.event import CloudEvent
from google.protobuf.message import DecodeError, Message

from servicekit.tracing import valid_traceparent

__all__ = ["CONTENT_TYPE", "Envelope", "InvalidEnvelope", "KafkaRecord", "decode", "encode", "to_record"]

CONTENT_TYPE = "application/protobuf"
M = TypeVar("M", bound=Message)


class InvalidEnvelope(ValueError):
    """A record is not a Lawtrail CloudEvent (missing/invalid ``ce_*`` headers, or wrong payload)."""


@dataclass(frozen=True)
class KafkaRecord:
    """What to hand to the producer: key, value and headers in aiokafka's shape."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


class ConsumedRecord(Protocol):
    """The parts of a consumed record ``decode`` reads (aiokafka's ``ConsumerRecord`` has them)."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True)
class Envelope:
    """One event: CloudEvents attributes and the serialized protobuf message."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: bytes
    # W3C trace context (CloudEvents distributed-tracing extension, header ce_traceparent); optional.
    traceparent: str | None = None

    @classmethod
    def of(
        cls,
        message: Message,
        *,
        source: str,
        subject: str,
        id: str | None = None,
        time: datetime | None = None,
        traceparent: str | None = None,
    ) -> Envelope:
        """Wrap ``message``; ``type`` is its full proto name (e.g. ``lawtrail.case.v1.CaseOpened``)."""
        return cls(
            traceparent=traceparent,
            id=id or str(uuid.uuid4()),
            source=source,
            type=message.DESCRIPTOR.full_name,
            subject=subject,
            time=(time or datetime.now(UTC)).astimezone(UTC),
            data=message.SerializeToString(deterministic=True),
        )

    @property
    def dedupe_key(self) -> tuple[str, str]:
        """``(ce_source, ce_id)``: the identity consumers apply at most once."""
        return (self.source, self.id)

    def parse(self, message_class: builtins.type[M]) -> M:
        """The payload as ``message_class``, refusing an event of another type."""
        expected = message_class.DESCRIPTOR.full_name
        if self.type != expected:
            raise InvalidEnvelope(f"event {self.id} has ce_type {self.type!r}, not {expected!r}")
        try:
            return message_class.FromString(self.data)
        except DecodeError as error:
            raise InvalidEnvelope(f"event {self.id}: value is not a valid {expected}: {error}") from None


class _ProtobufData:
    """CloudEvents ``Format`` for binary mode with protobuf data: the value is the message bytes as-is.

    Only the data half of ``Format`` is meaningful here; structured mode (the whole event serialized
    in the value) is not how Lawtrail publishes, so it is refused rather than half-implemented.
    """

    def write_data(self, data: dict[str, Any] | str | bytes | None, datacontenttype: str | None) -> bytes:
        if not isinstance(data, bytes):
            raise TypeError("protobuf event data must be the serialized message (bytes)")
        return data

    def read_data(self, body: bytes, datacontenttype: str | None) -> bytes:
        return body

    def read(self, event_factory: EventFactory | None, data: str | bytes) -> BaseCloudEvent:
        raise InvalidEnvelope("Lawtrail events use CloudEvents binary mode; structured mode is not accepted")

    def write(self, event: BaseCloudEvent) -> bytes:
        raise InvalidEnvelope("Lawtrail events use CloudEvents binary mode; structured mode is not produced")

    def get_content_type(self) -> str:
        return CONTENT_TYPE


_FORMAT = _ProtobufData()
_REQUIRED_HEADERS = ("ce_id", "ce_source", "ce_type", "ce_subject", "ce_time")


def to_record(envelope: Envelope) -> KafkaRecord:
    """The Kafka record of ``envelope`` in binary mode."""
    attributes: dict[str, Any] = {
        "id": envelope.id,
        "source": envelope.source,
        "type": envelope.type,
        "subject": envelope.subject,
        "time": envelope.time,
        "datacontenttype": CONTENT_TYPE,
    }
    if envelope.traceparent:
        attributes["traceparent"] = envelope.traceparent
    event = CloudEvent(attributes=attributes, data=envelope.data)
    message = ce_kafka.to_binary(event, _FORMAT, key_mapper=lambda _event: envelope.subject.encode())
    return KafkaRecord(
        key=envelope.subject.encode(),
        value=message.value,
        headers=sorted(message.headers.items()),
    )


def encode(
    message: Message,
    *,
    source: str,
    subject: str,
    id: str | None = None,
    time: datetime | None = None,
) -> KafkaRecord:
    """The Kafka record of ``message`` in a new envelope: ``to_record(Envelope.of(...))``."""
    return to_record(Envelope.of(message, source=source, subject=subject, id=id, time=time))


def decode(record: ConsumedRecord) -> Envelope:
    """The envelope of a consumed record; ``InvalidEnvelope`` says which header is missing or wrong."""
    headers: dict[str, bytes] = {}
    for name, value in record.headers or ():
        headers[name] = value
    if headers.get("ce_specversion") != b"1.0":
        raise InvalidEnvelope(
            f"not a CloudEvents 1.0 binary-mode record: ce_specversion is {headers.get('ce_specversion')!r}"
        )
    content_type = headers.get("content-type", b"").decode(errors="replace")
    if content_type != CONTENT_TYPE:
        raise InvalidEnvelope(f"content-type is {content_type!r}; Lawtrail events are {CONTENT_TYPE!r}")
    # Checked here, before the SDK sees them: its CloudEvent constructor silently invents a fresh id
    # and the current time when they are absent, which would defeat deduplication on (source, id).
    for required in _REQUIRED_HEADERS:
        if not headers.get(required):
            raise InvalidEnvelope(
                f"missing header {required}: every Lawtrail event has {', '.join(_REQUIRED_HEADERS)}"
            )
    try:
        message = ce_kafka.KafkaMessage(headers=headers, key=record.key, value=record.value or b"")
        event = ce_kafka.from_binary(message, _FORMAT, CloudEvent)
    except (BaseCloudEventException, ValueError, UnicodeDecodeError) as error:
        raise InvalidEnvelope(f"invalid CloudEvents headers: {error}") from None
    time = event.get_time()
    if time is None or time.tzinfo is None:
        raise InvalidEnvelope("ce_time must be an RFC 3339 timestamp with a time zone")
    data = event.get_data()
    return Envelope(
        id=event.get_id(),
        source=event.get_source(),
        type=event.get_type(),
        subject=event.get_subject() or "",
        time=time,
        data=data if isinstance(data, bytes) else b"",
        # Malformed trace context is dropped, never a reason to refuse the event.
        traceparent=valid_traceparent(event.get_extension("traceparent")),
    )
