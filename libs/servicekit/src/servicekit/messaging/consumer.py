"""Consuming events: apply each ``(ce_source, ce_id)`` at most once, commit only after applying,
park poison records in ``<group>.dlq``.

A learned lesson (eShop's event bus acknowledges even when the handler failed): here an offset is
committed only once its record has been applied, recognised as a duplicate, ignored (a type this
consumer does not handle) or parked in the dead-letter topic with the broker's acknowledgement.
A crash before the commit redelivers the record; the inbox (or an effect written with
``servicekit.mongo.apply_once``) makes the redelivery harmless.

Records of one consumer are handled one at a time, in partition order: an aggregate's events
(same key, same partition) are applied in the order they happened.

Batch mode (``batch=True``): the handler is given every record of one poll (``getmany``, up to
``max_records``, several partitions, each partition's records in order) as one sequence of
``Delivery``, and the offsets of the poll are committed only after it returned. For handlers whose
cost is per round trip rather than per record (the audit ledger writes a batch with one bulk write
per collection). A failed batch is retried whole, so a batch handler must be idempotent per record
(as every handler must be for redeliveries); a batch that still fails after ``max_attempts`` is split
and its records applied one at a time, so only the poison record goes to the DLQ.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from google.protobuf.message import Message
from opentelemetry.trace import Link, SpanKind, get_current_span
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ConnectionFailure, DuplicateKeyError

from servicekit.config import ServiceSettings
from servicekit.logging import log_context
from servicekit.messaging._backoff import backoff_delay
from servicekit.messaging.envelope import Envelope, InvalidEnvelope, KafkaRecord, decode
from servicekit.messaging.producer import kafka_security_options, send_and_wait
from servicekit.metrics import Metrics
from servicekit.mongo import Document, IndexSpec
from servicekit.tracing import context_from, tracer

__all__ = [
    "BatchHandler",
    "Delivery",
    "EventConsumer",
    "Handler",
    "Inbox",
    "MongoInbox",
    "TypeRouter",
    "dlq_topic",
]

log = logging.getLogger(__name__)

Handler = Callable[[Envelope], Awaitable[None]]


@dataclass(frozen=True)
class Delivery:
    """One record given to a batch handler: the event and where it was read."""

    envelope: Envelope
    topic: str
    partition: int
    offset: int


BatchHandler = Callable[[Sequence[Delivery]], Awaitable[None]]
M = TypeVar("M", bound=Message)

# Failures that say nothing about the record (the database or the network is away): retried without
# limit, because parking a good event in the DLQ during an outage would lose it from the projection.
TRANSIENT: tuple[type[BaseException], ...] = (ConnectionFailure, KafkaError)


def dlq_topic(group_id: str) -> str:
    """The dead-letter topic of a consumer group (architecture: ``<consumer group>.dlq``)."""
    return f"{group_id}.dlq"


class Inbox(Protocol):
    """Remembers which ``(ce_source, ce_id)`` were applied."""

    async def seen(self, key: tuple[str, str]) -> bool: ...

    async def record(self, key: tuple[str, str]) -> None: ...


class MongoInbox:
    """An inbox collection with a unique index on ``(source, id)``.

    Recorded after the handler succeeded. It makes redeliveries (rebalances, the relay republishing
    after a lost ack) harmless; the one window it cannot close — a crash between the handler's write
    and the inbox insert — is why handlers whose effect is one document should use ``apply_once``.
    """

    INDEXES: Sequence[IndexSpec] = (IndexSpec([("source", 1), ("id", 1)], unique=True, name="source_id"),)

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def seen(self, key: tuple[str, str]) -> bool:
        source, event_id = key
        return (
            await self._collection.find_one({"source": source, "id": event_id}, projection={"_id": 1})
            is not None
        )

    async def record(self, key: tuple[str, str]) -> None:
        source, event_id = key
        # A DuplicateKeyError means a concurrent redelivery recorded it first: the same fact.
        with contextlib.suppress(DuplicateKeyError):
            await self._collection.insert_one(
                {"source": source, "id": event_id, "applied_at": datetime.now(UTC)}
            )


class TypeRouter:
    """A handler that dispatches on ``ce_type`` to typed handlers and ignores other types.

    ``router.on(RecordingLinked, handle)`` with ``async def handle(event: RecordingLinked, envelope)``.
    """

    def __init__(self) -> None:
        self._routes: dict[str, Callable[[Envelope], Awaitable[None]]] = {}

    def on(self, message_class: builtins.type[M], handler: Callable[[M, Envelope], Awaitable[None]]) -> None:
        """Handle events of ``message_class`` with ``handler``."""
        event_type = message_class.DESCRIPTOR.full_name
        if event_type in self._routes:
            raise ValueError(f"{event_type} already has a handler")

        async def route(envelope: Envelope) -> None:
            await handler(envelope.parse(message_class), envelope)

        self._routes[event_type] = route

    def accepts(self, event_type: str) -> bool:
        """Whether events of ``event_type`` are handled (the consumer skips the others cheaply)."""
        return event_type in self._routes

    async def __call__(self, envelope: Envelope) -> None:
        route = self._routes.get(envelope.type)
        if route is not None:
            await route(envelope)


TOPIC_METADATA_WAIT_S = 10.0


class _Abandoned(Exception):
    """Batch mode: the consumer is stopping while its batch keeps failing; it is left uncommitted."""


class EventConsumer:
    """Consumes ``topics`` as ``group_id`` and applies each event with ``handler``."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        topics: Sequence[str],
        group_id: str,
        handler: Handler | BatchHandler,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        inbox: Inbox | None = None,
        max_attempts: int = 5,
        min_backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
        batch: bool = False,
        max_records: int = 100,
        **consumer_overrides: Any,
    ) -> None:
        """``batch``: ``handler`` is a ``BatchHandler`` given each poll's records at once (module doc);
        ``max_records``: the most records one poll returns (one batch)."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self._settings = settings
        self._topics = list(topics)
        self._group_id = group_id
        self._dlq = dlq_topic(group_id)
        self._handler = handler
        self._batch = batch
        self._max_records = max_records
        self._accepts: Callable[[str], bool] = getattr(handler, "accepts", lambda _type: True)
        self._producer = producer
        self._metrics = metrics
        self._inbox = inbox
        self._max_attempts = max_attempts
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._overrides = consumer_overrides
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Connect, check the topics and start consuming; fails if a topic or the DLQ topic does not exist.

        The group is joined by the consuming task, not here: after a crash Kafka holds the rebalance
        until the dead member's session times out (10 s), and the service's API need not wait for that
        (``AIOKafkaConsumer.start`` with topics waits for the first assignment; a ``subscribe`` after it
        does not)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            group_id=self._group_id,
            client_id=f"{self._settings.service_name}.{self._group_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **kafka_security_options(self._settings),
            **self._overrides,
        )
        await consumer.start()
        try:
            # A topic created a moment ago takes a moment to show in every broker's metadata.
            deadline = asyncio.get_running_loop().time() + TOPIC_METADATA_WAIT_S
            while True:
                missing = sorted({*self._topics, self._dlq} - set(await consumer.topics()))
                if not missing or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.25)
            if missing:
                raise RuntimeError(
                    f"topics {missing} do not exist (topics are never auto-created): declare them in "
                    "deploy/local/topics.toml / the KafkaTopic resources"
                )
            consumer.subscribe(self._topics)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(consumer), name=f"consumer-{self._group_id}")

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The consuming task; the runner watches it, since a consumer that died must stop the process."""
        return self._task

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the record in hand and commit it (up to ``timeout_s``), then leave the group."""
        if self._task is None or self._consumer is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            # Stuck waiting out an outage: stop anyway, the uncommitted record will be redelivered.
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        except Exception:
            log.exception("consumer %s had failed", self._group_id)
        await self._consumer.stop()
        self._task = self._consumer = None

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while not self._stopping.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=self._max_records)
            if self._batch:
                if batches:
                    # The whole poll is one unit: applied, then every partition's offset committed.
                    try:
                        await self._process_batch(batches)
                    except _Abandoned:
                        return  # stopping while the batch failed: nothing committed, all redelivered
                    for partition, records in batches.items():
                        await self._commit(consumer, partition, records[-1].offset + 1)
                continue
            for partition, records in batches.items():
                done = None
                for record in records:
                    if self._stopping.is_set():
                        break
                    await self._process(record)
                    done = record.offset
                if done is not None:
                    await self._commit(consumer, partition, done + 1)
                    if done != records[-1].offset:
                        # Stopping mid-batch: the rest will be delivered again to whoever owns it next.
                        return

    async def _commit(self, consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int) -> None:
        try:
            await consumer.commit({partition: offset})
        except (CommitFailedError, IllegalStateError) as error:
            # The partition was reassigned meanwhile: its new owner gets the records again and the
            # inbox recognises the ones applied here.
            log.warning("commit of %s@%d failed (%s); records will be redelivered", partition, offset, error)

    async def _process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        with log_context(topic=record.topic, partition=record.partition, offset=record.offset):
            try:
                envelope = decode(record)
            except InvalidEnvelope as error:
                await self._dead_letter(record, error, attempts=0)
                return
            with (
                log_context(event_id=envelope.id, event_type=envelope.type),
                self._process_span(record, envelope),
            ):
                await self._apply(record, envelope)

    def _process_span(self, record: ConsumerRecord[bytes, bytes], envelope: Envelope) -> Any:
        """A CONSUMER span, child of the producer's (``ce_traceparent``); what the handler writes and
        publishes continues the same trace."""
        return tracer().start_as_current_span(
            f"{record.topic} process",
            context=context_from(envelope.traceparent),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": record.topic,
                "messaging.consumer.group.name": self._group_id,
                "messaging.kafka.offset": record.offset,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.message.id": envelope.id,
                "cloudevents.event_type": envelope.type,
            },
        )

    async def _process_batch(
        self, batches: Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """Batch mode: decode, drop what is not for the handler, apply the rest as one batch."""
        items: list[tuple[ConsumerRecord[bytes, bytes], Delivery]] = []
        for records in batches.values():
            for record in records:
                with log_context(topic=record.topic, partition=record.partition, offset=record.offset):
                    try:
                        envelope = decode(record)
                    except InvalidEnvelope as error:
                        await self._dead_letter(record, error, attempts=0)
                        continue
                    if not self._accepts(envelope.type):
                        self._count(record, "ignored")
                        continue
                    if self._inbox is not None and await self._patiently(
                        self._inbox.seen, envelope.dedupe_key
                    ):
                        log.info("duplicate event skipped")
                        self._count(record, "duplicate")
                        continue
                items.append((record, Delivery(envelope, record.topic, record.partition, record.offset)))
        if items:
            await self._apply_batch(items)

    def _batch_span(self, items: Sequence[tuple[ConsumerRecord[bytes, bytes], Delivery]]) -> Any:
        """One CONSUMER span per batch, linked to each record's producer span."""
        links = []
        for _record, delivery in items:
            context = context_from(delivery.envelope.traceparent)
            if context is not None:
                links.append(Link(get_current_span(context).get_span_context()))
        return tracer().start_as_current_span(
            f"{self._group_id} process batch",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.consumer.group.name": self._group_id,
                "messaging.batch.message_count": len(items),
            },
        )

    async def _apply_batch(self, items: Sequence[tuple[ConsumerRecord[bytes, bytes], Delivery]]) -> None:
        handler: BatchHandler = self._handler  # type: ignore[assignment]
        first, last = items[0][0], items[-1][0]
        attempt = outages = 0
        while True:
            attempt += 1
            try:
                with (
                    log_context(records=len(items), topic=first.topic, offset=first.offset),
                    self._batch_span(items),
                ):
                    await handler([delivery for _record, delivery in items])
                break
            except TRANSIENT:
                if self._stopping.is_set():
                    raise _Abandoned from None
                attempt -= 1  # an outage is not the batch's fault: do not use up its attempts
                outages += 1
                await self._pause(
                    backoff_delay(outages, self._min_backoff_s, self._max_backoff_s), "batch handler (outage)"
                )
            except Exception as error:
                if self._stopping.is_set():
                    # Stopping (e.g. the lease of a leased consumer was lost): the next owner gets it.
                    raise _Abandoned from error
                give_up = isinstance(error, InvalidEnvelope) or attempt >= self._max_attempts
                if give_up and len(items) > 1:
                    # Find the culprit: the records one at a time, each with its own attempts.
                    log.warning(
                        "batch of %d records (%s@%d..%s@%d) failed %d times (%s); applying them one by one",
                        len(items),
                        first.topic,
                        first.offset,
                        last.topic,
                        last.offset,
                        attempt,
                        error,
                    )
                    for item in items:
                        await self._apply_batch([item])
                    return
                if give_up:
                    with log_context(topic=first.topic, partition=first.partition, offset=first.offset):
                        await self._dead_letter(first, error, attempts=attempt)
                    return
                self._metrics.consumer_retries.labels(group=self._group_id, topic=first.topic).inc()
                await self._pause(
                    backoff_delay(attempt, self._min_backoff_s, self._max_backoff_s), "batch handler"
                )
        for record, delivery in items:
            if self._inbox is not None:
                await self._patiently(self._inbox.record, delivery.envelope.dedupe_key)
            self._count(record, "applied")

    async def _apply(self, record: ConsumerRecord[bytes, bytes], envelope: Envelope) -> None:
        if not self._accepts(envelope.type):
            self._count(record, "ignored")
            return
        if self._inbox is not None and await self._patiently(self._inbox.seen, envelope.dedupe_key):
            log.info("duplicate event skipped")
            self._count(record, "duplicate")
            return
        attempt = outages = 0
        while True:
            attempt += 1
            try:
                await self._handler(envelope)  # type: ignore[arg-type]
                break
            except TRANSIENT:
                attempt -= 1  # an outage is not the record's fault: do not use up its attempts
                outages += 1
                delay = backoff_delay(outages, self._min_backoff_s, self._max_backoff_s)
                await self._pause(delay, "handler (outage)")
            except InvalidEnvelope as error:
                await self._dead_letter(record, error, attempts=attempt)  # retrying cannot fix a bad payload
                return
            except Exception as error:
                if attempt >= self._max_attempts:
                    await self._dead_letter(record, error, attempts=attempt)
                    return
                self._metrics.consumer_retries.labels(group=self._group_id, topic=record.topic).inc()
                await self._pause(backoff_delay(attempt, self._min_backoff_s, self._max_backoff_s), "handler")
        if self._inbox is not None:
            await self._patiently(self._inbox.record, envelope.dedupe_key)
        self._count(record, "applied")

    async def _patiently(
        self, operation: Callable[[tuple[str, str]], Awaitable[Any]], key: tuple[str, str]
    ) -> Any:
        """Run an inbox operation, waiting out outages (failing it would mean skipping or re-applying)."""
        failures = 0
        while True:
            try:
                return await operation(key)
            except TRANSIENT:
                failures += 1
                await self._pause(backoff_delay(failures, self._min_backoff_s, self._max_backoff_s), "inbox")

    async def _pause(self, seconds: float, what: str) -> None:
        log.warning("%s failed; retrying in %.2f s", what, seconds, exc_info=True)
        await asyncio.sleep(seconds)

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: BaseException, *, attempts: int
    ) -> None:
        """Park ``record`` in the DLQ with why, where from and how often it was tried; wait for the ack."""
        headers = [
            *list(record.headers or ()),
            ("dlq_error", f"{type(error).__name__}: {error}"[:1000].encode()),
            ("dlq_topic", record.topic.encode()),
            ("dlq_partition", str(record.partition).encode()),
            ("dlq_offset", str(record.offset).encode()),
            ("dlq_group", self._group_id.encode()),
            ("dlq_attempts", str(attempts).encode()),
            # which process parked it: with several replicas, the one whose log has the traceback
            ("dlq_consumer", f"{self._settings.service_name}@{socket.gethostname()}:{os.getpid()}".encode()),
        ]
        parked = KafkaRecord(key=record.key, value=record.value or b"", headers=headers)
        log.error(
            "parking record in %s after %d attempts: %s",
            self._dlq,
            attempts,
            error,
            exc_info=(type(error), error, error.__traceback__),
        )
        failures = 0
        while True:
            try:
                await send_and_wait(self._producer, self._dlq, parked)
                break
            except KafkaError:
                failures += 1
                await self._pause(
                    backoff_delay(failures, self._min_backoff_s, self._max_backoff_s), "DLQ produce"
                )
        self._count(record, "dead_lettered")

    def _count(self, record: ConsumerRecord[bytes, bytes], outcome: str) -> None:
        self._metrics.consumer_records.labels(group=self._group_id, topic=record.topic, outcome=outcome).inc()
