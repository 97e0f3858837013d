"""The faust-streaming side of compliance-svc: one agent over every source topic, one table, one timer.

- The **agent** reads every topic of `LAWTRAIL_COMPLIANCE_TOPICS` (CloudEvents binary mode; the raw
  record, headers included), turns each event into a fact (adapters/event_mapping.py), lets the
  `Monitor` decide, and stores the findings it raises before faust commits the offset (at-least-once;
  findings are stored idempotently by their derived id, so a redelivery raises nothing twice).
  It works in **batches**: each event is decided in its own context (the table writes need faust's
  current event), what the batch asks to store is written in one concurrent round (findings by one
  unordered insert, spot-check material likewise; ADR 0008), and only then are the batch's events
  acknowledged (`stream.noack()` + `stream.ack`), so no offset is committed before its findings are
  stored. faust's `take()`/`take_events()` were not used: they acknowledge their buffer in a `finally`
  that also runs when the agent is stopped in the middle of the batch's writes, and their timeout
  makes an idle event wait; `noack_take()` would hand the batch to another task than the one that
  set each event's context. A storing task takes whatever was read since its last round as the next
  batch (one event when idle, up to `batch_max` under a backlog): one batch is stored while the next
  is read, one round in flight, batches stored and acknowledged in order.
- The **table** `<app id>-state` holds what the time-based rules wait for (unlinked recordings,
  activities without records, recording series and their gaps). It lives in memory and is recovered
  from its changelog topic, which faust creates (its only topics: the source topics must exist with
  the partition count `LAWTRAIL_COMPLIANCE_PARTITIONS`, or faust stops with `PartitionsMismatch`).
  Its changelog partition is chosen by the key (`use_partitioner`), not by the event that wrote it:
  every write of one key lands in one partition, so a recovery replays them in order (a series written
  by events of two partitions, or a wait ended by an event of another partition, would otherwise come
  back as whichever partition's record was read last), and the timer may write it too.
- The **timer** (every `LAWTRAIL_COMPLIANCE_TIMER_INTERVAL_S`) asks the Monitor what has come due on
  the compliance clock (server time + `LAWTRAIL_COMPLIANCE_CLOCK_OFFSET_S`), stores those findings,
  then retires the state whose purpose is over (a wait that came due, a series or a link's marker
  `LAWTRAIL_COMPLIANCE_STATE_KEPT_S` past its last event), so the table does not grow with every
  recording ever seen. It judges the table one entry at a time, yielding to the event loop between
  chunks. What it fired is remembered in memory until its entry is retired (and the store refuses
  duplicates after a restart).

The app runs on the gRPC server's event loop (faust.contrib.asgi.faust_app_running, started as a
servicekit background task), so the agent and the API share one process and one Mongo client.
One replica processes the stream: a recording series is keyed by device and activity but stored in
the partition of the event that touched it, so with the partitions split over replicas a series could
be split. `run_stream_while_leased` runs the faust app only in the replica holding the lease
`consumer:<app id>`; the others serve the API and stand by. Processing on several replicas at once
needs a `group_by` repartition by series first.

Beside the app runs the stall watchdog (entrypoints/stall.py): the agent reading nothing for
`LAWTRAIL_COMPLIANCE_STALL_S` while its source partitions hold unread records stops the app and the
process, to be restarted — faust-streaming can end a rebalance without ever handing the agent a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import faust
from faust.types import TP
from prometheus_client import Counter, Gauge
from servicekit.messaging.envelope import InvalidEnvelope, decode
from servicekit.writerlease import WriterLease, run_while_leased

from compliance_svc.adapters.event_mapping import to_fact
from compliance_svc.domain import facts
from compliance_svc.domain.facts import Fact
from compliance_svc.domain.model import Raised
from compliance_svc.domain.rules import Deadlines, Judged, Monitor
from compliance_svc.domain.spotcheck import Kind, Material
from compliance_svc.entrypoints.stall import AgentProgress
from compliance_svc.service_layer.handlers import ComplianceHandlers

log = logging.getLogger(__name__)

# The timer judges this many table entries between two turns of the event loop.
JUDGED_PER_TURN = 2000


@dataclass
class StreamMetrics:
    events: Counter
    lag: Gauge
    idle_with_backlog: Gauge
    stalls: Counter
    state_entries: Gauge
    retired: Counter
    lag_by_tp: dict[tuple[str, int], int] = field(default_factory=dict)

    @classmethod
    def register(cls, registry: Any) -> StreamMetrics:
        return cls(
            events=Counter(
                "lawtrail_compliance_events_total",
                "Events read by compliance-svc's agent, by topic and outcome (applied, ignored, poison)",
                ["topic", "outcome"],
                registry=registry,
            ),
            lag=Gauge(
                "lawtrail_compliance_consumer_lag",
                "Records not yet processed by compliance-svc, per source topic (sum over its partitions)",
                ["topic"],
                registry=registry,
            ),
            idle_with_backlog=Gauge(
                "lawtrail_compliance_stream_idle_with_backlog_seconds",
                "Seconds compliance-svc's agent has read nothing while its source partitions hold unread "
                "records (the stall watchdog's measure; it stops the process at LAWTRAIL_COMPLIANCE_STALL_S)",
                registry=registry,
            ),
            stalls=Counter(
                "lawtrail_compliance_stream_stalls_total",
                "Times the stall watchdog found the agent stalled and stopped the process",
                registry=registry,
            ),
            state_entries=Gauge(
                "lawtrail_compliance_state_entries",
                "Entries in compliance-svc's faust table (waits running, series and links kept), as the "
                "timer last counted them: it follows the traffic of LAWTRAIL_COMPLIANCE_STATE_KEPT_S, "
                "not the years",
                registry=registry,
            ),
            retired=Counter(
                "lawtrail_compliance_state_retired_total",
                "Table entries deleted by the timer because their purpose was over",
                registry=registry,
            ),
        )

    def processed(self, topic: str, partition: int, offset: int, highwater: int | None) -> None:
        if highwater is None:
            return
        self.lag_by_tp[(topic, partition)] = max(highwater - offset - 1, 0)
        self.lag.labels(topic).set(sum(v for (t, _), v in self.lag_by_tp.items() if t == topic))


@dataclass(frozen=True)
class StreamConfig:
    app_id: str
    broker: str
    topics: tuple[str, ...]
    partitions: int
    data_dir: Path
    timer_interval_s: float
    deadlines: Deadlines
    # At most this many events share one round of database writes (and one round of acks).
    batch_max: int = 500
    # With a backlog (events in the source partitions beyond those read), the storing task waits this
    # long at most for the batch to fill before taking it (docs/compliance-svc.md, "Batches").
    batch_linger_s: float = 0.1
    # The agent reading nothing this long while its source partitions hold unread records stops the
    # process (entrypoints/stall.py); 0 = no watchdog.
    stall_s: float = 60.0


async def with_retry(write: Callable[[], Awaitable[object]], what: str) -> None:
    """Run an idempotent write until it succeeds: a database outage holds the agent (nothing is
    skipped, nothing acknowledged) and is logged."""
    delay = 0.2
    while True:
        try:
            await write()
            return
        except Exception:
            log.exception("storing %s failed; retrying in %.1f s", what, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


@dataclass
class Batch:
    """Events read but not yet acknowledged, and what they ask to store. The table was already written
    event by event (in each event's own context, as faust needs); the database writes wait for the
    batch's one round (`flush`)."""

    events: list[Any] = field(default_factory=list)
    raised: list[Raised] = field(default_factory=list)
    material: list[Material] = field(default_factory=list)
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (topic, applied|ignored|poison)

    def __len__(self) -> int:
        return len(self.events)


@dataclass
class Pending:
    """What the agent has read and the storing task has not taken yet."""

    batch: Batch = field(default_factory=Batch)
    waiting: asyncio.Event = field(default_factory=asyncio.Event)  # set when `batch` has events
    taken: asyncio.Event = field(default_factory=asyncio.Event)  # set when a batch was taken


def build_app(
    config: StreamConfig,
    handlers: ComplianceHandlers,
    clock: Callable[[], datetime],
    metrics: StreamMetrics,
    material: Callable[[Sequence[Material]], Awaitable[None]] | None = None,
    progress: AgentProgress | None = None,
) -> tuple[faust.App, Monitor]:
    """The faust app; `progress` receives what the agent reads and stores (for the stall watchdog)."""
    agent_progress = progress if progress is not None else AgentProgress()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        config.app_id,
        broker=f"kafka://{config.broker}",
        store="memory://",
        datadir=str(config.data_dir),
        web_enabled=False,
        autodiscover=False,
        topic_partitions=config.partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        # The table's keys and values are JSON; the source topics' records are read raw (below).
        key_serializer="json",
        value_serializer="json",
        producer_acks=-1,
        # The table's changelog records are sent one by one as the agent writes the table: a short
        # linger lets the producer send them in a few requests instead of one request each (every
        # request is a socket write, which py-spy found among the service's costliest calls).
        producer_linger_ms=10,
    )
    source = app.topic(
        *config.topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    # use_partitioner: a key's every write goes to the one changelog partition of its key (module doc).
    table = app.Table(
        f"{config.app_id}-state", default=None, partitions=config.partitions, use_partitioner=True
    )
    monitor = Monitor(table, config.deadlines)
    # Per state entry, the findings the timer stored from it, until the entry is retired (a series
    # yields its earlier gaps again at every judgement).
    fired: dict[str, set[str]] = {}

    async def flush(batch: Batch, stream: Any) -> None:
        """One concurrent round of idempotent writes for the whole batch (findings by derived id,
        material stored by id), and only then the acks that let faust commit the batch's offsets."""
        writes = []
        if batch.raised:
            writes.append(with_retry(lambda: handlers.record(batch.raised), f"{len(batch.raised)} findings"))
        note = material
        if batch.material and note is not None:
            writes.append(
                with_retry(lambda: note(batch.material), f"{len(batch.material)} spot-check material items")
            )
        await asyncio.gather(*writes)
        for event in batch.events:
            await stream.ack(event)
        for topic, outcome in batch.outcomes:
            metrics.events.labels(topic, outcome).inc()
        for tp in {e.message.tp for e in batch.events}:
            offset = max(e.message.offset for e in batch.events if e.message.tp == tp)
            try:
                highwater = app.consumer.highwater(tp)
            except Exception:
                highwater = None
            metrics.processed(tp.topic, tp.partition, offset, highwater)

    @app.agent(source)
    async def apply(stream: Any) -> None:
        # Manual acks (`noack`): an event is acknowledged only after what it raised is stored, so faust
        # never commits an offset ahead of the store — not even when the agent is stopped in the
        # middle of a batch (take()/take_events() ack their buffer in a `finally`, i.e. then too).
        manual = stream.noack()
        pending = Pending()
        storer = asyncio.ensure_future(store_batches(pending, manual))
        # Told at once, not only when the next event arrives (the writes retry by themselves; this is
        # for anything else that would stop the storing, e.g. an ack that fails).
        storer.add_done_callback(_report_stopped)
        try:
            async for event in manual.events():
                if storer.done():
                    storer.result()  # the storing task failed: fail the agent (faust stops the app)
                read(event, pending.batch)
                agent_progress.read(event.message.topic, event.message.partition, event.message.offset)
                pending.waiting.set()
                # Back-pressure: a full batch waits until the storing task has taken it.
                while len(pending.batch) >= config.batch_max:
                    pending.taken.clear()
                    taken = asyncio.ensure_future(pending.taken.wait())
                    done, _ = await asyncio.wait([storer, taken], return_when=asyncio.FIRST_COMPLETED)
                    taken.cancel()
                    if storer in done:
                        storer.result()
        finally:
            # Stopped (or crashed): a batch still being stored is not acknowledged; its events are
            # read again after the restart (stored idempotently).
            storer.cancel()

    async def store_batches(pending: Pending, stream: Any) -> None:
        """The storing side: takes whatever has been read since the last round as the next batch, so a
        batch is one event when idle and grows to `batch_max` while the writes are slower than the
        reading — one round in flight, batches stored and acknowledged in order."""
        loop = asyncio.get_running_loop()
        while True:
            await pending.waiting.wait()
            # While more events wait in the source partitions than the agent has read, let the batch
            # fill (up to batch_max, for at most batch_linger_s), so that a backlog is written in
            # fewer, larger rounds; as soon as the agent has read everything there is, or without a
            # backlog (live traffic), the batch is taken at once.
            deadline = loop.time() + config.batch_linger_s
            while len(pending.batch) < config.batch_max and backlog():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                pending.waiting.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pending.waiting.wait(), remaining)
            pending.waiting.clear()
            batch, pending.batch = pending.batch, Batch()
            pending.taken.set()
            if len(batch):
                # Storing (a database outage's retries included) is progress, not a stall.
                agent_progress.store_started()
                try:
                    await flush(batch, stream)
                finally:
                    agent_progress.store_ended()

    def backlog() -> bool:
        """Whether a source partition holds events beyond the last one the agent read (its high
        watermark as the consumer last fetched it; the last offsets read are the ones the agent tells
        the stall watchdog)."""
        for (topic, partition), offset in agent_progress.read_to.items():
            try:
                highwater = app.consumer.highwater(TP(topic, partition))
            except Exception:  # not assigned any more (a rebalance): no backlog of ours
                highwater = None
            if highwater is not None and highwater > offset + 1:
                return True
        return False

    def read(event: Any, batch: Batch) -> None:
        """Decode one event and let the Monitor decide, in the event's own context (table writes)."""
        message = event.message
        batch.events.append(event)
        try:
            fact = to_fact(decode(message))
        except InvalidEnvelope as error:
            # A poison message cannot block every later event: it is skipped and reported.
            log.error(
                "skipping an unreadable event at %s[%d]@%d: %s",
                message.topic,
                message.partition,
                message.offset,
                error,
            )
            batch.outcomes.append((message.topic, "poison"))
            return
        if fact is None:
            batch.outcomes.append((message.topic, "ignored"))
            return
        item = _material_of(fact)
        if item is not None:
            batch.material.append(item)
        batch.raised.extend(monitor.observe(fact))
        batch.outcomes.append((message.topic, "applied"))

    async def caught_up() -> bool:
        """Whether the agent has read every source partition up to its end. Deadlines are only judged
        then: a replay (or a restart after downtime) must first read the link or record that arrived in
        time on another topic, or it would raise a finding the live run never raised."""
        try:
            assigned = [tp for tp in app.consumer.assignment() if tp.topic in config.topics]
        except Exception:
            return False
        if not assigned:
            return False
        for tp in assigned:
            try:
                highwater = app.consumer.highwater(tp)
            except Exception:
                return False
            if highwater is None:
                return False
            lag = metrics.lag_by_tp.get((tp.topic, tp.partition))
            if lag is None:
                # Nothing read from it since the start: caught up if the committed position is its end.
                position = await app.consumer.position(tp)
                if highwater > 0 and (position is None or position < highwater):
                    return False
            elif lag > 0:
                return False
        return True

    @app.timer(interval=config.timer_interval_s)  # type: ignore[untyped-decorator]
    async def deadlines() -> None:
        if not await caught_up():
            return
        judged = Judged()
        for step, _ in enumerate(monitor.judging(clock(), judged), start=1):
            if step % JUDGED_PER_TURN == 0:
                await asyncio.sleep(0)  # the gRPC API and the agent share this loop
        due = [(key, raised) for key, raised in judged.raised if raised.finding_id not in fired.get(key, ())]
        if due:
            found = [raised for _key, raised in due]
            await with_retry(lambda: handlers.record(found), f"{len(found)} findings of deadlines")
            for key, raised in due:
                fired.setdefault(key, set()).add(raised.finding_id)
        # Only once what came due is stored: a crash before leaves the waits to be judged again.
        if judged.over:
            metrics.retired.inc(monitor.retire(judged.over))
            for key, _value in judged.over:
                if key not in table:
                    fired.pop(key, None)
        metrics.state_entries.set(len(table))

    return app, monitor


def _report_stopped(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "the agent's storing task failed; events read since are not stored", exc_info=task.exception()
        )


def _material_of(fact: Fact) -> Material | None:
    """Recordings and case files become R22 spot-check material."""
    if isinstance(fact, facts.RecordingIngested):
        return Material(Kind.RECORDING, fact.recording_id, fact.unit, fact.officer, fact.recorded_from)
    if isinstance(fact, facts.CaseOpened):
        return Material(Kind.CASE, fact.case_id, fact.unit, fact.officer, fact.time)
    return None


async def run_stream_while_leased(
    app: faust.App, lease: WriterLease, watchdog: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Run the faust app only while this replica holds `lease` (`consumer:<app id>`): one replica
    processes the stream — a recording series must live in one process's table (module doc) — and the
    others serve the gRPC API and wait to take over (at once after a clean stop, within the lease's ttl
    after a crash). A holder that loses its lease stops the process (`WriterLeaseLost`, an error of this
    background task), and comes back as a standby: a faust app is not restarted in place. `watchdog`
    (entrypoints/stall.py) runs beside the app and stops it, and so the process, when it stalls."""
    await run_while_leased(lease, lambda: run_stream(app, watchdog), what="the faust app")


async def run_stream(app: faust.App, watchdog: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run the faust app on this loop until cancelled (a servicekit background task), or until
    `watchdog` raises (a stalled agent: its error stops the app and is raised)."""
    from faust.contrib.asgi import faust_app_running

    try:
        async with faust_app_running(app, stop_timeout=10.0):
            if watchdog is None:
                await asyncio.Event().wait()
            else:
                await watchdog()
    finally:
        # faust_app_running stops the app only once its start has finished, and the start lasts until
        # the table is recovered: a replica stopped (or losing its lease) meanwhile must stop it too, or
        # its consumer stays in the group and its tasks keep running. (A no-op when already stopped.)
        if app.started:
            await asyncio.wait_for(app.stop(), timeout=10.0)
