"""Embedded outbox: events are stored in the aggregate's own document and relayed to Kafka later.

FerretDB (and a sharded MongoDB) give atomicity per document only, so a state change and the events
it causes are written in ONE update of the aggregate's document: the events go into its ``outbox``
array (each with ``seq`` = the document's new version × 1000 + its index in the write, so the entries
of one aggregate are totally ordered) and ``outbox_pending`` becomes true. ``OutboxRelay`` publishes
them, waits for the broker's acknowledgement and then records how far it got in a small document of
its own — ``outbox_relayed``: ``{_id: "<collection>/<aggregate id>", seq: <highest published>}``
(a relayed-sequence watermark, raised with ``$max``) — instead of writing the aggregate's document.
A crash anywhere leaves the unpublished entries above the watermark, to be published by the next
pass: delivery is at-least-once (a crash between the ack and the watermark republishes), and
consumers dedupe on ``(ce_source, ce_id)``.

Publishing never writes an existing aggregate (ADR 0007: the old claim-and-clear cost two writes of a
growing document per relayed event). The published entries are compacted away by the periodic sweep:
one conditional write ``{_id, version: v}`` → ``outbox: [], outbox_pending: false`` per document that
is fully relayed and was not written since (then its watermark document is deleted too). The one
exception is a document created by the write it sends at once (below): that same conditional write
is made as soon as the broker acknowledged it, instead of a watermark (ADR 0012) — a new document is
as small as it gets, and the sweep then has nothing left to do for it. The documents one write created
are acknowledged together and compacted together (``doclock.update_each``: bulk writes, not one
conditional write each).

Document layout (``_id`` is the aggregate id)::

    outbox: [{event_id, seq, source, topic, type, subject, time, data}]   # in the order they happened
    outbox_pending: bool                                     # indexed: entries not yet compacted away

The update operators are chosen for FerretDB v1.24.2, checked against the real server: ``$push`` /
``$each`` to append, ``$max`` with upsert for the watermark, ``$pullAll`` of exact entries for entries
written before sequences existed (no ``seq``), and no projection on ``findAndModify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from bson import Binary
from google.protobuf.message import Message
from opentelemetry.trace import SpanKind
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from servicekit.doclock import serialized, update_each
from servicekit.logging import log_context
from servicekit.messaging._backoff import backoff_delay
from servicekit.messaging.envelope import Envelope, to_record
from servicekit.metrics import Metrics
from servicekit.tracing import context_from, current_traceparent, tracer

__all__ = [
    "LEASE_FIELD",
    "MAX_EVENTS_PER_WRITE",
    "OUTBOX_FIELD",
    "PENDING_FIELD",
    "RELAYED_COLLECTION",
    "SEQ_FIELD",
    "Notify",
    "OutboundEvent",
    "OutboxRelay",
    "Written",
    "outbox_entries",
    "unrelayed_entries",
]

log = logging.getLogger(__name__)

OUTBOX_FIELD = "outbox"
PENDING_FIELD = "outbox_pending"
# Reserved (documents written by older versions may carry it); the relay no longer leases documents.
LEASE_FIELD = "outbox_lease_until"
SEQ_FIELD = "seq"
RELAYED_COLLECTION = "outbox_relayed"
# At most this many events per write, so that version × _PER_WRITE + index orders every entry.
_PER_WRITE = 1000
# What a caller may put in one write (a use case with more events splits them over several writes).
MAX_EVENTS_PER_WRITE = _PER_WRITE - 1
# A document that keeps being written while the sweep compacts it is tried again at most this often.
_COMPACT_TRIES = 10
# Point reads and watermark writes of one batch in flight at once.
_READERS = 16

Document = dict[str, Any]
# What a writer tells ``OutboxRelay.notify`` of one document it wrote: (the version it replaced, 0 for
# a new document; the outbox entries it stored).
Written = tuple[int, list[Document]]


class Notify(Protocol):
    """Told after every write that stored outbox entries (``OutboxRelay.notify``): the collection and
    the ids of the documents, so the relay reads exactly those by ``_id`` — and, per document, what
    the write replaced and stored (``written``), so the relay can send the entries without reading
    them back when nothing can precede them. A write without entries passes ``written`` alone."""

    def __call__(
        self,
        collection: AsyncCollection[Document],
        ids: Sequence[Any],
        /,
        *,
        written: Mapping[Any, Written] | None = None,
    ) -> None: ...


# Pending documents looked up per query; a sweep repeats the query until none is left.
_BATCH = 100
_DONE = object()
# Unacknowledged sends remembered beyond which the settled ones are forgotten.
_SENT_KEPT = 10_000
# Documents whose published version the relay remembers (for sending a write's entries at once);
# beyond that the oldest are forgotten, and their next write takes the reading path.
_KNOWN_KEPT = 100_000
VERSION = "version"


@dataclass(frozen=True)
class OutboundEvent:
    """An event to publish: its topic, the protobuf message, and the aggregate id (``ce_subject``, key)."""

    topic: str
    message: Message
    subject: str


def outbox_entries(
    events: Iterable[OutboundEvent], *, source: str, now: datetime | None = None, version: int = 0
) -> list[Document]:
    """The outbox entries (document form) of ``events``; ids are assigned here, once, for good.

    The id is fixed when the state change is written, so a republished entry carries the same
    ``ce_id`` and consumers recognise the duplicate. ``version``: the document's version after the
    write that stores them (``VersionedRepository`` passes it), which orders the entries (``seq``).
    """
    events = list(events)
    if len(events) >= _PER_WRITE:
        raise ValueError(f"{len(events)} events in one write; at most {_PER_WRITE - 1}")
    time = (now or datetime.now(UTC)).astimezone(UTC)
    # MongoDB keeps milliseconds; truncate now so the stored and the published ce_time are identical.
    time = time.replace(microsecond=time.microsecond // 1000 * 1000)
    # The trace of the request that caused the change, continued by the relay's publish span.
    traceparent = current_traceparent()
    trace_field = {"traceparent": traceparent} if traceparent else {}
    return [
        {
            "event_id": str(uuid.uuid4()),
            SEQ_FIELD: version * _PER_WRITE + index,
            "source": source,
            "topic": event.topic,
            "type": event.message.DESCRIPTOR.full_name,
            "subject": event.subject,
            "time": time,
            "data": Binary(event.message.SerializeToString(deterministic=True)),
            **trace_field,
        }
        for index, event in enumerate(events)
    ]


def _relayed_key(collection: AsyncCollection[Document], document_id: Any) -> str:
    return f"{collection.name}/{document_id}"


async def unrelayed_entries(collection: AsyncCollection[Document], document_id: Any) -> list[Document]:
    """The outbox entries of ``document_id`` not yet published (above its watermark); for tests,
    benchmarks and operations — what the relay still owes."""
    document = await collection.find_one({"_id": document_id}, projection={OUTBOX_FIELD: 1})
    if document is None:
        return []
    mark = await collection.database[RELAYED_COLLECTION].find_one(
        {"_id": _relayed_key(collection, document_id)}
    )
    relayed = mark[SEQ_FIELD] if mark else -1
    return [e for e in document.get(OUTBOX_FIELD) or [] if e.get(SEQ_FIELD, relayed + 1) > relayed]


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


# Clears a fully relayed outbox.
_CLEARED: Document = {"$set": {OUTBOX_FIELD: [], PENDING_FIELD: False}, "$unset": {LEASE_FIELD: ""}}
# Loop turns the compaction flusher waits for more documents to join, while more keep coming.
_GATHER_TURNS = 8


async def _compact(collection: AsyncCollection[Document], document_id: Any, condition: Document) -> bool:
    """Clear the outbox of a fully relayed document if it still matches ``condition`` (not written since
    it was relayed); whether it did."""
    cleared = await collection.update_one({"_id": document_id, **condition}, _CLEARED)
    return bool(cleared.matched_count)


class OutboxRelay:
    """Publishes the outbox entries of the watched collections and records how far it got.

    Runs as one background task per process. The writers of this process tell it which documents
    just got entries (``notify(collection, ids)``, called by the repository after each such write);
    it reads exactly those by ``_id`` and their watermarks by ``_id`` (point reads, index-served on
    every backend), publishes the entries above the watermark in order, waits for every ack, then
    raises the watermark — the only write of the hot path, to a small document. A full sweep for
    pending documents runs at start (entries left by a crash) and every ``sweep_interval_s``
    (entries written by another replica); it also compacts fully relayed documents (see the module
    docstring). Two replicas may publish the same entries at once (MongoDB): each publishes them in
    order, so consumers see at most redeliveries, which they drop. ``lease_s`` is accepted for
    compatibility and unused.

    Sending at once (the latency path): a writer that knows what it wrote passes ``written`` to
    ``notify`` — per document, the version it replaced and the entries it stored. When the relay knows
    that every entry of that document up to the replaced version is published (it relayed the
    document at that version itself, or the write created it), nothing can precede the new entries,
    so it sends them at once without reading the document back; otherwise the document takes the
    reading path above. The version check of the write is what makes this safe across replicas too:
    a write that replaced version v succeeded only if nobody wrote in between. Measured on the local
    stack: the read-back of a just-written document waited 20–110 ms behind the writer's other
    database commands (ADR 0010).
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
        self._relayed: dict[str, AsyncCollection[Document]] = {}
        # Watermarks this relay raised itself (key → seq). A watermark only grows until compaction
        # deletes it, and entries written after a compaction have higher sequences, so a remembered
        # value is never above the truth in a way that could skip an entry; a stale lower one (another
        # replica raised it) only causes a redelivery. Bounded by the documents relayed between sweeps.
        self._marks: dict[str, int] = {}
        # Collections whose documents are written once and deleted once published (``watch(...,
        # delete_relayed=True)``), by full name.
        self._deleting: set[str] = set()
        # Sends not yet known to be delivered, by event id. A pass that gave up waiting for an ack
        # (broker away) leaves its sends to the producer, which keeps retrying them; the next pass
        # waits for those same sends instead of sending the entries again, so a broker outage does not
        # put a second copy of every waiting event on the topic. Dropped once acknowledged; a failed
        # send is sent again.
        self._sent: dict[str, asyncio.Future[Any]] = {}
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
        # Per document key: the version up to which every entry is known published (see the class
        # docstring), oldest first; bounded by _KNOWN_KEPT.
        self._known: OrderedDict[str, int] = OrderedDict()
        # Keys in a reading pass now, and the sends at once still in flight: a document is never sent
        # by both at the same time, so its entries go out in order.
        self._busy: set[str] = set()
        self._sending: dict[str, asyncio.Task[None]] = {}
        # The version the newest send at once of a document produces: the next write of it may follow.
        self._sending_version: dict[str, int] = {}
        # Compactions at once waiting to be made together (ADR 0012), per collection: (id, version,
        # the waiting caller's future); and the one flusher task per collection making them.
        self._compacting: dict[str, list[tuple[Any, int, asyncio.Future[bool]]]] = {}
        self._flushers: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def _add(self, collection: AsyncCollection[Document], delete_relayed: bool = False) -> None:
        self._collections[collection.full_name] = serialized(collection)
        self._relayed[collection.full_name] = serialized(collection.database[RELAYED_COLLECTION])
        if delete_relayed:
            self._deleting.add(collection.full_name)

    def watch(self, collection: AsyncCollection[Document], *, delete_relayed: bool = False) -> None:
        """Relay the outbox of ``collection`` too (call before ``start``).

        ``delete_relayed``: the collection is an outbox and nothing else — each document is inserted
        once with its entries and never updated (servicekit's ``audit_outbox``) — so a document is
        deleted as soon as the broker acknowledged all its entries, instead of raising a watermark and
        compacting it later: one write per document, and the collection holds only what is unpublished.
        A crash between the ack and the delete republishes the document (same ``ce_id``s)."""
        if self._task is not None:
            raise RuntimeError("watch() collections before starting the relay")
        self._add(collection, delete_relayed)

    def notify(
        self,
        collection: AsyncCollection[Document] | None = None,
        ids: Iterable[Any] = (),
        *,
        written: Mapping[Any, Written] | None = None,
    ) -> None:
        """Publish soon: entries were just written to documents ``ids`` of ``collection``.

        ``written`` (optional, per id): the version the write replaced (0 for a new document) and the
        entries it stored — when the relay knows everything before is published, it sends them at once
        (class docstring). A write without entries may be told too (empty entries, ids not needed): the
        relay then still knows the document is fully published at its new version.

        Without a collection (or for one not watched) it only wakes the relay; those entries are then
        found by the next full sweep.
        """
        wake = False
        if collection is not None and collection.full_name in self._collections:
            name = collection.full_name
            hinted = self._hinted.setdefault(name, {})
            for document_id, (replaced, entries) in (written or {}).items():
                if not entries:
                    self._advance(_relayed_key(collection, document_id), replaced, replaced + 1)
            for document_id in ids:
                wrote = (written or {}).get(document_id)
                if wrote is not None and wrote[1] and self._send_at_once(name, document_id, *wrote):
                    continue
                self._forget(_relayed_key(collection, document_id))
                hinted[document_id] = None
                wake = True
        else:
            wake = True
        if wake:
            self._wake.set()

    def _advance(self, key: str, replaced: int, version: int) -> None:
        """A write without entries moved the document from ``replaced`` to ``version``."""
        if self._known.get(key) == replaced:
            self._remember(key, version)

    def _remember(self, key: str, version: int) -> None:
        self._known[key] = version
        self._known.move_to_end(key)
        while len(self._known) > _KNOWN_KEPT:
            self._known.popitem(last=False)

    def _forget(self, key: str) -> None:
        self._known.pop(key, None)

    def _send_at_once(self, name: str, document_id: Any, replaced: int, entries: list[Document]) -> bool:
        """Start sending a write's entries without reading them back, if nothing can precede them."""
        collection = self._collections[name]
        key = _relayed_key(collection, document_id)
        if (
            self._task is None
            or self._stopping
            or key in self._busy
            or document_id in self._hinted.get(name, {})
        ):
            return False
        before = self._sending.get(key)
        if before is not None:
            # A send of the version this write replaced is in flight: follow it (after its acks), so
            # a document written in quick succession is still never read back.
            if self._sending_version.get(key) != replaced:
                return False
        elif not (replaced == 0 or self._known.get(key) == replaced):
            return False
        # `_known` keeps the replaced version meanwhile: a write during the send follows it (above).
        self._sending[key] = asyncio.create_task(
            self._send_written(name, document_id, key, replaced, entries, before), name="outbox-send"
        )
        self._sending_version[key] = replaced + 1
        return True

    async def _send_written(
        self,
        name: str,
        document_id: Any,
        key: str,
        replaced: int,
        entries: list[Document],
        before: asyncio.Task[None] | None,
    ) -> None:
        collection = self._collections[name]
        version = replaced + 1
        try:
            if before is not None:
                await asyncio.wait([before])
                if self._known.get(key) != replaced:  # it failed (and said so): read them all
                    self._hinted.setdefault(name, {})[document_id] = None
                    self._wake.set()
                    return
            await self._publish(entries, document_id, collection.name)
            if not (replaced == 0 and await self._compacted_at_once(name, document_id, version)):
                await self._published(name, document_id, key, max(e[SEQ_FIELD] for e in entries))
            if name not in self._deleting:
                self._remember(key, version)
        except Exception:
            # Left to the reading path, which waits for these same sends rather than repeating them.
            self._metrics.outbox_publish_failures.inc()
            log.warning(
                "sending %s/%s at once failed; relaying it by reading it", name, document_id, exc_info=True
            )
            self._hinted.setdefault(name, {})[document_id] = None
            self._wake.set()
        finally:
            if self._sending.get(key) is asyncio.current_task():
                del self._sending[key]
                self._sending_version.pop(key, None)

    async def sent(
        self, collection: AsyncCollection[Document], ids: Iterable[Any], *, timeout_s: float = 2.0
    ) -> None:
        """Wait until the sends at once of these documents' writes are acknowledged (at most
        ``timeout_s``; at once when none is in flight). For a writer whose next work would compete with
        those sends for the process and the database, when the events matter first (retention-svc's
        holds before the recordings' bookkeeping). Never raises: a send that fails is relayed by
        reading, as always."""
        keys = [_relayed_key(collection, document_id) for document_id in ids]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled(keys), timeout_s)

    async def _compacted_at_once(self, name: str, document_id: Any, version: int) -> bool:
        """A document created by the write just sent (``version`` 1, all its entries acknowledged): clear
        its outbox at once if nobody wrote it since — one conditional write instead of a watermark now
        and the sweep's reads, conditional write and watermark delete later (ADR 0012). A document
        written since keeps its entries (False: the caller raises the watermark). Not for a collection
        that deletes what it relayed, nor for an updated document, whose rewrite ADR 0007 avoids on the
        hot path."""
        if name in self._deleting:
            return False
        # The documents of one write are acknowledged together and their sends reach this point in the
        # same loop turns: they are compacted by one flusher in one go (one bulk write), each caller
        # told about its own document. Errors reach every caller of the batch, as a write of its own would.
        cleared: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._compacting.setdefault(name, []).append((document_id, version, cleared))
        if name not in self._flushers:
            self._flushers[name] = asyncio.create_task(self._flush_compactions(name), name="outbox-compact")
        return await cleared

    async def _flush_compactions(self, name: str) -> None:
        """Compact what ``_compacted_at_once`` queued for collection ``name``, in batches, until none is
        left: each batch is what came in while the batch before was written (or, first, in the loop
        turns while more kept coming)."""
        queued = self._compacting.setdefault(name, [])
        batch: dict[Any, tuple[int, asyncio.Future[bool]]] = {}
        try:
            seen = -1
            for _ in range(_GATHER_TURNS):
                if len(queued) == seen:
                    break
                seen = len(queued)
                await asyncio.sleep(0)
            while queued:
                batch = {}
                later = []
                for document_id, version, cleared in queued:
                    if cleared.done():  # its caller was cancelled (the relay stopped)
                        continue
                    if document_id in batch:  # one write per document per batch
                        later.append((document_id, version, cleared))
                    else:
                        batch[document_id] = (version, cleared)
                queued[:] = later
                if not batch:
                    continue
                try:
                    outcome = await update_each(
                        self._collections[name],
                        [({"_id": i, VERSION: version}, _CLEARED) for i, (version, _) in batch.items()],
                    )
                except Exception as error:
                    for _, cleared in batch.values():
                        if not cleared.done():
                            cleared.set_exception(error)
                    continue
                for (_, cleared), matched in zip(batch.values(), outcome, strict=True):
                    if not cleared.done():
                        cleared.set_result(matched)
        finally:
            # Cancelled mid-way (the relay stopped): nobody waits forever.
            for cleared in [c for _, c in batch.values()] + [c for _, _, c in queued]:
                cleared.cancel()
            queued.clear()
            if self._flushers.get(name) is asyncio.current_task():
                del self._flushers[name]

    async def _published(self, name: str, document_id: Any, key: str, top: int) -> None:
        """Record that the document's entries up to ``top`` are acknowledged: its watermark raised, or
        the document deleted in a collection that deletes what it relayed."""
        if name in self._deleting:
            await self._collections[name].delete_one({"_id": document_id})
            self._marks.pop(key, None)
            return
        await self._raise_watermark(self._relayed[name], key, top)
        self._marks[key] = max(top, self._marks.get(key, -1))

    @contextlib.asynccontextmanager
    async def _reading(self, keys: set[str]) -> AsyncIterator[None]:
        """Around a reading pass of these documents: their sends at once go out first, and none is
        sent at once while the pass runs (a document is never sent by both)."""
        await self._settled(keys)
        self._busy |= keys
        try:
            yield
        finally:
            self._busy -= keys

    async def _settled(self, keys: Iterable[str]) -> None:
        """Wait until no send at once of these documents is in flight."""
        pending = [task for key in keys if (task := self._sending.get(key)) is not None]
        if pending:
            await asyncio.wait(pending)

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
            await asyncio.wait_for(self._settled(list(self._sending)), timeout_s)
            await asyncio.wait_for(self._task, timeout_s)
        except TimeoutError:
            log.warning("outbox relay did not finish its pass in %.1f s; stopped it mid-pass", timeout_s)
        finally:
            for sending in list(self._sending.values()):  # unacknowledged: the next start sweeps them
                sending.cancel()
            for flusher in list(self._flushers.values()):  # their documents stay pending: swept later
                flusher.cancel()
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
        for name in self._collections:
            while not self._stopping:
                hinted = self._hinted.pop(name, None)
                if not hinted:
                    break
                ids = list(hinted)
                try:
                    # In batches: one wait for the broker's acks per batch, not per document.
                    for start in range(0, len(ids), _BATCH):
                        published += await self._relay_batch(name, ids[start : start + _BATCH])
                        ids[start : start + _BATCH] = [_DONE] * len(ids[start : start + _BATCH])
                except BaseException:
                    # Keep what is not published yet (and whatever was notified meanwhile) for the retry.
                    again = self._hinted.setdefault(name, {})
                    self._hinted[name] = {**dict.fromkeys(i for i in ids if i is not _DONE), **again}
                    raise
        return published

    async def relay_once(self) -> int:
        """A full sweep of every watched collection; the number of entries published.

        Also publishes what was notified, and compacts every pending document whose entries are all
        published (one conditional write per document; retried when a command wrote it meanwhile).
        """
        published = await self.relay_hinted()
        for name, collection in self._collections.items():
            after: Any = None
            while not self._stopping:
                query: Document = {PENDING_FIELD: True}
                if after is not None:
                    query["_id"] = {"$gt": after}
                cursor = collection.find(query, projection={"_id": 1}).sort("_id", 1).limit(_BATCH)
                ids = [document["_id"] async for document in cursor]
                if not ids:
                    break
                for document_id in ids:
                    async with self._reading({_relayed_key(collection, document_id)}):
                        published += await self._relay_document(name, document_id, compact=True)
                after = ids[-1]
        return published

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

    async def _relay_batch(self, name: str, ids: Sequence[Any]) -> int:
        """The hot path for notified documents: read each and its watermark by ``_id``, send every
        entry above the watermarks (each document's in order), wait for all acks, raise the watermarks.
        Nothing is written to the documents themselves."""
        collection = self._collections[name]
        async with self._reading({_relayed_key(collection, document_id) for document_id in ids}):
            return await self._relay_read(name, ids)

    async def _relay_read(self, name: str, ids: Sequence[Any]) -> int:
        collection, relayed = self._collections[name], self._relayed[name]
        limit = asyncio.Semaphore(_READERS)
        deleting = name in self._deleting

        async def read(document_id: Any) -> tuple[Document | None, int]:
            # The reads of a batch run concurrently (each a point read by `_id`); the watermark is
            # read only when this relay has not raised it itself (see `_marks`).
            key = _relayed_key(collection, document_id)
            async with limit:
                document = await collection.find_one(
                    {"_id": document_id}, projection={OUTBOX_FIELD: 1, PENDING_FIELD: 1, VERSION: 1}
                )
                if document is None:
                    return None, -1
                if not document.get(PENDING_FIELD):
                    if VERSION in document:  # compacted: everything up to its version is published
                        self._remember(key, document[VERSION])
                    return None, -1
                if deleting:  # deleted once published: no watermark to read
                    return document, -1
                if key not in self._marks:
                    mark = await relayed.find_one({"_id": key})
                    return document, (mark[SEQ_FIELD] if mark else -1)
                return document, self._marks[key]

        plans: list[tuple[Any, str, int]] = []
        todo: list[Document] = []
        published = 0
        # The version each document was read at: once its entries above the watermark are published,
        # every entry up to that version is.
        versions: dict[str, int] = {}
        for document_id, (document, done) in zip(ids, await asyncio.gather(*map(read, ids)), strict=True):
            if document is None:
                continue
            entries: list[Document] = list(document.get(OUTBOX_FIELD) or [])
            if any(SEQ_FIELD not in e for e in entries):  # written before sequences existed
                published += await self._relay_document(name, document_id, compact=False)
                continue
            key = _relayed_key(collection, document_id)
            if VERSION in document:
                versions[key] = document[VERSION]
            above = [e for e in entries if e[SEQ_FIELD] > done]
            if above:
                todo += above
                plans.append((document_id, key, max(e[SEQ_FIELD] for e in above)))
        if todo:
            await self._publish(todo, f"{len(plans)} documents", collection.name)

            async def raise_one(document_id: Any, key: str, top: int) -> None:
                async with limit:
                    await self._published(name, document_id, key, top)

            await asyncio.gather(*(raise_one(*plan) for plan in plans))
        if not deleting:
            for key, version in versions.items():
                self._remember(key, version)
        return published + len(todo)

    async def _relay_document(self, name: str, document_id: Any, *, compact: bool) -> int:
        """Publish the entries of one document above its watermark, then raise the watermark; with
        ``compact``, also clear the fully relayed outbox if the document was not written meanwhile."""
        collection, relayed = self._collections[name], self._relayed[name]
        key = _relayed_key(collection, document_id)
        published = 0
        for _ in range(_COMPACT_TRIES):
            document = await collection.find_one(
                {"_id": document_id}, projection={OUTBOX_FIELD: 1, PENDING_FIELD: 1, "version": 1}
            )
            if document is None or not document.get(PENDING_FIELD):
                return published
            entries: list[Document] = list(document.get(OUTBOX_FIELD) or [])
            mark = await relayed.find_one({"_id": key})
            done = max(mark[SEQ_FIELD] if mark else -1, self._marks.get(key, -1))
            todo = [e for e in entries if SEQ_FIELD not in e or e[SEQ_FIELD] > done]
            if name in self._deleting:  # written once, never updated: published means done with it
                if todo:
                    await self._publish(todo, document_id, collection.name)
                    published += len(todo)
                await collection.delete_one({"_id": document_id})
                await relayed.delete_one({"_id": key})
                self._marks.pop(key, None)
                return published
            if todo:
                await self._publish(todo, document_id, collection.name)
                published += len(todo)
                top = max((e[SEQ_FIELD] for e in todo if SEQ_FIELD in e), default=None)
                if top is not None:
                    await self._raise_watermark(relayed, key, top)
                    self._marks[key] = max(top, self._marks.get(key, -1))
                legacy = [e for e in todo if SEQ_FIELD not in e]
                if legacy:  # written before sequences existed: removed as they used to be
                    await collection.update_one({"_id": document_id}, {"$pullAll": {OUTBOX_FIELD: legacy}})
                    continue
            if not compact:
                return published
            condition: Document = (
                {"version": document["version"]}
                if "version" in document
                else {OUTBOX_FIELD: {"$size": len(entries)}}
            )
            if await _compact(collection, document_id, condition):
                await relayed.delete_one({"_id": key})
                self._marks.pop(key, None)
                return published
            # A command wrote the document since it was read: relay its new entries, then try again.
        return published

    @staticmethod
    async def _raise_watermark(relayed: AsyncCollection[Document], key: str, seq: int) -> None:
        for attempt in range(2):
            try:
                await relayed.update_one({"_id": key}, {"$max": {SEQ_FIELD: seq}}, upsert=True)
                return
            except DuplicateKeyError:
                if attempt:  # two upserts of a new watermark raced (MongoDB); the second one updates
                    raise

    async def _publish(self, entries: list[Document], document_id: Any, collection_name: str) -> None:
        # Send all, then await every ack: the idempotent producer keeps them in order per partition,
        # and the watermark moves only when the broker acknowledged all of them.
        acks = []
        for entry in entries:
            earlier = self._sent.get(entry["event_id"])
            if earlier is not None and not (earlier.done() and (earlier.cancelled() or earlier.exception())):
                acks.append(earlier)  # sent by a pass that stopped waiting: wait for that send
                continue
            with _publish_span(entry):
                record = to_record(_envelope(entry, current_traceparent()))
                with log_context(event_id=entry["event_id"]):
                    log.debug("publishing %s to %s", entry["type"], entry["topic"])
                ack = await self._producer.send(
                    entry["topic"], value=record.value, key=record.key, headers=record.headers
                )
                acks.append(ack)
                self._sent[entry["event_id"]] = ack
        await self._acknowledged(acks)
        for entry in entries:
            self._sent.pop(entry["event_id"], None)
        if len(self._sent) > _SENT_KEPT:  # entries some other process relayed meanwhile: forget them
            self._sent = {k: v for k, v in self._sent.items() if not v.done()}
        acknowledged = datetime.now(UTC)
        for entry in entries:
            self._metrics.outbox_published.labels(topic=entry["topic"]).inc()
            written = entry["time"] if entry["time"].tzinfo else entry["time"].replace(tzinfo=UTC)
            lag = max(0.0, (acknowledged - written).total_seconds())
            self._metrics.outbox_event_lag_seconds.labels(topic=entry["topic"]).observe(lag)
        log.info("relayed %d events of %s", len(entries), document_id, extra={"collection": collection_name})
