"""MongoDB storage of the audit ledger (R4, R23-3): an append-only RFC 9162 Merkle log.

Collections, every document addressed by `_id` (the one filter FerretDB v1 pushes down):

| collection | `_id` | content |
|---|---|---|
| `ledger_leaves` | leaf index (int) | `leaf` (the serialized LedgerLeaf), `key` (event source + id) |
| `ledger_nodes` | "level/index" | `hash` of the perfect subtree of 2^level leaves from index·2^level |
| `ledger_keys` | event source + "\\x1f" + id | `index` — at most one leaf per event |
| `ledger_head` | "head" | `size`, `frontier` (the right edge, `lawtrail_merkle.CompactRange`) |
| `ledger_subjects` | an event's ce_subject | `indexes` of its entries (ListLedgerEntries) |
| `ledger_checkpoints` | zero-padded size + signing time | the signed checkpoint |

An append writes the leaf, the nodes it completes and its key, then the head — the commit point. A crash
before the head write leaves entries at indexes ≥ size, which the next append overwrites; readers never
look past the head's size. Nodes are written once and never updated: a later change of any of them is
tampering, which proofs against an earlier signed checkpoint expose (tests/integration/access).

One appender: the store keeps the right edge in memory and writes the head unconditionally, so run one
access-svc replica (as FerretDB v1 needs anyway, servicekit README). Several replicas would split the
ledger consumer's partitions and both append; a lease on the head is the step before scaling out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import lawtrail_merkle as merkle
from bson import Binary
from lawtrail.access.v1 import access_events_pb2 as ev
from pymongo.asynchronous.database import AsyncDatabase
from servicekit.errors import AlreadyExists, DataLoss, NotFound
from servicekit.messaging.outbox import OutboundEvent
from servicekit.mongo import VersionedRepository, serialized

from access_svc.adapters.proto_mapping import TOPIC, checkpoint_pb
from access_svc.domain.ledger import Checkpoint
from access_svc.service_layer.ports import LedgerHead, LedgerStore

Doc = dict[str, Any]
LEAVES, NODES, KEYS, HEAD, CHECKPOINTS, SUBJECTS = (
    "ledger_leaves",
    "ledger_nodes",
    "ledger_keys",
    "ledger_head",
    "ledger_checkpoints",
    "ledger_subjects",
)


def node_id(level: int, index: int) -> str:
    return f"{level}/{index}"


class CheckpointDocuments(VersionedRepository):
    """Signed checkpoints, each stored with its LedgerCheckpointSigned event (embedded outbox)."""

    what = "ledger checkpoint"
    indexes = ()


class MongoLedgerStore(LedgerStore):
    def __init__(self, db: AsyncDatabase[Doc], checkpoints: CheckpointDocuments) -> None:
        self._leaves = serialized(db[LEAVES])
        self._nodes = serialized(db[NODES])
        self._keys = serialized(db[KEYS])
        self._head = serialized(db[HEAD])
        self._subjects = serialized(db[SUBJECTS])
        self._checkpoints = checkpoints
        self._range: merkle.CompactRange | None = None
        self._content_size = 0

    async def _load(self) -> merkle.CompactRange:
        if self._range is None:
            doc = await self._head.find_one({"_id": "head"})
            if doc is None:
                self._range = merkle.CompactRange.empty()
            else:
                self._range = merkle.CompactRange(doc["size"], [bytes(h) for h in doc["frontier"]])
                self._content_size = doc.get("content_size", doc["size"])
        return self._range

    async def head(self) -> LedgerHead:
        # Read from the database, not the appender's cache: another process (a second replica) may be
        # the appender, and the head document is the commit point.
        doc = await self._head.find_one({"_id": "head"})
        if doc is None:
            return LedgerHead(0, merkle.EMPTY_ROOT, 0)
        cr = merkle.CompactRange(doc["size"], [bytes(h) for h in doc["frontier"]])
        return LedgerHead(cr.size, cr.root(), doc.get("content_size", cr.size))

    async def append(
        self, leaf: bytes, key: str, *, subject: str = "", checkpoint: bool = False
    ) -> int | None:
        cr = await self._load()
        seen = await self._keys.find_one({"_id": key})
        if seen is not None and seen["index"] < cr.size:
            return None
        index = cr.size
        trial = merkle.CompactRange(cr.size, list(cr.hashes))
        completed = trial.append(merkle.leaf_hash(leaf))
        # Independent documents: written concurrently; the head below is written only after all of them.
        await asyncio.gather(
            self._leaves.replace_one({"_id": index}, {"leaf": Binary(leaf), "key": key}, upsert=True),
            self._keys.replace_one({"_id": key}, {"index": index}, upsert=True),
            *(
                self._nodes.replace_one({"_id": node_id(level, i)}, {"hash": Binary(h)}, upsert=True)
                for level, i, h in completed
            ),
            *(
                [self._subjects.update_one({"_id": subject}, {"$addToSet": {"indexes": index}}, upsert=True)]
                if subject
                else []
            ),
        )
        content_size = self._content_size if checkpoint else trial.size
        await self._head.replace_one(
            {"_id": "head"},
            {"size": trial.size, "frontier": [Binary(h) for h in trial.hashes], "content_size": content_size},
            upsert=True,
        )
        self._range, self._content_size = trial, content_size
        return index

    async def nodes(self, coordinates: Sequence[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        out: dict[tuple[int, int], bytes] = {}
        for level, index in coordinates:
            doc = await self._nodes.find_one({"_id": node_id(level, index)})
            if doc is None:
                raise DataLoss(
                    f"ledger node {node_id(level, index)} is missing: the stored ledger was altered; "
                    "compare its checkpoints (GetConsistencyProof) and restore it from a backup"
                )
            out[(level, index)] = bytes(doc["hash"])
        return out

    async def leaf(self, index: int) -> bytes:
        doc = await self._leaves.find_one({"_id": index})
        if doc is None:
            raise NotFound(f"no ledger leaf {index}")
        return bytes(doc["leaf"])

    async def index_of(self, key: str) -> int | None:
        doc = await self._keys.find_one({"_id": key})
        return None if doc is None else int(doc["index"])

    async def indexes_about(self, subject: str) -> list[int]:
        doc = await self._subjects.find_one({"_id": subject})
        return [int(i) for i in doc["indexes"]] if doc else []

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        at = checkpoint.signed_at
        # Same size, same millisecond: Ed25519 is deterministic, so it is the very same checkpoint.
        with contextlib.suppress(AlreadyExists):
            await self._insert_checkpoint(checkpoint, at)

    async def _insert_checkpoint(self, checkpoint: Checkpoint, at: datetime) -> None:
        await self._checkpoints.insert(
            {
                "_id": f"{checkpoint.tree_size:015d}.{int(at.timestamp() * 1000):015d}",
                "origin": checkpoint.origin,
                "tree_size": checkpoint.tree_size,
                "root": Binary(checkpoint.root_hash),
                "signed_at": at,
                "key_id": checkpoint.key_id,
                "signature": Binary(checkpoint.signature),
            },
            events=[
                OutboundEvent(
                    TOPIC, ev.LedgerCheckpointSigned(checkpoint=checkpoint_pb(checkpoint)), subject="ledger"
                )
            ],
        )

    async def latest_checkpoint(self) -> Checkpoint | None:
        docs = (
            await self._checkpoints.collection.find({}, projection={"outbox": 0, "outbox_pending": 0})
            .sort([("_id", -1)])
            .limit(1)
            .to_list()
        )
        if not docs:
            return None
        d = docs[0]
        at = d["signed_at"]
        return Checkpoint(
            d["origin"],
            d["tree_size"],
            bytes(d["root"]),
            at if at.tzinfo else at.replace(tzinfo=UTC),
            d["key_id"],
            bytes(d["signature"]),
        )
