"""R23-3 tamper evidence of the audit ledger, on the real FerretDB: leaves and nodes are edited, deleted,
reordered and inserted directly in the database (as someone with database access could), and then

- inclusion proofs checked against a checkpoint signed *before* the tampering fail (or cannot be made);
- a consistency check between that checkpoint and one signed *after* a consistent rewrite of history
  (leaves, nodes and head all recomputed, as a careful forger would) exposes the rewrite.

The ledger code is the production adapter (`MongoLedgerStore`) and handlers with the real Ed25519 signer.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import lawtrail_merkle as merkle
import pytest
from access_svc.adapters.ledger_store import CHECKPOINTS, CheckpointDocuments, MongoLedgerStore, node_id
from access_svc.adapters.signing import Ed25519Signer
from access_svc.bootstrap import utc_now
from access_svc.domain.ledger import Checkpoint
from access_svc.service_layer.ledger import LedgerHandlers
from bson import Binary
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lawtrail_local.stack import Stack
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from servicekit.errors import DataLoss, NotFound

pytestmark = pytest.mark.integration

N = 20
Doc = dict[str, Any]


@dataclass
class Ledger:
    db: AsyncDatabase[Doc]
    signer: Ed25519Signer
    handlers: LedgerHandlers
    before: Checkpoint

    def fresh(self) -> LedgerHandlers:
        """Handlers over a new store object (no cached head): what a restarted service would read."""
        store = MongoLedgerStore(self.db, CheckpointDocuments(self.db[CHECKPOINTS], event_source="/test"))
        return LedgerHandlers(store, self.signer, utc_now)


def leaf(i: int) -> bytes:
    return f"event-{i}".encode()


@pytest.fixture
async def ledger(stack: Stack) -> AsyncIterator[Ledger]:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(stack.mongo_uri, tz_aware=True)
    db = client[f"ledger_tamper_{secrets.token_hex(4)}"]
    signer = Ed25519Signer(Ed25519PrivateKey.generate())
    store = MongoLedgerStore(db, CheckpointDocuments(db[CHECKPOINTS], event_source="/test"))
    handlers = LedgerHandlers(store, signer, utc_now)
    for i in range(N):
        await handlers.append(leaf(i), f"src\x1f{i}")
    before = await handlers.sign_checkpoint()
    try:
        yield Ledger(db, signer, handlers, before)
    finally:
        await client.drop_database(db.name)
        await client.close()


async def failing_inclusions(handlers: LedgerHandlers, cp: Checkpoint) -> set[int]:
    """Indexes whose stored leaf no longer proves against `cp` (refused, or proof missing)."""
    bad = set()
    for i in range(cp.tree_size):
        try:
            _, data = await handlers.entry(index=i)
            _, proof = await handlers.inclusion_proof(i, cp.tree_size)
            merkle.verify_inclusion(i, cp.tree_size, merkle.leaf_hash(data), proof, cp.root_hash)
        except (merkle.ProofError, DataLoss, NotFound):
            bad.add(i)
    return bad


async def rewrite_history(db: AsyncDatabase[Doc], leaves: list[bytes]) -> None:
    """A careful forger: recomputes every leaf, node and the head from a new list of leaves."""
    for name in ("ledger_leaves", "ledger_nodes", "ledger_head"):
        await db[name].delete_many({})
    cr = merkle.CompactRange.empty()
    for i, data in enumerate(leaves):
        for level, index, h in cr.append(merkle.leaf_hash(data)):
            await db["ledger_nodes"].replace_one(
                {"_id": node_id(level, index)}, {"hash": Binary(h)}, upsert=True
            )
        await db["ledger_leaves"].replace_one(
            {"_id": i}, {"leaf": Binary(data), "key": f"forged{i}"}, upsert=True
        )
    await db["ledger_head"].replace_one(
        {"_id": "head"},
        {"size": cr.size, "frontier": [Binary(h) for h in cr.hashes], "content_size": cr.size},
        upsert=True,
    )


async def test_r23_untouched_ledger_proves_every_entry(ledger: Ledger) -> None:
    assert await failing_inclusions(ledger.fresh(), ledger.before) == set()


async def edit_leaf(db: AsyncDatabase[Doc]) -> set[int]:
    await db["ledger_leaves"].update_one({"_id": 5}, {"$set": {"leaf": Binary(b"event-5 (edited)")}})
    return {5}


async def edit_node(db: AsyncDatabase[Doc]) -> set[int]:
    # The level-1 node over leaves 8..9 is in the proofs of leaves 10 and 11 (and is 8's and 9's parent).
    await db["ledger_nodes"].update_one({"_id": "1/4"}, {"$set": {"hash": Binary(bytes(32))}})
    return {10, 11}


async def delete_leaf(db: AsyncDatabase[Doc]) -> set[int]:
    await db["ledger_leaves"].delete_one({"_id": 13})
    return {13}


async def delete_node(db: AsyncDatabase[Doc]) -> set[int]:
    await db["ledger_nodes"].delete_one({"_id": "2/1"})  # leaves 4..7: in the proofs of 0..3
    return {0, 1, 2, 3}


async def reorder_leaves(db: AsyncDatabase[Doc]) -> set[int]:
    three = await db["ledger_leaves"].find_one({"_id": 3})
    four = await db["ledger_leaves"].find_one({"_id": 4})
    assert three is not None
    assert four is not None
    await db["ledger_leaves"].update_one({"_id": 3}, {"$set": {"leaf": four["leaf"]}})
    await db["ledger_leaves"].update_one({"_id": 4}, {"$set": {"leaf": three["leaf"]}})
    return {3, 4}


async def insert_leaf(db: AsyncDatabase[Doc]) -> set[int]:
    # Shift leaves 7.. up by one and put a forged entry at 7 (the head is left alone: same size).
    for i in range(N - 1, 6, -1):
        doc = await db["ledger_leaves"].find_one({"_id": i - 1})
        assert doc is not None
        await db["ledger_leaves"].update_one({"_id": i}, {"$set": {"leaf": doc["leaf"]}})
    await db["ledger_leaves"].update_one({"_id": 7}, {"$set": {"leaf": Binary(b"forged")}})
    return set(range(7, N))


Tamper = Callable[[AsyncDatabase[Doc]], Coroutine[Any, Any, set[int]]]


@pytest.mark.parametrize(
    "tamper", [edit_leaf, edit_node, delete_leaf, delete_node, reorder_leaves, insert_leaf]
)
async def test_r23_tampering_with_stored_leaves_or_nodes_breaks_proofs_against_an_earlier_checkpoint(
    ledger: Ledger, tamper: Tamper
) -> None:
    expected = await tamper(ledger.db)
    failing = await failing_inclusions(ledger.fresh(), ledger.before)
    assert expected <= failing, f"{tamper.__name__}: entries {sorted(expected - failing)} still prove"


@pytest.mark.parametrize(
    ("name", "forge"),
    [
        ("edited", lambda ls: [*ls[:5], b"event-5 (edited)", *ls[6:]]),
        ("deleted", lambda ls: [*ls[:9], *ls[10:]]),
        ("reordered", lambda ls: [*ls[:3], ls[4], ls[3], *ls[5:]]),
        ("inserted", lambda ls: [*ls[:7], b"forged", *ls[7:]]),
    ],
)
async def test_r23_a_consistent_rewrite_of_history_fails_the_consistency_check_between_checkpoints(
    ledger: Ledger, name: str, forge: Callable[[list[bytes]], list[bytes]]
) -> None:
    await rewrite_history(ledger.db, [*forge([leaf(i) for i in range(N)]), b"later-1", b"later-2"])
    handlers = ledger.fresh()
    after = await handlers.sign_checkpoint()
    assert after.tree_size > ledger.before.tree_size
    # The forger's ledger is internally consistent: its own proofs against its own checkpoint verify…
    assert await failing_inclusions(handlers, after) == set()
    # …but it is not an extension of what was signed before.
    proof = await handlers.consistency_proof(ledger.before.tree_size, after.tree_size)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(
            ledger.before.tree_size, after.tree_size, ledger.before.root_hash, after.root_hash, proof
        )


async def test_r23_honest_growth_passes_the_consistency_check(ledger: Ledger) -> None:
    for i in range(N, N + 7):
        await ledger.handlers.append(leaf(i), f"src\x1f{i}")
    after = await ledger.handlers.sign_checkpoint()
    proof = await ledger.fresh().consistency_proof(ledger.before.tree_size, after.tree_size)
    merkle.verify_consistency(
        ledger.before.tree_size, after.tree_size, ledger.before.root_hash, after.root_hash, proof
    )
