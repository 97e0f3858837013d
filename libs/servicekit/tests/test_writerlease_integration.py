"""The single-writer lease on the real FerretDB (ADR 0007): one writer, expiry, take-over, races."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lawtrail_local.stack import Stack
from pymongo import AsyncMongoClient
from servicekit.writerlease import LEASE_COLLECTION, WriterLease, WriterLeaseHeld, _process_start_ticks

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri, tz_aware=True)
    yield client[f"lease_{uuid.uuid4().hex[:8]}"]
    await client.close()


def lease(db: Any, **kwargs: Any) -> WriterLease:
    return WriterLease(db, service="echo-svc", settle_s=0.3, **kwargs)


async def test_a_second_writer_on_ferretdb_refuses_to_start_naming_the_holder(db: Any) -> None:
    first = lease(db)
    assert await first.applies()  # the real FerretDB says so in buildInfo
    await first.acquire()
    with pytest.raises(WriterLeaseHeld, match=r"another echo-svc process writes database .* on FerretDB"):
        await lease(db).acquire()
    await first.release()
    await lease(db).acquire()  # released at a clean stop: the next one starts at once


async def test_an_expired_lease_of_a_crashed_holder_elsewhere_is_taken_over(db: Any) -> None:
    await db[LEASE_COLLECTION].insert_one(
        {
            "_id": "writer",
            "holder": {"host": "another-host", "pid": 1, "ticks": 1, "token": "x"},
            "until": datetime.now(UTC) + timedelta(seconds=1.5),
        }
    )
    with pytest.raises(WriterLeaseHeld, match="another-host"):
        await lease(db).acquire()
    await asyncio.sleep(1.6)
    taker = lease(db)
    await taker.acquire()
    assert taker.held


async def test_a_dead_holder_on_this_host_is_taken_over_at_once(db: Any) -> None:
    gone = await asyncio.create_subprocess_exec("sleep", "60")
    ticks = _process_start_ticks(gone.pid)
    gone.kill()
    await gone.wait()
    await db[LEASE_COLLECTION].insert_one(
        {
            "_id": "writer",
            "holder": {"host": socket.gethostname(), "pid": gone.pid, "ticks": ticks, "token": "x"},
            "until": datetime.now(UTC) + timedelta(minutes=5),
        }
    )
    taker = lease(db)
    await taker.acquire()  # kill -9 then restart: no wait for the expiry
    assert taker.held


async def test_racing_starters_one_wins(db: Any) -> None:
    contenders = [lease(db) for _ in range(4)]
    outcomes = await asyncio.gather(*(c.acquire() for c in contenders), return_exceptions=True)
    assert sum(o is None for o in outcomes) == 1, outcomes
    assert all(isinstance(o, WriterLeaseHeld) for o in outcomes if o is not None)


async def test_a_holder_whose_lease_was_taken_over_stops(db: Any) -> None:
    holder = lease(db, ttl_s=1.5)
    await holder.acquire()
    keeping = asyncio.create_task(holder.keep())
    await db[LEASE_COLLECTION].update_one({"_id": "writer"}, {"$set": {"holder.token": "someone-else"}})
    with pytest.raises(WriterLeaseHeld, match="taken over"):
        await asyncio.wait_for(keeping, 5)


async def test_the_holder_renews_its_lease(db: Any) -> None:
    holder = lease(db, ttl_s=1.5)
    await holder.acquire()
    keeping = asyncio.create_task(holder.keep())
    await asyncio.sleep(2.5)  # longer than the lease: renewed meanwhile
    with pytest.raises(WriterLeaseHeld):
        await lease(db).acquire()
    keeping.cancel()


async def test_on_mongodb_any_number_of_replicas_start(db: Any) -> None:
    """The policy for MongoDB (atomic per document): no lease, nothing written. No MongoDB server can
    run here, so the server kind is given instead of asked (`applies()` asks `buildInfo`)."""
    replicas = [lease(db, ferretdb=False) for _ in range(3)]
    for replica in replicas:
        await replica.acquire()
    assert not any(r.held for r in replicas)
    assert await db[LEASE_COLLECTION].count_documents({}) == 0


def group_lease(db: Any, **kwargs: Any) -> WriterLease:
    return lease(db, name="consumer:echo-svc.events", everywhere=True, ferretdb=False, **kwargs)


async def test_a_named_lease_applies_on_mongodb_too_and_its_epoch_grows_with_every_take_over(
    db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="servicekit.writerlease")
    first = group_lease(db, ttl_s=1.0)
    await first.acquire()
    assert (first.held, first.epoch) == (True, 1)
    with pytest.raises(WriterLeaseHeld, match=r"consumer:echo-svc\.events lease of echo-svc"):
        await group_lease(db).acquire()
    await asyncio.sleep(1.1)  # the holder froze: its lease expires
    second = group_lease(db)
    await second.acquire()
    assert second.epoch == 2, "a take-over raises the fencing token"
    assert "taking over the expired" in caplog.text  # a frozen holder is worth a warning
    await second.release()  # a clean stop expires the lease, keeping its epoch
    caplog.clear()
    third = group_lease(db)
    await third.acquire()
    assert third.epoch == 3
    # ...but a lease given up at a clean stop is routine (every restart): no warning.
    assert "released at a clean stop" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert await db[LEASE_COLLECTION].count_documents({"_id": "writer"}) == 0, (
        "independent of the writer lease"
    )


async def test_acquire_when_free_waits_for_the_holder_to_let_go(db: Any) -> None:
    holder = group_lease(db)
    await holder.acquire()
    waiter = group_lease(db)
    waiting = asyncio.create_task(waiter.acquire_when_free(poll_s=0.1))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await holder.release()
    await asyncio.wait_for(waiting, 5)
    assert waiter.held
    assert waiter.epoch == 2
