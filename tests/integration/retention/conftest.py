"""case-svc, media-svc and retention-svc on the real stack, for this package's tests: one process each on
free ports against the session's Kafka and FerretDB, sharing one data dir (so they trust the same dev token
key and media-svc trusts the dev grant key retention-svc signs its grants with).

Tests isolate themselves with units and cases of their own (`unit` fixture).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceProcess
from lawtrail_local.stack import Stack
from pymongo import MongoClient
from servicekit.auth.devtoken import ensure_dev_keys, mint_token


@dataclass
class Services:
    starter: ServiceStarter
    case: ServiceProcess
    media: ServiceProcess
    retention: ServiceProcess
    private_key: bytes
    stack: Stack

    def token(self, subject: str, unit: str, *roles: str) -> str:
        return mint_token(self.private_key, subject=subject, unit=unit, roles=roles, ttl_s=1800)

    def metadata(self, subject: str, unit: str, *roles: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token(subject, unit, *roles)}"),)

    def db(self, process: ServiceProcess) -> Any:
        client: MongoClient[dict[str, Any]] = MongoClient(self.stack.mongo_uri, tz_aware=True)
        return client[process.env["LAWTRAIL_MONGO_DATABASE"]]


@pytest.fixture(scope="module")
def services(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("retention"))
    private_path, _ = ensure_dev_keys(starter.data_dir)
    try:
        case = starter("case-svc")
        media = starter("media-svc")
        retention = starter(
            "retention-svc",
            env={
                "LAWTRAIL_RETENTION_MEDIA_ADDRESS": media.grpc_address,
                # The tests ask for copies explicitly; the automatic follow-up is tested on its own.
                "LAWTRAIL_RETENTION_AUTO_COPY_INTERVAL_S": "0",
            },
        )
        yield Services(starter, case, media, retention, private_path.read_bytes(), stack)
    finally:
        starter.stop_all()


@pytest.fixture
def unit() -> str:
    return f"unit-{uuid.uuid4().hex[:10]}"


async def create_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"gave up after {within_s:.0f} s waiting until {what}")


async def caught_up(bootstrap: str, group: str, topics: list[str], stall_s: float = 60.0) -> int:
    """Wait until consumer group ``group`` has committed every record ``topics`` hold now; returns how
    many records it applied meanwhile. The topics hold every event the session's earlier tests caused,
    so how long that takes depends on them: the wait fails only when the group stops making progress
    for ``stall_s`` (a stuck or crashed consumer), not after a fixed time."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        await probe.topics()  # fetches the metadata partitions_for_topic reads
        partitions = [
            TopicPartition(t, p) for t in topics for p in sorted(probe.partitions_for_topic(t) or ())
        ]
        ends = await probe.end_offsets(partitions)
    finally:
        await probe.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        last, progressed = -1, time.monotonic()
        first: int | None = None
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            done = sum(min(committed[tp].offset, ends[tp]) if tp in committed else 0 for tp in partitions)
            first = done if first is None else first
            if all(tp in committed and committed[tp].offset >= ends[tp] for tp in partitions):
                return done - first
            if done != last:
                last, progressed = done, time.monotonic()
            elif time.monotonic() - progressed > stall_s:
                raise AssertionError(
                    f"consumer group {group} stopped at {done} of {sum(ends.values())} records of {topics} "
                    f"for {stall_s:.0f} s"
                )
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


class Kit:
    eventually = staticmethod(eventually)
    create_topic = staticmethod(create_topic)
    caught_up = staticmethod(caught_up)


@pytest.fixture
def kit() -> type[Kit]:
    return Kit
