"""run_while_leased without a database: the work runs only once the lease is taken, the lease is renewed
while it runs, and whichever ends first stops the other — a lost lease cancels the work (and is not
released), a failing or ending work and a cancellation release it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from servicekit.writerlease import WriterLeaseLost, run_while_leased


class FakeLease:
    """The WriterLease interface run_while_leased uses, with the lease's fate in the test's hands."""

    def __init__(self) -> None:
        self.epoch = 0
        self.held = False
        self.log: list[str] = []
        self.free = asyncio.Event()
        self.lose = asyncio.Event()

    async def acquire_when_free(self) -> None:
        await self.free.wait()
        self.epoch += 1
        self.held = True
        self.log.append(f"acquired {self.epoch}")

    async def keep(self) -> None:
        try:
            await self.lose.wait()
        except asyncio.CancelledError:
            self.log.append("keeping stopped")
            raise
        raise WriterLeaseLost("the lease was taken over by another process")

    async def release(self) -> None:
        self.held = False
        self.log.append("released")


class Work:
    def __init__(self, lease: FakeLease, outcome: BaseException | None = None, forever: bool = True) -> None:
        self.lease = lease
        self.outcome = outcome
        self.forever = forever
        self.started = asyncio.Event()
        self.stopping = asyncio.Event()

    async def __call__(self) -> None:
        self.lease.log.append(f"working under epoch {self.lease.epoch}")
        self.started.set()
        if self.outcome is not None:
            raise self.outcome
        if not self.forever:
            return
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.stopping.set()
            await asyncio.sleep(0.01)  # a clean stop that takes a moment: awaited before the release
            self.lease.log.append("work stopped")
            raise


async def test_the_work_waits_for_the_lease_and_a_stop_releases_it_after_the_work_stopped() -> None:
    lease = FakeLease()
    work = Work(lease)
    task = asyncio.create_task(run_while_leased(lease, work, what="the job"))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert lease.log == [], "nothing runs while another process holds the lease"
    lease.free.set()
    await asyncio.wait_for(work.started.wait(), 1)
    assert lease.log == ["acquired 1", "working under epoch 1"]
    task.cancel()  # the service stops
    with pytest.raises(asyncio.CancelledError):
        await task
    assert set(lease.log[2:-1]) == {"keeping stopped", "work stopped"}
    assert lease.log[-1] == "released", "released only once the work has stopped"
    assert not lease.held


async def test_a_lost_lease_stops_the_work_and_is_not_released() -> None:
    lease = FakeLease()
    lease.free.set()
    work = Work(lease)
    task = asyncio.create_task(run_while_leased(lease, work, what="the job"))  # type: ignore[arg-type]
    await asyncio.wait_for(work.started.wait(), 1)
    lease.lose.set()  # another process took it over
    with pytest.raises(WriterLeaseLost, match="taken over"):
        await asyncio.wait_for(task, 1)
    assert lease.log[-1] == "work stopped"
    assert "released" not in lease.log, "the lease is the new holder's: nothing to release"
    assert not lease.held


@pytest.mark.parametrize(
    ("work_kwargs", "error"),
    [
        ({"outcome": ValueError("bug in the job")}, "bug in the job"),
        ({"forever": False}, "the job ended"),
    ],
)
async def test_work_that_fails_or_ends_raises_stops_renewing_and_releases_the_lease(
    work_kwargs: dict[str, Any], error: str
) -> None:
    lease = FakeLease()
    lease.free.set()
    with pytest.raises((ValueError, RuntimeError), match=error):
        await asyncio.wait_for(run_while_leased(lease, Work(lease, **work_kwargs), what="the job"), 1)  # type: ignore[arg-type]
    assert lease.log[-2:] == ["keeping stopped", "released"]
    assert not lease.held


async def test_a_cancellation_while_the_work_stops_after_a_lost_lease_waits_for_the_stop() -> None:
    """The lease is lost and the service stops at the same moment (compliance-svc's stream lease and its
    writer lease expire alike): the second cancellation must not interrupt the work's stop."""
    lease = FakeLease()
    lease.free.set()
    work = Work(lease)
    task = asyncio.create_task(run_while_leased(lease, work, what="the job"))  # type: ignore[arg-type]
    await asyncio.wait_for(work.started.wait(), 1)
    lease.lose.set()  # the runner sees the loss and cancels the work, which starts stopping...
    await asyncio.wait_for(work.stopping.wait(), 1)
    task.cancel()  # ...and meanwhile the service stops
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert "work stopped" in lease.log, "the work's stop ran to its end"
