"""One writer at a time per collection, within this process — a stopgap for FerretDB v1.24.2.

FerretDB v1 applies `update_one` / `find_one_and_update` as "read the matching document, change it in
memory, write it back by `_id`" without a transaction around the read and the write, so two concurrent
updates of one document lose one of them and a `{_id, version: v}` filter is checked only on the read
(optimistic concurrency silently fails). Measured on the local stack: 3 tasks × 300 `$inc` of one
document → 246 of 600 and 89 of 300; 4 × 100 version-checked updates → 226 reported successes, the
version advanced by 90.

The device commands and servicekit's outbox relay (claim, clear) write the same `devices` documents, so
media-svc routes every write to that collection in its process — its own and the relay's — through one
lock. With one media-svc process on FerretDB (local stack, tests) this restores per-document atomicity;
on MongoDB (production, atomic per document anyway) it only serialises this process's writes to the
collection. Several media-svc replicas on FerretDB v1 are not safe. The proper home of this is
servicekit, whose repository and relay share the documents.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

_WRITES = (
    "insert_one",
    "insert_many",
    "update_one",
    "update_many",
    "replace_one",
    "find_one_and_update",
    "find_one_and_replace",
    "find_one_and_delete",
    "delete_one",
    "delete_many",
    "bulk_write",
)


class SerializedWrites:
    """An `AsyncCollection` whose writes run one at a time; reads and everything else pass through."""

    def __init__(self, collection: AsyncCollection[Any]) -> None:
        self._collection = collection
        self._lock = asyncio.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if name not in _WRITES:
            return attribute

        async def serialized(*args: Any, **kwargs: Any) -> Any:
            async with self._lock:
                return await attribute(*args, **kwargs)

        return serialized
