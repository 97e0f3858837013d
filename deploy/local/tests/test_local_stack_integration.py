"""The real stack: Kafka and FerretDB started on free ports by the plugin's `stack` fixture."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from lawtrail_local import NotReadyError, ServiceSpec, Stack, StackError, Topic, create_topics, health_status
from lawtrail_local.ferretdb import ensure_ferretdb_binary
from lawtrail_local.ports import is_listening
from lawtrail_local.pytest_plugin import ServiceStarter
from pymongo import AsyncMongoClient

pytestmark = pytest.mark.integration


async def test_topics_exist_with_their_partition_counts(stack: Stack) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
    finally:
        await admin.close()
    for topic in stack.topics:
        assert described[topic.name] == topic.partitions


def test_creating_topics_again_is_a_no_op_but_a_partition_mismatch_fails(stack: Stack) -> None:
    assert create_topics(stack.kafka_bootstrap, stack.topics) == []
    first = stack.topics[0]
    with pytest.raises(StackError, match=f"{first.name}' exists with {first.partitions} partitions"):
        create_topics(stack.kafka_bootstrap, [Topic(first.name, first.partitions + 2)])


async def test_produce_and_consume_one_record(stack: Stack) -> None:
    topic = f"test.{uuid.uuid4().hex}"
    stack.create_topics([Topic(topic, 2)])
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"hello", key=b"case-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=stack.kafka_bootstrap, group_id=f"g-{topic}", auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    assert (record.key, record.value, record.partition) == (b"case-1", b"hello", sent.partition)


async def test_insert_and_read_one_document(stack: Stack) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(stack.mongo_uri)
    try:
        collection = client["lawtrail_local_test"]["cases"]
        await collection.insert_one({"_id": "case-1", "state": "opened"})
        assert await collection.find_one({"_id": "case-1"}) == {"_id": "case-1", "state": "opened"}
    finally:
        await client.close()


def test_service_is_killed_and_restarted(start_service: ServiceStarter, fake_spec: ServiceSpec) -> None:
    service = start_service(fake_spec, env={"LAWTRAIL_LOG_LEVEL": "DEBUG"})
    assert health_status(service.grpc_address) == "SERVING"
    assert service.env["LAWTRAIL_KAFKA_BOOTSTRAP_SERVERS"] == start_service.stack.kafka_bootstrap
    assert service.env["LAWTRAIL_MONGO_URI"] == start_service.stack.mongo_uri
    assert service.env["LAWTRAIL_LOG_LEVEL"] == "DEBUG"
    assert service.env["LAWTRAIL_MONGO_DATABASE"].startswith("lawtrail_fake_svc_")

    service.kill()
    assert health_status(service.grpc_address) is None
    service.restart()
    assert health_status(service.grpc_address) == "SERVING"
    service.stop()
    assert "fake-svc: stopped" in service.process.log_file.read_text()


def test_service_that_exits_fails_with_its_log(start_service: ServiceStarter, fake_spec: ServiceSpec) -> None:
    with pytest.raises(
        NotReadyError, match=r"(?s)fake-svc exited with exit code 3 before SERVING.*FAKE_SVC_FAIL"
    ):
        start_service(fake_spec, env={"FAKE_SVC_FAIL": "1"}, ready_timeout=30)


def test_a_component_started_from_a_worker_thread_dies_with_its_starter_on_sigkill(tmp_path: Path) -> None:
    """What the benchmarks do: `Stack.for_benchmark` (die_with_parent) started from
    `asyncio.to_thread`. The component must keep running once that worker thread has finished, and be
    killed by the kernel when the starter is killed with SIGKILL (`pkill -9 -f bench`), which runs no
    cleanup. FerretDB on SQLite stands for the stack's components (all are started alike)."""
    ensure_ferretdb_binary(lambda message: None)  # built before the child's clock starts
    script = f"""
import asyncio
from pathlib import Path
from lawtrail_local.ferretdb import FerretDB, ensure_ferretdb_binary
from lawtrail_local.ports import free_ports

async def main() -> None:
    ferretdb = FerretDB(Path({str(tmp_path)!r}), free_ports(1)[0], "sqlite")
    ferretdb.process.die_with_parent = True

    def start() -> None:
        ferretdb.start(ensure_ferretdb_binary(lambda message: None))
        ferretdb.wait_ready(60)

    await asyncio.to_thread(start)
    print(ferretdb.process.pid, ferretdb.port, flush=True)
    await asyncio.sleep(300)

asyncio.run(main())
"""
    starter = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    component = None
    try:
        assert starter.stdout is not None
        pid_text, port_text = starter.stdout.readline().split()
        component, port = int(pid_text), int(port_text)
        time.sleep(1.0)  # the worker thread that started it has ended
        assert _alive(component), "FerretDB died with the worker thread that started it"
        assert is_listening(port)
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        deadline = time.monotonic() + 5
        while _alive(component) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(component), f"FerretDB (pid {component}) outlived the process that started it"
        assert not is_listening(port)
    finally:
        starter.kill()
        starter.wait()
        if component is not None and _alive(component):
            os.kill(component, signal.SIGKILL)  # a failed run leaves nothing behind


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
