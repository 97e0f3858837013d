"""compliance-svc's stream lease on the real Kafka and FerretDB: of two live replicas, only the one
holding `consumer:<app id>` runs the faust app (is a member of the app's consumer group, is assigned
every partition); the other stands by and takes over when the holder stops.

Why not with two compliance-svc processes: on FerretDB a second live process of a service refuses to
start beside the first (ADR 0007's single-writer lease), so with real processes a replica only ever
meets a frozen or stopped holder, and the stream lease changes nothing a test could see
(test_compliance_findings.py's take-over test). Here both replicas are the runner the service runs
(`run_stream_while_leased` with the app of `build_app`), each with its own lease object, so each is a
distinct holder as two processes would be, in this one process.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import pytest
from compliance_svc.adapters.counts import COUNTS
from compliance_svc.adapters.repository import FINDINGS, MongoFindingRepository
from compliance_svc.bootstrap import build_handlers, compliance_clock
from compliance_svc.domain.rules import Deadlines
from compliance_svc.entrypoints.stream import StreamConfig, StreamMetrics, build_app, run_stream_while_leased
from lawtrail_local.kafka_probe import group_members
from lawtrail_local.stack import Stack
from lawtrail_local.topics import Topic
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase
from servicekit.writerlease import WriterLease

pytestmark = pytest.mark.integration

PARTITIONS = 3


@dataclass
class Replica:
    app: faust.App
    lease: WriterLease
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(run_stream_while_leased(self.app, self.lease))

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    def assigned(self, topic: str) -> set[int]:
        """The source partitions this replica's faust app consumes (asked only once it runs: the
        app's consumer is made on first access)."""
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}


async def eventually(condition: Callable[[], Any], what: str, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s:.0f} s: {what}")
        await asyncio.sleep(0.25)


async def test_only_the_stream_lease_holder_runs_the_faust_app_and_a_standby_takes_over_at_its_stop(
    stack: Stack, db: AsyncDatabase[dict[str, Any]], tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    app_id = f"compliance-lease-{suffix}"
    topic = f"lawtrail.test.stream-lease-{suffix}"
    stack.create_topics([Topic(topic, PARTITIONS)])
    handlers = build_handlers(MongoFindingRepository(db[FINDINGS], db[COUNTS], event_source="test"))

    def replica(name: str) -> Replica:
        config = StreamConfig(
            app_id=app_id,
            broker=stack.kafka_bootstrap,
            topics=(topic,),
            partitions=PARTITIONS,
            data_dir=tmp_path / name,
            timer_interval_s=60.0,
            deadlines=Deadlines(),
        )
        app, _ = build_app(config, handlers, compliance_clock(), StreamMetrics.register(CollectorRegistry()))
        lease = WriterLease(
            db, service="compliance-svc", ttl_s=3.0, name=f"consumer:{app_id}", everywhere=True
        )
        return Replica(app, lease)

    holder, standby = replica("a"), replica("b")
    holder.start()

    async def holder_alone() -> bool:
        members = await group_members(stack.kafka_bootstrap, app_id)
        return len(members) == 1 and holder.assigned(topic) == set(range(PARTITIONS))

    await eventually(holder_alone, "the first replica takes the lease, joins the group, gets every partition")
    (holder_member,) = await group_members(stack.kafka_bootstrap, app_id)

    standby.start()
    try:
        # Long enough for a second faust app to start and join the group (a few seconds here): the
        # standby must not, or it would take partitions — and series — away from the holder.
        watch_until = time.monotonic() + 20.0
        while time.monotonic() < watch_until:
            members = await group_members(stack.kafka_bootstrap, app_id)
            assert members == [holder_member], f"only the lease holder is in the faust group: {members}"
            assert holder.assigned(topic) == set(range(PARTITIONS))
            await asyncio.sleep(0.5)
        assert holder.lease.held
        assert not standby.lease.held

        await holder.stop()  # a clean stop releases the lease: the standby takes over at once

        async def standby_took_over() -> bool:
            members = await group_members(stack.kafka_bootstrap, app_id)
            return (
                standby.lease.held
                and len(members) == 1
                and members != [holder_member]
                and standby.assigned(topic) == set(range(PARTITIONS))
            )

        await eventually(standby_took_over, "the standby takes the lease and every partition over")
        assert standby.lease.epoch == holder.lease.epoch + 1, "the take-over raised the fencing token"
    finally:
        await asyncio.gather(holder.stop(), standby.stop())
