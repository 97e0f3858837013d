"""Looking at Kafka from outside the services, for tests: the partitions of topics and where they end, how
far a consumer group has committed (has it caught up?), and every record of topics from the beginning.

One implementation for every test that asks, because the details are easy to get wrong: aiokafka's
`topics()` fetches metadata without keeping it, so `partitions_for_topic` after it still answers nothing —
a probe built that way sees no partitions and calls any group caught up at once. Here the metadata is
forced into the client and a topic without partitions is an error, not an empty answer. Waits end on a
stall (no progress for `stall_s`), not after a fixed time: how much a group or a reader has to get through
depends on what the earlier tests of the session published.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

__all__ = [
    "committed_offsets",
    "end_offsets",
    "group_members",
    "lag",
    "lag_now",
    "partitions_of",
    "read_from_start",
    "wait_caught_up",
]

Records = list[ConsumerRecord[bytes, bytes]]


async def _partitions(
    consumer: AIOKafkaConsumer, topics: Sequence[str], within_s: float
) -> list[TopicPartition]:
    deadline = time.monotonic() + within_s
    while True:
        # Into the client's own cluster metadata, which partitions_for_topic reads (topics() is not).
        await consumer._client.force_metadata_update()
        found = {t: sorted(consumer.partitions_for_topic(t) or ()) for t in topics}
        missing = [t for t, partitions in found.items() if not partitions]
        if not missing:
            return [TopicPartition(t, p) for t in topics for p in found[t]]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"topics {missing} have no partitions after {within_s:.0f} s (do they exist?)"
            )
        await asyncio.sleep(0.25)  # a restarted broker takes a moment to answer with its topics


async def partitions_of(
    bootstrap: str, topics: Sequence[str], *, within_s: float = 30.0
) -> list[TopicPartition]:
    """Every partition of `topics`; waits up to `within_s` for metadata that names them all."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        return await _partitions(consumer, topics, within_s)
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """The offset after the last record of every partition of `topics`, now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topics, 30.0)
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    """What consumer group `group` has committed (the next offset it will read), per partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    deadline = time.monotonic() + 30.0
    try:
        while True:
            try:
                offsets = await admin.list_consumer_group_offsets(group)
                return {tp: meta.offset for tp, meta in offsets.items()}
            except KafkaError as error:
                # e.g. no group coordinator yet: a fresh broker creates __consumer_offsets on first use
                if not error.retriable or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def group_members(bootstrap: str, group: str) -> list[str]:
    """The member ids of consumer group `group` now (empty when it has none, or does not exist yet):
    who takes part in consuming, whether or not it has committed anything."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    deadline = time.monotonic() + 30.0
    try:
        while True:
            try:
                (response,) = await admin.describe_consumer_groups([group])
            except KafkaError as error:
                # e.g. no group coordinator yet: a fresh broker creates __consumer_offsets on first use
                if not error.retriable or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
                continue
            # DescribeGroupsResponse: groups = [(error_code, group, state, protocol_type, protocol,
            # members)], members = [(member_id, client_id, client_host, metadata, assignment)].
            return [member[0] for described in response.groups for member in described[5]]
    finally:
        await admin.close()


def _behind(ends: dict[TopicPartition, int], committed: dict[TopicPartition, int]) -> int:
    # A partition the group never committed counts from 0: the topics keep every record (retention -1).
    return sum(max(end - max(committed.get(tp, 0), 0), 0) for tp, end in ends.items())


async def lag(bootstrap: str, group: str, topics: Sequence[str]) -> int:
    """How many records of `topics` there are now that `group` has not committed; 0 = caught up."""
    return _behind(await end_offsets(bootstrap, topics), await committed_offsets(bootstrap, group))


def lag_now(bootstrap: str, group: str, topics: Sequence[str]) -> int:
    """`lag` for synchronous tests (not from inside a running event loop)."""
    return asyncio.run(lag(bootstrap, group, topics))


async def wait_caught_up(bootstrap: str, group: str, topics: Sequence[str], *, stall_s: float = 60.0) -> int:
    """Waits until `group` has committed every record `topics` hold now; returns how many it committed
    meanwhile. Fails when the group makes no progress for `stall_s` (a stuck or crashed consumer)."""
    ends = await end_offsets(bootstrap, topics)
    first = last = _behind(ends, await committed_offsets(bootstrap, group))
    progressed = time.monotonic()
    while last:
        await asyncio.sleep(0.5)
        behind = _behind(ends, await committed_offsets(bootstrap, group))
        if behind != last:
            last, progressed = behind, time.monotonic()
        elif time.monotonic() - progressed > stall_s:
            raise AssertionError(
                f"consumer group {group} stopped {behind} records short of the end of {list(topics)} "
                f"({sum(ends.values())} records) for {stall_s:.0f} s"
            )
    return first


async def read_from_start(
    bootstrap: str,
    topics: Sequence[str],
    *,
    until: Callable[[Records], bool] | None = None,
    stall_s: float = 60.0,
    within_s: float | None = None,
) -> Records:
    """Every record of `topics` from the beginning to their end offsets.

    Without `until`, the end offsets of the moment of the call. With it, records are read until
    `until(records so far)` is true, and then to the end offsets of that moment — for records that are
    still on their way. Fails when nothing new arrives for `stall_s` before then, or (if given) when
    `within_s` pass in all."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        # a broker restarted a moment ago may take a while to name the topics: part of the stall allowed
        partitions = await _partitions(consumer, topics, stall_s)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = None if until is not None else await consumer.end_offsets(partitions)
        records: Records = []
        progressed = started = time.monotonic()
        while True:
            batch = [r for rs in (await consumer.getmany(timeout_ms=500)).values() for r in rs]
            if batch:
                records.extend(batch)
                progressed = time.monotonic()
            if ends is None and until is not None and until(records):
                ends = await consumer.end_offsets(partitions)
            if ends is not None and all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
                return records
            now = time.monotonic()
            if now - progressed > stall_s or (within_s is not None and now - started > within_s):
                what = "the end offsets" if ends is not None else "what `until` waits for"
                raise AssertionError(
                    f"read {len(records)} records of {list(topics)} in {now - started:.0f} s (nothing new "
                    f"for {now - progressed:.0f} s) without reaching {what}"
                )
    finally:
        await consumer.stop()
