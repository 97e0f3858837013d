"""The stall watchdog's decision (entrypoints/stall.py): a backlog and no progress for the stall time
stops the stream; reading, storing, rebalancing, recovering or having nothing to read does not."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from compliance_svc.entrypoints.stall import (
    AgentProgress,
    Behind,
    StallWatch,
    StreamStalled,
    behind,
    watch_stream,
)

TP = ("lawtrail.media.v1.events", 1)
OTHER = ("lawtrail.case.v1.events", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_partition_whose_end_lies_beyond_the_agents_next_offset_is_behind() -> None:
    found = behind(
        [TP, OTHER],
        read_to={TP: 4},
        committed={TP: 3, OTHER: 7},
        beginning={TP: 0, OTHER: 0},
        end={TP: 9, OTHER: 7},
    )
    assert found == [Behind(TP[0], TP[1], next_offset=5, end_offset=9)]
    assert found[0].records == 4


def test_never_read_partitions_are_judged_from_the_committed_offset_and_the_log_start() -> None:
    # Nothing committed, records from 0: the agent should read from the start (auto offset reset earliest).
    assert behind([TP], {}, {}, {TP: 0}, {TP: 2}) == [Behind(TP[0], TP[1], 0, 2)]
    # Everything read and committed: no backlog.
    assert behind([TP], {}, {TP: 2}, {TP: 0}, {TP: 2}) == []
    # Records deleted by retention are no backlog; a partition without a known end is not judged.
    assert behind([TP, OTHER], {}, {}, {TP: 5}, {TP: 5}) == []


def test_a_backlog_without_progress_for_the_stall_time_is_a_stall() -> None:
    clock = Clock()
    progress = AgentProgress(clock=clock)
    watch = StallWatch(20, clock=clock)
    backlog = [Behind(TP[0], TP[1], 5, 9)]
    assert not watch.stalled(progress, False, backlog)  # first seen now
    clock.now += 19.9
    assert not watch.stalled(progress, False, backlog)
    clock.now += 0.1
    assert watch.stalled(progress, False, backlog)
    assert watch.idle_with_backlog_s(progress, False, backlog) == pytest.approx(20)


def test_reading_storing_rebalancing_or_an_empty_backlog_is_no_stall() -> None:
    clock = Clock()
    progress = AgentProgress(clock=clock)
    watch = StallWatch(20, clock=clock)
    backlog = [Behind(TP[0], TP[1], 5, 9)]
    watch.stalled(progress, False, backlog)
    clock.now += 15
    progress.read(*TP, 5)  # the agent works the backlog off: the time counts from its last read
    clock.now += 15
    assert not watch.stalled(progress, False, backlog)
    progress.store_started()  # a batch being stored (a database outage's retries) is progress
    clock.now += 100
    assert not watch.stalled(progress, False, backlog)
    progress.store_ended()
    clock.now += 19
    assert not watch.stalled(progress, False, backlog)
    clock.now += 100
    assert not watch.stalled(progress, True, backlog)  # faust rebalancing / recovering its table
    assert not watch.stalled(progress, False, [])  # idle with nothing to read: fine
    # A backlog seen again only counts from then, not from the agent's last read long ago.
    assert not watch.stalled(progress, False, backlog)
    clock.now += 20
    assert watch.stalled(progress, False, backlog)


def test_the_stall_time_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stall_s"):
        StallWatch(0)


@dataclass(frozen=True)
class FakeTP:
    topic: str
    partition: int


@dataclass
class FakeConsumer:
    assigned: list[FakeTP]
    flow_active: bool = True
    _paused_partitions: set[FakeTP] = field(default_factory=set)

    def assignment(self) -> set[FakeTP]:
        return set(self.assigned)

    async def position(self, tp: FakeTP) -> int:
        return 5

    def highwater(self, tp: FakeTP) -> int:
        return 5


@dataclass
class FakeApp:
    consumer: FakeConsumer
    rebalancing: bool = False
    in_recovery: bool = False


class FakeOffsets:
    def __init__(self, end: dict[tuple[str, int], int]) -> None:
        self.end = end

    async def ends(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {tp: self.end[tp] for tp in tps}

    async def beginnings(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return dict.fromkeys(tps, 0)

    async def committed(self, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return dict.fromkeys(tps, 5)


def run_watch(app: Any, progress: AgentProgress, clock: Clock, checks: int, reported: list[float]) -> None:
    """Run `watch_stream` for at most `checks` checks, each advancing the clock by 5 s."""
    count = 0

    async def sleep(seconds: float) -> None:
        nonlocal count
        count += 1
        if count > checks:
            raise asyncio.CancelledError
        clock.now += seconds

    async def main() -> None:
        await watch_stream(
            app=app,
            group="compliance-svc",
            topics=(TP[0],),
            progress=progress,
            watch=StallWatch(20, clock=clock),
            offsets=FakeOffsets({TP: 9}),
            interval_s=5,
            report=reported.append,
            sleep=sleep,
        )

    asyncio.run(main())


def test_the_watch_stops_a_stalled_stream_naming_the_partitions(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    progress = AgentProgress(clock=clock)
    app = FakeApp(FakeConsumer([FakeTP(*TP), FakeTP(*OTHER)]))
    reported: list[float] = []
    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(StreamStalled, match="4 unread records in 1 partitions"),
    ):
        run_watch(app, progress, clock, checks=10, reported=reported)
    assert reported == [0, 5, 10, 15, 20]
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "lawtrail.media.v1.events[1]: agent at 5, broker end 9" in record.getMessage()
    assert record.stalled_partitions == [  # type: ignore[attr-defined]
        {"topic": TP[0], "partition": TP[1], "next_offset": 5, "end_offset": 9}
    ]


def test_the_watch_leaves_a_rebalancing_or_working_stream_alone() -> None:
    clock = Clock()
    progress = AgentProgress(clock=clock)
    app = FakeApp(FakeConsumer([FakeTP(*TP)]), rebalancing=True)
    reported: list[float] = []
    with pytest.raises(asyncio.CancelledError):
        run_watch(app, progress, clock, checks=20, reported=reported)
    assert set(reported) == {0}
    # Without an assignment (still joining the group) there is nothing to judge either.
    app = FakeApp(FakeConsumer([]))
    reported.clear()
    with pytest.raises(asyncio.CancelledError):
        run_watch(app, progress, clock, checks=20, reported=reported)
    assert set(reported) == {0}
