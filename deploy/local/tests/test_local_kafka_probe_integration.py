"""lawtrail_local.kafka_probe against the session's real Kafka: partitions and end offsets of fresh topics,
a real consumer group's lag as it commits, the wait for it (and its failure when the group stalls), and
reading topics from the beginning."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from lawtrail_local import Stack, Topic
from lawtrail_local.kafka_probe import (
    committed_offsets,
    end_offsets,
    lag,
    lag_now,
    partitions_of,
    read_from_start,
    wait_caught_up,
)

pytestmark = pytest.mark.integration


async def produce(stack: Stack, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        for n in range(count):
            await producer.send_and_wait(topic, f"record-{n}".encode(), key=f"key-{n % 5}".encode())
    finally:
        await producer.stop()


async def commit_some(stack: Stack, group: str, topic: str, count: int | None) -> int:
    """A real member of `group` reads `count` records of `topic` (all there are when None) and commits
    after each; returns how many it committed."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    done = 0
    try:
        while count is None or done < count:
            batch = await consumer.getmany(timeout_ms=3000, max_records=1)
            if not batch:
                break
            for tp, records in batch.items():
                await consumer.commit({tp: records[-1].offset + 1})
                done += len(records)
    finally:
        await consumer.stop()
    return done


@pytest.fixture
def topics(stack: Stack) -> list[str]:
    names = [f"probe-{uuid.uuid4().hex[:8]}", f"probe-{uuid.uuid4().hex[:8]}"]
    stack.create_topics([Topic(names[0], 3), Topic(names[1], 1)])
    return names


async def test_partitions_end_offsets_and_reading_from_the_start(stack: Stack, topics: list[str]) -> None:
    bootstrap = stack.kafka_bootstrap
    assert await partitions_of(bootstrap, topics) == [
        TopicPartition(topics[0], 0), TopicPartition(topics[0], 1), TopicPartition(topics[0], 2),
        TopicPartition(topics[1], 0),
    ]  # fmt: skip
    assert sum((await end_offsets(bootstrap, topics)).values()) == 0
    await produce(stack, topics[0], 12)
    await produce(stack, topics[1], 4)
    ends = await end_offsets(bootstrap, topics)
    assert (
        sum(v for tp, v in ends.items() if tp.topic == topics[0]),
        ends[TopicPartition(topics[1], 0)],
    ) == (
        12,
        4,
    )
    records = await read_from_start(bootstrap, topics)
    assert sorted(r.value for r in records if r.topic == topics[0]) == sorted(
        f"record-{n}".encode() for n in range(12)
    )
    assert [r.value for r in records if r.topic == topics[1]] == [f"record-{n}".encode() for n in range(4)]
    # `until`: read until the records wanted are there, then to the end of that moment
    wanted = await read_from_start(
        bootstrap, [topics[1]], until=lambda rs: any(r.value == b"record-2" for r in rs)
    )
    assert [r.value for r in wanted] == [f"record-{n}".encode() for n in range(4)]


async def test_a_topic_that_does_not_exist_is_an_error_not_an_empty_answer(stack: Stack) -> None:
    with pytest.raises(AssertionError, match=r"topics \['no-such-topic-.*'\] have no partitions"):
        await partitions_of(stack.kafka_bootstrap, [f"no-such-topic-{uuid.uuid4().hex[:8]}"], within_s=1.0)


async def test_a_groups_lag_and_the_wait_until_it_caught_up(stack: Stack, topics: list[str]) -> None:
    bootstrap = stack.kafka_bootstrap
    group = f"probe-group-{uuid.uuid4().hex[:8]}"
    await produce(stack, topics[0], 10)
    assert await lag(bootstrap, group, [topics[0]]) == 10, "a group that never committed has everything ahead"
    assert await commit_some(stack, group, topics[0], 4) == 4
    assert sum((await committed_offsets(bootstrap, group)).values()) == 4
    assert await lag(bootstrap, group, [topics[0]]) == 6

    # nobody consumes: the wait fails on the stall, naming the group and how far behind it is
    with pytest.raises(AssertionError, match=rf"consumer group {group} stopped 6 records short"):
        await wait_caught_up(bootstrap, group, [topics[0]], stall_s=1.5)

    member = asyncio.create_task(commit_some(stack, group, topics[0], None))
    assert await wait_caught_up(bootstrap, group, [topics[0]], stall_s=30) == 6
    assert await member == 6
    assert await lag(bootstrap, group, [topics[0]]) == 0
    assert await asyncio.to_thread(lag_now, bootstrap, group, [topics[0]]) == 0
