"""Serialize, within this process, the writes that touch one document.

Why: FerretDB v1.24.2 (the local and test database) does not apply concurrent updates of ONE
document atomically — it reads the document, applies the operators, and writes it back, so two
updates racing on the same document lose one of them, even ``$inc`` and even a ``{version: n}``
filter (measured: 200 concurrent ``$inc`` from one client left the counter at 43; FerretDB issue
#3040). MongoDB applies each single-document update atomically, so there this lock only costs a
dict lookup.

Every write servicekit makes to an aggregate's document (repository insert/update, the outbox
relay's claim/clear, ``apply_once``) holds the document's lock for the duration of that one
database command — never across a network call to Kafka. With one process per service (the local
stack and the tests), that makes those writes atomic on FerretDB too. Two processes writing one
FerretDB database still race: run one replica per service against FerretDB.
"""

from __future__ import annotations

import asyncio
from typing import Any
from weakref import WeakValueDictionary

from pymongo.asynchronous.collection import AsyncCollection

__all__ = ["document_lock"]

# Weak values: a lock lives only while someone holds or waits for it, so the registry stays small.
_locks: WeakValueDictionary[tuple[str, Any], asyncio.Lock] = WeakValueDictionary()


def document_lock(collection: AsyncCollection[Any], document_id: Any) -> asyncio.Lock:
    """The process-wide lock of document ``document_id`` in ``collection`` (``async with`` it)."""
    key = (collection.full_name, document_id)
    lock = _locks.get(key)
    if lock is None:
        lock = asyncio.Lock()
        _locks[key] = lock
    return lock
