"""MongoDB storage of archive batches (`archive_batches`, one document per batch written with its event)
and of which recording is in which batch (`archived_recordings`, one document per recording)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from lawtrail.retention.v1 import retention_events_pb2 as ev
from lawtrail.retention.v1 import retention_pb2 as pb
from pymongo.asynchronous.collection import AsyncCollection
from servicekit.messaging.outbox import OutboundEvent
from servicekit.mongo import IndexSpec, VersionedRepository, serialized

from retention_svc.adapters.event_mapping import TOPIC, stamp
from retention_svc.domain.archive import ArchiveBatch
from retention_svc.domain.copies import CopyItem
from retention_svc.service_layer.ports import ArchiveStore

BATCHES = "archive_batches"
ARCHIVED = "archived_recordings"
_IN_CHUNK = 10_000  # recording ids per `backed_up` query


class BatchDocuments(VersionedRepository):
    what = "archive batch"
    # `for_unit` and `all_batches` read in (created_at, _id) order.
    indexes: ClassVar[Sequence[IndexSpec]] = [
        IndexSpec([("unit", 1), ("created_at", 1), ("_id", 1)]),
        IndexSpec([("created_at", 1), ("_id", 1)]),
    ]


def batch_message(batch: ArchiveBatch) -> pb.ArchiveBatch:
    message = pb.ArchiveBatch(
        batch_id=batch.batch_id,
        unit=batch.unit,
        month=batch.month,
        path=batch.path,
        root_hash=batch.root_hash,
        items=[
            pb.CopyItem(recording_id=i.recording_id, path=i.path, sha256=i.sha256, size_bytes=i.size_bytes)
            for i in batch.items
        ],
        total_bytes=batch.total_bytes,
        created_at=stamp(batch.created_at),
        created_by=batch.created_by,
        last_verification_ok=batch.last_verification_ok,
        last_verification_problems=list(batch.last_verification_problems),
    )
    if batch.last_verified_at is not None:
        message.last_verified_at.FromDatetime(batch.last_verified_at)
    return message


def _doc(batch: ArchiveBatch) -> dict[str, Any]:
    return {
        "unit": batch.unit,
        "month": batch.month,
        "path": batch.path,
        "root_hash": batch.root_hash,
        "items": [
            {"recording_id": i.recording_id, "path": i.path, "sha256": i.sha256, "size_bytes": i.size_bytes}
            for i in batch.items
        ],
        "created_at": batch.created_at,
        "created_by": batch.created_by,
        "last_verified_at": batch.last_verified_at,
        "last_verification_ok": batch.last_verification_ok,
        "last_verification_problems": list(batch.last_verification_problems),
    }


def _batch(doc: dict[str, Any]) -> ArchiveBatch:
    return ArchiveBatch(
        batch_id=doc["_id"],
        unit=doc["unit"],
        month=doc["month"],
        path=doc["path"],
        root_hash=doc["root_hash"],
        items=tuple(
            CopyItem(i["recording_id"], i["path"], i["sha256"], i["size_bytes"]) for i in doc["items"]
        ),
        created_at=doc["created_at"],
        created_by=doc["created_by"],
        last_verified_at=doc.get("last_verified_at"),
        last_verification_ok=bool(doc.get("last_verification_ok", True)),
        last_verification_problems=tuple(doc.get("last_verification_problems", [])),
    )


class MongoArchiveStore(ArchiveStore):
    def __init__(self, batches: BatchDocuments, archived: AsyncCollection[dict[str, Any]]) -> None:
        self.batches = batches
        self.archived = serialized(archived)

    async def add(self, batch: ArchiveBatch) -> None:
        event = OutboundEvent(
            TOPIC, ev.ArchiveBatchCreated(batch=batch_message(batch)), subject=batch.batch_id
        )
        await self.batches.insert({"_id": batch.batch_id, **_doc(batch)}, events=[event])
        # After the batch: a crash between the two leaves recordings listed as not backed up (they are
        # backed up again next time), never a recording marked backed up without its batch.
        for item in batch.items:
            await self.archived.update_one(
                {"_id": item.recording_id}, {"$set": {"batch_id": batch.batch_id}}, upsert=True
            )

    async def record_verification(self, batch: ArchiveBatch) -> None:
        async with self.batches.exclusive(batch.batch_id):
            current = await self.batches.get_or_raise(batch.batch_id)
            event = OutboundEvent(
                TOPIC, ev.ArchiveBatchVerified(batch=batch_message(batch)), subject=batch.batch_id
            )
            await self.batches.update(
                batch.batch_id,
                expected_version=current["version"],
                set_fields={
                    "last_verified_at": batch.last_verified_at,
                    "last_verification_ok": batch.last_verification_ok,
                    "last_verification_problems": list(batch.last_verification_problems),
                },
                events=[event],
            )

    async def get(self, batch_id: str) -> ArchiveBatch | None:
        doc = await self.batches.get(batch_id)
        return None if doc is None else _batch(doc)

    async def for_unit(self, unit: str) -> list[ArchiveBatch]:
        cursor = self.batches.collection.find({"unit": unit}, projection={"outbox": 0}).sort(
            [("created_at", 1), ("_id", 1)]
        )
        return [_batch(doc) async for doc in cursor]

    async def all_batches(self) -> list[ArchiveBatch]:
        cursor = self.batches.collection.find({}, projection={"outbox": 0}).sort(
            [("created_at", 1), ("_id", 1)]
        )
        return [_batch(doc) async for doc in cursor]

    async def backed_up(self, recording_ids: list[str]) -> set[str]:
        if not recording_ids:
            return set()
        # `_id $in`: MongoDB reads only the asked-for marks from the `_id` index (FerretDB v1 reads the
        # whole collection once per query, as the unfiltered pass did before). In chunks, so that the
        # command stays far below the 16 MiB BSON limit however many recordings a unit has.
        wanted = sorted(set(recording_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            found.update(
                [
                    doc["_id"]
                    async for doc in self.archived.find({"_id": {"$in": chunk}}, projection={"_id": 1})
                ]
            )
        return found
