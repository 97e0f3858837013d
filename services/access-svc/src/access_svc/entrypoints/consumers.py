"""access-svc's consumers.

- The ledger (group `access-svc.ledger`): every `lawtrail.*` event topic; each event is appended once, as a
  serialized LedgerLeaf, in the order this consumer reads it (servicekit's batch mode: each poll's records
  in partition order, appended as one batch whose head write commits it). Its dedupe key is the event's
  CloudEvents (source, id), checked and written by the ledger store itself in the same append, so a
  redelivery never makes a second leaf and no inbox is needed. It runs only while this process holds the
  group's lease (`ConsumerSpec.lease`); `fence` gives the store the lease's fencing token.
- The owning units (group `access-svc.owners`): CaseOpened and RecordingIngested → `owners`; and
  retention-svc's LongTermHoldPlaced → the held cases (standing order `r13-offline-copy` covers those only).
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.access.v1 import access_events_pb2, ledger_service_pb2
from lawtrail.case.v1 import case_events_pb2
from lawtrail.media.v1 import media_events_pb2
from lawtrail.retention.v1 import retention_events_pb2
from servicekit.messaging.consumer import Delivery, TypeRouter
from servicekit.messaging.envelope import Envelope
from servicekit.topics import events_topic_of

from access_svc.adapters.repository import MongoOwners
from access_svc.domain.model import ResourceKind
from access_svc.entrypoints.grpc_api import event_key
from access_svc.service_layer.ledger import LedgerHandlers
from access_svc.service_layer.ports import LedgerEntry

LEDGER_GROUP = "access-svc.ledger"
OWNERS_GROUP = "access-svc.owners"
OWNER_TOPICS = (
    events_topic_of(case_events_pb2),
    events_topic_of(media_events_pb2),
    events_topic_of(retention_events_pb2),
)
CHECKPOINT_TYPE = access_events_pb2.LedgerCheckpointSigned.DESCRIPTOR.full_name


def leaf_of(envelope: Envelope, topic: str) -> bytes:
    at = Timestamp()
    at.FromDatetime(envelope.time)
    leaf = ledger_service_pb2.LedgerLeaf(
        topic=topic,
        ce_id=envelope.id,
        ce_source=envelope.source,
        ce_type=envelope.type,
        ce_subject=envelope.subject or "",
        ce_time=at,
        data=envelope.data,
    )
    return leaf.SerializeToString(deterministic=True)


def ledger_entry(delivery: Delivery) -> LedgerEntry:
    envelope = delivery.envelope
    return LedgerEntry(
        leaf_of(envelope, delivery.topic),
        event_key(envelope.source, envelope.id),
        envelope.subject or "",
        envelope.type == CHECKPOINT_TYPE,
    )


class LedgerConsumer:
    """A servicekit batch handler: one consumer poll → one ledger batch."""

    def __init__(self, ledger: LedgerHandlers) -> None:
        self._ledger = ledger

    async def __call__(self, batch: Sequence[Delivery]) -> None:
        await self._ledger.append_batch([ledger_entry(d) for d in batch])

    async def fence(self, epoch: int) -> None:
        """Called by the runner each time this process takes the ledger group's lease."""
        await self._ledger.fence(epoch)


def owners_router(owners: MongoOwners) -> TypeRouter:
    router = TypeRouter()

    async def case_opened(event: case_events_pb2.CaseOpened, envelope: Envelope) -> None:
        await owners.record(ResourceKind.CASE, event.case_id, event.unit)

    async def recording_ingested(event: media_events_pb2.RecordingIngested, envelope: Envelope) -> None:
        await owners.record(ResourceKind.RECORDING, event.recording_id, event.classification.unit)

    async def hold_placed(event: retention_events_pb2.LongTermHoldPlaced, envelope: Envelope) -> None:
        if event.hold.case_id:
            await owners.record_hold(event.hold.case_id, event.unit)

    router.on(case_events_pb2.CaseOpened, case_opened)
    router.on(retention_events_pb2.LongTermHoldPlaced, hold_placed)
    router.on(media_events_pb2.RecordingIngested, recording_ingested)
    return router
