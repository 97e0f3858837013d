"""Consume Lawtrail events with kafka-python: typed protobuf messages, commit after the handler.

For departments' notification services and other event consumers that are not Lawtrail services
(services use servicekit's asyncio consumer). Pinned to kafka-python >=2.3,<3 (3.0 is a rewrite).

    from lawtrail.media.v1.media_events_pb2 import IntegrityCheckFailed
    from lawtrail_client.events import EventConsumer

    consumer = EventConsumer("127.0.0.1:9092", group_id="legal-office-notifier")

    @consumer.on(IntegrityCheckFailed)
    def alert(event: IntegrityCheckFailed, meta):
        print(meta.time, event.recording_id, event.detail)

    consumer.run()      # until consumer.stop() / Ctrl-C

Semantics:
- **Subscribe by type.** `on(MessageClass)` (or `on("lawtrail.media.v1.IntegrityCheckFailed")`) picks the
  topic from the type's package (`lawtrail.media.v1` → `lawtrail.media.v1.events`); the consumer
  subscribes to exactly the topics of its handlers. Events of other types on those topics are skipped.
- **Typed decoding** from the CloudEvents 1.0 binary-mode headers (`ce_type`, `ce_id`, `ce_source`,
  `ce_time`, `ce_subject`): the handler gets the parsed message and an `EventMeta`.
- **Commit after the handler returns** (offset of the next record, synchronously), so a crash
  re-delivers at most the record in hand: handlers must tolerate a repeat (de-duplicate on
  `meta.dedupe_key` = (ce_source, ce_id) when it matters).
- **Resume**: a restarted consumer with the same `group_id` continues after its last commit; a new
  group starts at the beginning of each topic (`auto_offset_reset="earliest"`).
- **Poison messages** (missing/invalid headers, a payload that does not parse, or a handler that
  still fails after `max_attempts`) are never retried forever: they are reported to `on_poison` (default:
  logged) and, with `dead_letter_topic`, copied there with the reason in header `lawtrail_error`; then
  committed and skipped.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from google.protobuf.message import DecodeError, Message

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)
REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time")


@dataclass(frozen=True)
class EventMeta:
    """The CloudEvents attributes of one event and where it was read."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime
    topic: str
    partition: int
    offset: int

    @property
    def dedupe_key(self) -> tuple[str, str]:
        return (self.source, self.id)


@dataclass(frozen=True)
class Poison:
    """A record that could not be handled: where it is, why, and its raw bytes and headers."""

    topic: str
    partition: int
    offset: int
    reason: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


class PoisonMessage(Exception):
    """A record that can never be handled (raised inside the SDK; handlers may raise it to skip at once)."""


Handler = Callable[[M, EventMeta], None]


@dataclass(frozen=True)
class _Route(Generic[M]):
    message_class: type[M]
    handler: Callable[[M, EventMeta], None]


def event_class(type_name: str) -> type[Message]:
    """The generated class of a Lawtrail event type, e.g. `lawtrail.media.v1.IntegrityCheckFailed`.

    Looks in the `<package>` of `lawtrail-contracts` (every `*_events_pb2` module). Raises `LookupError`
    naming what exists when the type is unknown (for example a newer service's events with older contracts).
    """
    package, _, name = type_name.rpartition(".")
    if not package.startswith("lawtrail."):
        raise LookupError(f"{type_name!r} is not a Lawtrail event type (lawtrail.<context>.v<n>.<Name>)")
    try:
        pkg = importlib.import_module(package)
    except ImportError:
        raise LookupError(
            f"no contracts package {package!r} installed (for event type {type_name!r})"
        ) from None
    known: list[str] = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.endswith("_events_pb2"):
            module = importlib.import_module(f"{package}.{info.name}")
            found = getattr(module, name, None)
            if isinstance(found, type) and issubclass(found, Message):
                return found
            known += [m for m in module.DESCRIPTOR.message_types_by_name]
    raise LookupError(
        f"unknown event type {type_name!r}; {package} has: {', '.join(sorted(known)) or 'none'}"
    )


def topic_of(message_class: type[Message]) -> str:
    """`lawtrail.media.v1.IntegrityCheckFailed` → `lawtrail.media.v1.events` (the project's convention)."""
    return f"{message_class.DESCRIPTOR.file.package}.events"


def _headers(raw: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw or ():
        out[name] = (value or b"").decode("utf-8", errors="replace")
    return out


def decode_meta(record: Any) -> EventMeta:
    """The CloudEvents attributes of a kafka-python `ConsumerRecord`; `PoisonMessage` naming what is wrong."""
    headers = _headers(record.headers)
    missing = [h for h in REQUIRED_HEADERS if not headers.get(h)]
    if missing:
        raise PoisonMessage(f"not a CloudEvents binary-mode record: missing header(s) {', '.join(missing)}")
    if headers["ce_specversion"] != "1.0":
        raise PoisonMessage(f"unsupported ce_specversion {headers['ce_specversion']!r} (expected 1.0)")
    try:
        time_ = datetime.fromisoformat(headers["ce_time"].replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise PoisonMessage(f"ce_time {headers['ce_time']!r} is not an RFC 3339 time") from None
    return EventMeta(
        id=headers["ce_id"],
        source=headers["ce_source"],
        type=headers["ce_type"],
        subject=headers.get("ce_subject", ""),
        time=time_,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
    )


class EventConsumer:
    """A kafka-python consumer of Lawtrail events by type (see the module docstring)."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        group_id: str,
        dead_letter_topic: str | None = None,
        on_poison: Callable[[Poison], None] | None = None,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.5,
        poll_timeout_ms: int = 500,
        **kafka_options: Any,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.dead_letter_topic = dead_letter_topic
        self.on_poison = on_poison or self._log_poison
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.poll_timeout_ms = poll_timeout_ms
        self.kafka_options = kafka_options
        self.routes: dict[str, _Route[Any]] = {}
        self._stop = threading.Event()
        self.handled = 0
        self.skipped = 0
        self.poisoned = 0

    def on(
        self, event_type: type[M] | str
    ) -> Callable[[Callable[[M, EventMeta], None]], Callable[[M, EventMeta], None]]:
        """Decorator: call the function with each event of `event_type` (generated class or full name)."""
        message_class = event_class(event_type) if isinstance(event_type, str) else event_type

        def register(handler: Handler[M]) -> Handler[M]:
            self.routes[message_class.DESCRIPTOR.full_name] = _Route(message_class, handler)
            return handler

        return register

    @property
    def topics(self) -> list[str]:
        return sorted({topic_of(route.message_class) for route in self.routes.values()})

    def stop(self) -> None:
        """Ask `run` to return after the record in hand (from any thread or a signal handler)."""
        self._stop.set()

    def run(self) -> None:
        """Consume until `stop()`; commits after each handled or skipped record."""
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition
        from kafka.structs import OffsetAndMetadata

        if not self.routes:
            raise ValueError("no handlers: register at least one with @consumer.on(EventType)")
        consumer = KafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.kafka_options,
        )
        producer = (
            KafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all")
            if self.dead_letter_topic
            else None
        )
        try:
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=self.poll_timeout_ms)
                for records in batches.values():
                    for record in records:
                        if self._stop.is_set():
                            return
                        self._handle(record, producer)
                        tp = TopicPartition(record.topic, record.partition)
                        consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
        finally:
            consumer.close()
            if producer is not None:
                producer.flush()
                producer.close()

    def _handle(self, record: Any, producer: Any) -> None:
        try:
            meta = decode_meta(record)
            route = self.routes.get(meta.type)
            log.debug("%s[%d]@%d: %s %s", meta.topic, meta.partition, meta.offset, meta.type, meta.id)
            if route is None:
                self.skipped += 1
                return
            try:
                message = route.message_class.FromString(record.value or b"")
            except DecodeError as error:
                raise PoisonMessage(f"payload does not parse as {meta.type}: {error}") from None
            self._call(route, message, meta)
            self.handled += 1
        except PoisonMessage as poison:
            self._poison(record, str(poison), producer)

    def _call(self, route: _Route[Any], message: Message, meta: EventMeta) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                route.handler(message, meta)
                return
            except PoisonMessage:
                raise
            except Exception as error:
                if attempt == self.max_attempts:
                    raise PoisonMessage(
                        f"handler {getattr(route.handler, '__name__', route.handler)!r} failed "
                        f"{attempt} times; last error: {error!r}"
                    ) from error
                log.warning("handler failed on %s (attempt %d): %r; retrying", meta.id, attempt, error)
                time.sleep(self.retry_backoff_s * attempt)

    def _poison(self, record: Any, reason: str, producer: Any) -> None:
        self.poisoned += 1
        headers = [(k, v or b"") for k, v in (record.headers or [])]
        poison = Poison(
            record.topic, record.partition, record.offset, reason, record.key, record.value, headers
        )
        if producer is not None and self.dead_letter_topic:
            producer.send(
                self.dead_letter_topic,
                key=record.key,
                value=record.value,
                headers=[
                    *headers,
                    ("lawtrail_error", reason.encode()),
                    ("lawtrail_origin", f"{record.topic}/{record.partition}/{record.offset}".encode()),
                ],
            ).get(timeout=30)
        self.on_poison(poison)

    @staticmethod
    def _log_poison(poison: Poison) -> None:
        log.error(
            "skipped poison message %s[%d]@%d: %s",
            poison.topic,
            poison.partition,
            poison.offset,
            poison.reason,
        )
