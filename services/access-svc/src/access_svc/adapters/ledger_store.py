"""MongoDB storage of the audit ledger (R4, R23-3): an append-only RFC 9162 Merkle log.

Collections, every document addressed by `_id` (the one filter FerretDB v1 pushes down); every document
but the checkpoints also carries `epoch`, the fencing token of the appender that wrote it:

| collection | `_id` | content |
|---|---|---|
| `ledger_leaves` | leaf index (int) | `leaf` (LedgerLeaf bytes), `key` (source + id), `subject` (indexed) |
| `ledger_nodes` | "level/index" | `hash` of the perfect subtree of 2^level leaves from index·2^level |
| `ledger_keys` | event source + "\\x1f" + id | `index` — at most one leaf per event |
| `ledger_head` | "head" | `size`, `frontier` (the right edge), `content_size` |
| `ledger_subjects` | an event's ce_subject | legacy, read only: `indexes` (before leaves had `subject`) |
| `ledger_checkpoints` | zero-padded size + signing time | the signed checkpoint |

Appends come in batches (one consumer poll): the new leaves, the keys and the perfect-subtree nodes the
batch completes are written with one `insert_many` per collection, then the head — the commit point —
with a compare-and-set on the head the batch was built on (its size and fencing token). A crash before
the head write leaves entries at indexes ≥ size, which the next batch overwrites (its inserts meet their
`_id`s and replace them); readers never look past the head's size, and a key or subject left by such a
batch is checked against the leaf it points at. Nodes are written once and never updated: a later change
of any of them is tampering, which proofs against an earlier signed checkpoint expose
(tests/integration/access).

Fencing: the ledger consumer runs only in the process holding the lease `consumer:access-svc.ledger`
(servicekit `ConsumerSpec.lease`), whose epoch grows with every take-over. `fence(epoch)` stamps it on
the head; every document carries the epoch of the appender that wrote it, and a write only replaces a
document whose epoch is not higher than the writer's. A former holder that wakes up after a take-over
(a long pause, a partition) therefore neither overwrites the new holder's entries nor moves the head:
its batch fails with LedgerConflict (tests/integration/access/test_ledger_batches.py,
test_ledger_replicas.py). On FerretDB a second live process cannot even start (ADR 0007); on MongoDB the
replicas wait for the lease.
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
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError
from servicekit.errors import AlreadyExists, DataLoss, NotFound
from servicekit.messaging.outbox import OutboundEvent
from servicekit.mongo import IndexSpec, VersionedRepository, serialized

from access_svc.adapters.proto_mapping import TOPIC, checkpoint_pb
from access_svc.domain.ledger import Checkpoint
from access_svc.service_layer.ports import LedgerConflict, LedgerEntry, LedgerHead, LedgerStore

Doc = dict[str, Any]
LEAVES, NODES, KEYS, HEAD, CHECKPOINTS, SUBJECTS = (
    "ledger_leaves",
    "ledger_nodes",
    "ledger_keys",
    "ledger_head",
    "ledger_checkpoints",
    "ledger_subjects",
)


# ListLedgerEntries: the leaves of one ce_subject (an equality FerretDB pushes down, index-served).
LEAF_INDEXES = (IndexSpec([("subject", 1)], name="subject"),)


def node_id(level: int, index: int) -> str:
    return f"{level}/{index}"


_CHUNK_BYTES = 8 * 1024 * 1024


def _chunks(docs: list[Doc]) -> list[list[Doc]]:
    """`docs` in runs of at most ~8 MB of leaf data (a command must stay under 16 MB)."""
    chunks: list[list[Doc]] = [[]]
    size = 0
    for doc in docs:
        weight = len(doc.get("leaf", b"")) + 100
        if chunks[-1] and size + weight > _CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(doc)
        size += weight
    return [c for c in chunks if c]


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
        self._head_exists = False
        self._epoch = 0  # the fencing token (ledger appender lease); 0 = unfenced

    async def _load(self) -> merkle.CompactRange:
        if self._range is None:
            doc = await self._head.find_one({"_id": "head"})
            if doc is None:
                self._range, self._content_size, self._head_exists = merkle.CompactRange.empty(), 0, False
            else:
                self._range = merkle.CompactRange(doc["size"], [bytes(h) for h in doc["frontier"]])
                self._content_size = doc.get("content_size", doc["size"])
                self._head_exists = True
        return self._range

    async def head(self) -> LedgerHead:
        # Read from the database, not the appender's cache: another process (a second replica) may be
        # the appender, and the head document is the commit point.
        doc = await self._head.find_one({"_id": "head"})
        if doc is None:
            return LedgerHead(0, merkle.EMPTY_ROOT, 0)
        cr = merkle.CompactRange(doc["size"], [bytes(h) for h in doc["frontier"]])
        return LedgerHead(cr.size, cr.root(), doc.get("content_size", cr.size))

    def _mine(self, _id: object) -> Doc:
        """Filter of a write of this appender: the document unless an appender with a higher fencing
        token wrote it (then the upsert's insert fails with a duplicate `_id`: a stale appender)."""
        return {"_id": _id, "epoch": {"$not": {"$gt": self._epoch}}}

    async def fence(self, epoch: int) -> None:
        self._epoch = epoch
        # Stamp the head with the new token first: from here on a stale appender's head write (filter
        # epoch ≤ its own) matches nothing. An empty ledger gets an empty head, so that a stale
        # appender cannot create the first one.
        conflict = LedgerConflict(
            f"the ledger head carries a fencing token above {epoch}: another appender took over"
        )
        if await self._head.find_one({"_id": "head"}) is None:
            try:
                await self._head.insert_one(
                    {"_id": "head", "size": 0, "frontier": [], "content_size": 0, "epoch": epoch}
                )
            except DuplicateKeyError:
                raise conflict from None
        elif (await self._head.update_one(self._mine("head"), {"$set": {"epoch": epoch}})).matched_count == 0:
            raise conflict
        self._range = None  # appended by the previous holder since: reload

    def _key_docs(self, indexes: Mapping[str, int]) -> list[Doc]:
        return [{"_id": key, "index": index, "epoch": self._epoch} for key, index in indexes.items()]

    async def _known(self, keys: Sequence[str], size: int) -> set[str]:
        """Which of `keys` are in the log: a key document below the head whose leaf is that event (a
        key left past the head by a crash may point at an index since reused by another event)."""
        found = await asyncio.gather(*(self._keys.find_one({"_id": k}) for k in keys))
        candidates = {k: int(d["index"]) for k, d in zip(keys, found, strict=True) if d and d["index"] < size}
        leaves = await asyncio.gather(
            *(self._leaves.find_one({"_id": i}, projection={"key": 1}) for i in candidates.values())
        )
        return {k for (k, _i), d in zip(candidates.items(), leaves, strict=True) if d and d.get("key") == k}

    async def _insert_new(self, collection: AsyncCollection[Doc], docs: list[Doc]) -> list[Doc]:
        """Insert `docs` with one `insert_many` (chunked below the 16 MB message limit); answers the
        ones whose `_id` was there already."""
        clashes: list[Doc] = []
        for chunk in _chunks(docs):
            try:
                await collection.insert_many(chunk, ordered=False)
            except BulkWriteError as error:
                errors = error.details.get("writeErrors", [])
                if not errors or any(e.get("code") != 11000 for e in errors):
                    raise
                clashes.extend(chunk[e["index"]] for e in errors)
        return clashes

    async def _replace_fenced(self, collection: AsyncCollection[Doc], docs: list[Doc]) -> None:
        """Replace documents left past the head by a batch that never committed — unless an appender
        with a higher fencing token wrote them: then this appender is stale (LedgerConflict)."""
        for doc in docs:
            try:
                result = await collection.replace_one(self._mine(doc["_id"]), doc, upsert=True)
            except DuplicateKeyError:
                result = None
            if result is None or (result.matched_count == 0 and result.upserted_id is None):
                self._range = None
                raise LedgerConflict(
                    f"ledger document {doc['_id']!r} past this appender's head was written by an appender "
                    f"with a fencing token above {self._epoch}: this one is stale"
                )

    async def _insert_fenced(self, collection: AsyncCollection[Doc], docs: list[Doc]) -> None:
        await self._replace_fenced(collection, await self._insert_new(collection, docs))

    async def append_batch(self, entries: Sequence[LedgerEntry]) -> list[int | None]:
        cr = await self._load()
        epoch = self._epoch
        first: dict[str, LedgerEntry] = {}
        for entry in entries:
            first.setdefault(entry.key, entry)  # a key repeated within the batch: its first record
        # The keys are claimed first, optimistically, as if every event were new (the usual case: no
        # reads at all). A key that is there already is either a committed entry of this event (a
        # redelivery: skipped) or left by a batch that never committed (its leaf names another event).
        tentative = {key: cr.size + n for n, key in enumerate(first)}
        clashed = [d["_id"] for d in await self._insert_new(self._keys, self._key_docs(tentative))]
        known = await self._known(clashed, cr.size) if clashed else set()
        fresh = [key for key in first if key not in known]
        final = {key: cr.size + n for n, key in enumerate(fresh)}
        stale_keys = set(clashed) - known
        # Keys whose index moved (an earlier record of the batch was a duplicate) or left over.
        await self._replace_fenced(
            self._keys,
            self._key_docs({k: i for k, i in final.items() if k in stale_keys or tentative[k] != i}),
        )
        trial = merkle.CompactRange(cr.size, list(cr.hashes))
        content_size = self._content_size
        leaves: list[Doc] = []
        nodes: list[Doc] = []
        for key in fresh:
            entry = first[key]
            leaves.append(
                {
                    "_id": final[key],
                    "leaf": Binary(entry.leaf),
                    "key": key,
                    "subject": entry.subject,
                    "epoch": epoch,
                }
            )
            for level, i, h in trial.append(merkle.leaf_hash(entry.leaf)):
                nodes.append({"_id": node_id(level, i), "hash": Binary(h), "epoch": epoch})
            if not entry.checkpoint:
                content_size = trial.size
        indexes: list[int | None] = []
        placed: set[str] = set()
        for entry in entries:
            if entry.key in final and entry.key not in placed:
                placed.add(entry.key)
                indexes.append(final[entry.key])
            else:
                indexes.append(None)
        if not leaves:
            return indexes
        # One bulk write per collection, concurrently; the head below only after all of them.
        await asyncio.gather(
            self._insert_fenced(self._leaves, leaves), self._insert_fenced(self._nodes, nodes)
        )
        head = {
            "size": trial.size,
            "frontier": [Binary(h) for h in trial.hashes],
            "content_size": content_size,
            "epoch": epoch,
        }
        try:
            if self._head_exists:
                # Compare-and-set on the head this batch was built on.
                result = await self._head.update_one({**self._mine("head"), "size": cr.size}, {"$set": head})
                moved = result.matched_count == 0
            else:
                await self._head.insert_one({"_id": "head", **head})
                moved = False
        except DuplicateKeyError:
            moved = True
        if moved:
            self._range = None
            raise LedgerConflict(
                f"the ledger head is no longer at size {cr.size} with fencing token ≤ {epoch}: another "
                "appender committed meanwhile; nothing of this batch was committed"
            )
        self._range, self._content_size, self._head_exists = trial, content_size, True
        return indexes

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
        if doc is None:
            return None
        # A key written by a batch that never committed may point at an index since given to another
        # event: the leaf names its own key.
        leaf = await self._leaves.find_one({"_id": int(doc["index"])}, projection={"key": 1})
        return int(doc["index"]) if leaf is not None and leaf.get("key", key) == key else None

    async def indexes_about(self, subject: str) -> list[int]:
        # The leaves name their subject (index `subject`); entries past the head are left to the caller.
        found = {
            int(d["_id"])
            for d in await self._leaves.find({"subject": subject}, projection={"_id": 1}).to_list()
        }
        # Ledgers written before leaves named their subject kept a list per subject (read only now).
        legacy = await self._subjects.find_one({"_id": subject})
        if legacy:
            older = [int(i) for i in legacy["indexes"] if int(i) not in found]
            leaves = await asyncio.gather(
                *(self._leaves.find_one({"_id": i}, projection={"subject": 1}) for i in older)
            )
            found.update(
                i for i, d in zip(older, leaves, strict=True) if d and d.get("subject", subject) == subject
            )
        return sorted(found)

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
