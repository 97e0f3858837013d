"""The per-document write lock: one lock per (collection, id), gone once nobody holds it."""

import asyncio
import gc
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient
from servicekit.doclock import _fields_of, _locks, _matches, _Unsupported, document_lock, serialized


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


async def test_the_task_holding_a_document_lock_may_take_it_again() -> None:
    """A use case holds the lock across read → decide → write; the write inside takes it again."""
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient("mongodb://127.0.0.1:9/", connect=False)
    try:
        lock = document_lock(client["db"]["cases"], "c-1")
        order: list[str] = []

        async def use_case(name: str) -> None:
            async with lock:
                order.append(f"{name} read")
                await asyncio.sleep(0.01)
                async with lock:  # the repository's write
                    order.append(f"{name} write")

        await asyncio.gather(use_case("a"), use_case("b"))
        assert order == ["a read", "a write", "b read", "b write"]
        assert not lock.locked()
    finally:
        await client.close()


class FakeCollection:
    """Records when each write runs; every write takes a while (a database round trip)."""

    full_name = "db.fake"

    def __init__(self) -> None:
        self.log: list[str] = []

    async def _write(self, what: str) -> None:
        self.log.append(f"{what} start")
        await asyncio.sleep(0.01)
        self.log.append(f"{what} end")

    async def update_one(self, filter: dict[str, object], update: dict[str, object]) -> None:
        document_id = filter.get("_id")
        await self._write(f"one {document_id}" if isinstance(document_id, int) else "one ?")

    async def update_many(self, filter: dict[str, object], update: dict[str, object]) -> None:
        await self._write("many")

    async def find_one(self, filter: dict[str, object]) -> str:
        return "read"


async def test_serialized_writes_by_id_lock_the_document_others_the_collection() -> None:
    raw = FakeCollection()
    collection = serialized(raw)  # type: ignore[arg-type]
    assert serialized(collection) is collection  # wrapping twice is harmless
    assert await collection.find_one({"_id": 1}) == "read"  # reads pass through

    # Two documents: in parallel. One document: one after the other.
    await asyncio.gather(
        collection.update_one({"_id": 1}, {}), collection.update_one({"_id": 2}, {"$inc": {"n": 1}})
    )
    assert raw.log[:2] == ["one 1 start", "one 2 start"]
    raw.log.clear()
    await asyncio.gather(
        collection.update_one({"_id": 1}, {}), collection.update_one({"_id": {"$eq": 1}}, {})
    )
    assert [entry.rsplit(" ", 1)[1] for entry in raw.log] == ["start", "end", "start", "end"]

    # A write not addressed by _id holds the collection: nothing runs beside it.
    for other in ({"unit": "u"}, {"_id": {"$in": [1, 2]}}):
        raw.log.clear()
        await asyncio.gather(
            collection.update_one({"_id": 1}, {}),
            collection.update_many(other, {}),
            collection.update_one(other, {}),
            collection.update_one({"_id": 2}, {}),
        )
        many = raw.log.index("many start")
        assert raw.log[many + 1] == "many end"
        one = raw.log.index("one ? start")
        assert raw.log[one + 1] == "one ? end"
        assert len(raw.log) == 8


def test_the_filter_check_used_on_ferretdb_decides_like_mongodb() -> None:
    """On FerretDB a conditional write by _id is decided in Python under the lock (only `{_id: x}` is
    pushed down there); the check must agree with MongoDB on the filters servicekit writes with."""
    now = datetime.now(UTC)
    doc = {
        "_id": "c-1",
        "version": 3,
        "outbox_pending": True,
        "outbox": [],
        "applied_events": ["s e1", "s e2"],
        "lease": now.replace(tzinfo=None),  # a client without tz_aware reads naive UTC
    }
    claimable = {"$or": [{"gone": {"$exists": False}}, {"gone": None}, {"gone": {"$lt": now}}]}
    assert _matches(doc, {"_id": "c-1", "version": 3})
    assert not _matches(doc, {"_id": "c-1", "version": 2})
    assert not _matches(doc, {"_id": "c-1", "version": True})  # BSON: a bool is not a number
    assert _matches(doc, {"_id": "c-1", "outbox_pending": True, **claimable})
    assert not _matches(doc, {"_id": "c-1", "lease": {"$lt": now - timedelta(seconds=1)}})
    assert _matches(doc, {"_id": "c-1", "lease": now})
    assert _matches(doc, {"_id": "c-1", "outbox_pending": True, "outbox": {"$size": 0}})
    assert not _matches({**doc, "outbox": [{"x": 1}]}, {"_id": "c-1", "outbox": {"$size": 0}})
    assert not _matches(doc, {"_id": "c-1", "applied_events": {"$ne": "s e2"}})
    assert _matches(doc, {"_id": "c-1", "applied_events": {"$ne": "s e3"}})
    assert _matches(doc, {"_id": "c-1", "applied_events.1": {"$exists": True}})
    assert not _matches(doc, {"_id": "c-1", "applied_events.2": {"$exists": True}})
    assert _matches(doc, {"_id": "c-1", "holder": None, "version": {"$in": [1, 3]}})
    for unknown in ({"outbox": {"$elemMatch": {"x": 1}}}, {"$where": "1"}, {"outbox": []}):
        with pytest.raises(_Unsupported):
            _matches(doc, unknown)


def test_on_ferretdb_the_read_before_a_conditional_write_takes_only_the_fields_its_filter_names() -> None:
    """The read that decides a conditional write on FerretDB projects the filter's top-level fields (a case
    document with its outbox can be large, and the read is on the write's path); the decision is the same
    as on the whole document."""
    now = datetime.now(UTC)
    doc = {
        "_id": "c-1",
        "version": 3,
        "outbox": [{"seq": 3000, "data": b"x" * 1000}],
        "outbox_pending": True,
        "applied_events": ["s e1", "s e2"],
        "lease": now,
    }
    filters = [
        {"_id": "c-1", "version": 3},
        {"_id": "c-1", "version": 2},
        {"_id": "c-1", "outbox": {"$size": 1}, "outbox_pending": True},
        {"_id": "c-1", "applied_events.1": {"$exists": True}},
        {"_id": "c-1", "$or": [{"gone": {"$exists": False}}, {"lease": {"$lt": now}}]},
    ]
    assert _fields_of(filters[0]) == {"_id", "version"}
    assert _fields_of(filters[3]) == {"_id", "applied_events"}
    assert _fields_of(filters[4]) == {"_id", "gone", "lease"}
    for unknown in ({"$where": "1"}, {"_id": 1, "$or": [{"$expr": {}}]}):
        assert _fields_of(unknown) is None  # the whole document is read; _matches decides what it can
    for wanted in filters:
        fields = _fields_of(wanted)
        assert fields is not None
        projected = {k: v for k, v in doc.items() if k in fields}
        assert _matches(projected, wanted) == _matches(doc, wanted), wanted
