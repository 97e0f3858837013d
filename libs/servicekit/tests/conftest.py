"""Shared fixtures: signing keys and an in-process gRPC ``test.v1.Echo`` service with all four RPC kinds.

The integration tests (marked ``integration``) get a real Kafka + FerretDB from the lawtrail_local
plugin's session fixture ``stack``; the unit tests never touch it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from google.protobuf import descriptor_pb2, descriptor_pool, wrappers_pb2
from google.protobuf.descriptor import ServiceDescriptor
from prometheus_client import CollectorRegistry
from servicekit.auth import TokenVerifier, current_principal
from servicekit.auth.devtoken import generate_keypair, mint_token
from servicekit.config import ServiceSettings
from servicekit.errors import FailedPrecondition, NotFound
from servicekit.grpc import GrpcServer, ServiceBinding
from servicekit.metrics import Metrics

pytest_plugins = ["lawtrail_local.pytest_plugin"]

ECHO = "test.v1.Echo"
StringValue = wrappers_pb2.StringValue


def _echo_descriptor() -> ServiceDescriptor:
    """A real service descriptor (so the role-policy check and reflection see real methods)."""
    pool = descriptor_pool.Default()
    try:
        return pool.FindServiceByName(ECHO)
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto(
        name="test/v1/echo.proto",
        package="test.v1",
        dependency=["google/protobuf/wrappers.proto"],
        syntax="proto3",
    )
    service = proto.service.add(name="Echo")
    for name, client_streaming, server_streaming in [
        ("Unary", False, False),
        ("ServerStream", False, True),
        ("ServerWrite", False, True),
        ("ClientStream", True, False),
        ("Bidi", True, True),
    ]:
        service.method.add(
            name=name,
            input_type=".google.protobuf.StringValue",
            output_type=".google.protobuf.StringValue",
            client_streaming=client_streaming,
            server_streaming=server_streaming,
        )
    pool.Add(proto)
    return pool.FindServiceByName(ECHO)


class EchoServicer:
    """Echoes; 'missing' raises NotFound, 'closed' FailedPrecondition, 'bug' a RuntimeError."""

    @staticmethod
    def _reply(text: str) -> StringValue:
        if text == "missing":
            raise NotFound("record 'missing' does not exist")
        if text == "closed":
            raise FailedPrecondition("case is closed: reopen it first")
        if text == "bug":
            raise RuntimeError("secret internal detail /etc/db-password")
        if text == "whoami":
            principal = current_principal()
            return StringValue(value=f"{principal.subject}@{principal.unit}")
        return StringValue(value=text)

    async def Unary(self, request: StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> StringValue:
        if request.value.startswith("sleep:"):
            await asyncio.sleep(float(request.value.split(":")[1]))
            return StringValue(value="slept")
        return self._reply(request.value)

    def __init__(self) -> None:
        self.stream_closed = asyncio.Event()

    async def ServerStream(self, request: StringValue, context: Any) -> AsyncIterator[StringValue]:
        try:
            if request.value == "endless":
                while True:
                    yield StringValue(value="tick")
                    await asyncio.sleep(0.01)
            for part in request.value.split(","):
                yield self._reply(part)
        finally:
            self.stream_closed.set()

    async def ServerWrite(self, request: StringValue, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        for part in request.value.split(","):
            await context.write(self._reply(part))

    async def ClientStream(self, requests: AsyncIterator[StringValue], context: Any) -> StringValue:
        parts = [self._reply(request.value).value async for request in requests]
        return StringValue(value="+".join(parts))

    async def Bidi(self, requests: AsyncIterator[StringValue], context: Any) -> AsyncIterator[StringValue]:
        async for request in requests:
            yield self._reply(request.value)


def add_echo_to_server(servicer: EchoServicer, server: grpc.aio.Server) -> None:
    """What grpcio-tools would generate as ``add_EchoServicer_to_server``."""
    codec = {
        "request_deserializer": StringValue.FromString,
        "response_serializer": StringValue.SerializeToString,
    }
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(servicer.Unary, **codec),
        "ServerStream": grpc.unary_stream_rpc_method_handler(servicer.ServerStream, **codec),
        "ServerWrite": grpc.unary_stream_rpc_method_handler(servicer.ServerWrite, **codec),
        "ClientStream": grpc.stream_unary_rpc_method_handler(servicer.ClientStream, **codec),
        "Bidi": grpc.stream_stream_rpc_method_handler(servicer.Bidi, **codec),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ECHO, handlers),))


ECHO_POLICY = {
    f"/{ECHO}/Unary": frozenset(),
    f"/{ECHO}/ServerStream": frozenset({"OFFICER"}),
    f"/{ECHO}/ServerWrite": frozenset({"OFFICER"}),
    f"/{ECHO}/ClientStream": frozenset({"OFFICER", "cases:write"}),
    f"/{ECHO}/Bidi": frozenset({"UNIT_HEAD"}),
}


@pytest.fixture(scope="session")
def keypair() -> tuple[bytes, bytes]:
    return generate_keypair()


@pytest.fixture
def mint(keypair: tuple[bytes, bytes]) -> Callable[..., str]:
    def _mint(key: bytes | None = None, **overrides: Any) -> str:
        params: dict[str, Any] = {"subject": "alice", "unit": "unit-a", "roles": ["OFFICER"]}
        params.update(overrides)
        return mint_token(key or keypair[0], **params)

    return _mint


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def echo_binding() -> ServiceBinding:
    return ServiceBinding(add_echo_to_server, EchoServicer(), _echo_descriptor())


@pytest.fixture
async def echo_server(
    keypair: tuple[bytes, bytes], metrics: Metrics, echo_binding: ServiceBinding
) -> AsyncIterator[GrpcServer]:
    verifier = TokenVerifier(
        [load_pem_public_key(keypair[1])],  # type: ignore[list-item]
        issuer="lawtrail-dev",
        audience="lawtrail",
    )
    settings = ServiceSettings(service_name="echo-svc", grpc_address="127.0.0.1:0")
    server = GrpcServer(
        settings, services=[echo_binding], role_policy=ECHO_POLICY, verifier=verifier, metrics=metrics
    )
    await server.start()
    yield server
    await server.stop(grace=0)


@pytest.fixture
async def channel(echo_server: GrpcServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{echo_server.port}") as opened:
        yield opened
