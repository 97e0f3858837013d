"""MongoDB through PyMongo's async API: client, indexes declared in code, versioned repositories.

Written for what both FerretDB v1.24.2 (local and tests) and MongoDB (production) do: no
transactions, so every command changes ONE document — the aggregate's state, its version and its
outbox entries together. Only single-field, compound and unique indexes (FerretDB has no TTL or
partial ones). Update operators used here were checked against the real FerretDB; notably ``$pull``
with a condition and ``$push`` with ``$slice``/``$position`` are silently ignored by it, so none of
them appears below. FerretDB also applies racing updates of one document non-atomically, so every
write here goes through ``serialized(collection)`` (see ``servicekit.doclock``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from servicekit.config import ServiceSettings
from servicekit.doclock import DocumentLock, document_lock, serialized
from servicekit.errors import AlreadyExists, ConcurrencyConflict, NotFound
from servicekit.messaging.outbox import (
    LEASE_FIELD,
    OUTBOX_FIELD,
    PENDING_FIELD,
    Notify,
    OutboundEvent,
    outbox_entries,
)
from servicekit.queryshapes import ShapeRecorder

__all__ = [
    "APPLIED_FIELD",
    "OUTBOX_INDEX",
    "VERSION_FIELD",
    "Document",
    "IndexSpec",
    "Notify",
    "VersionedRepository",
    "apply_once",
    "create_client",
    "document_lock",
    "ensure_indexes",
    "serialized",
]

Document = dict[str, Any]
# ``OutboxRelay.sent``: wait until the sends at once of these documents are acknowledged.
Sent = Callable[[AsyncCollection[Document], Sequence[Any]], Awaitable[None]]


VERSION_FIELD = "version"
APPLIED_FIELD = "applied_events"
DUPLICATE_KEY = 11000
_RESERVED = frozenset({"_id", VERSION_FIELD, OUTBOX_FIELD, PENDING_FIELD, LEASE_FIELD})


def create_client(settings: ServiceSettings, **overrides: Any) -> AsyncMongoClient[Document]:
    """PyMongo's async client for ``settings.mongo_uri`` (never Motor, which reached end of life).

    ``tz_aware``: datetimes come back as aware UTC values, so they compare with ``datetime.now(UTC)``.
    """
    options: dict[str, Any] = {
        "tz_aware": True,
        "appname": settings.service_name,
        "serverSelectionTimeoutMS": 10_000,
        **overrides,
    }
    if settings.query_shapes_file is not None:
        options.setdefault("event_listeners", []).append(ShapeRecorder(settings.query_shapes_file))
    return AsyncMongoClient(settings.mongo_uri, **options)


@dataclass(frozen=True)
class IndexSpec:
    """An index declared in code: ``keys`` as ``[(field, 1 | -1), ...]``, optionally unique."""

    keys: Sequence[tuple[str, int]]
    unique: bool = False
    name: str | None = None

    def __post_init__(self) -> None:
        if not self.keys or any(direction not in (1, -1) for _, direction in self.keys):
            raise ValueError(f"index keys must be (field, 1 or -1) pairs, got {self.keys!r}")

    def model(self) -> IndexModel:
        """The pymongo index model; the name defaults to MongoDB's own (``unit_1_opened_at_-1``)."""
        options: dict[str, Any] = {"unique": self.unique}
        if self.name:
            options["name"] = self.name
        return IndexModel(list(self.keys), **options)


# What the outbox relay's sweep searches for, in `_id` order (it pages by `_id`); every repository's
# collection needs it. (Named anew: databases made before keep an unused `outbox_pending` index.)
OUTBOX_INDEX = IndexSpec([(PENDING_FIELD, 1), ("_id", 1)], name="outbox_pending_id")


async def ensure_indexes(db: AsyncDatabase[Document], indexes: Mapping[str, Sequence[IndexSpec]]) -> None:
    """Create the declared indexes (idempotent: existing identical indexes are kept); run at start.

    One ``createIndexes`` command per index: FerretDB v1.24.2 drops the connection (a server-side
    panic) when a single command re-declares two or more indexes that all exist already — which is
    exactly what every restart does.
    """
    for collection, specs in indexes.items():
        for spec in specs:
            try:
                await db[collection].create_indexes([spec.model()])
            except OperationFailure as error:
                raise RuntimeError(
                    f"cannot create index {spec} on {db.name}.{collection}: {error}; an index with the same "
                    "name but other keys or options exists — drop it or rename the declared one"
                ) from None


class VersionedRepository:
    """Base of a service's repositories: one document per aggregate, optimistic concurrency, outbox.

    Every write is a single-document operation carrying the state change, the version bump and the
    aggregate's new events (see ``servicekit.messaging.outbox``). Subclasses add the domain mapping
    (aggregate <-> document) and declare ``indexes``; ``what`` names the aggregate in messages.
    ``criteria`` names the search fields a query may combine (each leads an index of its own; see
    ``servicekit.queryshapes``).
    """

    indexes: ClassVar[Sequence[IndexSpec]] = ()
    criteria: ClassVar[frozenset[str]] = frozenset()
    what: ClassVar[str] = "record"

    def __init__(
        self,
        collection: AsyncCollection[Document],
        *,
        event_source: str,
        notify: Notify | None = None,
        sent: Sent | None = None,
    ) -> None:
        # Every write goes through the process-wide per-document locks (FerretDB v1 races).
        self.collection = serialized(collection)
        self._event_source = event_source
        self._notify = notify
        self._sent = sent

    async def sent(self, id: Any) -> None:
        """Wait (briefly) until the events of this process's writes of ``id`` are acknowledged by the
        broker, when the relay sends them at once (``OutboxRelay.sent``; nothing without ``sent``)."""
        if self._sent is not None:
            await self._sent(self.collection, [id])

    def exclusive(self, id: Any) -> DocumentLock:
        """The document's write lock, to hold across read → decide → ``update`` so that requests
        for one aggregate in this process take turns instead of conflicting (re-entrant: the
        ``update`` inside takes it again). Optional: correctness rests on the version check."""
        return document_lock(self.collection, id)

    @classmethod
    def all_indexes(cls) -> list[IndexSpec]:
        """The declared indexes plus the outbox index, for ``ensure_indexes``."""
        return [*cls.indexes, OUTBOX_INDEX]

    async def get(self, id: Any) -> Document | None:
        """The stored state of ``id`` (with ``version``), without the outbox bookkeeping."""
        return await self.collection.find_one(
            {"_id": id}, projection={OUTBOX_FIELD: 0, PENDING_FIELD: 0, LEASE_FIELD: 0}
        )

    async def get_or_raise(self, id: Any) -> Document:
        """Like ``get``, raising ``NotFound`` with a message naming the record."""
        document = await self.get(id)
        if document is None:
            raise NotFound(f"{self.what} {id!r} does not exist")
        return document

    async def insert(self, document: Document, *, events: Iterable[OutboundEvent] = ()) -> None:
        """Store a new aggregate at version 1 with its events; an existing ``_id`` is ``AlreadyExists``."""
        if "_id" not in document:
            raise ValueError("a new document needs its aggregate id as _id")
        self._refuse_reserved(document, allow_id=True)
        entries = outbox_entries(events, source=self._event_source, version=1)
        stored = {**document, VERSION_FIELD: 1, OUTBOX_FIELD: entries, PENDING_FIELD: bool(entries)}
        try:
            await self.collection.insert_one(stored)
        except DuplicateKeyError:
            raise AlreadyExists(f"{self.what} {document['_id']!r} already exists") from None
        if entries and self._notify:
            self._notify(self.collection, [document["_id"]], written={document["_id"]: (0, entries)})

    async def insert_absent(self, new: Sequence[tuple[Document, Iterable[OutboundEvent]]]) -> list[Any]:
        """Store the aggregates whose ``_id`` is not stored yet, each at version 1 with its events, in
        one unordered ``insert_many``; returns the ids stored now (an existing ``_id`` is skipped).

        For a consumer that derives ids from what it consumed: a batch of redelivered or replayed
        events costs one round trip and stores nothing twice. An id repeated inside ``new`` keeps its
        first document. Any error other than a duplicate key raises (nothing is reported stored then,
        and retrying the whole batch is safe: what got in is a duplicate the second time).
        """
        first: dict[Any, Document] = {}
        for document, events in new:
            if "_id" not in document:
                raise ValueError("a new document needs its aggregate id as _id")
            if document["_id"] in first:
                continue
            self._refuse_reserved(document, allow_id=True)
            entries = outbox_entries(events, source=self._event_source, version=1)
            first[document["_id"]] = {
                **document,
                VERSION_FIELD: 1,
                OUTBOX_FIELD: entries,
                PENDING_FIELD: bool(entries),
            }
        if not first:
            return []
        stored = list(first.values())
        refused: set[int] = set()
        try:
            await self.collection.insert_many(stored, ordered=False)
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            refused = {e["index"] for e in errors}
        ids = [doc["_id"] for i, doc in enumerate(stored) if i not in refused]
        with_events = [doc["_id"] for i, doc in enumerate(stored) if i not in refused and doc[PENDING_FIELD]]
        if with_events and self._notify:
            self._notify(
                self.collection,
                with_events,
                written={doc["_id"]: (0, doc[OUTBOX_FIELD]) for doc in stored if doc[PENDING_FIELD]},
            )
        return ids

    async def update(
        self,
        id: Any,
        *,
        expected_version: int,
        set_fields: Mapping[str, Any],
        events: Iterable[OutboundEvent] = (),
        unset_fields: Iterable[str] = (),
    ) -> int:
        """Change ``id`` if it is still at ``expected_version``; returns the new version.

        One ``update_one``: ``$set`` the fields, ``$inc`` the version, ``$push`` the events into the
        outbox. If nothing matched, the record is missing (``NotFound``) or someone else changed it
        first (``ConcurrencyConflict``: the caller reloads and retries the command).
        """
        self._refuse_reserved(set_fields)
        unset = list(unset_fields)
        self._refuse_reserved(dict.fromkeys(unset))
        entries = outbox_entries(events, source=self._event_source, version=expected_version + 1)
        update: Document = {"$set": dict(set_fields), "$inc": {VERSION_FIELD: 1}}
        if entries:
            update["$set"][PENDING_FIELD] = True
            update["$push"] = {OUTBOX_FIELD: {"$each": entries}}
        if unset:
            update["$unset"] = dict.fromkeys(unset, "")
        result = await self.collection.update_one({"_id": id, VERSION_FIELD: expected_version}, update)
        if result.matched_count == 0:
            current = await self.collection.find_one({"_id": id}, projection={VERSION_FIELD: 1})
            if current is None:
                raise NotFound(f"{self.what} {id!r} does not exist")
            raise ConcurrencyConflict(
                f"{self.what} {id!r} was changed by someone else since it was read (now version "
                f"{current.get(VERSION_FIELD)}, expected {expected_version}): reload it and retry"
            )
        if self._notify:
            # Without entries too: the relay then still knows this document is fully published.
            self._notify(self.collection, [id] if entries else [], written={id: (expected_version, entries)})
        return expected_version + 1

    def _refuse_reserved(self, fields: Mapping[str, Any], *, allow_id: bool = False) -> None:
        clash = sorted(
            name for name in fields if name.split(".")[0] in _RESERVED and not (allow_id and name == "_id")
        )
        if clash:
            raise ValueError(f"fields {clash} are managed by VersionedRepository; do not set them")


def _applied_mark(key: tuple[str, str]) -> str:
    # ce_source is a URI-reference, which cannot contain a space: "source id" is unambiguous.
    source, event_id = key
    return f"{source} {event_id}"


async def apply_once(
    collection: AsyncCollection[Document],
    id: Any,
    key: tuple[str, str],
    update: Mapping[str, Any],
    *,
    upsert: bool = True,
    keep: int = 1000,
) -> bool:
    """Apply a consumed event's effect on one document exactly once; False if it was already applied.

    The effect and the mark ``(ce_source, ce_id)`` are written in the same single-document update,
    so a redelivered event can never be applied twice — not even after a crash between the two, which
    a separate inbox collection cannot rule out. The document keeps the last ``keep`` marks (oldest
    trimmed first), which bounds its size; redeliveries come long before that many newer events.
    """
    mark = _applied_mark(key)
    full: Document = {operator: dict(fields) for operator, fields in update.items()}
    if APPLIED_FIELD in full.get("$push", {}) or APPLIED_FIELD in full.get("$set", {}):
        raise ValueError(f"{APPLIED_FIELD!r} is managed by apply_once")
    full.setdefault("$push", {})[APPLIED_FIELD] = mark
    collection = serialized(collection)  # each update below holds the document's lock
    try:
        result = await collection.update_one({"_id": id, APPLIED_FIELD: {"$ne": mark}}, full, upsert=upsert)
    except DuplicateKeyError:
        return False  # the document exists and already holds the mark, so the upsert tried to insert
    if result.matched_count == 0 and result.upserted_id is None:
        return False
    # Trim separately (FerretDB ignores $push's $slice): at most one mark over the limit per apply.
    await collection.update_one(
        {"_id": id, f"{APPLIED_FIELD}.{keep}": {"$exists": True}}, {"$pop": {APPLIED_FIELD: -1}}
    )
    return True
