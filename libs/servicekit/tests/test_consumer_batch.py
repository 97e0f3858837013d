"""EventConsumer's batch mode without a broker: one handler call per poll, commits after it, partition
order, retries of the whole batch, and a poison record isolated to the DLQ without losing the others."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition
from google.protobuf.wrappers_pb2 import StringValue
from pymongo.errors import AutoReconnect
from servicekit.config import ServiceSettings
from servicekit.messaging.consumer import Delivery, EventConsumer
from servicekit.messaging.envelope import Envelope, to_record
from servicekit.metrics import Metrics

TOPIC = "lawtrail.test.v1.events"


@dataclass
class _Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _record(partition: int, offset: int, text: str) -> _Record:
    record = to_record(Envelope.of(StringValue(value=text), source="/test", subject=text))
    return _Record(TOPIC, partition, offset, record.key, record.value, list(record.headers))


class _Producer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, **record: Any) -> None:
        self.sent.append({"topic": topic, **record})


class _Kafka:
    """Hands out prepared polls, records commits, then stops the consumer."""

    def __init__(self, polls: list[dict[TopicPartition, list[_Record]]], owner: list[EventConsumer]) -> None:
        self.polls = polls
        self.owner = owner
        self.commits: list[dict[TopicPartition, int]] = []
        self.max_records: list[int] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[_Record]]:
        self.max_records.append(max_records)
        if not self.polls:
            self.owner[0]._stopping.set()
            return {}
        return self.polls.pop(0)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


def _consumer(handler: Any, metrics: Metrics, producer: _Producer, **options: Any) -> EventConsumer:
    return EventConsumer(
        ServiceSettings(service_name="test-svc"),
        topics=[TOPIC],
        group_id="test-svc.batch",
        handler=handler,
        producer=producer,  # type: ignore[arg-type]
        metrics=metrics,
        batch=True,
        min_backoff_s=0.001,
        max_backoff_s=0.002,
        **options,
    )


P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


async def test_a_batch_handler_gets_each_poll_at_once_and_offsets_are_committed_after_it(
    metrics: Metrics,
) -> None:
    calls: list[list[tuple[int, int, str]]] = []
    kafka: _Kafka

    async def handle(batch: Sequence[Delivery]) -> None:
        assert kafka.commits == [] or len(kafka.commits) == 2 * len(calls), "nothing committed mid-batch"
        calls.append([(d.partition, d.offset, d.envelope.parse(StringValue).value) for d in batch])

    owner: list[EventConsumer] = []
    kafka = _Kafka(
        [
            {P0: [_record(0, 5, "a"), _record(0, 6, "b")], P1: [_record(1, 9, "c")]},
            {P0: [_record(0, 7, "d")]},
        ],
        owner,
    )
    consumer = _consumer(handle, metrics, _Producer(), max_records=250)
    owner.append(consumer)
    await consumer._run(kafka)  # type: ignore[arg-type]

    assert calls == [[(0, 5, "a"), (0, 6, "b"), (1, 9, "c")], [(0, 7, "d")]]
    assert kafka.commits == [{P0: 7}, {P1: 10}, {P0: 8}]
    assert set(kafka.max_records) == {250}


async def test_a_failing_batch_is_retried_whole_and_outages_do_not_use_up_attempts(metrics: Metrics) -> None:
    attempts: list[int] = []
    failures = [AutoReconnect("database away")] * 3 + [RuntimeError("once")]

    async def handle(batch: Sequence[Delivery]) -> None:
        attempts.append(len(batch))
        if failures:
            raise failures.pop(0)

    owner: list[EventConsumer] = []
    kafka = _Kafka([{P0: [_record(0, 0, "a"), _record(0, 1, "b")]}], owner)
    producer = _Producer()
    consumer = _consumer(handle, metrics, producer, max_attempts=2)
    owner.append(consumer)
    await consumer._run(kafka)  # type: ignore[arg-type]

    assert attempts == [2, 2, 2, 2, 2], "three outages and one failure, then the whole batch again"
    assert producer.sent == [], "nothing parked"
    assert kafka.commits == [{P0: 2}]


async def test_a_poison_record_is_isolated_and_parked_alone(metrics: Metrics) -> None:
    applied: list[str] = []

    async def handle(batch: Sequence[Delivery]) -> None:
        values = [d.envelope.parse(StringValue).value for d in batch]
        if "poison" in values:
            raise ValueError("cannot apply poison")
        applied.extend(values)

    owner: list[EventConsumer] = []
    kafka = _Kafka([{P0: [_record(0, 0, "a"), _record(0, 1, "poison"), _record(0, 2, "c")]}], owner)
    producer = _Producer()
    consumer = _consumer(handle, metrics, producer, max_attempts=2)
    owner.append(consumer)
    await consumer._run(kafka)  # type: ignore[arg-type]

    assert applied == ["a", "c"], "the good records applied, in order"
    (parked,) = producer.sent
    assert parked["topic"] == "test-svc.batch.dlq"
    headers = dict(parked["headers"])
    assert headers["dlq_offset"] == b"1"
    assert headers["dlq_attempts"] == b"2"
    assert kafka.commits == [{P0: 3}]


async def test_records_that_are_not_events_are_parked_and_the_rest_applied(metrics: Metrics) -> None:
    applied: list[int] = []

    async def handle(batch: Sequence[Delivery]) -> None:
        applied.extend(d.offset for d in batch)

    garbage = _Record(TOPIC, 0, 1, b"k", b"not an event", [])
    owner: list[EventConsumer] = []
    kafka = _Kafka([{P0: [_record(0, 0, "a"), garbage, _record(0, 2, "c")]}], owner)
    producer = _Producer()
    consumer = _consumer(handle, metrics, producer)
    owner.append(consumer)
    await consumer._run(kafka)  # type: ignore[arg-type]

    assert applied == [0, 2]
    assert [sent["topic"] for sent in producer.sent] == ["test-svc.batch.dlq"]
    assert kafka.commits == [{P0: 3}]


def test_max_records_must_be_positive(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="max_records"):
        _consumer(lambda batch: None, metrics, _Producer(), max_records=0)


async def test_a_batch_failing_while_the_consumer_stops_is_left_uncommitted(metrics: Metrics) -> None:
    owner: list[EventConsumer] = []

    async def handle(batch: Sequence[Delivery]) -> None:
        owner[0]._stopping.set()  # e.g. a leased consumer whose lease was lost
        raise RuntimeError("stale")

    kafka = _Kafka([{P0: [_record(0, 0, "a")]}], owner)
    producer = _Producer()
    consumer = _consumer(handle, metrics, producer, max_attempts=1_000_000)
    owner.append(consumer)
    await consumer._run(kafka)  # type: ignore[arg-type]
    assert kafka.commits == [], "not committed: redelivered to the next owner"
    assert producer.sent == [], "not parked"
