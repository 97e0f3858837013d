"""MongoDB storage of disposal orders (`disposal_orders`, one document per order; carrying one out writes
DisposalOrderCarriedOut with it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from lawtrail.retention.v1 import retention_events_pb2 as ev
from lawtrail.retention.v1 import retention_pb2 as pb
from servicekit.messaging.outbox import OutboundEvent
from servicekit.mongo import IndexSpec, VersionedRepository

from retention_svc.adapters.event_mapping import TOPIC, stamp
from retention_svc.domain.disposal import DisposalItem, DisposalOrder, OrderState
from retention_svc.service_layer.ports import DisposalOrders

ORDERS = "disposal_orders"
_STATE = {
    OrderState.PROPOSED: pb.DISPOSAL_ORDER_STATE_PROPOSED,
    OrderState.CARRIED_OUT: pb.DISPOSAL_ORDER_STATE_CARRIED_OUT,
}


class OrderDocuments(VersionedRepository):
    what = "disposal order"
    indexes: ClassVar[Sequence[IndexSpec]] = [IndexSpec([("unit", 1), ("proposed_at", 1)])]


def order_message(order: DisposalOrder) -> pb.DisposalOrder:
    return pb.DisposalOrder(
        order_id=order.order_id,
        unit=order.unit,
        reason=order.reason,
        state=_STATE[order.state],
        proposed_by=order.proposed_by,
        proposed_role=order.proposed_role,
        approved_by=order.approved_by,
        items=[
            pb.DisposalItem(recording_id=i.recording_id, disposed=i.disposed, refusal=i.refusal)
            for i in order.items
        ],
        proposed_at=stamp(order.proposed_at),
    )


def _doc(order: DisposalOrder) -> dict[str, Any]:
    return {
        "unit": order.unit,
        "reason": order.reason,
        "proposed_by": order.proposed_by,
        "proposed_role": order.proposed_role,
        "proposed_at": order.proposed_at,
        "items": [
            {"recording_id": i.recording_id, "disposed": i.disposed, "refusal": i.refusal}
            for i in order.items
        ],
        "state": order.state.value,
        "approved_by": order.approved_by,
    }


class MongoDisposalOrders(DisposalOrders):
    def __init__(self, documents: OrderDocuments) -> None:
        self.documents = documents

    async def add(self, order: DisposalOrder) -> None:
        await self.documents.insert({"_id": order.order_id, **_doc(order)})

    async def get(self, order_id: str) -> DisposalOrder | None:
        doc = await self.documents.get(order_id)
        if doc is None:
            return None
        return DisposalOrder(
            order_id=doc["_id"],
            unit=doc["unit"],
            reason=doc["reason"],
            proposed_by=doc["proposed_by"],
            proposed_role=doc["proposed_role"],
            proposed_at=doc["proposed_at"],
            items=tuple(DisposalItem(i["recording_id"], i["disposed"], i["refusal"]) for i in doc["items"]),
            state=OrderState(doc["state"]),
            approved_by=doc["approved_by"],
            version=doc["version"],
        )

    async def save(self, order: DisposalOrder) -> None:
        event = OutboundEvent(
            TOPIC, ev.DisposalOrderCarriedOut(order=order_message(order)), subject=order.order_id
        )
        await self.documents.update(
            order.order_id, expected_version=order.version, set_fields=_doc(order), events=[event]
        )
