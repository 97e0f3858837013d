"""ConsumerSpec.lease without a broker: the runner consumes only while holding the group's lease, fences
the handler with the lease's epoch first, stops consuming when the lease is lost and waits to take it
over again; a consumer that dies still stops the service."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from servicekit.app import ConsumerSpec, _consume_while_leased
from servicekit.writerlease import WriterLeaseLost


class FakeLease:
    def __init__(self) -> None:
        self.epoch = 0
        self.held = False
        self.log: list[str] = []
        self.lose = asyncio.Event()

    async def acquire_when_free(self) -> None:
        self.epoch += 1
        self.held = True
        self.log.append(f"acquired {self.epoch}")

    async def keep(self) -> None:
        await self.lose.wait()
        self.lose.clear()
        raise WriterLeaseLost("taken over")

    async def release(self) -> None:
        self.held = False
        self.log.append("released")


class FakeConsumer:
    def __init__(self, log: list[str], fail: bool = False) -> None:
        self.log = log
        self.fail = fail
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.log.append("consuming")

        async def run() -> None:
            if self.fail:
                raise RuntimeError("handler bug")
            await asyncio.Event().wait()

        self.task = asyncio.create_task(run())

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.log.append("stopped")


class Handler:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def __call__(self, batch: Any) -> None:
        return None

    async def fence(self, epoch: int) -> None:
        self.log.append(f"fenced {epoch}")


async def until(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_consumes_only_under_the_lease_fenced_and_takes_it_over_again_after_losing_it() -> None:
    lease = FakeLease()
    spec = ConsumerSpec(["t"], "svc.group", Handler(lease.log), batch=True, lease=True)
    task = asyncio.create_task(
        _consume_while_leased(spec, lease, lambda: FakeConsumer(lease.log))  # type: ignore[arg-type]
    )
    await until(lambda: lease.log == ["acquired 1", "fenced 1", "consuming"])
    lease.lose.set()  # another process took the lease over
    await until(lambda: lease.log[-3:] == ["acquired 2", "fenced 2", "consuming"])
    assert lease.log[3] == "stopped", "stopped consuming before waiting for the lease again"
    task.cancel()  # the service stops
    await asyncio.gather(task, return_exceptions=True)
    assert lease.log[-2:] == ["stopped", "released"]


async def test_a_consumer_that_dies_stops_the_service_and_gives_the_lease_up() -> None:
    lease = FakeLease()
    spec = ConsumerSpec(["t"], "svc.group", Handler(lease.log), lease=True)
    with pytest.raises(RuntimeError, match="handler bug"):
        await _consume_while_leased(spec, lease, lambda: FakeConsumer(lease.log, fail=True))  # type: ignore[arg-type]
    assert lease.log[-1] == "released"
