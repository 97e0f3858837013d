"""Embedded outbox: events are stored in the aggregate's own document and relayed to Kafka later.

FerretDB (and a sharded MongoDB) give atomicity per document only, so a state change and the events
it causes are written in ONE update of the aggregate's document: the events go into its ``outbox``
array and ``outbox_pending`` becomes true. ``OutboxRelay`` then publishes them, waits for the
broker's acknowledgement and only then removes them. A crash anywhere leaves the events in the
document, to be published on the next pass: delivery is at-least-once, and consumers dedupe on
``(ce_source, ce_id)``.

Document layout (``_id`` is the aggregate id)::

    outbox: [{event_id, source, topic, type, subject, time, data}]   # in the order they happened
    outbox_pending: bool                                             # indexed: what the relay looks for
    outbox_lease_until: datetime                                     # set while one relay publishes it

The update operators are chosen for FerretDB v1.24.2, checked against the real server: ``$pullAll``
of the exact entries read (``$pull`` with a *condition* is silently a no-op there), ``$size: 0`` to
clear the flag only when nothing new arrived, ``$push``/``$each`` to append, and ``findAndModify``
without a projection (FerretDB does not implement one there).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from bson import Binary
from google.protobuf.message import Message
from opentelemetry.trace import SpanKind
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from servicekit.doclock import serialized
from servicekit.logging import log_context
from servicekit.messaging._backoff import backoff_delay
from servicekit.messaging.envelope import Envelope, to_record
from servicekit.metrics import Metrics
from servicekit.tracing import context_from, current_traceparent, tracer

__all__ = [
    "LEASE_FIELD",
    "OUTBOX_FIELD",
    "PENDING_FIELD",
    "OutboundEvent",
    "OutboxRelay",
    "outbox_entries",
]

log = logging.getLogger(__name__)

OUTBOX_FIELD = "outbox"
PENDING_FIELD = "outbox_pending"
LEASE_FIELD = "outbox_lease_until"

Document = dict[str, Any]
# Pending documents looked up per query; a sweep repeats the query until none is left.
_BATCH = 100
_DONE = object()


@dataclass(frozen=True)
class OutboundEvent:
    """An event to publish: its topic, the protobuf message, and the aggregate id (``ce_subject``, key)."""

    topic: str
    message: Message
    subject: str


def outbox_entries(
    events: Iterable[OutboundEvent], *, source: str, now: datetime | None = None
) -> list[Document]:
    """The outbox entries (document form) of ``events``; ids are assigned here, once, for good.

    The id is fixed when the state change is written, so a republished entry carries the same
    ``ce_id`` and consumers recognise the duplicate.
    """
    time = (now or datetime.now(UTC)).astimezone(UTC)
    # MongoDB keeps milliseconds; truncate now so the stored and the published ce_time are identical.
    time = time.replace(microsecond=time.microsecond // 1000 * 1000)
    # The trace of the request that caused the change, continued by the relay's publish span.
    traceparent = current_traceparent()
    trace_field = {"traceparent": traceparent} if traceparent else {}
    return [
        {
            "event_id": str(uuid.uuid4()),
            "source": source,
            "topic": event.topic,
            "type": event.message.DESCRIPTOR.full_name,
            "subject": event.subject,
            "time": time,
            "data": Binary(event.message.SerializeToString(deterministic=True)),
            **trace_field,
        }
        for event in events
    ]


def _envelope(entry: Mapping[str, Any], traceparent: str | None = None) -> Envelope:
    time: datetime = entry["time"]
    if time.tzinfo is None:
        # A client without tz_aware=True reads BSON dates as naive; they are UTC by definition.
        time = time.replace(tzinfo=UTC)
    return Envelope(
        id=entry["event_id"],
        source=entry["source"],
        type=entry["type"],
        subject=entry["subject"],
        time=time,
        data=bytes(entry["data"]),
        traceparent=traceparent or entry.get("traceparent"),
    )


def _publish_span(entry: Mapping[str, Any]) -> AbstractContextManager[Any]:
    """A PRODUCER span continuing the trace the entry was written in (none for an untraced entry)."""
    parent = context_from(entry.get("traceparent"))
    if parent is None:
        return nullcontext()
    return tracer().start_as_current_span(
        f"{entry['topic']} publish",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": entry["topic"],
            "messaging.message.id": entry["event_id"],
            "cloudevents.event_type": entry["type"],
        },
    )


class OutboxRelay:
    """Publishes pending outbox entries of the watched collections, then clears them.

    Runs as one background task per process. The writers of this process tell it which documents
    just got entries (``notify(collection, ids)``, called by the repository after each such write);
    it reads exactly those by ``_id`` — the one filter FerretDB v1 pushes down to SQLite — so a busy
    service never makes it scan a collection. A full sweep for pending documents (a query on
    ``outbox_pending``, a collection scan on FerretDB) runs only at start (entries left by a crash)
    and every ``sweep_interval_s`` (entries written by another replica, or whose lease expired). A
    document is claimed with a lease of ``lease_s`` so two replicas do not publish the same entries
    at once; an expired lease (a crashed relay) is simply claimed again by a later sweep.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        metrics: Metrics,
        collections: Sequence[AsyncCollection[Document]] = (),
        sweep_interval_s: float = 60.0,
        min_backoff_s: float = 0.1,
        max_backoff_s: float = 30.0,
        lease_s: float = 30.0,
        ack_timeout_s: float = 30.0,
    ) -> None:
        self._producer = producer
        self._metrics = metrics
        self._collections: dict[str, AsyncCollection[Document]] = {}
        for collection in collections:
            self._add(collection)
        self._sweep_interval_s = sweep_interval_s
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._lease = timedelta(seconds=lease_s)
        self._ack_timeout_s = ack_timeout_s
        self._wake = asyncio.Event()
        # Per watched collection (full name): ids of documents told to have new entries, in order.
        self._hinted: dict[str, dict[Any, None]] = {}
        # The earliest lease expiry of a pending document seen by the last sweep (brings the next one closer).
        self._leased_until: datetime | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def _add(self, collection: AsyncCollection[Document]) -> None:
        self._collections[collection.full_name] = serialized(collection)

    def watch(self, collection: AsyncCollection[Document]) -> None:
        """Relay the outbox of ``collection`` too (call before ``start``)."""
        if self._task is not None:
            raise RuntimeError("watch() collections before starting the relay")
        self._add(collection)

    def notify(self, collection: AsyncCollection[Document] | None = None, ids: Iterable[Any] = ()) -> None:
        """Publish soon: entries were just written to documents ``ids`` of ``collection``.

        Without a collection (or for one not watched) it only wakes the relay; those entries are then
        found by the next full sweep.
        """
        if collection is not None and collection.full_name in self._collections:
            hinted = self._hinted.setdefault(collection.full_name, {})
            for document_id in ids:
                hinted[document_id] = None
        self._wake.set()

    async def start(self) -> None:
        """Start relaying in the background (the first pass is a full sweep: crash recovery)."""
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the pass in progress (up to ``timeout_s``), then stop; unpublished entries stay stored."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(self._task, timeout_s)
        except TimeoutError:
            log.warning("outbox relay did not finish its pass in %.1f s; stopped it mid-pass", timeout_s)
        finally:
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        next_sweep = loop.time()  # at once: entries a crash left behind
        while not self._stopping:
            self._wake.clear()
            sweep = loop.time() >= next_sweep
            try:
                if sweep:
                    await self.relay_once()
                    next_sweep = loop.time() + self._sweep_interval_s
                    if self._leased_until is not None:
                        expires_in = (self._leased_until - datetime.now(UTC)).total_seconds() + 0.5
                        next_sweep = min(next_sweep, loop.time() + max(expires_in, 0.5))
                else:
                    await self.relay_hinted()
                failures = 0
            except Exception:
                failures += 1
                self._metrics.outbox_publish_failures.inc()
                delay = backoff_delay(failures, self._min_backoff_s, self._max_backoff_s)
                log.warning(
                    "outbox relay pass failed (%d in a row); retrying in %.2f s",
                    failures,
                    delay,
                    exc_info=True,
                )
                await self._sleep(delay, wake_on_notify=False)
                continue
            if any(self._hinted.values()):
                continue  # written while this pass ran
            await self._sleep(next_sweep - loop.time(), wake_on_notify=True)

    async def _sleep(self, seconds: float, *, wake_on_notify: bool) -> None:
        """Wait ``seconds``; a notify ends the wait early only outside a backoff, a stop always does."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self._stopping:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return
            if wake_on_notify:
                return
            self._wake.clear()  # a notify during backoff is remembered by the pass that follows anyway

    async def relay_hinted(self) -> int:
        """Publish the documents notified since the last pass, each read by ``_id``; entries published."""
        published = 0
        for name, collection in self._collections.items():
            while not self._stopping:
                hinted = self._hinted.pop(name, None)
                if not hinted:
                    break
                ids = list(hinted)
                try:
                    for n, document_id in enumerate(ids):
                        document = await self._claim(collection, document_id)
                        if document is not None:
                            published += await self._publish(collection, document)
                        ids[n] = _DONE
                except BaseException:
                    # Keep what is not published yet (and whatever was notified meanwhile) for the retry.
                    again = self._hinted.setdefault(name, {})
                    self._hinted[name] = {**dict.fromkeys(i for i in ids if i is not _DONE), **again}
                    raise
        return published

    async def relay_once(self) -> int:
        """A full sweep of every watched collection; the number of entries published and cleared.

        Also publishes what was notified. Repeats the (non-``_id``) query until nothing is claimable.
        """
        published = await self.relay_hinted()
        self._leased_until = None
        for collection in self._collections.values():
            while not self._stopping:
                claimed = 0
                for document_id in await self._pending_ids(collection):
                    document = await self._claim(collection, document_id)
                    if document is not None:
                        claimed += 1
                        published += await self._publish(collection, document)
                if not claimed:
                    break
            await self._note_leases(collection)
        return published

    async def _note_leases(self, collection: AsyncCollection[Document]) -> None:
        """Remember when the earliest lease on a pending document expires: a relay that died while
        publishing (e.g. this process before a restart) leaves one, and the next sweep should claim the
        document then rather than a whole ``sweep_interval_s`` later."""
        leased = await collection.find_one(
            {PENDING_FIELD: True, LEASE_FIELD: {"$gte": datetime.now(UTC)}},
            projection={LEASE_FIELD: 1},
            sort=[(LEASE_FIELD, 1)],
        )
        if leased is not None:
            until: datetime = leased[LEASE_FIELD]
            until = until.replace(tzinfo=UTC) if until.tzinfo is None else until
            if self._leased_until is None or until < self._leased_until:
                self._leased_until = until

    async def _acknowledged(self, acks: list[asyncio.Future[Any]]) -> None:
        """Wait for the broker's ack of every send, at most ``ack_timeout_s``.

        The idempotent producer retries an unanswered batch on its own for as long as the broker is
        away, so without a bound a pass would hang silently through an outage. Timing out turns the
        outage into failed passes (logged, counted, retried with backoff). Sends still pending are left
        to the producer: if they land late, the retry publishes them again — at-least-once.
        """
        for ack in acks:
            # Retrieve late failures so asyncio does not report them as never retrieved.
            ack.add_done_callback(lambda done: done.cancelled() or done.exception())
        _, pending = await asyncio.wait(acks, timeout=self._ack_timeout_s)
        if pending:
            raise TimeoutError(
                f"{len(pending)} of {len(acks)} events not acknowledged in {self._ack_timeout_s:.0f} s"
            )
        for ack in acks:
            ack.result()  # raises the first send that failed

    @staticmethod
    def _claimable(now: datetime) -> Document:
        return {
            PENDING_FIELD: True,
            "$or": [{LEASE_FIELD: {"$exists": False}}, {LEASE_FIELD: None}, {LEASE_FIELD: {"$lt": now}}],
        }

    async def _pending_ids(self, collection: AsyncCollection[Document]) -> list[Any]:
        cursor = collection.find(self._claimable(datetime.now(UTC)), projection={"_id": 1}).limit(_BATCH)
        return [document["_id"] async for document in cursor]

    async def _claim(self, collection: AsyncCollection[Document], document_id: Any) -> Document | None:
        """Lease ``document_id`` if it is still pending and unleased; its document, or None."""
        now = datetime.now(UTC)
        # Addressed by _id: pushed down on FerretDB, and holds the document's lock (serialized).
        return await collection.find_one_and_update(
            {"_id": document_id, **self._claimable(now)},
            {"$set": {LEASE_FIELD: now + self._lease}},
            # No projection: FerretDB v1.24.2's findAndModify does not implement `fields`.
            return_document=ReturnDocument.AFTER,
        )

    async def _publish(self, collection: AsyncCollection[Document], document: Document) -> int:
        entries: list[Document] = list(document.get(OUTBOX_FIELD) or [])
        try:
            # Send all, then await every ack: the idempotent producer keeps them in order per
            # partition, and nothing is removed unless the broker acknowledged all of them.
            acks = []
            for entry in entries:
                with _publish_span(entry):
                    record = to_record(_envelope(entry, current_traceparent()))
                    with log_context(event_id=entry["event_id"]):
                        log.debug("publishing %s to %s", entry["type"], entry["topic"])
                    acks.append(
                        await self._producer.send(
                            entry["topic"], value=record.value, key=record.key, headers=record.headers
                        )
                    )
            await self._acknowledged(acks)
        except BaseException:
            # Let another pass (after backoff) or another replica retry right away.
            await collection.update_one(
                {"_id": document["_id"], LEASE_FIELD: document[LEASE_FIELD]},
                {"$unset": {LEASE_FIELD: ""}},
            )
            raise
        # Usually nothing was appended meanwhile: then the outbox still holds exactly the entries read
        # (entries are only appended, and removed only under our lease), so one update clears it all.
        cleared = await collection.update_one(
            {
                "_id": document["_id"],
                LEASE_FIELD: document[LEASE_FIELD],
                OUTBOX_FIELD: {"$size": len(entries)},
            },
            {"$set": {OUTBOX_FIELD: [], PENDING_FIELD: False}, "$unset": {LEASE_FIELD: ""}},
        )
        if not cleared.matched_count:
            # Remove exactly the entries published (new ones were appended meanwhile, or the lease was
            # lost), then clear the flag only if the outbox is now empty — both single-document,
            # conditional updates, each holding the document's lock; an entry appended in between
            # keeps the flag set.
            update: Document = {"$unset": {LEASE_FIELD: ""}}
            if entries:
                update["$pullAll"] = {OUTBOX_FIELD: entries}
            await collection.update_one({"_id": document["_id"]}, update)
            await collection.update_one(
                {"_id": document["_id"], PENDING_FIELD: True, OUTBOX_FIELD: {"$size": 0}},
                {"$set": {PENDING_FIELD: False}},
            )
        acknowledged = datetime.now(UTC)
        for entry in entries:
            self._metrics.outbox_published.labels(topic=entry["topic"]).inc()
            written = entry["time"] if entry["time"].tzinfo else entry["time"].replace(tzinfo=UTC)
            lag = max(0.0, (acknowledged - written).total_seconds())
            self._metrics.outbox_event_lag_seconds.labels(topic=entry["topic"]).observe(lag)
        if entries:
            log.info(
                "relayed %d events of %s",
                len(entries),
                document["_id"],
                extra={"collection": collection.name},
            )
        return len(entries)
