"""case-svc on the real stack: one `python -m case_svc` process for this package's tests, on free ports,
against the session's Kafka and FerretDB (the `stack` fixture of lawtrail_local's pytest plugin, which
tests/integration/conftest.py enables — pytest only accepts `pytest_plugins` in that top conftest).

Tests isolate themselves by opening cases in units of their own (`unit` fixture), so they share the
process and its database without seeing each other's cases.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.case.v1 import case_pb2, case_service_pb2_grpc
from lawtrail.case.v1 import case_service_pb2 as api
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceProcess
from lawtrail_local.stack import Stack
from pymongo import MongoClient
from servicekit.auth.devtoken import ensure_dev_keys, mint_token
from servicekit.messaging.envelope import Envelope, decode, encode

CASE_TOPIC = "lawtrail.case.v1.events"
MEDIA_TOPIC = "lawtrail.media.v1.events"


@dataclass
class CaseService:
    """The running case-svc process, a way to sign its tokens, and its database."""

    process: ServiceProcess
    private_key: bytes
    stack: Stack

    @property
    def address(self) -> str:
        return self.process.grpc_address

    @property
    def database(self) -> str:
        return self.process.env["LAWTRAIL_MONGO_DATABASE"]

    def token(self, subject: str, unit: str, *roles: str, ttl_s: int = 600) -> str:
        return mint_token(self.private_key, subject=subject, unit=unit, roles=roles, ttl_s=ttl_s)

    def db(self) -> Any:
        client: MongoClient[dict[str, Any]] = MongoClient(self.stack.mongo_uri, tz_aware=True)
        return client[self.database]


# One per module, not per session: a case-svc left running would stay a member of the consumer group
# `case-svc.media-events` for the rest of the session and take its share of the partitions from the
# case-svc of every later test, which then never sees the links of its own cases (seen in CI: the
# R05 and tracing tests' links parked by this instance as "a case case-svc does not know").
@pytest.fixture(scope="module")
def case_svc(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaseService]:
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("case-svc"))
    private_path, _ = ensure_dev_keys(starter.data_dir)
    try:
        process = starter("case-svc")
        yield CaseService(process, private_path.read_bytes(), stack)
    finally:
        starter.stop_all()


@pytest.fixture
def unit() -> str:
    """A unit of this test's own: its cases are invisible to every other test's lists."""
    return f"unit-{uuid.uuid4().hex[:10]}"


class Caller:
    """A gRPC client of CaseService acting as one principal (a bearer token, or none)."""

    def __init__(self, channel: grpc.aio.Channel, token: str | None) -> None:
        self.stub = case_service_pb2_grpc.CaseServiceStub(channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    async def __call__(self, method: str, request: Message) -> Any:
        return await getattr(self.stub, method)(request, metadata=self.metadata, timeout=15)


@pytest.fixture
async def channel(case_svc: CaseService) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(case_svc.address) as chan:
        yield chan


@pytest.fixture
def as_role(case_svc: CaseService, channel: grpc.aio.Channel, unit: str) -> Callable[..., Caller]:
    """`as_role("OFFICER")` calls as an officer of this test's unit; `subject=`/`unit=` override."""

    def make(*roles: str, subject: str = "alice", unit_: str | None = None) -> Caller:
        return Caller(channel, case_svc.token(subject, unit_ or unit, *roles))

    return make


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


def open_request(unit: str, /, **overrides: Any) -> api.OpenCaseRequest:
    values: dict[str, Any] = {
        "act_type": case_pb2.ACT_TYPE_PENALTY,
        "procedure": case_pb2.PROCEDURE_GENERAL,
        "unit": unit,
        "cause": "未按规定修建防空地下室",
        "responsible_officer": "alice",
        "parties": [case_pb2.Party(name="某某建设有限公司", kind=case_pb2.PARTY_KIND_ORGANIZATION)],
    }
    values.update(overrides)
    return api.OpenCaseRequest(**values)


def activity_request(case_id: str, **overrides: Any) -> api.RecordActivityRequest:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "case_id": case_id,
        "kind": case_pb2.ACTIVITY_KIND_EVIDENCE_COLLECTION,
        "started_at": stamp(now - timedelta(hours=2)),
        "ended_at": stamp(now - timedelta(hours=1)),
        "place": "许昌市魏都区某工地",
        "officers": ["alice", "carl"],
        "record_mode": case_pb2.RECORD_MODE_CONTINUOUS_AV,
    }
    values.update(overrides)
    return api.RecordActivityRequest(**values)


async def read_events(
    bootstrap: str,
    topic: str,
    until: Callable[[list[tuple[Any, Envelope]]], bool],
    *,
    key: str | None = None,
    within_s: float = 45.0,
) -> list[tuple[Any, Envelope]]:
    """Reads `topic` from the beginning until `until(records)` holds for the records (with key `key`)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    found: list[tuple[Any, Envelope]] = []
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if key is None or record.key == key.encode():
                        found.append((record, decode(record)))
            if until(found):
                return found
        raise AssertionError(
            f"gave up after {within_s:.0f} s waiting on {topic}; saw {[e.type for _, e in found]}"
        )
    finally:
        await consumer.stop()


async def publish(
    bootstrap: str, topic: str, message: Message, *, subject: str, source: str, event_id: str
) -> None:
    """Publishes `message` as another service would: CloudEvents binary mode, key = subject."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        record = encode(message, source=source, subject=subject, id=event_id)
        await producer.send_and_wait(topic, record.value, key=record.key, headers=record.headers)
    finally:
        await producer.stop()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within_s: float = 45.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"gave up after {within_s:.0f} s waiting until {what}")


class Kit:
    """The helpers above, for test modules (with --import-mode=importlib they cannot import conftest)."""

    CASE_TOPIC = CASE_TOPIC
    MEDIA_TOPIC = MEDIA_TOPIC
    stamp = staticmethod(stamp)
    open_request = staticmethod(open_request)
    activity_request = staticmethod(activity_request)
    read_events = staticmethod(read_events)
    publish = staticmethod(publish)
    eventually = staticmethod(eventually)
    Caller = Caller


@pytest.fixture
def kit() -> type[Kit]:
    return Kit
