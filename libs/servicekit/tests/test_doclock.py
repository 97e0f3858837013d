"""The per-document write lock: one lock per (collection, id), gone once nobody holds it."""

import asyncio
import gc
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from servicekit.doclock import (
    _fields_of,
    _locks,
    _matches,
    _Unsupported,
    document_lock,
    serialized,
    update_each,
)


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


class _Result:
    def __init__(self, matched: int) -> None:
        self.matched_count = matched


class _Admin:
    def __init__(self, ferretdb: bool) -> None:
        self.ferretdb = ferretdb

    async def command(self, name: str) -> dict[str, object]:
        assert name == "buildInfo"
        return {"version": "7.0.0", **({"ferretdbVersion": "v1.24.2"} if self.ferretdb else {})}


class _Client:
    def __init__(self, ferretdb: bool) -> None:
        self.admin = _Admin(ferretdb)


class _Database:
    def __init__(self, ferretdb: bool) -> None:
        self.client = _Client(ferretdb)


class InMemoryCollection:
    """A collection in memory that decides filters as the database would (for the operators used here),
    and records every command it gets: what `update_each` asks of the backend."""

    def __init__(self, documents: list[dict[str, object]], *, ferretdb: bool) -> None:
        self.full_name = f"db.each-{ferretdb}"
        self.database = _Database(ferretdb)
        self.documents = {d["_id"]: dict(d) for d in documents}
        self.commands: list[tuple[str, object]] = []

    def _apply(self, filter: dict[str, object], update: dict[str, dict[str, object]]) -> int:
        document = self.documents.get(filter["_id"])
        if document is None or not _matches(document, filter):
            return 0
        document.update(update.get("$set", {}))
        for field in update.get("$unset", {}):
            document.pop(field, None)
        return 1

    async def find_one(self, filter: dict[str, object], projection: dict[str, int] | None = None) -> object:
        self.commands.append(("find_one", (filter, projection)))
        await asyncio.sleep(0)
        document = self.documents.get(filter["_id"])
        if document is None or projection is None:
            return document
        return {k: v for k, v in document.items() if k in projection}

    async def update_one(self, filter: dict[str, object], update: dict[str, dict[str, object]]) -> _Result:
        self.commands.append(("update_one", filter))
        await asyncio.sleep(0)
        return _Result(self._apply(filter, update))

    async def update_many(self, filter: dict[str, object], update: dict[str, object]) -> None:
        self.commands.append(("update_many", filter))
        await asyncio.sleep(0)

    async def bulk_write(self, requests: list[object], ordered: bool = True) -> _Result:
        assert not ordered
        self.commands.append(("bulk_write", [r._filter for r in requests]))  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
        return _Result(sum(self._apply(r._filter, r._doc) for r in requests))  # type: ignore[attr-defined]


_CLEAR = {"$set": {"outbox": [], "outbox_pending": False}, "$unset": {"lease": ""}}


def _pending(document_id: str, version: int) -> dict[str, object]:
    return {"_id": document_id, "version": version, "outbox": [{"seq": 1000}], "outbox_pending": True}


async def test_update_each_on_ferretdb_decides_each_by_a_point_read_and_writes_the_matches_in_one_bulk() -> (
    None
):
    """FerretDB pushes down only `{_id: x}`: each document is read by `_id` alone (only the fields its
    filter names), the filter decided here, and the documents that matched updated by ONE bulk write of
    `{_id: x}` statements; each caller learns whether its own document matched."""
    raw = InMemoryCollection([_pending("a", 1), _pending("b", 2), _pending("c", 1)], ferretdb=True)
    collection = serialized(raw)  # type: ignore[arg-type]
    updates = [({"_id": i, "version": 1}, _CLEAR) for i in ("a", "b", "c", "gone")]
    assert await update_each(collection, updates) == [True, False, True, False]
    reads = [args for name, args in raw.commands if name == "find_one"]
    assert sorted(filter["_id"] for filter, _ in reads) == ["a", "b", "c", "gone"]  # type: ignore[index]
    assert all(filter == {"_id": filter["_id"]} for filter, _ in reads)  # type: ignore[index]
    assert all(projection == {"_id": 1, "version": 1} for _, projection in reads)
    assert [c for c in raw.commands if c[0] != "find_one"] == [("bulk_write", [{"_id": "a"}, {"_id": "c"}])]
    assert raw.documents["a"]["outbox"] == []
    assert raw.documents["c"]["outbox_pending"] is False
    assert raw.documents["b"]["outbox_pending"] is True  # written since: keeps its entries
    raw.commands.clear()
    assert await update_each(collection, [({"_id": "b", "version": 1}, _CLEAR)]) == [False]
    assert [c[0] for c in raw.commands] == ["find_one"]  # nothing matched: no write at all


async def test_update_each_on_ferretdb_writes_at_most_8_statements_per_command() -> None:
    """FerretDB v1.24.2 on PostgreSQL holds a pool connection per statement of an update command until
    it ends: at 50 statements (its pool) the command never answers and the whole server stalls. So the
    matches go in commands of at most 8 statements, one after the other."""
    ids = [f"f-{n:02}" for n in range(40)]
    raw = InMemoryCollection([_pending(i, 1) for i in ids], ferretdb=True)
    collection = serialized(raw)  # type: ignore[arg-type]
    assert await update_each(collection, [({"_id": i, "version": 1}, _CLEAR) for i in ids]) == [True] * 40
    bulks = [filters for name, filters in raw.commands if name == "bulk_write"]
    assert [len(b) for b in bulks] == [8, 8, 8, 8, 8]  # type: ignore[arg-type]
    assert [f["_id"] for b in bulks for f in b] == ids  # type: ignore[attr-defined, union-attr]
    assert all(d["outbox_pending"] is False for d in raw.documents.values())

    # Each part holds the collection (shared) only for itself: a collection-wide write waiting meanwhile
    # (the next batch's insert_many) goes between two parts instead of after the whole batch.
    raw.commands.clear()
    batch = asyncio.create_task(update_each(collection, [({"_id": i, "version": 1}, _CLEAR) for i in ids]))
    for _ in range(5):  # the first part's point reads are under way
        await asyncio.sleep(0)
    assert raw.commands
    await collection.update_many({"unit": "u"}, {"$set": {"x": 1}})
    await batch
    names = [name for name, _ in raw.commands]
    assert names.index("update_many") < len(names) - 1 - names[::-1].index("bulk_write")


async def test_update_each_on_mongodb_is_one_bulk_of_the_original_filters_and_tells_which_matched() -> None:
    """MongoDB evaluates the filters itself (atomic across replicas) in one unordered bulk write; it
    reports only a total, so when fewer matched, each update is made again alone to tell which."""
    raw = InMemoryCollection([_pending("a", 1), _pending("b", 1)], ferretdb=False)
    collection = serialized(raw)  # type: ignore[arg-type]
    updates = [({"_id": i, "version": 1}, _CLEAR) for i in ("a", "b")]
    assert await update_each(collection, updates) == [True, True]
    assert raw.commands == [("bulk_write", [{"_id": "a", "version": 1}, {"_id": "b", "version": 1}])]

    raw = InMemoryCollection([_pending("a", 1), _pending("b", 2), _pending("c", 1)], ferretdb=False)
    collection = serialized(raw)  # type: ignore[arg-type]
    updates = [({"_id": i, "version": 1}, _CLEAR) for i in ("a", "b", "c")]
    assert await update_each(collection, updates) == [True, False, True]
    assert [c[0] for c in raw.commands] == ["bulk_write"] + ["update_one"] * 3
    assert raw.documents["b"]["outbox_pending"] is True
    assert raw.documents["a"]["outbox_pending"] is False


async def test_update_each_waits_for_the_documents_writers_and_two_overlapping_batches_do_not_deadlock() -> (
    None
):
    """Under every document's lock, like single-document writes: a use case holding one of the documents
    delays the batch until it is done (its write lands first), and batches naming the same documents in
    opposite orders take the locks in one stable order."""
    for ferretdb in (True, False):
        raw = InMemoryCollection([_pending(i, 1) for i in ("a", "b", "c")], ferretdb=ferretdb)
        collection = serialized(raw)  # type: ignore[arg-type]

        async def use_case(raw: InMemoryCollection, collection: Any) -> None:
            async with document_lock(raw, "b"):  # type: ignore[arg-type]
                await asyncio.sleep(0.02)
                await collection.update_one({"_id": "b"}, {"$set": {"version": 2}})

        clear = [({"_id": i, "version": 1}, _CLEAR) for i in ("a", "b", "c")]
        writer = asyncio.create_task(use_case(raw, collection))
        await asyncio.sleep(0)
        first, second = await asyncio.wait_for(
            asyncio.gather(update_each(collection, clear), update_each(collection, clear[::-1])), 2
        )
        await writer
        assert first == [True, False, True]
        assert second == [True, False, True]
        assert raw.documents["b"]["outbox_pending"] is True


async def test_update_each_of_a_caller_holding_one_of_the_documents_does_not_wait_for_itself() -> None:
    """Parts run two at a time in tasks of their own, which cannot take a lock the caller holds: a caller
    holding one of the documents (a use case across read → decide → write) gets its parts in its own
    task, where its lock is re-entrant."""
    ids = [f"f-{n:02}" for n in range(20)]
    raw = InMemoryCollection([_pending(i, 1) for i in ids], ferretdb=True)
    collection = serialized(raw)  # type: ignore[arg-type]
    # asyncio.timeout, not wait_for: wait_for would run update_each in another task than the lock's.
    async with document_lock(raw, "f-13"), asyncio.timeout(2):  # type: ignore[arg-type]
        cleared = await update_each(collection, [({"_id": i, "version": 1}, _CLEAR) for i in ids])
    assert cleared == [True] * 20


async def test_update_each_refuses_what_it_cannot_do_safely() -> None:
    raw = InMemoryCollection([_pending("a", 1)], ferretdb=True)
    collection = serialized(raw)  # type: ignore[arg-type]
    assert await update_each(collection, []) == []
    for wrong in (
        [({"version": 1}, _CLEAR)],  # not addressed by _id
        [({"_id": {"$in": ["a"]}}, _CLEAR)],
        [({"_id": "a"}, _CLEAR), ({"_id": "a", "version": 1}, _CLEAR)],  # one document twice
        [({"_id": "a"}, {"$inc": {"n": 1}})],  # not idempotent: the MongoDB retry would apply it twice
        [({"_id": "a", "version": 1}, {"$set": {"version": 2}})],  # changes what its filter reads
        [({"_id": "a", "outbox.0": {"$exists": True}}, _CLEAR)],
    ):
        with pytest.raises(ValueError, match="update_each"):
            await update_each(collection, wrong)
    assert raw.commands == []
