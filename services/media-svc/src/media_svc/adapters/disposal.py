"""MongoDB side of disposal: media-svc's own projection of holds (retention-svc's LongTermHoldPlaced,
`disposal_holds`) and the tombstones (`tombstones`, written with RecordingDisposed). Case closure is in the
one case projection (adapters/case_projection.py). Content removal goes through the store.

`disposal_cases`, the closure projection of the disposal guard before it was merged into `case_projection`,
is no longer read or written (docs/media-svc.md, "one projection", says what operators do with it)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any, ClassVar

from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.media.v1 import disposal_service_pb2 as pb
from pymongo.asynchronous.database import AsyncDatabase
from servicekit.messaging.outbox import OutboundEvent
from servicekit.mongo import IndexSpec, VersionedRepository, serialized
from servicekit.topics import events_topic_of

from media_svc.adapters.content_store import LocalContentStore
from media_svc.domain.disposal import Tombstone
from media_svc.service_layer.disposal import ContentEraser, DisposalStore

HOLDS = "disposal_holds"
TOMBSTONES = "tombstones"
TOPIC = events_topic_of(pb)


def tombstone_message(t: Tombstone) -> pb.RecordingTombstone:
    at = Timestamp()
    at.FromDatetime(t.disposed_at)
    return pb.RecordingTombstone(
        recording_id=t.recording_id, sha256=t.sha256, size_bytes=t.size_bytes, unit=t.unit, case_id=t.case_id,
        order_id=t.order_id, approved_by=list(t.approved_by), reason=t.reason, disposed_at=at,
    )  # fmt: skip


class _Tombstones(VersionedRepository):
    what = "tombstone"
    indexes: ClassVar[Sequence[IndexSpec]] = []


class MongoDisposalStore(DisposalStore):
    def __init__(self, db: AsyncDatabase[dict[str, Any]], *, event_source: str, notify: Any) -> None:
        self.holds = serialized(db[HOLDS])
        self.tombstones = _Tombstones(db[TOMBSTONES], event_source=event_source, notify=notify)

    # the holds projection (idempotent: a set)
    async def hold_placed(self, recording_id: str, incident_id: str) -> None:
        await self.holds.update_one({"_id": recording_id}, {"$addToSet": {"holds": incident_id}}, upsert=True)

    async def holds_of(self, recording_id: str) -> list[str]:
        doc = await self.holds.find_one({"_id": recording_id})
        return list(doc.get("holds", [])) if doc else []

    async def tombstone(self, recording_id: str) -> Tombstone | None:
        doc = await self.tombstones.get(recording_id)
        if doc is None:
            return None
        return Tombstone(
            doc["_id"], doc["sha256"], doc["size_bytes"], doc["unit"], doc["case_id"], doc["order_id"],
            tuple(doc["approved_by"]), doc["reason"], doc["disposed_at"],
        )  # fmt: skip

    async def add_tombstone(self, t: Tombstone) -> None:
        event = OutboundEvent(
            TOPIC, pb.RecordingDisposed(tombstone=tombstone_message(t)), subject=t.recording_id
        )
        await self.tombstones.insert(
            {
                "_id": t.recording_id, "sha256": t.sha256, "size_bytes": t.size_bytes, "unit": t.unit,
                "case_id": t.case_id, "order_id": t.order_id, "approved_by": list(t.approved_by),
                "reason": t.reason, "disposed_at": t.disposed_at,
            },
            events=[event],
        )  # fmt: skip


class LocalContentEraser(ContentEraser):
    """Removes disposed content from the write-once store (the only removal there is, after a tombstone)."""

    def __init__(self, store: LocalContentStore) -> None:
        self.store = store

    def erase(self, sha256: str) -> None:
        path = self.store.path_of(sha256)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
