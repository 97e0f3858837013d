"""Outbox relay, consumer and repository against the REAL Kafka broker and FerretDB.

The stack comes from the lawtrail_local plugin (session fixture ``stack``: free ports, temp dirs).
Every test makes its own topics, consumer group and database, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from google.protobuf import wrappers_pb2
from lawtrail_local.stack import Stack
from lawtrail_local.topics import Topic
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, InsertOne, ReplaceOne, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect, BulkWriteError
from servicekit.config import ServiceSettings
from servicekit.doclock import serialized, update_each
from servicekit.errors import AlreadyExists, ConcurrencyConflict, NotFound
from servicekit.grpc.audit import AuditOutbox
from servicekit.messaging.consumer import EventConsumer, MongoInbox, TypeRouter, dlq_topic
from servicekit.messaging.envelope import Envelope, KafkaRecord, decode, encode
from servicekit.messaging.outbox import RELAYED_COLLECTION, OutboundEvent, OutboxRelay, unrelayed_entries
from servicekit.messaging.producer import create_producer, send_and_wait
from servicekit.metrics import Metrics
from servicekit.mongo import APPLIED_FIELD, IndexSpec, VersionedRepository, apply_once, ensure_indexes

pytestmark = pytest.mark.integration

Document = dict[str, Any]
StringValue = wrappers_pb2.StringValue
SOURCE = "/lawtrail/servicekit-it"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(stack: Stack) -> ServiceSettings:
    return ServiceSettings(
        service_name="servicekit-it",
        kafka_bootstrap_servers=stack.kafka_bootstrap,
        mongo_uri=stack.mongo_uri,
        mongo_database=_name("servicekit_it").replace("-", "_"),
    )


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
async def db(settings: ServiceSettings) -> AsyncIterator[AsyncDatabase[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(settings.mongo_uri, tz_aware=True)
    try:
        yield client[settings.mongo_database]
        await client.drop_database(settings.mongo_database)
    finally:
        await client.close()


@pytest.fixture
async def producer(settings: ServiceSettings) -> AsyncIterator[AIOKafkaProducer]:
    # Short timeouts so that a paused broker fails a send in seconds, not the default 40 s.
    started = create_producer(settings, request_timeout_ms=3000, retry_backoff_ms=100)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def make_topics(stack: Stack, *names: str) -> None:
    await asyncio.to_thread(stack.create_topics, [Topic(name, 1) for name in names])


async def read_topic(
    bootstrap: str, topic: str, *, at_least: int, timeout_s: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of partition 0 of ``topic`` from the beginning, once ``at_least`` have arrived."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(records) < at_least and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(partition, timeout_ms=500)
            records.extend(batch.get(partition, []))
        # Anything already there beyond what we waited for (duplicates) comes in one more fetch.
        batch = await consumer.getmany(partition, timeout_ms=300)
        records.extend(batch.get(partition, []))
        return records
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group_id: str, topic: str) -> int | None:
    """The group's committed offset on partition 0 of ``topic`` (asked without joining the group)."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await probe.start()
    try:
        return await probe.committed(TopicPartition(topic, 0))
    finally:
        await probe.stop()


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout_s: float = 30.0, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting until {what}")
        await asyncio.sleep(0.1)


@contextmanager
def broker_paused(stack: Stack) -> Iterator[None]:
    """Freeze the broker process (SIGSTOP): connections stay open but nothing is answered."""
    pid = stack.kafka.process.pid
    assert pid is not None, "the stack's broker is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


class Cases(VersionedRepository):
    what = "case"
    indexes = (IndexSpec([("unit", 1), ("opened_at", -1)]),)


def event(topic: str, text: str, subject: str) -> OutboundEvent:
    return OutboundEvent(topic, StringValue(value=text), subject=subject)


# --- repository on FerretDB ---------------------------------------------------------------------


async def test_repository_versions_conflicts_and_outbox_on_ferretdb(db: AsyncDatabase[Document]) -> None:
    await ensure_indexes(db, {"cases": Cases.all_indexes()})
    await ensure_indexes(db, {"cases": Cases.all_indexes()})  # idempotent: a restart re-declares them
    assert {"outbox_pending_id", "unit_1_opened_at_-1"} <= set(await db["cases"].index_information())
    notified: list[tuple[str, list[Any]]] = []
    cases = Cases(
        db["cases"],
        event_source=SOURCE,
        notify=lambda coll, ids, **_: ids and notified.append((coll.name, list(ids))),  # writes with entries
    )

    await cases.insert(
        {"_id": "c-1", "unit": "unit-a", "stage": "OPEN"}, events=[event("t", "opened", "c-1")]
    )
    with pytest.raises(AlreadyExists, match="case 'c-1' already exists"):
        await cases.insert({"_id": "c-1", "unit": "unit-a"})
    assert await cases.get("c-1") == {"_id": "c-1", "unit": "unit-a", "stage": "OPEN", "version": 1}

    new_version = await cases.update(
        "c-1",
        expected_version=1,
        set_fields={"stage": "INVESTIGATION"},
        events=[event("t", "advanced", "c-1")],
    )
    assert new_version == 2
    with pytest.raises(ConcurrencyConflict, match=r"now version 2, expected 1\): reload it and retry"):
        await cases.update("c-1", expected_version=1, set_fields={"stage": "CLOSED"})
    with pytest.raises(NotFound, match="case 'c-404' does not exist"):
        await cases.update("c-404", expected_version=1, set_fields={"stage": "CLOSED"})
    with pytest.raises(NotFound):
        await cases.get_or_raise("c-404")
    with pytest.raises(ValueError, match="managed by VersionedRepository"):
        await cases.update("c-1", expected_version=2, set_fields={"version": 7})

    stored = await db["cases"].find_one({"_id": "c-1"})
    assert stored is not None
    assert stored["stage"] == "INVESTIGATION"
    assert stored["outbox_pending"] is True
    assert [StringValue.FromString(e["data"]).value for e in stored["outbox"]] == ["opened", "advanced"]
    assert notified == [("cases", ["c-1"]), ("cases", ["c-1"])]


async def test_insert_absent_stores_each_id_once_in_one_round_on_ferretdb(
    db: AsyncDatabase[Document],
) -> None:
    notified: list[list[Any]] = []
    cases = Cases(
        db["absent"], event_source=SOURCE, notify=lambda _coll, ids, **_: notified.append(list(ids))
    )
    await cases.insert({"_id": "c-2", "unit": "old"})
    stored = await cases.insert_absent(
        [
            ({"_id": "c-1", "unit": "a"}, [event("t", "one", "c-1")]),
            ({"_id": "c-2", "unit": "new"}, [event("t", "two", "c-2")]),  # stored already: left alone
            ({"_id": "c-3", "unit": "b"}, []),
            ({"_id": "c-1", "unit": "later"}, [event("t", "again", "c-1")]),  # repeated: the first counts
        ]
    )
    assert stored == ["c-1", "c-3"]
    assert notified == [["c-1"]]  # only what has events to relay
    assert await cases.get("c-1") == {"_id": "c-1", "unit": "a", "version": 1}
    assert await cases.get("c-2") == {"_id": "c-2", "unit": "old", "version": 1}
    raw = await db["absent"].find_one({"_id": "c-1"})
    assert raw is not None
    assert raw["outbox_pending"] is True
    assert [StringValue.FromString(e["data"]).value for e in raw["outbox"]] == ["one"]
    # A redelivered batch stores nothing and tells the relay nothing.
    assert (
        await cases.insert_absent([({"_id": "c-1", "unit": "a"}, []), ({"_id": "c-3", "unit": "b"}, [])])
        == []
    )
    assert notified == [["c-1"]]
    assert await cases.insert_absent([]) == []


async def test_apply_once_applies_each_event_once_and_bounds_its_memory(db: AsyncDatabase[Document]) -> None:
    projection = db["links"]
    key = (SOURCE, "evt-1")
    assert await apply_once(projection, "rec-1", key, {"$inc": {"links": 1}}) is True  # upserted
    assert await apply_once(projection, "rec-1", key, {"$inc": {"links": 1}}) is False  # redelivery
    for n in range(2, 6):
        assert await apply_once(projection, "rec-1", (SOURCE, f"evt-{n}"), {"$inc": {"links": 1}}, keep=3)
    stored = await projection.find_one({"_id": "rec-1"})
    assert stored is not None
    assert stored["links"] == 5
    assert stored[APPLIED_FIELD] == [f"{SOURCE} evt-{n}" for n in (3, 4, 5)]
    assert await apply_once(projection, "rec-2", key, {"$set": {"x": 1}}, upsert=False) is False


# --- outbox relay -------------------------------------------------------------------------------


async def test_relay_publishes_in_order_waits_for_ack_then_clears(
    stack: Stack, db: AsyncDatabase[Document], producer: AIOKafkaProducer, metrics: Metrics
) -> None:
    topic = _name("sk-it-outbox")
    await make_topics(stack, topic)
    relay = OutboxRelay(producer, metrics=metrics)
    cases = Cases(db["cases"], event_source=SOURCE, notify=relay.notify)
    relay.watch(cases.collection)
    await ensure_indexes(db, {"cases": Cases.all_indexes()})
    await cases.insert({"_id": "c-1"}, events=[event(topic, "opened", "c-1")])
    await cases.update(
        "c-1", expected_version=1, set_fields={}, events=[event(topic, f"e{n}", "c-1") for n in range(3)]
    )
    stored = await db["cases"].find_one({"_id": "c-1"})
    assert stored is not None
    event_ids = [entry["event_id"] for entry in stored["outbox"]]

    await relay.start()
    try:

        async def cleared() -> bool:
            document = await db["cases"].find_one({"_id": "c-1"})
            return document is not None and document["outbox"] == [] and document["outbox_pending"] is False

        await eventually(cleared, what="the outbox is cleared")
    finally:
        await relay.stop()

    records = await read_topic(stack.kafka_bootstrap, topic, at_least=4)
    envelopes = [decode(record) for record in records]
    assert [e.id for e in envelopes] == event_ids
    assert [e.parse(StringValue).value for e in envelopes] == ["opened", "e0", "e1", "e2"]
    assert {record.key for record in records} == {b"c-1"}
    assert {e.source for e in envelopes} == {SOURCE}
    assert {e.type for e in envelopes} == {"google.protobuf.StringValue"}
    stored = await db["cases"].find_one({"_id": "c-1"})
    assert stored is not None
    assert "outbox_lease_until" not in stored
    assert metrics.registry.get_sample_value("lawtrail_outbox_published_total", {"topic": topic}) == 4


async def test_relaying_writes_only_the_small_watermark_and_the_sweep_compacts(
    stack: Stack, db: AsyncDatabase[Document], producer: AIOKafkaProducer, metrics: Metrics
) -> None:
    """Issue 9: publishing costs no write of the aggregate's document (it used to cost a claim and a
    clear); the watermark records progress, and the periodic sweep compacts the relayed entries."""
    topic = _name("sk-it-watermark")
    await make_topics(stack, topic)
    relay = OutboxRelay(producer, metrics=metrics)
    cases = Cases(db["cases"], event_source=SOURCE, notify=relay.notify)
    relay.watch(cases.collection)
    await cases.insert({"_id": "c-1"}, events=[event(topic, "opened", "c-1")])
    await cases.update("c-1", expected_version=1, set_fields={}, events=[event(topic, "e", "c-1")] * 2)
    before = await db["cases"].find_one({"_id": "c-1"})
    assert before is not None
    assert [e["seq"] for e in before["outbox"]] == [1000, 2000, 2001]

    assert await relay.relay_hinted() == 3
    after = await db["cases"].find_one({"_id": "c-1"})
    assert after == before, "the hot path must not write the aggregate"
    mark = await db[RELAYED_COLLECTION].find_one({"_id": "cases/c-1"})
    assert mark is not None
    assert mark["seq"] == 2001
    assert await unrelayed_entries(db["cases"], "c-1") == []

    await cases.update("c-1", expected_version=2, set_fields={}, events=[event(topic, "later", "c-1")])
    assert await relay.relay_hinted() == 1  # only the entry above the watermark
    assert await relay.relay_once() == 0  # the sweep publishes nothing again, and compacts
    compacted = await db["cases"].find_one({"_id": "c-1"})
    assert compacted is not None
    assert (compacted["outbox"], compacted["outbox_pending"], compacted["version"]) == ([], False, 3)
    assert await db[RELAYED_COLLECTION].find_one({"_id": "cases/c-1"}) is None
    values = [
        decode(r).parse(StringValue).value for r in await read_topic(stack.kafka_bootstrap, topic, at_least=4)
    ]
    assert values == ["opened", "e", "e", "later"]


async def test_relay_keeps_events_written_while_it_publishes(
    stack: Stack, db: AsyncDatabase[Document], producer: AIOKafkaProducer, metrics: Metrics
) -> None:
    """A write that lands between the relay's read and its clear must not be lost or cleared."""
    topic = _name("sk-it-race")
    await make_topics(stack, topic)
    cases = Cases(db["cases"], event_source=SOURCE)
    await cases.insert({"_id": "c-1"}, events=[event(topic, "first", "c-1")])

    class WriteDuringSend:
        """The real producer, but the first send lets a command write a new event meanwhile."""

        def __init__(self) -> None:
            self.raced = False

        async def send(self, *args: Any, **kwargs: Any) -> Any:
            if not self.raced:
                self.raced = True
                await cases.update(
                    "c-1", expected_version=1, set_fields={}, events=[event(topic, "second", "c-1")]
                )
            return await producer.send(*args, **kwargs)

    relay = OutboxRelay(WriteDuringSend(), metrics=metrics, collections=[cases.collection])  # type: ignore[arg-type]
    assert await relay.relay_once() == 2  # the first pass, then the document it left pending again
    stored = await db["cases"].find_one({"_id": "c-1"})
    assert stored is not None
    assert (stored["outbox"], stored["outbox_pending"], stored["version"]) == ([], False, 2)
    values = [
        decode(r).parse(StringValue).value for r in await read_topic(stack.kafka_bootstrap, topic, at_least=2)
    ]
    assert values == ["first", "second"]


class CountingReads:
    """A watched collection whose point reads by the relay are counted (everything else passes through)."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return await self._collection.find_one(*args, **kwargs)

    async def update_each(self, updates: Any) -> list[bool]:
        # The compaction's own reads decide its writes inside doclock (like a conditional update_one's
        # on FerretDB): not reads of the document by the relay.
        return await update_each(self._collection, updates)


async def started_with_counted_reads(
    db: AsyncDatabase[Document], producer: AIOKafkaProducer, metrics: Metrics
) -> tuple[OutboxRelay, Cases, CountingReads]:
    """A started relay watching `cases`, whose point reads of that collection are counted."""
    relay = OutboxRelay(producer, metrics=metrics)
    cases = Cases(db["cases"], event_source=SOURCE, notify=relay.notify)
    relay.watch(cases.collection)
    counting = CountingReads(relay._collections[cases.collection.full_name])
    relay._collections[cases.collection.full_name] = counting  # type: ignore[assignment]
    await relay.start()
    await asyncio.sleep(0.5)  # the start's sweep (of an empty collection) is over: it reads what it finds
    return relay, cases, counting


async def test_a_write_over_a_version_the_relay_published_is_sent_without_reading_it_back(
    stack: Stack, db: AsyncDatabase[Document], producer: AIOKafkaProducer, metrics: Metrics
) -> None:
    """ADR 0010: the relay knows every entry of the document up to the replaced version is published,
    so nothing can precede the new entries — it sends them as written, in order, without a read."""
    topic = _name("sk-it-at-once")
    await make_topics(stack, topic)
    relay, cases, counting = await started_with_counted_reads(db, producer, metrics)
    try:
        await cases.insert({"_id": "c-1"}, events=[event(topic, "opened", "c-1")])  # new: nothing before
        await eventually(lambda: _true(not relay._sending), what="the first write is acknowledged")
        await cases.update("c-1", expected_version=1, set_fields={"x": 1})  # no entries: still known
        for n in range(3):
            await cases.update(
                "c-1", expected_version=2 + n, set_fields={}, events=[event(topic, f"e{n}", "c-1")] * 2
            )
            await eventually(lambda: _true(not relay._sending), what=f"write {n} is acknowledged")
        records = await read_topic(stack.kafka_bootstrap, topic, at_least=7)
    finally:
        await relay.stop()
    values = [decode(r).parse(StringValue).value for r in records]
    assert values == ["opened", "e0", "e0", "e1", "e1", "e2", "e2"]
    assert counting.reads == 0
    assert [e["event_id"] for e in await unrelayed_entries(db["cases"], "c-1")] == []


async def test_writes_in_quick_succession_follow_each_other_without_reading_back(
    stack: Stack, db: AsyncDatabase[Document], producer: AIOKafkaProducer, metrics: Metrics
) -> None:
    """A write made while the previous write's send is in flight follows it (after its acks): a
    document written many times in a row (the holds of a large case: several writes of ≤ 999 events)
    is never read back, and its entries stay in order."""
    topic = _name("sk-it-follow")
    await make_topics(stack, topic)
    relay, cases, counting = await started_with_counted_reads(db, producer, metrics)
    try:
        await cases.insert({"_id": "c-1"}, events=[event(topic, "w1", "c-1")])
        for version in range(1, 6):  # no wait: each write lands while the one before is being sent
            await cases.update(
                "c-1",
                expected_version=version,
                set_fields={},
                events=[event(topic, f"w{version + 1}", "c-1")],
            )
        records = await read_topic(stack.kafka_bootstrap, topic, at_least=6)
        await eventually(lambda: _true(not relay._sending), what="every send is acknowledged")
    finally:
        await relay.stop()
    assert [decode(r).parse(StringValue).value for r in records] == [f"w{n}" for n in range(1, 7)]
    assert counting.reads == 0
    assert await unrelayed_entries(db["cases"], "c-1") == []


async def test_a_writer_can_wait_until_its_events_sent_at_once_are_acknowledged(
    stack: Stack, db: AsyncDatabase[Document], producer: AIOKafkaProducer, metrics: Metrics
) -> None:
    """`VersionedRepository.sent(id)` (retention-svc: the holds before the recordings' bookkeeping)
    returns once the broker acknowledged the document's sends at once, and the watermark is raised."""
    topic = _name("sk-it-sent")
    await make_topics(stack, topic)
    relay = OutboxRelay(producer, metrics=metrics)
    cases = Cases(db["cases"], event_source=SOURCE, notify=relay.notify, sent=relay.sent)
    relay.watch(cases.collection)
    await relay.start()
    await asyncio.sleep(0.5)  # the start's sweep is over
    try:
        await cases.insert({"_id": "c-1"}, events=[event(topic, "one", "c-1")] * 5)
        assert relay._sending  # in flight right after the write
        await cases.sent("c-1")
        assert not relay._sending
        assert await unrelayed_entries(db["cases"], "c-1") == []
        await cases.sent("c-404")  # nothing in flight: at once
    finally:
        await relay.stop()
    records = await read_topic(stack.kafka_bootstrap, topic, at_least=5)
    assert [decode(r).parse(StringValue).value for r in records] == ["one"] * 5


async def test_a_document_created_and_sent_at_once_is_compacted_at_once_without_a_watermark(
    stack: Stack, db: AsyncDatabase[Document], producer: AIOKafkaProducer, metrics: Metrics
) -> None:
    """ADR 0012: once the broker acknowledged a new document's entries sent at once, its outbox is cleared
    by one conditional write — no watermark document, nothing pending for the sweep (which this relay
    never runs again). A document written again meanwhile keeps its entries until they are relayed, and
    nothing is published twice or out of order."""
    topic = _name("sk-it-compact")
    await make_topics(stack, topic)
    relay = OutboxRelay(producer, metrics=metrics, sweep_interval_s=3600)
    cases = Cases(db["cases"], event_source=SOURCE, notify=relay.notify, sent=relay.sent)
    relay.watch(cases.collection)
    await relay.start()
    await asyncio.sleep(0.5)  # the start's sweep is over
    relayed = db[RELAYED_COLLECTION]
    try:
        await cases.insert({"_id": "c-new"}, events=[event(topic, "new", "c-new")] * 3)
        await cases.sent("c-new")
        # Created, then written again while its first send is in flight: that send's compaction finds
        # version 2 and leaves the document to the watermark, and the update's send follows it.
        await cases.insert({"_id": "c-busy"}, events=[event(topic, "busy-1", "c-busy")])
        await cases.update(
            "c-busy", expected_version=1, set_fields={}, events=[event(topic, "busy-2", "c-busy")]
        )
        await eventually(lambda: _true(not relay._sending), what="every send is acknowledged")
        records = await read_topic(stack.kafka_bootstrap, topic, at_least=5)
        new = await db["cases"].find_one({"_id": "c-new"})
        busy = await db["cases"].find_one({"_id": "c-busy"})
        new_mark = await relayed.find_one({"_id": f"{cases.collection.name}/c-new"})
        busy_mark = await relayed.find_one({"_id": f"{cases.collection.name}/c-busy"})
    finally:
        await relay.stop()
    assert [decode(r).parse(StringValue).value for r in records] == ["new"] * 3 + ["busy-1", "busy-2"]
    assert new is not None
    assert (new["outbox"], new["outbox_pending"]) == ([], False)
    assert new_mark is None
    # c-busy's first compaction lost the race to its update (or, rarely, won it before the update): its
    # remaining entries are pending, and the watermark covers every one of them.
    assert busy is not None
    assert busy["outbox_pending"]
    assert busy_mark is not None
    assert busy_mark["seq"] == max(e["seq"] for e in busy["outbox"])
    assert await unrelayed_entries(db["cases"], "c-busy") == []


async def test_update_each_on_ferretdb_decides_like_update_one_and_survives_more_than_its_pool(
    db: AsyncDatabase[Document],
) -> None:
    """`update_each` on the real FerretDB: each document updated iff its filter matches, as `update_one`
    would decide. 120 documents: FerretDB v1.24.2 holds a connection of its pool (50) per statement of
    an update command until the command ends, so one command of 50+ statements never answers (and stalls
    the server) — the updates go in commands of at most 8."""
    ids = [f"d-{n:03}" for n in range(120)]
    await db["docs"].insert_many(
        [
            {"_id": i, "version": 2 if n % 7 == 0 else 1, "outbox": [{"seq": 1000}], "outbox_pending": True}
            for n, i in enumerate(ids)
        ]
    )
    clear = {"$set": {"outbox": [], "outbox_pending": False}}
    outcome = await asyncio.wait_for(
        update_each(db["docs"], [({"_id": i, "version": 1}, clear) for i in [*ids, "d-missing"]]), 30
    )
    assert outcome == [n % 7 != 0 for n in range(120)] + [False]
    stored = {d["_id"]: d async for d in db["docs"].find({})}
    assert [stored[i]["outbox_pending"] for i in ids] == [n % 7 == 0 for n in range(120)]


async def test_a_bulk_write_of_more_statements_than_ferretdb_answers_is_sent_in_parts(
    db: AsyncDatabase[Document],
) -> None:
    """compliance-svc replaces the spot-check material of a redelivered batch in one `bulk_write` of up
    to 500 upserts: one update command of 50+ statements never answers on FerretDB v1.24.2 (ADR 0012),
    so the serialized collection sends it in parts — one result, errors indexed into the whole."""
    material = serialized(db["material"])
    await material.insert_many([{"_id": f"m-{n:03}", "v": 0} for n in range(100)])
    replaced = await asyncio.wait_for(
        material.bulk_write(
            [ReplaceOne({"_id": f"m-{n:03}"}, {"v": 1}, upsert=True) for n in range(120)], ordered=False
        ),
        30,
    )
    assert (replaced.matched_count, replaced.upserted_count) == (100, 20)
    # (FerretDB numbers an upsert among the command's upserts, MongoDB by its statement: compare the ids.)
    assert sorted(replaced.upserted_ids.values()) == [f"m-{n:03}" for n in range(100, 120)]
    assert await db["material"].count_documents({"v": 1}) == 120
    # An unordered bulk goes on past an error and reports it at its index in the whole bulk.
    with pytest.raises(BulkWriteError) as refused:
        await asyncio.wait_for(
            material.bulk_write(
                [InsertOne({"_id": f"n-{n:03}"}) for n in range(60)] + [InsertOne({"_id": "m-005"})],
                ordered=False,
            ),
            30,
        )
    assert [e["index"] for e in refused.value.details["writeErrors"]] == [60]
    assert refused.value.details["nInserted"] == 60


class CompactionCommands(monitoring.CommandListener):
    """The ids each `update` command sent to the database compacted (cleared an outbox), per command."""

    def __init__(self) -> None:
        self.commands: list[list[Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name != "update":
            return
        statements = event.command.get("updates", [])
        cleared = [s["q"]["_id"] for s in statements if s.get("u", {}).get("$set", {}).get("outbox") == []]
        if cleared:
            self.commands.append(cleared)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_the_documents_created_by_one_write_are_compacted_together(
    stack: Stack, settings: ServiceSettings, producer: AIOKafkaProducer, metrics: Metrics
) -> None:
    """ADR 0012, "Compaction of one write together": the documents one `insert_absent` created (a batch of
    compliance-svc's findings) are acknowledged together and compacted together — a bulk write of
    `{_id: x}` statements on FerretDB (at most 8 per command), not one conditional write per document.
    One of them, written again before its compaction, keeps its entries and gets a watermark; nothing is
    published twice or lost."""
    topic = _name("sk-it-compact-together")
    await make_topics(stack, topic)
    listener = CompactionCommands()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        settings.mongo_uri, tz_aware=True, event_listeners=[listener]
    )
    db = client[settings.mongo_database]
    relay = OutboxRelay(producer, metrics=metrics, sweep_interval_s=3600)
    cases = Cases(db["cases"], event_source=SOURCE, notify=relay.notify, sent=relay.sent)
    relay.watch(cases.collection)
    # More than FerretDB's pool of 50 connections: one update command of that many statements hangs.
    ids = [f"f-{n:02}" for n in range(60)]
    try:
        await relay.start()
        await asyncio.sleep(0.5)  # the start's sweep is over
        stored = await cases.insert_absent(
            [({"_id": i}, [event(topic, f"{i} a", i), event(topic, f"{i} b", i)]) for i in ids]
        )
        assert stored == ids
        # Written again at once: the write holds the document's lock before any send is acknowledged, so
        # the compaction finds version 2.
        await cases.update("f-07", expected_version=1, set_fields={}, events=[event(topic, "f-07 c", "f-07")])
        await eventually(lambda: _true(not relay._sending), what="every send is acknowledged")
        records = await read_topic(stack.kafka_bootstrap, topic, at_least=2 * len(ids) + 1)
        documents = {d["_id"]: d async for d in db["cases"].find({})}
        marks = {m["_id"]: m["seq"] async for m in db[RELAYED_COLLECTION].find({})}
        unrelayed = await unrelayed_entries(db["cases"], "f-07")
    finally:
        await relay.stop()
        await client.drop_database(settings.mongo_database)
        await client.close()
    values = [decode(r).parse(StringValue).value for r in records]
    assert sorted(values) == sorted([f"{i} {x}" for i in ids for x in "ab"] + ["f-07 c"])
    for i in ids:  # each document's entries in order
        assert [v for v in values if v.startswith(i)] == [
            f"{i} {x}" for x in ("abc" if i == "f-07" else "ab")
        ]
    others = [i for i in ids if i != "f-07"]
    for i in others:
        assert (documents[i]["outbox"], documents[i]["outbox_pending"]) == ([], False), i
    assert set(marks) == {f"{cases.collection.name}/f-07"}
    assert documents["f-07"]["outbox_pending"]
    assert marks[f"{cases.collection.name}/f-07"] == max(e["seq"] for e in documents["f-07"]["outbox"])
    assert unrelayed == []
    # Together: far fewer compacting commands than documents (without batching, one per document; with
    # it, one per 8 documents of a batch of acks that came back together), each document compacted
    # once, f-07 not at all.
    compacted = [i for command in listener.commands for i in command]
    assert sorted(compacted) == others
    assert len(listener.commands) <= 15, listener.commands


async def test_a_write_over_a_version_written_elsewhere_is_read_so_nothing_overtakes_it(
    stack: Stack, db: AsyncDatabase[Document], producer: AIOKafkaProducer, metrics: Metrics
) -> None:
    """Another process (a replica, or this one before a restart) wrote version 2 with an entry this
    relay never saw: the write of version 3 must not go out before it, so the relay reads the document."""
    topic = _name("sk-it-elsewhere")
    await make_topics(stack, topic)
    relay = OutboxRelay(producer, metrics=metrics, sweep_interval_s=3600)
    cases = Cases(db["cases"], event_source=SOURCE, notify=relay.notify)
    elsewhere = Cases(db["cases"], event_source=SOURCE)  # writes without telling this relay
    relay.watch(cases.collection)
    await relay.start()
    try:
        await cases.insert({"_id": "c-1"}, events=[event(topic, "one", "c-1")])
        await eventually(lambda: _true(not relay._sending), what="the first write is acknowledged")
        await elsewhere.update("c-1", expected_version=1, set_fields={}, events=[event(topic, "two", "c-1")])
        await cases.update("c-1", expected_version=2, set_fields={}, events=[event(topic, "three", "c-1")])
        records = await read_topic(stack.kafka_bootstrap, topic, at_least=3)
    finally:
        await relay.stop()
    assert [decode(r).parse(StringValue).value for r in records] == ["one", "two", "three"]


async def test_a_send_at_once_that_fails_is_relayed_by_reading_the_document(
    stack: Stack, db: AsyncDatabase[Document], producer: AIOKafkaProducer, metrics: Metrics
) -> None:
    topic = _name("sk-it-at-once-fails")
    await make_topics(stack, topic)

    class FailingOnce:
        """The real producer, but the first send fails as a broker error would."""

        def __init__(self) -> None:
            self.failed = False

        async def send(self, *args: Any, **kwargs: Any) -> Any:
            if not self.failed:
                self.failed = True
                raise RuntimeError("broker away (test)")
            return await producer.send(*args, **kwargs)

    relay = OutboxRelay(FailingOnce(), metrics=metrics, sweep_interval_s=3600, min_backoff_s=0.05)  # type: ignore[arg-type]
    cases = Cases(db["cases"], event_source=SOURCE, notify=relay.notify)
    relay.watch(cases.collection)
    await relay.start()
    try:
        await eventually(lambda: _true(relay._task is not None), what="the relay runs")
        await asyncio.sleep(0.2)  # the start's sweep is done
        await cases.insert({"_id": "c-1"}, events=[event(topic, "first", "c-1"), event(topic, "more", "c-1")])
        records = await read_topic(stack.kafka_bootstrap, topic, at_least=2)
    finally:
        await relay.stop()
    assert [decode(r).parse(StringValue).value for r in records] == ["first", "more"]
    assert metrics.registry.get_sample_value("lawtrail_outbox_publish_failures_total") == 1


async def _true(value: bool) -> bool:
    return value


async def test_relay_survives_a_broker_hiccup_and_retries_with_backoff(
    stack: Stack, db: AsyncDatabase[Document], producer: AIOKafkaProducer, metrics: Metrics
) -> None:
    topic = _name("sk-it-hiccup")
    await make_topics(stack, topic)
    relay = OutboxRelay(
        producer,
        metrics=metrics,
        min_backoff_s=0.2,
        max_backoff_s=1.0,
        ack_timeout_s=2.0,
    )
    cases = Cases(db["cases"], event_source=SOURCE, notify=relay.notify)
    relay.watch(cases.collection)
    # Warm up: the producer knows the topic's leader before the broker freezes.
    await cases.insert({"_id": "warm-up"}, events=[event(topic, "warm-up", "warm-up")])
    await relay.start()
    try:

        async def pending(case_id: str) -> bool:
            return bool(await unrelayed_entries(db["cases"], case_id))

        await eventually(lambda: _not(pending("warm-up")), what="the warm-up event is relayed")
        with broker_paused(stack):
            await cases.insert({"_id": "c-1"}, events=[event(topic, "during hiccup", "c-1")])
            await eventually(
                lambda: _positive(metrics, "lawtrail_outbox_publish_failures_total"),
                timeout_s=20,
                what="a relay pass fails against the frozen broker",
            )
            assert await pending("c-1"), "nothing may be cleared without the broker's ack"
        await eventually(lambda: _not(pending("c-1")), what="the relay recovers once the broker answers")
    finally:
        await relay.stop()
    values = [
        decode(r).parse(StringValue).value for r in await read_topic(stack.kafka_bootstrap, topic, at_least=2)
    ]
    # At-least-once: the retry may publish again what the frozen broker received; never less.
    assert values[0] == "warm-up"
    assert set(values[1:]) == {"during hiccup"}


async def test_concurrent_commands_and_the_relay_lose_nothing_on_ferretdb(
    stack: Stack, db: AsyncDatabase[Document], producer: AIOKafkaProducer, metrics: Metrics
) -> None:
    """FerretDB v1.24.2 applies racing updates of one document non-atomically; servicekit's
    per-document lock must keep optimistic concurrency and the outbox exact anyway."""
    topic = _name("sk-it-concurrent")
    await make_topics(stack, topic)
    relay = OutboxRelay(producer, metrics=metrics)
    cases = Cases(db["cases"], event_source=SOURCE, notify=relay.notify)
    relay.watch(cases.collection)
    await cases.insert({"_id": "c-1", "count": 0}, events=[event(topic, "opened", "c-1")])
    conflicts = 0

    async def command(worker: int) -> None:
        nonlocal conflicts
        for step in range(5):
            while True:
                current = await cases.get_or_raise("c-1")
                try:
                    await cases.update(
                        "c-1",
                        expected_version=current["version"],
                        set_fields={"count": current["count"] + 1},
                        events=[event(topic, f"w{worker}-s{step}", "c-1")],
                    )
                    break
                except ConcurrencyConflict:
                    conflicts += 1

    await relay.start()
    try:
        await asyncio.gather(*(command(worker) for worker in range(8)))

        async def relayed() -> bool:
            return await db["cases"].find_one({"_id": "c-1"}) is not None and not await unrelayed_entries(
                db["cases"], "c-1"
            )

        await eventually(relayed, what="every event is relayed")
    finally:
        await relay.stop()
    stored = await cases.get_or_raise("c-1")
    assert (stored["count"], stored["version"]) == (40, 41), f"lost updates ({conflicts} conflicts retried)"
    values = [
        decode(r).parse(StringValue).value
        for r in await read_topic(stack.kafka_bootstrap, topic, at_least=41)
    ]
    expected = {"opened"} | {f"w{w}-s{s}" for w in range(8) for s in range(5)}
    assert set(values) == expected
    assert len(values) == len(expected), "each event is published once when nothing fails"


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


async def _positive(metrics: Metrics, name: str) -> bool:
    return (metrics.registry.get_sample_value(name) or 0) > 0


# --- consumer -----------------------------------------------------------------------------------


class Recorder:
    """A handler that records what it applied; can fail some attempts or hold until released."""

    def __init__(self, *, fail_times: int = 0, poison: str | None = None) -> None:
        self.applied: list[str] = []
        self.attempts: dict[str, int] = {}
        self.fail_times = fail_times
        self.poison = poison
        self.release = asyncio.Event()
        self.release.set()
        self.entered = asyncio.Event()

    async def __call__(self, envelope: Envelope) -> None:
        value = envelope.parse(StringValue).value
        self.attempts[value] = self.attempts.get(value, 0) + 1
        self.entered.set()
        await self.release.wait()
        if value == self.poison:
            raise ValueError(f"cannot apply {value!r}: the projection refuses it")
        if self.attempts[value] <= self.fail_times:
            raise RuntimeError(f"transient trouble applying {value!r}")
        self.applied.append(value)


async def publish(producer: AIOKafkaProducer, topic: str, *records: KafkaRecord) -> None:
    for record in records:
        await send_and_wait(producer, topic, record)


@pytest.fixture
async def consumer_setup(
    stack: Stack,
    settings: ServiceSettings,
    producer: AIOKafkaProducer,
    metrics: Metrics,
    db: AsyncDatabase[Document],
) -> AsyncIterator[Callable[..., Awaitable[tuple[str, str, EventConsumer]]]]:
    """Makes a topic, a group and its DLQ, and a started consumer; stops it at the end."""
    started: list[EventConsumer] = []
    await ensure_indexes(db, {"inbox": MongoInbox.INDEXES})

    async def make(handler: Any, **options: Any) -> tuple[str, str, EventConsumer]:
        topic, group = _name("sk-it-events"), _name("sk-it-group")
        await make_topics(stack, topic, dlq_topic(group))
        consumer = EventConsumer(
            settings,
            topics=[topic],
            group_id=group,
            handler=handler,
            producer=producer,
            metrics=metrics,
            inbox=MongoInbox(db["inbox"]),
            min_backoff_s=0.05,
            max_backoff_s=0.2,
            **options,
        )
        started.append(consumer)
        return topic, group, consumer

    yield make
    for consumer in started:
        await consumer.stop()


async def test_consumer_applies_a_duplicate_once_and_commits(
    stack: Stack, producer: AIOKafkaProducer, metrics: Metrics, consumer_setup: Any
) -> None:
    handler = Recorder()
    topic, group, consumer = await consumer_setup(handler)
    first = encode(StringValue(value="linked"), source=SOURCE, subject="rec-1", id="evt-1")
    same_event_again = encode(StringValue(value="linked"), source=SOURCE, subject="rec-1", id="evt-1")
    same_id_other_source = encode(
        StringValue(value="other"), source="/lawtrail/other-svc", subject="rec-1", id="evt-1"
    )
    await publish(producer, topic, first, same_event_again, same_id_other_source)
    await consumer.start()

    async def all_committed() -> bool:
        return await committed(stack.kafka_bootstrap, group, topic) == 3

    await eventually(all_committed, what="all three records are committed")
    assert handler.applied == ["linked", "other"]
    outcome = {"group": group, "topic": topic}
    assert (
        metrics.registry.get_sample_value(
            "lawtrail_consumer_records_total", {**outcome, "outcome": "applied"}
        )
        == 2
    )
    assert (
        metrics.registry.get_sample_value(
            "lawtrail_consumer_records_total", {**outcome, "outcome": "duplicate"}
        )
        == 1
    )


async def test_consumer_commits_only_after_the_handler_succeeded(
    stack: Stack, producer: AIOKafkaProducer, consumer_setup: Any
) -> None:
    handler = Recorder(fail_times=2)
    handler.release.clear()
    topic, group, consumer = await consumer_setup(handler, max_attempts=5)
    await publish(producer, topic, encode(StringValue(value="a"), source=SOURCE, subject="x"))
    await consumer.start()
    await asyncio.wait_for(handler.entered.wait(), 30)
    await asyncio.sleep(1.0)  # the handler is busy: nothing may be committed meanwhile
    assert await committed(stack.kafka_bootstrap, group, topic) is None
    handler.release.set()

    async def done() -> bool:
        return await committed(stack.kafka_bootstrap, group, topic) == 1

    await eventually(done, what="the record is committed after it was applied")
    assert handler.applied == ["a"]
    assert handler.attempts == {"a": 3}  # two failures retried with backoff, then success


async def test_consumer_parks_a_poison_record_in_the_dlq_after_bounded_retries(
    stack: Stack, producer: AIOKafkaProducer, metrics: Metrics, consumer_setup: Any
) -> None:
    handler = Recorder(poison="poison")
    topic, group, consumer = await consumer_setup(handler, max_attempts=3)
    poison = encode(StringValue(value="poison"), source=SOURCE, subject="rec-9", id="evt-poison")
    not_an_event = KafkaRecord(key=b"rec-9", value=b"raw bytes", headers=[("origin", b"legacy")])
    healthy = encode(StringValue(value="healthy"), source=SOURCE, subject="rec-9")
    await publish(producer, topic, poison, not_an_event, healthy)
    await consumer.start()

    async def all_committed() -> bool:
        return await committed(stack.kafka_bootstrap, group, topic) == 3

    await eventually(all_committed, what="all records are committed (the bad ones parked)")
    assert handler.attempts == {"poison": 3, "healthy": 1}
    assert handler.applied == ["healthy"]

    parked = await read_topic(stack.kafka_bootstrap, dlq_topic(group), at_least=2)
    assert len(parked) == 2
    first, second = parked
    headers = dict(first.headers)
    assert (first.key, first.value) == (poison.key, poison.value)
    assert headers["ce_id"] == b"evt-poison"  # the original envelope travels along
    assert headers["dlq_error"] == b"ValueError: cannot apply 'poison': the projection refuses it"
    assert (headers["dlq_topic"], headers["dlq_partition"], headers["dlq_offset"]) == (
        topic.encode(),
        b"0",
        b"0",
    )
    assert (headers["dlq_group"], headers["dlq_attempts"]) == (group.encode(), b"3")
    second_headers = dict(second.headers)
    assert second.value == b"raw bytes"
    assert second_headers["origin"] == b"legacy"
    assert second_headers["dlq_attempts"] == b"0"  # not an envelope: parked at once, retrying cannot help
    assert b"not a CloudEvents 1.0 binary-mode record" in second_headers["dlq_error"]
    outcome = {"group": group, "topic": topic, "outcome": "dead_lettered"}
    assert metrics.registry.get_sample_value("lawtrail_consumer_records_total", outcome) == 2
    assert (
        metrics.registry.get_sample_value("lawtrail_consumer_retries_total", {"group": group, "topic": topic})
        == 2
    )


async def test_consumer_waits_out_an_outage_without_using_up_attempts(
    stack: Stack, producer: AIOKafkaProducer, metrics: Metrics, consumer_setup: Any
) -> None:
    """A database outage says nothing about the record: it must not push a good event into the DLQ."""
    outages = 0

    async def handler(envelope: Envelope) -> None:
        nonlocal outages
        if outages < 4:
            outages += 1
            raise AutoReconnect("127.0.0.1:27017: connection refused")

    topic, group, consumer = await consumer_setup(handler, max_attempts=2)
    await publish(producer, topic, encode(StringValue(value="a"), source=SOURCE, subject="x"))
    await consumer.start()
    await eventually(
        lambda: _committed_is(stack, group, topic, 1), what="the record is applied after the outage"
    )
    outcome = {"group": group, "topic": topic}
    assert (
        metrics.registry.get_sample_value(
            "lawtrail_consumer_records_total", {**outcome, "outcome": "applied"}
        )
        == 1
    )
    assert (
        metrics.registry.get_sample_value(
            "lawtrail_consumer_records_total", {**outcome, "outcome": "dead_lettered"}
        )
        is None
    )


async def test_consumer_redelivery_after_restart_is_deduplicated(
    stack: Stack, producer: AIOKafkaProducer, consumer_setup: Any
) -> None:
    """A consumer that applied an event but stopped before committing sees it again, and skips it."""
    handler = Recorder()
    router = TypeRouter()

    async def on_string(message: StringValue, envelope: Envelope) -> None:
        await handler(envelope)

    router.on(StringValue, on_string)
    topic, group, consumer = await consumer_setup(router)
    record = encode(StringValue(value="once"), source=SOURCE, subject="rec-1")
    await publish(producer, topic, record)
    await consumer.start()
    await eventually(lambda: _committed_is(stack, group, topic, 1), what="the first delivery is committed")
    # Rewind the group, as after a crash between applying and committing.
    rewind = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.stop()
    await rewind.start()
    try:
        partition = TopicPartition(topic, 0)
        rewind.assign([partition])
        await rewind.commit({partition: 0})
    finally:
        await rewind.stop()
    await consumer.start()
    await eventually(lambda: _committed_is(stack, group, topic, 1), what="the redelivery is committed again")
    await asyncio.sleep(0.5)
    assert handler.applied == ["once"]


async def _committed_is(stack: Stack, group: str, topic: str, offset: int) -> bool:
    return await committed(stack.kafka_bootstrap, group, topic) == offset


async def test_consumer_refuses_to_start_without_its_dlq_topic(
    stack: Stack, settings: ServiceSettings, producer: AIOKafkaProducer, metrics: Metrics
) -> None:
    topic = _name("sk-it-nodlq")
    await make_topics(stack, topic)
    consumer = EventConsumer(
        settings,
        topics=[topic],
        group_id=_name("sk-it-group"),
        handler=Recorder(),
        producer=producer,
        metrics=metrics,
    )
    with pytest.raises(RuntimeError, match=r"\.dlq'\] do not exist .*topics\.toml"):
        await consumer.start()


# --- the durable audit: AuditOutbox + a relay that deletes what it published ------------------------


async def test_audit_records_cross_a_frozen_broker_once_each_and_leave_no_document(
    stack: Stack, settings: ServiceSettings, db: AsyncDatabase[Document], metrics: Metrics
) -> None:
    """R4, R23-3: records stored while the broker is frozen are published once it answers — one copy
    each, although the relay gave up waiting (ack_timeout_s) several times meanwhile: its retries wait
    for the sends already handed to the producer instead of sending the records again — and every stored
    document is deleted once published."""
    topic = _name("sk-it-audit")
    await make_topics(stack, topic)
    # The producer's own request timeout (40 s) outlasts the freeze: its sends stay pending, not failed.
    producer = create_producer(settings)
    await producer.start()
    relay = OutboxRelay(producer, metrics=metrics, min_backoff_s=0.2, max_backoff_s=0.5, ack_timeout_s=1.0)
    collection = db["audit_outbox"]
    relay.watch(collection, delete_relayed=True)
    outbox = AuditOutbox(collection, notify=relay.notify, topic=topic)

    def record(text: str) -> Envelope:
        return Envelope.of(StringValue(value=text), source=SOURCE, subject="/test.v1.Echo/Unary")

    try:
        await relay.start()
        warm = record("warm-up")
        await outbox.store(warm)
        await eventually(lambda: _empty(collection), what="the warm-up record is relayed and deleted")
        failures = metrics.registry.get_sample_value("lawtrail_outbox_publish_failures_total") or 0.0
        with broker_paused(stack):
            stored = [record(f"during the freeze {i}") for i in range(5)]
            await asyncio.gather(*(outbox.store(e) for e in stored))
            assert await collection.count_documents({}) >= 1  # stored, not published
            await eventually(
                lambda: _failed_more_than(metrics, failures + 2),
                timeout_s=30,
                what="the relay gave up waiting for the frozen broker at least three times",
            )
        await eventually(
            lambda: _empty(collection), timeout_s=60, what="every stored record is relayed and deleted"
        )
    finally:
        await relay.stop()
        await producer.stop()
    published = [decode(r) for r in await read_topic(stack.kafka_bootstrap, topic, at_least=6)]
    assert [e.id for e in published] == [warm.id, *(e.id for e in stored)], (
        "each record exactly once, in order"
    )
    assert [e.parse(StringValue).value for e in published[1:]] == [f"during the freeze {i}" for i in range(5)]


async def _empty(collection: Any) -> bool:
    return await collection.count_documents({}) == 0


async def _failed_more_than(metrics: Metrics, count: float) -> bool:
    return (metrics.registry.get_sample_value("lawtrail_outbox_publish_failures_total") or 0.0) > count
