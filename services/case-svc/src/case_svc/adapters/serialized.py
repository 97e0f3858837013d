"""One writer at a time per collection, within this process — a stopgap for FerretDB v1.24.2.

FerretDB v1 applies `update_one`/`find_one_and_update` as *read the matching document, change it in
memory, write it back by `_id`*, with no transaction around the read and the write (its
`handler/msg_update.go` and `common/update.go`). Two concurrent updates of one document therefore
lose one of them, and a filter such as `{_id, version: 7}` is only checked on the read: optimistic
concurrency silently fails. Measured on the local stack: 500 concurrent `$inc` of one field → 51;
200 compare-and-set updates → 81 reported successes, the version advanced by 24.

case-svc's writes to a case (commands, the recording-link projection) and servicekit's outbox relay
(claim, clear) all touch the same documents concurrently, so case-svc routes every write to the
`cases` collection of its process — its own and the relay's — through one lock. With a single case-svc
process on FerretDB (local stack, tests, benchmark) this restores per-document atomicity; MongoDB
(production) is atomic per document anyway, where the lock only serialises this process's writes.
Running several case-svc replicas against FerretDB v1 is not safe. The proper home of this is
servicekit (its repository and relay are the ones sharing documents).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection


class SerializedWrites:
    """An `AsyncCollection` whose updates run one at a time; reads and inserts pass through (a new
    document cannot lose a concurrent update: nobody else can have read it yet)."""

    def __init__(self, collection: AsyncCollection[Any]) -> None:
        self._collection = collection
        self._lock = asyncio.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            return await self._collection.update_one(*args, **kwargs)

    async def update_many(self, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            return await self._collection.update_many(*args, **kwargs)

    async def replace_one(self, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            return await self._collection.replace_one(*args, **kwargs)

    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            return await self._collection.find_one_and_update(*args, **kwargs)

    async def delete_one(self, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            return await self._collection.delete_one(*args, **kwargs)
