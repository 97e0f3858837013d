"""Helpers of the access-svc integration tests: callers with real tokens, stubs of access-svc, and the
offline checks of ledger proofs (lawtrail_merkle, the checkpoint signature)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import grpc
from aiokafka import AIOKafkaConsumer
from google.protobuf.duration_pb2 import Duration
from lawtrail.access.v1 import access_grant_pb2 as gpb
from lawtrail.access.v1 import access_grant_pb2_grpc as gpb_grpc
from lawtrail.access.v1 import access_service_pb2 as api
from lawtrail.access.v1 import access_service_pb2_grpc as api_grpc
from lawtrail.access.v1 import ledger_service_pb2_grpc as lpb_grpc
from servicekit.auth.devtoken import mint_token
from servicekit.messaging.envelope import Envelope, decode

T = TypeVar("T")


@dataclass
class Person:
    subject: str
    metadata: Sequence[tuple[str, str]]
    access: api_grpc.AccessServiceStub
    status: gpb_grpc.AccessGrantStatusServiceStub
    ledger: lpb_grpc.LedgerServiceStub


def person(
    channel: grpc.Channel, private_pem: bytes, subject: str, unit: str, roles: Sequence[str]
) -> Person:
    token = mint_token(private_pem, subject=subject, unit=unit, roles=list(roles))
    return Person(
        subject,
        [("authorization", f"Bearer {token}")],
        api_grpc.AccessServiceStub(channel),
        gpb_grpc.AccessGrantStatusServiceStub(channel),
        lpb_grpc.LedgerServiceStub(channel),
    )


def call(p: Person, stub: str, method: str, request: Any) -> Any:
    return getattr(getattr(p, stub), method)(request, metadata=p.metadata, timeout=30)


def request_download(p: Person, recording_id: str, minutes: int = 10) -> api.AccessRequest:
    d = Duration()
    d.FromTimedelta(timedelta(minutes=minutes))
    response = call(
        p,
        "access",
        "RequestAccess",
        api.RequestAccessRequest(
            resources=[gpb.GrantResource(kind=gpb.GRANT_RESOURCE_KIND_RECORDING, id=recording_id)],
            actions=[gpb.GRANTED_ACTION_DOWNLOAD],
            purpose="reconsideration of penalty decision",
            duration=d,
        ),
    )
    return response.request


def eventually(
    action: Callable[[], T],
    *,
    retry_on: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION,
    timeout_s: float = 30.0,
    interval_s: float = 0.1,
) -> T:
    """Retries `action` while it fails with `retry_on` (an event not consumed yet), up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return action()
        except grpc.RpcError as error:
            if error.code() is not retry_on or time.monotonic() > deadline:
                raise
        time.sleep(interval_s)


async def find_event(
    bootstrap: str, topic: str, subject: str, type_suffix: str, timeout_s: float = 60
) -> Envelope:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.key == subject.encode():
                        envelope = decode(record)
                        if envelope.type.endswith(type_suffix):
                            return envelope
        raise AssertionError(f"no {type_suffix} about {subject} on {topic}")
    finally:
        await consumer.stop()
