"""The per-document write lock: one lock per (collection, id), gone once nobody holds it."""

import asyncio
import gc

from pymongo import AsyncMongoClient
from servicekit.doclock import _locks, document_lock


async def test_one_lock_per_document_serializes_its_writers() -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient("mongodb://127.0.0.1:9/", connect=False)
    cases, devices = client["db"]["cases"], client["db"]["devices"]
    try:
        lock = document_lock(cases, "c-1")
        assert document_lock(cases, "c-1") is lock
        assert document_lock(cases, "c-2") is not lock
        assert document_lock(devices, "c-1") is not lock

        order: list[str] = []

        async def write(name: str) -> None:
            async with document_lock(cases, "c-1"):
                order.append(f"{name} start")
                await asyncio.sleep(0.01)
                order.append(f"{name} end")

        await asyncio.gather(write("a"), write("b"))
        assert order == ["a start", "a end", "b start", "b end"]
        del lock
        gc.collect()
        assert ("db.cases", "c-1") not in _locks
    finally:
        await client.close()
