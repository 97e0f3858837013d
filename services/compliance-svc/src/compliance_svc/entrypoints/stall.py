"""The stall watchdog of compliance-svc's faust agent.

faust-streaming 0.15.3 can end a rebalance with the agent's source partitions assigned, the table
recovered and "Worker ready" logged, and then never hand the agent a record it fetched: no error, no
warning (seen after a take-over on a loaded machine: faust drops records fetched at the end of a
rebalance, docs/compliance-svc.md; faust-streaming issues #175, #523, #629 report similar symptoms).
Nothing inside faust notices such a stall, so this watchdog does, from outside it:

- **progress** is the agent reading an event, or being busy with what it read (a batch being stored,
  including a database outage's retries) — or faust rebalancing or recovering its table, which may
  legitimately take long;
- a **backlog** is a source partition assigned to this consumer whose end offset, asked of the broker
  by a client of the watchdog's own (not through the consumer it watches), lies beyond the next
  offset the agent has to read (the one after the last it read, or the group's committed offset);
- with a backlog and no progress for ``stall_s`` the agent is **stalled**: the watchdog logs an ERROR
  naming each partition with the agent's next offset, the broker's end offset and the consumer's own
  view (position, high watermark, flow state), and raises ``StreamStalled``. That stops the faust app
  and the process (a failed background task), so Kubernetes restarts it: a fresh consumer joins the
  group and resumes from the committed offsets (nothing acknowledged is lost, nothing unacknowledged
  was committed). A faust app is not restarted in place (its services do not start twice cleanly).

``StallWatch`` is the decision alone (no I/O, unit-tested); ``watch_stream`` is the loop around it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


class StreamStalled(RuntimeError):
    """The agent read nothing for the stall time while its source partitions hold unread records."""


@dataclass(frozen=True)
class Behind:
    """One assigned source partition with records beyond what the agent has read."""

    topic: str
    partition: int
    next_offset: int  # the next offset the agent has to read
    end_offset: int  # the broker's end offset (one past the last record)

    @property
    def records(self) -> int:
        return self.end_offset - self.next_offset


@dataclass
class AgentProgress:
    """What the agent tells the watchdog: the last offset it read per partition, when it last read or
    finished storing, and whether a batch is being stored right now."""

    clock: Callable[[], float] = time.monotonic
    read_to: dict[tuple[str, int], int] = field(default_factory=dict)
    last_activity: float = field(default=0.0)
    storing: int = 0  # batches being stored (0 or 1: one round in flight)

    def __post_init__(self) -> None:
        self.last_activity = self.clock()

    def read(self, topic: str, partition: int, offset: int) -> None:
        self.read_to[(topic, partition)] = offset
        self.last_activity = self.clock()

    def store_started(self) -> None:
        self.storing += 1
        self.last_activity = self.clock()

    def store_ended(self) -> None:
        self.storing = max(self.storing - 1, 0)
        self.last_activity = self.clock()


def behind(
    assigned: Iterable[tuple[str, int]],
    read_to: Mapping[tuple[str, int], int],
    committed: Mapping[tuple[str, int], int],
    beginning: Mapping[tuple[str, int], int],
    end: Mapping[tuple[str, int], int],
) -> list[Behind]:
    """The assigned partitions whose end offset lies beyond the agent's next offset: the later of the
    one after the last it read, the group's committed offset and the log's first offset (records
    deleted by retention are not a backlog). A partition without a known end offset is not judged."""
    out = []
    for tp in sorted(assigned):
        if tp not in end:
            continue
        candidates = [committed.get(tp, -1), beginning.get(tp, 0)]
        if tp in read_to:
            candidates.append(read_to[tp] + 1)
        next_offset = max(candidates)
        if end[tp] > next_offset:
            out.append(Behind(tp[0], tp[1], next_offset, end[tp]))
    return out


class StallWatch:
    """Decides, check by check, whether the agent is stalled: a backlog and no progress for ``stall_s``.

    The time counts from the later of the agent's last progress and the first check that found a
    backlog, so neither a long idle spell before records arrived nor a backlog being worked off counts.
    """

    def __init__(self, stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if stall_s <= 0:
            raise ValueError(f"stall_s must be > 0, got {stall_s}")
        self.stall_s = stall_s
        self._clock = clock
        self._backlog_since: float | None = None

    def idle_with_backlog_s(self, progress: AgentProgress, busy: bool, backlog: list[Behind]) -> float:
        """Seconds the agent has made no progress while a backlog waited (0 without a backlog, while
        busy, or while faust rebalances or recovers — `busy`)."""
        now = self._clock()
        if busy or progress.storing or not backlog:
            self._backlog_since = None
            return 0.0
        if self._backlog_since is None:
            self._backlog_since = now
        return max(now - max(self._backlog_since, progress.last_activity), 0.0)

    def stalled(self, progress: AgentProgress, busy: bool, backlog: list[Behind]) -> bool:
        return self.idle_with_backlog_s(progress, busy, backlog) >= self.stall_s


class Offsets(Protocol):
    """The broker's view of the source partitions, by a client independent of faust's consumer."""

    async def ends(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]: ...

    async def beginnings(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]: ...

    async def committed(self, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]: ...


class KafkaOffsets:
    """`Offsets` by aiokafka: a group-less consumer (end and first offsets) and an admin client (the
    group's committed offsets). Started lazily, stopped by `close`."""

    def __init__(self, bootstrap: str, timeout_s: float = 10.0) -> None:
        self._bootstrap = bootstrap
        self._timeout_ms = int(timeout_s * 1000)
        self._consumer: Any = None
        self._admin: Any = None

    async def _clients(self) -> tuple[Any, Any]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                enable_auto_commit=False,
                client_id="compliance-stall-watch",
            )
            await consumer.start()
            self._consumer = consumer
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap,
                client_id="compliance-stall-watch",
                request_timeout_ms=self._timeout_ms,
            )
            await admin.start()
            self._admin = admin
        return self._consumer, self._admin

    async def ends(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        from aiokafka import TopicPartition

        consumer, _ = await self._clients()
        got = await consumer.end_offsets([TopicPartition(t, p) for t, p in tps])
        return {(tp.topic, tp.partition): int(offset) for tp, offset in got.items()}

    async def beginnings(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        from aiokafka import TopicPartition

        consumer, _ = await self._clients()
        got = await consumer.beginning_offsets([TopicPartition(t, p) for t, p in tps])
        return {(tp.topic, tp.partition): int(offset) for tp, offset in got.items()}

    async def committed(self, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        from aiokafka import TopicPartition

        _, admin = await self._clients()
        got = await admin.list_consumer_group_offsets(
            group, partitions=[TopicPartition(t, p) for t, p in tps]
        )
        return {(tp.topic, tp.partition): int(meta.offset) for tp, meta in got.items() if meta is not None}

    async def close(self) -> None:
        consumer, admin = self._consumer, self._admin
        self._consumer = self._admin = None
        try:
            if consumer is not None:
                await consumer.stop()
            if admin is not None:
                await admin.close()
        except Exception:  # closing at the end of a stop: nothing left to do about it
            log.debug("closing the stall watch's Kafka clients failed", exc_info=True)


async def watch_stream(
    *,
    app: Any,
    group: str,
    topics: tuple[str, ...],
    progress: AgentProgress,
    watch: StallWatch,
    offsets: Offsets,
    interval_s: float,
    report: Callable[[float], None] = lambda _idle: None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Check every `interval_s` until cancelled; raise `StreamStalled` when the agent stalled.
    `report` receives the seconds idle with a backlog after each check (the metric)."""
    while True:
        await sleep(interval_s)
        busy = bool(getattr(app, "rebalancing", False) or getattr(app, "in_recovery", False))
        try:
            assigned = sorted(
                (tp.topic, tp.partition) for tp in app.consumer.assignment() if tp.topic in topics
            )
        except Exception:  # not started, or between assignments: nothing to judge
            assigned = []
        backlog: list[Behind] = []
        if assigned and not busy:
            try:
                end = await offsets.ends(assigned)
                beginning = await offsets.beginnings(assigned)
                committed = await offsets.committed(group, assigned)
            except Exception as error:
                # The broker cannot be asked: no verdict (the consumer has its own errors to log).
                log.warning("stall watch: cannot read the source partitions' offsets: %s", error)
                continue
            backlog = behind(assigned, progress.read_to, committed, beginning, end)
        idle = watch.idle_with_backlog_s(progress, busy, backlog)
        report(idle)
        if idle >= watch.stall_s:
            detail = await _consumer_view(app, backlog)
            log.error(
                "the faust agent read nothing for %.0f s while its source partitions hold unread records "
                "(%s); stopping so that the process is restarted and a fresh consumer resumes from the "
                "committed offsets",
                idle,
                "; ".join(detail),
                extra={
                    "stalled_partitions": [
                        {
                            "topic": b.topic,
                            "partition": b.partition,
                            "next_offset": b.next_offset,
                            "end_offset": b.end_offset,
                        }
                        for b in backlog
                    ]
                },
            )
            raise StreamStalled(
                f"the faust agent stalled for {idle:.0f} s with {sum(b.records for b in backlog)} unread "
                f"records in {len(backlog)} partitions"
            )


async def _consumer_view(app: Any, backlog: list[Behind]) -> list[str]:
    """Each stalled partition with what faust's consumer believes of it (for the next diagnosis)."""
    consumer = app.consumer
    flow = getattr(consumer, "flow_active", None)
    app_flow = getattr(getattr(app, "flow_control", None), "is_active", lambda: None)()
    paused = {(tp.topic, tp.partition) for tp in getattr(consumer, "_paused_partitions", ())}
    active = getattr(consumer, "_active_partitions", None)
    out = []
    for b in backlog:
        tp = next(
            (t for t in consumer.assignment() if (t.topic, t.partition) == (b.topic, b.partition)), None
        )
        position: object = "?"
        highwater: object = "?"
        if tp is not None:
            try:
                position = await asyncio.wait_for(consumer.position(tp), 5.0)
            except Exception as error:  # a wedged consumer thread is itself worth reporting
                position = f"unknown ({type(error).__name__})"
            try:
                highwater = consumer.highwater(tp)
            except Exception:
                highwater = "?"
        is_active = (
            None if active is None else any((t.topic, t.partition) == (b.topic, b.partition) for t in active)
        )
        out.append(
            f"{b.topic}[{b.partition}]: agent at {b.next_offset}, broker end {b.end_offset}, "
            f"consumer position {position}, consumer high watermark {highwater}, "
            f"paused={(b.topic, b.partition) in paused}, "
            f"fetching={is_active}"
        )
    # faust's aiokafka consumer runs in a thread of its own that serves calls (fetches included) by a
    # queue with two workers: calls waiting there while the consumer reads nothing point at it.
    queue = getattr(getattr(getattr(consumer, "_thread", None), "_method_queue", None), "_queue", None)
    waiting = queue.qsize() if queue is not None else "?"
    out.append(
        f"consumer flow active={flow}, app flow control active={app_flow}, rebalancing="
        f"{getattr(app, 'rebalancing', '?')}, calls waiting for the consumer thread={waiting}"
    )
    return out
