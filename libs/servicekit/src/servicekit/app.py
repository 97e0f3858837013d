"""The lifecycle of a service process: start everything in order, stop it in reverse on SIGTERM.

A service's ``__main__`` is ``asyncio.run(run_service(Settings(), bootstrap))``. ``bootstrap`` is the
service's one composition root: it receives the shared infrastructure (``Runtime``) and answers
what to serve and consume (``Wiring``). Nothing is built at import time.

Start: logging → /metrics → token keys → MongoDB (pinged) → the single-writer lease (FerretDB only,
``servicekit.writerlease``) → bootstrap → indexes → producer → relay (the service's outbox collections
and ``audit_outbox``, where the audit interceptor stores every call's record) →
consumers → background tasks → gRPC (health SERVING). Stop (SIGTERM/SIGINT, or a component dying):
gRPC drains (health NOT_SERVING) → background tasks → consumers → relay → producer → lease released
→ MongoDB → /metrics. A component that dies on its own stops the whole process with an error, so that
Kubernetes restarts it instead of leaving a pod that looks healthy but no longer consumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from servicekit.auth import TokenVerifier
from servicekit.config import ServiceSettings
from servicekit.grpc import GrpcServer, RolePolicy, ServiceBinding
from servicekit.grpc.audit import AUDIT_OUTBOX, AuditInterceptor, AuditOutbox
from servicekit.grpc.server import PUBLIC_SERVICES
from servicekit.logging import configure_logging
from servicekit.messaging.consumer import BatchHandler, EventConsumer, Handler, MongoInbox
from servicekit.messaging.outbox import OutboxRelay
from servicekit.messaging.producer import create_producer, send_and_wait
from servicekit.metrics import Metrics, start_metrics_server
from servicekit.mongo import OUTBOX_INDEX, Document, IndexSpec, create_client, ensure_indexes
from servicekit.tracing import configure_tracing
from servicekit.writerlease import WriterLease, WriterLeaseHeld, WriterLeaseLost, run_while_leased

__all__ = ["ConsumerSpec", "Runtime", "Wiring", "run_service"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerSpec:
    """A consumer to run: topics, its group (DLQ = ``<group_id>.dlq``), handler, optional inbox collection.

    ``batch``: ``handler`` is a ``BatchHandler`` given each poll's records (up to ``max_records``) at once
    (``servicekit.messaging.consumer``).

    ``lease``: consume only while this process holds the lease ``consumer:<group_id>`` (a named
    ``servicekit.writerlease.WriterLease``, on MongoDB too): with several replicas one consumes the
    whole group and the others wait to take over (within the lease's ttl of a crash, at once after a
    clean stop). For a handler that must be the only writer of what it writes. If the handler has
    ``async def fence(epoch: int)``, it is awaited with the lease's epoch (fencing token, higher on
    every take-over) before consuming starts. A holder that loses the lease stops consuming."""

    topics: Sequence[str]
    group_id: str
    handler: Handler | BatchHandler
    inbox_collection: str | None = None
    max_attempts: int = 5
    batch: bool = False
    max_records: int = 100
    lease: bool = False


@dataclass(frozen=True)
class Wiring:
    """What a service's bootstrap answers: its APIs and who may call them, indexes, outboxes, consumers.

    ``background``: long-running coroutines (periodic sweeps) by name, started after the consumers
    and cancelled at stop; one that ends or fails stops the service.
    """

    services: Sequence[ServiceBinding]
    role_policy: RolePolicy
    indexes: Mapping[str, Sequence[IndexSpec]] = field(default_factory=dict)
    outbox_collections: Sequence[str] = ()
    consumers: Sequence[ConsumerSpec] = ()
    background: Mapping[str, Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Runtime:
    """The shared infrastructure handed to a service's bootstrap (connected, not yet serving)."""

    settings: ServiceSettings
    metrics: Metrics
    mongo: AsyncMongoClient[Document]
    db: AsyncDatabase[Document]
    producer: AIOKafkaProducer
    relay: OutboxRelay
    verifier: TokenVerifier


Bootstrap = Callable[[Runtime], Awaitable[Wiring]]


async def run_service(
    settings: ServiceSettings, bootstrap: Bootstrap, *, stop: asyncio.Event | None = None
) -> None:
    """Run the service until SIGTERM/SIGINT (or until ``stop`` is set, for tests), then stop cleanly."""
    configure_logging(settings.service_name, settings.log_level)
    stop = stop or asyncio.Event()
    async with AsyncExitStack() as stack:
        _on_signals(stack, stop)
        flush_traces = configure_tracing(settings)
        if flush_traces is not None:
            stack.callback(flush_traces)  # last out: exports the spans of the shutdown too
        registry = CollectorRegistry()
        # The process/GC collectors live on prometheus_client's global registry by default; this
        # registry is explicit, so add them here (CPU, memory, open fds are what operations look at first).
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        metrics = Metrics(registry)
        metrics_server = start_metrics_server(settings.metrics_address, registry)
        stack.callback(metrics_server.close)
        verifier = TokenVerifier.from_settings(settings)

        mongo = create_client(settings)
        stack.push_async_callback(mongo.close)
        await _ping(mongo, settings)
        db = mongo[settings.mongo_database]
        # Before anything writes: on FerretDB a second writing process of this service refuses to start.
        lease = WriterLease(db, service=settings.service_name, ttl_s=settings.writer_lease_ttl_s)
        try:
            await lease.acquire()
        except WriterLeaseHeld as refused:
            log.error("%s", refused)
            raise
        stack.push_async_callback(lease.release)
        producer = create_producer(settings)
        relay = OutboxRelay(producer, metrics=metrics, sweep_interval_s=settings.outbox_sweep_interval_s)
        runtime = Runtime(settings, metrics, mongo, db, producer, relay, verifier)

        wiring = await bootstrap(runtime)
        # Built before anything starts: an incomplete role policy must fail the start, not a caller.
        # Every call's audit record is stored in this service's database before the caller gets the
        # answer, and relayed from there (R4, R23-3: a broker outage must not lose it).
        audit_outbox = AuditOutbox(db[AUDIT_OUTBOX], notify=relay.notify)
        audit = AuditInterceptor(
            lambda topic, record: send_and_wait(producer, topic, record),
            server=settings.service_name,
            source=settings.event_source,
            skip_services=frozenset(PUBLIC_SERVICES),
            store=audit_outbox.store,
        )
        server = GrpcServer(
            settings,
            services=wiring.services,
            role_policy=wiring.role_policy,
            verifier=verifier,
            metrics=metrics,
            audit=audit,
        )
        inboxes = {spec.inbox_collection for spec in wiring.consumers if spec.inbox_collection}
        await ensure_indexes(
            db,
            {
                **wiring.indexes,
                **dict.fromkeys(inboxes, MongoInbox.INDEXES),
                AUDIT_OUTBOX: [OUTBOX_INDEX],
            },
        )

        await _start_producer(producer, settings)
        stack.push_async_callback(producer.stop)
        stack.push_async_callback(audit.drain)
        for name in wiring.outbox_collections:
            relay.watch(db[name])
        relay.watch(db[AUDIT_OUTBOX], delete_relayed=True)
        await relay.start()
        stack.push_async_callback(relay.stop)

        watched: dict[asyncio.Task[Any], str] = {}
        lease_task = asyncio.create_task(lease.keep(), name="writer-lease")
        stack.push_async_callback(_cancel, lease_task)
        watched[lease_task] = "single-writer lease renewal"
        for spec in wiring.consumers:

            def make_consumer(spec: ConsumerSpec = spec) -> EventConsumer:
                return EventConsumer(
                    settings,
                    topics=spec.topics,
                    group_id=spec.group_id,
                    handler=spec.handler,
                    producer=producer,
                    metrics=metrics,
                    inbox=MongoInbox(db[spec.inbox_collection]) if spec.inbox_collection else None,
                    max_attempts=spec.max_attempts,
                    batch=spec.batch,
                    max_records=spec.max_records,
                )

            if spec.lease:
                group_lease = WriterLease(
                    db,
                    service=settings.service_name,
                    ttl_s=settings.writer_lease_ttl_s,
                    name=f"consumer:{spec.group_id}",
                    everywhere=True,
                )
                task = asyncio.create_task(
                    _consume_while_leased(spec, group_lease, make_consumer), name=f"leased-{spec.group_id}"
                )
                stack.push_async_callback(_cancel, task)
                watched[task] = f"leased consumer {spec.group_id}"
                continue
            consumer = make_consumer()
            await consumer.start()
            stack.push_async_callback(consumer.stop)
            if consumer.task is not None:
                watched[consumer.task] = f"consumer {spec.group_id}"
        for name, run in wiring.background.items():
            task = asyncio.create_task(run(), name=name)
            stack.push_async_callback(_cancel, task)
            watched[task] = f"background task {name}"

        await server.start()
        stack.push_async_callback(server.stop)
        log.info(
            "%s ready",
            settings.service_name,
            extra={"grpc_port": server.port, "metrics_port": metrics_server.port},
        )

        failed = await _until_stopped(stop, watched)
        log.info("%s stopping", settings.service_name)
    if failed:
        raise RuntimeError(f"{failed} stopped unexpectedly; the service was shut down (see the log above)")
    log.info("%s stopped", settings.service_name)


def _on_signals(stack: AsyncExitStack, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
        stack.callback(loop.remove_signal_handler, signum)


async def _ping(mongo: AsyncMongoClient[Document], settings: ServiceSettings) -> None:
    try:
        await mongo.admin.command("ping")
    except PyMongoError as error:
        raise RuntimeError(
            f"cannot reach MongoDB at {settings.mongo_uri} ({error}): is the local stack up (`make up`)? "
            "Otherwise set LAWTRAIL_MONGO_URI"
        ) from None


async def _start_producer(producer: AIOKafkaProducer, settings: ServiceSettings) -> None:
    try:
        await producer.start()
    except KafkaConnectionError as error:
        await producer.stop()
        raise RuntimeError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers} ({error}): is the local stack up "
            "(`make up`)? Otherwise set LAWTRAIL_KAFKA_BOOTSTRAP_SERVERS"
        ) from None


async def _until_stopped(stop: asyncio.Event, watched: Mapping[asyncio.Task[Any], str]) -> str | None:
    """Wait for a stop request; if a watched task ends first, name it (the caller then fails)."""
    stop_requested = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stop_requested, *watched}, return_when=asyncio.FIRST_COMPLETED)
    if stop_requested in done:
        return None
    stop_requested.cancel()
    task = next(iter(done))
    error = None if task.cancelled() else task.exception()
    log.critical("%s ended unexpectedly", watched[task], exc_info=error)
    return watched[task]


async def _consume_while_leased(
    spec: ConsumerSpec, lease: WriterLease, make_consumer: Callable[[], EventConsumer]
) -> None:
    """``ConsumerSpec.lease``: wait for the group's lease, fence the handler, consume; when the lease
    is lost, stop consuming (the uncommitted records go to the new holder) and wait again. Ends only
    by an error of the consumer (which stops the service) or by cancellation (release at stop)."""
    fence = getattr(spec.handler, "fence", None)

    async def consume() -> None:
        if fence is not None:
            await fence(lease.epoch)
        consumer = make_consumer()
        try:
            await consumer.start()
            assert consumer.task is not None
            # `wait`, not `await consumer.task`: a cancellation must leave the consuming task to
            # `stop`, which finishes the record in hand and commits it.
            await asyncio.wait({consumer.task})
            consumer.task.result()  # its error stops the service, as for any consumer
        finally:
            # Finish stopping even when cancelled (the service stops): leave the group cleanly.
            stopping = asyncio.ensure_future(consumer.stop())
            try:
                await asyncio.shield(stopping)
            except asyncio.CancelledError:
                await stopping
                raise

    while True:
        try:
            await run_while_leased(lease, consume, what=f"consumer {spec.group_id}")
        except WriterLeaseLost as lost:
            log.warning("%s; consumer %s stops and waits to take over again", lost, spec.group_id)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
