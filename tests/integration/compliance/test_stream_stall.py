"""compliance-svc's stall watchdog on the real Kafka (and faust): a faust app whose consumer stays in its
group, assigned every source partition, but hands the agent nothing more while records wait — what
faust-streaming did after a take-over on a loaded machine (docs/compliance-svc.md, "Stall watchdog") —
is stopped by the watchdog, which names the partition, so that the process is restarted.

The stall is made by stopping faust's fetcher (the task that reads from the consumer and hands records
to the agent) in a running app: the consumer keeps its membership and assignment, as in the incident.
The records are raw bytes sent straight to a test topic: what the agent makes of them (an unreadable
event, skipped) does not matter here, only whether it reads them. Runs the service's own runner
(`run_stream` with the watchdog of `bootstrap.watch_stall`) in this process.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from compliance_svc.adapters.counts import COUNTS
from compliance_svc.adapters.repository import FINDINGS, MongoFindingRepository
from compliance_svc.bootstrap import build_handlers, compliance_clock, watch_stall
from compliance_svc.domain.rules import Deadlines
from compliance_svc.entrypoints.stall import AgentProgress, StreamStalled
from compliance_svc.entrypoints.stream import StreamConfig, StreamMetrics, build_app, run_stream
from lawtrail_local.stack import Stack
from lawtrail_local.topics import Topic
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

pytestmark = pytest.mark.integration

PARTITIONS = 3
STALL_S = 6.0


async def eventually(condition: Callable[[], bool], what: str, within_s: float = 90.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s:.0f} s: {what}")
        await asyncio.sleep(0.25)


async def test_a_faust_app_that_stops_handing_the_agent_records_is_stopped_by_the_stall_watchdog(
    stack: Stack, db: AsyncDatabase[dict[str, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic = f"lawtrail.test.stream-stall-{suffix}"
    stack.create_topics([Topic(topic, PARTITIONS)])
    config = StreamConfig(
        app_id=f"compliance-stall-{suffix}",
        broker=stack.kafka_bootstrap,
        topics=(topic,),
        partitions=PARTITIONS,
        data_dir=tmp_path / "faust",
        timer_interval_s=60.0,
        deadlines=Deadlines(),
        stall_s=STALL_S,
    )
    handlers = build_handlers(MongoFindingRepository(db[FINDINGS], db[COUNTS], event_source="test"))
    registry = CollectorRegistry()
    metrics = StreamMetrics.register(registry)
    progress = AgentProgress()
    app, _ = build_app(config, handlers, compliance_clock(), metrics, progress=progress)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    task = asyncio.create_task(run_stream(app, lambda: watch_stall(app, config, progress, metrics)))
    try:
        await producer.send_and_wait(topic, b"first", key=b"k", partition=1)
        await eventually(lambda: (topic, 1) in progress.read_to, "the agent reads a first record")
        assert not task.done()

        # The stall: faust's consumer keeps its group membership and partitions, the agent gets nothing.
        await app._fetcher.stop()
        sent_at = time.monotonic()
        for n in range(3):
            await producer.send_and_wait(topic, b"waiting %d" % n, key=b"k", partition=1)

        with caplog.at_level(logging.ERROR, logger="compliance_svc.entrypoints.stall"):
            await eventually(task.done, "the watchdog stops the stalled stream", within_s=STALL_S * 4 + 30)
        took = time.monotonic() - sent_at
        with pytest.raises(StreamStalled, match="3 unread records in 1 partitions"):
            task.result()
        assert took >= STALL_S, f"stopped after {took:.1f} s, before the stall time {STALL_S} s"
        assert registry.get_sample_value("lawtrail_compliance_stream_stalls_total") == 1
        (error,) = [
            r for r in caplog.records if r.levelno == logging.ERROR and "read nothing" in r.getMessage()
        ]
        assert f"{topic}[1]: agent at 1, broker end 4" in error.getMessage()
        assert error.stalled_partitions == [  # type: ignore[attr-defined]
            {"topic": topic, "partition": 1, "next_offset": 1, "end_offset": 4}
        ]
        assert app.should_stop, "the faust app was stopped with the stream"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
