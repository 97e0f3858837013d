"""The audit interceptor (R4, R23-3) through a real in-process grpc.aio server: every call's RpcCalled
record is stored (durably, in production ``AuditOutbox``) *before* the caller gets the answer — refusals
sent with ``context.abort()`` included — and falls back to a direct publish with the same ce_id when the
store fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from google.protobuf import wrappers_pb2
from lawtrail.audit.v1 import audit_events_pb2
from servicekit.auth import TokenVerifier
from servicekit.config import ServiceSettings
from servicekit.grpc import GrpcServer, ServiceBinding
from servicekit.grpc.audit import AUDIT_TOPIC, AuditInterceptor
from servicekit.grpc.server import PUBLIC_SERVICES
from servicekit.messaging.envelope import Envelope, KafkaRecord, decode
from servicekit.metrics import Metrics

from .conftest import ECHO, ECHO_POLICY

StringValue = wrappers_pb2.StringValue
CODEC: dict[str, Any] = {
    "request_serializer": StringValue.SerializeToString,
    "response_deserializer": StringValue.FromString,
}


class Store:
    """Records what was stored; ``gate`` (when set) holds every store until it is opened."""

    def __init__(self) -> None:
        self.stored: list[Envelope] = []
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def __call__(self, envelope: Envelope) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("database unreachable")
        self.stored.append(envelope)

    def calls(self) -> list[audit_events_pb2.RpcCalled]:
        return [e.parse(audit_events_pb2.RpcCalled) for e in self.stored]


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def published() -> list[tuple[str, KafkaRecord]]:
    return []


@pytest.fixture
async def channel(
    keypair: tuple[bytes, bytes],
    metrics: Metrics,
    echo_binding: ServiceBinding,
    store: Store,
    published: list[tuple[str, KafkaRecord]],
) -> AsyncIterator[grpc.aio.Channel]:
    async def publish(topic: str, record: KafkaRecord) -> None:
        published.append((topic, record))

    verifier = TokenVerifier(
        [load_pem_public_key(keypair[1])],  # type: ignore[list-item]
        issuer="lawtrail-dev",
        audience="lawtrail",
    )
    audit = AuditInterceptor(
        publish,
        server="echo-svc",
        source="/lawtrail/echo-svc",
        skip_services=frozenset(PUBLIC_SERVICES),
        store=store,
        store_timeout_s=1.0,
    )
    settings = ServiceSettings(service_name="echo-svc", grpc_address="127.0.0.1:0")
    server = GrpcServer(
        settings,
        services=[echo_binding],
        role_policy=ECHO_POLICY,
        verifier=verifier,
        metrics=metrics,
        audit=audit,
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as opened:
            yield opened
    finally:
        await server.stop(grace=0)
        await audit.drain()


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _answer_waits_for_the_store(store: Store, call: Callable[[], Any]) -> Any:
    """Start the call with the store held shut; the caller must not have its answer until it opens."""
    store.gate = asyncio.Event()
    pending = asyncio.ensure_future(call())
    await asyncio.sleep(0.3)
    assert not pending.done(), "the caller got the answer before its audit record was stored"
    assert store.stored == []
    store.gate.set()
    return await asyncio.wait_for(pending, 5)


async def test_r23_an_answered_call_is_stored_before_the_answer(
    channel: grpc.aio.Channel, store: Store, mint: Callable[..., str]
) -> None:
    unary = channel.unary_unary(f"/{ECHO}/Unary", **CODEC)
    response = await _answer_waits_for_the_store(
        store, lambda: unary(StringValue(value="hi"), metadata=_auth(mint()))
    )
    assert response.value == "hi"
    [called] = store.calls()
    assert (called.service, called.method, called.code) == (ECHO, "Unary", "OK")
    assert (called.subject, called.unit, called.subject_verified) == ("alice", "unit-a", True)
    assert store.stored[0].subject == f"/{ECHO}/Unary"
    assert store.stored[0].source == "/lawtrail/echo-svc"


async def test_r23_a_refusal_is_stored_before_the_caller_hears_of_it(
    channel: grpc.aio.Channel, store: Store
) -> None:
    unary = channel.unary_unary(f"/{ECHO}/Unary", **CODEC)

    async def refused() -> grpc.StatusCode:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await unary(StringValue(value="hi"))
        return raised.value.code()

    assert await _answer_waits_for_the_store(store, refused) is grpc.StatusCode.UNAUTHENTICATED
    [called] = store.calls()
    assert (called.code, called.subject_verified) == ("UNAUTHENTICATED", False)


async def test_r23_a_domain_error_and_a_permission_refusal_are_stored_once_each(
    channel: grpc.aio.Channel, store: Store, mint: Callable[..., str]
) -> None:
    unary = channel.unary_unary(f"/{ECHO}/Unary", **CODEC)
    with pytest.raises(grpc.aio.AioRpcError):
        await unary(StringValue(value="missing"), metadata=_auth(mint()))
    bidi = channel.stream_stream(f"/{ECHO}/Bidi", **CODEC)

    async def one() -> AsyncIterator[StringValue]:
        yield StringValue(value="x")

    with pytest.raises(grpc.aio.AioRpcError):
        async for _ in bidi(one(), metadata=_auth(mint(roles=["OFFICER"]))):
            pass
    await asyncio.sleep(0.1)
    assert [(c.method, c.code) for c in store.calls()] == [
        ("Unary", "NOT_FOUND"),
        ("Bidi", "PERMISSION_DENIED"),
    ]


async def test_r23_a_streamed_answer_ends_only_after_the_store(
    channel: grpc.aio.Channel, store: Store, mint: Callable[..., str]
) -> None:
    stream = channel.unary_stream(f"/{ECHO}/ServerStream", **CODEC)

    async def read_all() -> list[str]:
        return [r.value async for r in stream(StringValue(value="a,b"), metadata=_auth(mint()))]

    assert await _answer_waits_for_the_store(store, read_all) == ["a", "b"]
    assert [(c.method, c.code) for c in store.calls()] == [("ServerStream", "OK")]


async def test_r23_a_failed_store_falls_back_to_a_direct_publish_with_the_same_record(
    channel: grpc.aio.Channel,
    store: Store,
    published: list[tuple[str, KafkaRecord]],
    mint: Callable[..., str],
) -> None:
    store.fail = True
    unary = channel.unary_unary(f"/{ECHO}/Unary", **CODEC)
    assert (await unary(StringValue(value="hi"), metadata=_auth(mint()))).value == "hi"
    for _ in range(50):
        if published:
            break
        await asyncio.sleep(0.02)
    [(topic, record)] = published
    assert topic == AUDIT_TOPIC
    called = decode(record).parse(audit_events_pb2.RpcCalled)
    assert (called.method, called.code) == ("Unary", "OK")
