"""Serialize, within this process, the writes that touch one document — the one mechanism for it.

Why: FerretDB v1.24.2 (the local and test database) does not apply concurrent updates of ONE
document atomically — it reads the document, applies the operators, and writes it back, so two
updates racing on the same document lose one of them, even ``$inc`` and even a ``{version: n}``
filter (measured: 200 concurrent ``$inc`` from one client left the counter at 43; FerretDB issue
#3040). MongoDB applies each single-document update atomically, so there this costs an uncontended
``asyncio.Lock`` per write.

- ``serialized(collection)`` — the collection every writer uses (servicekit's repository, outbox
  relay and ``apply_once`` wrap theirs; service code that writes directly uses the same wrapper).
  A write addressed to one document by ``_id`` equality holds that document's lock for the one
  database command; any other write (``update_many``, a filter without ``_id``, ``bulk_write``…)
  holds the whole collection exclusively. Reads pass through. Never held across a Kafka call.
- ``document_lock(collection, id)`` — the document's lock itself, re-entrant within one asyncio
  task: a use case may hold it across read → decide → write ("requests for one document take
  turns", avoiding version conflicts), and the write inside takes it again without deadlock.

With one process per service (the local stack and the tests) that makes writes atomic on FerretDB
too. Two processes writing one FerretDB database still race: run one replica per service there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from weakref import WeakValueDictionary

from pymongo.asynchronous.collection import AsyncCollection

__all__ = ["DocumentLock", "SerializedCollection", "document_lock", "serialized"]


class DocumentLock:
    """An ``asyncio.Lock`` that the task holding it may take again (``async with`` it, nested)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0

    def locked(self) -> bool:
        return self._lock.locked()

    async def acquire(self) -> bool:
        task = asyncio.current_task()
        if self._owner is not None and self._owner is task:
            self._depth += 1
            return True
        await self._lock.acquire()
        self._owner, self._depth = task, 1
        return True

    def release(self) -> None:
        if self._owner is not asyncio.current_task():
            raise RuntimeError("a DocumentLock is released by the task that holds it")
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class _CollectionGate:
    """Per collection: single-document writes share it, collection-wide writes hold it alone.

    A waiting exclusive writer stops new shared holders from entering, so it is not starved.
    """

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0

    async def acquire_shared(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._exclusive and not self._exclusive_waiting)
            self._shared += 1

    async def release_shared(self) -> None:
        async with self._changed:
            self._shared -= 1
            self._changed.notify_all()

    async def acquire_exclusive(self) -> None:
        async with self._changed:
            self._exclusive_waiting += 1
            try:
                await self._changed.wait_for(lambda: not self._exclusive and not self._shared)
            finally:
                self._exclusive_waiting -= 1
            self._exclusive = True

    async def release_exclusive(self) -> None:
        async with self._changed:
            self._exclusive = False
            self._changed.notify_all()


# Weak values: a lock lives only while someone holds or waits for it, so the registry stays small.
_locks: WeakValueDictionary[tuple[str, Any], DocumentLock] = WeakValueDictionary()
_gates: dict[str, _CollectionGate] = {}


def document_lock(collection: AsyncCollection[Any], document_id: Any) -> DocumentLock:
    """The process-wide lock of document ``document_id`` in ``collection`` (``async with`` it)."""
    key = (collection.full_name, document_id)
    lock = _locks.get(key)
    if lock is None:
        lock = DocumentLock()
        _locks[key] = lock
    return lock


def _gate(full_name: str) -> _CollectionGate:
    gate = _gates.get(full_name)
    if gate is None:
        gate = _gates[full_name] = _CollectionGate()
    return gate


_MISSING = object()


def _addressed_id(filter: Any) -> Any:
    """The ``_id`` a filter pins to one value (``{"_id": x, …}``, ``{"_id": {"$eq": x}}``), or missing."""
    if not isinstance(filter, Mapping) or "_id" not in filter:
        return _MISSING
    value = filter["_id"]
    if isinstance(value, Mapping) and set(value) == {"$eq"}:
        value = value["$eq"]
    try:
        hash(value)
    except TypeError:
        return _MISSING  # an operator ($in, $gt…) or an embedded document: hold the collection
    return value


# Writes to one document named by the filter (first argument, or `filter=`).
_BY_FILTER = frozenset(
    {
        "update_one",
        "replace_one",
        "delete_one",
        "find_one_and_update",
        "find_one_and_replace",
        "find_one_and_delete",
    }
)
# Writes that may touch any number of documents: the collection exclusively.
_COLLECTION_WIDE = frozenset({"update_many", "delete_many", "insert_many", "bulk_write", "drop"})


class SerializedCollection:
    """An ``AsyncCollection`` whose writes hold ``document_lock`` (one document) or the collection
    (several); reads and everything else pass through. Build it with ``serialized(collection)``."""

    def __init__(self, collection: AsyncCollection[Any]) -> None:
        self.unwrapped = collection

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.unwrapped, name)
        if name == "insert_one":
            return self._one(attribute, lambda args, kwargs: _id_of_new(args, kwargs))
        if name in _BY_FILTER:
            return self._one(attribute, lambda args, kwargs: _addressed_id(_filter_of(args, kwargs)))
        if name in _COLLECTION_WIDE:
            return self._all(attribute)
        return attribute

    def __repr__(self) -> str:
        return f"serialized({self.unwrapped!r})"

    def _one(self, method: Any, addressed: Any) -> Any:
        async def write(*args: Any, **kwargs: Any) -> Any:
            document_id = addressed(args, kwargs)
            if document_id is _MISSING:
                return await self._all(method)(*args, **kwargs)
            gate = _gate(self.unwrapped.full_name)
            async with document_lock(self.unwrapped, document_id):
                await gate.acquire_shared()
                try:
                    return await method(*args, **kwargs)
                finally:
                    await gate.release_shared()

        return write

    def _all(self, method: Any) -> Any:
        async def write(*args: Any, **kwargs: Any) -> Any:
            gate = _gate(self.unwrapped.full_name)
            await gate.acquire_exclusive()
            try:
                return await method(*args, **kwargs)
            finally:
                await gate.release_exclusive()

        return write


def _filter_of(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    return args[0] if args else kwargs.get("filter")


def _id_of_new(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    document = args[0] if args else kwargs.get("document")
    if isinstance(document, Mapping) and "_id" in document:
        return _addressed_id({"_id": document["_id"]})
    return _MISSING


def serialized(collection: AsyncCollection[Any] | SerializedCollection) -> AsyncCollection[Any]:
    """``collection`` with its writes serialized as described above (a wrapped one is returned as is).

    Typed as an ``AsyncCollection``: it has the same methods and passes everything else through.
    """
    if isinstance(collection, SerializedCollection):
        return collection  # type: ignore[return-value]
    return SerializedCollection(collection)  # type: ignore[return-value]
