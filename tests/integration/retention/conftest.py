"""access-svc, case-svc, media-svc and retention-svc on the real stack, for this package's tests: one
process each on free ports against the session's Kafka and FerretDB, sharing one data dir (so they trust
the same dev token key, and media-svc trusts access-svc's grant key: access-svc starts first and creates
it). retention-svc takes its standing grants from access-svc (RequestStandingGrant).

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
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from lawtrail_local.kafka_probe import wait_caught_up
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceProcess
from lawtrail_local.stack import Stack
from pymongo import MongoClient
from servicekit.auth.devtoken import ensure_dev_keys, mint_token


@dataclass
class Services:
    starter: ServiceStarter
    access: ServiceProcess
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
        # access-svc first: it creates its grant signing key, whose public half media-svc trusts by default.
        access = starter("access-svc", env={"LAWTRAIL_ACCESS_CHECKPOINT_INTERVAL_S": "3600"})
        case = starter("case-svc")
        media = starter("media-svc")
        retention = starter(
            "retention-svc",
            env={
                "LAWTRAIL_RETENTION_MEDIA_ADDRESS": media.grpc_address,
                "LAWTRAIL_RETENTION_ACCESS_ADDRESS": access.grpc_address,
                # The tests ask for copies explicitly; the automatic follow-up is tested on its own.
                "LAWTRAIL_RETENTION_AUTO_COPY_INTERVAL_S": "0",
            },
        )
        yield Services(starter, access, case, media, retention, private_path.read_bytes(), stack)
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


class Kit:
    eventually = staticmethod(eventually)
    create_topic = staticmethod(create_topic)
    # Has a consumer group committed every record the topics hold now (fails on a stall)?
    caught_up = staticmethod(wait_caught_up)


@pytest.fixture
def kit() -> type[Kit]:
    return Kit
