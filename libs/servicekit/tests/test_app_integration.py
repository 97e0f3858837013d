"""run_service end to end on the real Kafka + FerretDB: start in order, serve, relay, consume, stop."""

from __future__ import annotations

import asyncio
import logging
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from lawtrail_local.ports import free_ports
from lawtrail_local.stack import Stack
from lawtrail_local.topics import Topic
from servicekit.app import ConsumerSpec, Runtime, Wiring, run_service
from servicekit.auth.devtoken import ensure_dev_keys, mint_token
from servicekit.config import ServiceSettings
from servicekit.grpc import ServiceBinding
from servicekit.messaging.consumer import TypeRouter, dlq_topic
from servicekit.messaging.envelope import Envelope
from servicekit.messaging.outbox import OutboundEvent
from servicekit.mongo import VersionedRepository

from .conftest import ECHO, ECHO_POLICY, EchoServicer, _echo_descriptor, add_echo_to_server

pytestmark = pytest.mark.integration
StringValue = wrappers_pb2.StringValue


@pytest.fixture(autouse=True)
def _keep_pytest_logging() -> Iterator[None]:
    """run_service installs the JSON handler on the root logger; give pytest its handlers back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def settings_for(stack: Stack, data_dir: Path) -> ServiceSettings:
    grpc_port, metrics_port = free_ports(2)
    ensure_dev_keys(data_dir)
    return ServiceSettings(
        service_name="echo-svc",
        kafka_bootstrap_servers=stack.kafka_bootstrap,
        mongo_uri=stack.mongo_uri,
        mongo_database=f"echo_svc_{uuid.uuid4().hex[:8]}",
        grpc_address=f"127.0.0.1:{grpc_port}",
        metrics_address=f"127.0.0.1:{metrics_port}",
        data_dir=data_dir,
        grace_period_s=2,
    )


async def wait_serving(address: str, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                response = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{address} did not report SERVING within {timeout_s:.0f} s")
            await asyncio.sleep(0.1)


async def test_a_service_starts_relays_consumes_serves_and_stops_cleanly(
    stack: Stack, tmp_path: Path
) -> None:
    topic, group = f"sk-app-{uuid.uuid4().hex[:8]}", f"sk-app-group-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(stack.create_topics, [Topic(topic, 1), Topic(dlq_topic(group), 1)])
    settings = settings_for(stack, tmp_path)
    consumed: asyncio.Queue[str] = asyncio.Queue()
    sweeps = asyncio.Event()

    async def on_string(message: StringValue, envelope: Envelope) -> None:
        await consumed.put(f"{message.value}@{envelope.subject}")

    async def sweep() -> None:
        sweeps.set()
        await asyncio.Event().wait()  # a periodic job would loop here until cancelled at stop

    async def bootstrap(rt: Runtime) -> Wiring:
        things = VersionedRepository(
            rt.db["things"], event_source=rt.settings.event_source, notify=rt.relay.notify
        )
        await things.insert(
            {"_id": "thing-1"}, events=[OutboundEvent(topic, StringValue(value="created"), subject="thing-1")]
        )
        router = TypeRouter()
        router.on(StringValue, on_string)
        return Wiring(
            services=[ServiceBinding(add_echo_to_server, EchoServicer(), _echo_descriptor())],
            role_policy=ECHO_POLICY,
            indexes={"things": VersionedRepository.all_indexes()},
            outbox_collections=["things"],
            consumers=[ConsumerSpec([topic], group, router, inbox_collection="inbox")],
            background={"sweep": sweep},
        )

    stop = asyncio.Event()
    service = asyncio.create_task(run_service(settings, bootstrap, stop=stop))
    try:
        await wait_serving(settings.grpc_address)
        # The event written in bootstrap went through the outbox relay to Kafka and back in.
        assert await asyncio.wait_for(consumed.get(), 30) == "created@thing-1"
        assert sweeps.is_set()
        token = mint_token(
            (tmp_path / "keys" / "dev-private.pem").read_bytes(), subject="alice", unit="u", roles=[]
        )
        async with grpc.aio.insecure_channel(settings.grpc_address) as channel:
            unary = channel.unary_unary(
                f"/{ECHO}/Unary",
                request_serializer=StringValue.SerializeToString,
                response_deserializer=StringValue.FromString,
            )
            reply = await unary(StringValue(value="whoami"), metadata=(("authorization", f"Bearer {token}"),))
        assert reply.value == "alice@u"
        url = f"http://{settings.metrics_address}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        for name in (
            "grpc_server_handled_total",
            "lawtrail_outbox_published_total",
            "process_cpu_seconds_total",
        ):
            assert name in body
    finally:
        stop.set()
        await asyncio.wait_for(service, 30)  # returns without error: a clean stop
    with pytest.raises(AssertionError, match="did not report SERVING"):
        await wait_serving(settings.grpc_address, timeout_s=1)


async def test_a_component_that_dies_stops_the_service_with_an_error(stack: Stack, tmp_path: Path) -> None:
    settings = settings_for(stack, tmp_path)

    async def broken_job() -> None:
        raise RuntimeError("the sweep lost its mind")

    async def bootstrap(rt: Runtime) -> Wiring:
        return Wiring(
            services=[ServiceBinding(add_echo_to_server, EchoServicer(), _echo_descriptor())],
            role_policy=ECHO_POLICY,
            background={"sweep": broken_job},
        )

    with pytest.raises(RuntimeError, match="background task sweep stopped unexpectedly"):
        await asyncio.wait_for(run_service(settings, bootstrap), 30)


async def test_an_incomplete_role_policy_stops_the_start(stack: Stack, tmp_path: Path) -> None:
    settings = settings_for(stack, tmp_path)

    async def bootstrap(rt: Runtime) -> Wiring:
        policy = {method: roles for method, roles in ECHO_POLICY.items() if not method.endswith("/Bidi")}
        return Wiring(
            services=[ServiceBinding(add_echo_to_server, EchoServicer(), _echo_descriptor())],
            role_policy=policy,
        )

    with pytest.raises(ValueError, match="without a role policy entry"):
        await asyncio.wait_for(run_service(settings, bootstrap), 30)
