"""R4, R23-3: the audit ledger's batched appends on the real FerretDB (production `MongoLedgerStore`).

- a batch is appended in order, once per event (duplicates earlier in the log or in the batch itself
  are skipped), and the head's root is the RFC 9162 root of the stored leaves;
- a batch cut short before its head write (the commit point) leaves entries past the head, which the
  next batch overwrites; a key it left behind does not make its event count as appended, and its
  subject index does not list another event;
- fencing: an appender whose fencing token is lower than the one the head carries (a stale appender
  after a lease take-over) fails to commit and overwrites none of the newer appender's entries.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import lawtrail_merkle as merkle
import pytest
from access_svc.adapters.ledger_store import CHECKPOINTS, LEAVES, CheckpointDocuments, MongoLedgerStore
from access_svc.service_layer.ports import LedgerConflict, LedgerEntry
from lawtrail_local.stack import Stack
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect

pytestmark = pytest.mark.integration

Doc = dict[str, Any]


def entry(name: str, subject: str = "") -> LedgerEntry:
    return LedgerEntry(f"event-{name}".encode(), f"src\x1f{name}", subject)


def store_of(db: AsyncDatabase[Doc]) -> MongoLedgerStore:
    """A new store object (no cached head): what another process, or a restarted one, has."""
    return MongoLedgerStore(db, CheckpointDocuments(db[CHECKPOINTS], event_source="/test"))


async def stored_leaves(db: AsyncDatabase[Doc], size: int) -> list[bytes]:
    docs = {d["_id"]: bytes(d["leaf"]) for d in await db[LEAVES].find({}).to_list()}
    return [docs[i] for i in range(size)]


async def assert_consistent(db: AsyncDatabase[Doc], expected: list[bytes]) -> None:
    head = await store_of(db).head()
    assert head.size == len(expected)
    assert await stored_leaves(db, head.size) == expected
    assert head.root == merkle.root_of_leaves(expected)


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[AsyncDatabase[Doc]]:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(stack.mongo_uri, tz_aware=True)
    database = client[f"ledger_batches_{secrets.token_hex(4)}"]
    try:
        yield database
    finally:
        await client.drop_database(database.name)
        await client.close()


async def test_r23_a_batch_appends_each_event_once_in_order(db: AsyncDatabase[Doc]) -> None:
    store = store_of(db)
    assert await store.append_batch([entry(str(i)) for i in range(5)]) == [0, 1, 2, 3, 4]
    batch = [entry("2"), entry("5"), entry("6"), entry("5"), *(entry(str(i)) for i in range(7, 40))]
    indexes = await store.append_batch(batch)
    assert indexes[:4] == [None, 5, 6, None], "earlier in the log, then earlier in the batch"
    assert indexes[4:] == list(range(7, 40))
    await assert_consistent(db, [f"event-{i}".encode() for i in range(40)])
    assert await store_of(db).index_of("src\x1f17") == 17


class HeadWriteFails(Exception):
    pass


async def test_r23_a_batch_cut_short_before_the_head_is_overwritten_and_not_counted(
    db: AsyncDatabase[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    await store_of(db).append_batch([entry("a", "case-1"), entry("b")])
    crashing = store_of(db)

    async def fail(*args: object, **kwargs: object) -> None:
        raise AutoReconnect("the process died before the head write")

    monkeypatch.setattr(crashing._head, "update_one", fail)
    with pytest.raises(AutoReconnect):
        await crashing.append_batch([entry("lost-1", "case-1"), entry("lost-2")])
    monkeypatch.undo()
    assert (await store_of(db).head()).size == 2, "nothing past the head is committed"

    # After the restart, other events come first (another partition): they take indexes 2 and 3.
    restarted = store_of(db)
    assert await restarted.append_batch([entry("c"), entry("d", "case-2")]) == [2, 3]
    # The events of the cut-short batch are redelivered: their keys point at reused indexes, yet they
    # are appended, not taken for duplicates.
    assert await restarted.append_batch([entry("lost-1", "case-1"), entry("lost-2")]) == [4, 5]
    await assert_consistent(
        db, [b"event-a", b"event-b", b"event-c", b"event-d", b"event-lost-1", b"event-lost-2"]
    )
    assert await restarted.indexes_about("case-1") == [0, 4]
    assert await restarted.indexes_about("case-2") == [3]


async def test_r23_a_stale_appender_cannot_commit_or_overwrite_after_a_take_over(
    db: AsyncDatabase[Doc],
) -> None:
    old = store_of(db)
    await old.fence(1)
    assert await old.append_batch([entry("1"), entry("2")]) == [0, 1]

    new = store_of(db)
    await new.fence(2)  # the lease was taken over: a higher token
    assert await new.append_batch([entry("3"), entry("4"), entry("5")]) == [2, 3, 4]

    # The old appender still believes the head is at 2: its leaves at 2.. would overwrite committed ones.
    with pytest.raises(LedgerConflict):
        await old.append_batch([entry("stale-1"), entry("stale-2")])
    await assert_consistent(db, [b"event-1", b"event-2", b"event-3", b"event-4", b"event-5"])
    # Reloaded, it is still stale: past the head it may write nothing the head will take.
    with pytest.raises(LedgerConflict):
        await old.append_batch([entry("stale-3")])
    with pytest.raises(LedgerConflict):
        await old.fence(1)

    assert await new.append_batch([entry("6")]) == [5], "the current appender overwrites leftovers"
    await assert_consistent(db, [f"event-{i}".encode() for i in range(1, 7)])
    assert await new.index_of("src\x1fstale-1") is None or await new.index_of("src\x1fstale-1") >= 6
