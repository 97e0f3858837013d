"""The embedded outbox under a crash (issue 2): case-svc killed with SIGKILL after it wrote a case but
before its relay could publish → after a restart the event is published; a consumer that receives
the same event twice applies it once; the records on the topic come from an idempotent producer.

"After the write, before the relay" is made deterministic by pausing the broker (SIGSTOP) while the
case is opened: the write to FerretDB succeeds, the relay cannot get an acknowledgement, and the
process is killed before the broker resumes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import uuid
from pathlib import Path

import pytest
from lawtrail.case.v1 import case_events_pb2
from lawtrail_local.topics import Topic
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from servicekit.config import ServiceSettings
from servicekit.messaging.consumer import EventConsumer, MongoInbox
from servicekit.messaging.producer import create_producer
from servicekit.metrics import Metrics
from servicekit.mongo import ensure_indexes

pytestmark = pytest.mark.integration

OPENED = "lawtrail.case.v1.CaseOpened"


async def test_kill_9_between_write_and_relay_then_the_restarted_service_publishes(
    case_svc, as_role, unit, kit
):
    officer = as_role("OFFICER")
    kafka_pid = case_svc.stack.kafka.process.pid
    assert kafka_pid is not None
    os.kill(kafka_pid, signal.SIGSTOP)
    try:
        case = (await officer("OpenCase", kit.open_request(unit))).case
        stored = case_svc.db()["cases"].find_one({"_id": case.case_id})
        assert stored["outbox_pending"] is True  # written, not yet relayed
        assert [entry["type"] for entry in stored["outbox"]] == [OPENED]
        case_svc.process.kill()
    finally:
        os.kill(kafka_pid, signal.SIGCONT)
    case_svc.process.restart()

    found = await kit.read_events(
        case_svc.stack.kafka_bootstrap,
        kit.CASE_TOPIC,
        lambda seen: any(e.type == OPENED for _, e in seen),
        key=case.case_id,
        within_s=90,
    )
    event = next(e for _, e in found if e.type == OPENED).parse(case_events_pb2.CaseOpened)
    assert (event.case_id, event.unit) == (case.case_id, unit)

    async def cleared() -> bool:
        doc = case_svc.db()["cases"].find_one({"_id": case.case_id})
        return doc["outbox"] == [] and doc["outbox_pending"] is False

    await kit.eventually(cleared, "the relay cleared the published entry")
    # The relay's bookkeeping does not change the case's version.
    assert case_svc.db()["cases"].find_one({"_id": case.case_id})["version"] == 1


async def test_a_consumer_that_receives_the_same_event_twice_applies_it_once(case_svc, as_role, unit, kit):
    case = (await as_role("OFFICER")("OpenCase", kit.open_request(unit))).case
    bootstrap = case_svc.stack.kafka_bootstrap
    found = await kit.read_events(
        bootstrap, kit.CASE_TOPIC, lambda seen: any(e.type == OPENED for _, e in seen), key=case.case_id
    )
    original = next(e for _, e in found if e.type == OPENED)
    message = original.parse(case_events_pb2.CaseOpened)
    # Redeliver the very same event (same ce_source and ce_id, as a relay retrying after a crash
    # between the broker's ack and clearing the outbox would), then a sentinel behind it.
    await kit.publish(
        bootstrap, kit.CASE_TOPIC, message, subject=case.case_id, source=original.source, event_id=original.id
    )
    sentinel_id = f"sentinel-{uuid.uuid4()}"
    await kit.publish(
        bootstrap, kit.CASE_TOPIC, message, subject=case.case_id, source=original.source, event_id=sentinel_id
    )

    group = f"it-dedupe-{uuid.uuid4().hex[:8]}"
    case_svc.stack.create_topics([Topic(f"{group}.dlq", 1)])
    settings = ServiceSettings(
        service_name="it-consumer", kafka_bootstrap_servers=bootstrap, mongo_uri=case_svc.stack.mongo_uri
    )
    mongo = AsyncMongoClient(case_svc.stack.mongo_uri, tz_aware=True)
    inbox_db = mongo[f"it_{group.replace('-', '_')}"]
    await ensure_indexes(inbox_db, {"inbox": MongoInbox.INDEXES})
    inbox_collection = inbox_db["inbox"]
    applied: list[str] = []
    sentinel_seen = asyncio.Event()

    async def apply(envelope) -> None:
        if envelope.subject != case.case_id:
            return
        applied.append(envelope.id)
        if envelope.id == sentinel_id:
            sentinel_seen.set()

    producer = create_producer(settings)
    await producer.start()
    consumer = EventConsumer(
        settings,
        topics=[kit.CASE_TOPIC],
        group_id=group,
        handler=apply,
        producer=producer,
        metrics=Metrics(CollectorRegistry()),
        inbox=MongoInbox(inbox_collection),
    )
    await consumer.start()
    try:
        await asyncio.wait_for(sentinel_seen.wait(), timeout=60)
    finally:
        await consumer.stop()
        await producer.stop()
        await mongo.close()
    deliveries = sum(1 for _, e in found if e.id == original.id) + 1
    assert deliveries >= 2
    assert applied.count(original.id) == 1
    assert applied[-1] == sentinel_id


def _batch_producer_ids(log_dir: Path, offset: int) -> tuple[int, int]:
    """(producerId, baseSequence) of the record batch holding `offset` in a partition's log segments.

    Record batch v2 header: baseOffset i64, batchLength i32, partitionLeaderEpoch i32, magic i8, crc u32,
    attributes i16, lastOffsetDelta i32, baseTimestamp i64, maxTimestamp i64, producerId i64,
    producerEpoch i16, baseSequence i32 — a producer without idempotence writes producerId -1.
    """
    for segment in sorted(log_dir.glob("*.log")):
        data = segment.read_bytes()
        position = 0
        while position + 61 <= len(data):
            base_offset, length = struct.unpack_from(">qi", data, position)
            last_delta = struct.unpack_from(">i", data, position + 23)[0]
            if base_offset <= offset <= base_offset + last_delta:
                producer_id = struct.unpack_from(">q", data, position + 43)[0]
                base_sequence = struct.unpack_from(">i", data, position + 53)[0]
                return producer_id, base_sequence
            position += 12 + length
    raise AssertionError(f"offset {offset} not found in {log_dir}")


async def test_the_relay_publishes_through_an_idempotent_producer(case_svc, as_role, unit, kit):
    case = (await as_role("OFFICER")("OpenCase", kit.open_request(unit))).case
    found = await kit.read_events(
        case_svc.stack.kafka_bootstrap,
        kit.CASE_TOPIC,
        lambda seen: any(e.type == OPENED for _, e in seen),
        key=case.case_id,
    )
    record = next(r for r, e in found if e.type == OPENED)
    log_dir = case_svc.stack.kafka.dir / "data" / f"{record.topic}-{record.partition}"
    producer_id, base_sequence = _batch_producer_ids(log_dir, record.offset)
    assert producer_id >= 0, "the broker stored the batch without a producer id: idempotence is off"
    assert base_sequence >= 0
