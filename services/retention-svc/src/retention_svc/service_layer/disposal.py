"""Disposal after retention (R12): records past their date and not held are listed for review; an order
proposed by the unit head or the archive room needs the other one's approval (two different people), then
each recording is re-checked here and sent to media-svc, which checks again on its own and leaves a
tombstone (R13: held material is never disposed of; a bug here cannot destroy evidence)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from servicekit.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound

from retention_svc.domain.disposal import DisposalItem, DisposalOrder, why_not_candidate
from retention_svc.domain.permissions import Action, Actor, authorize
from retention_svc.domain.retention import RecordingRecord
from retention_svc.service_layer.ports import (
    DisposalOrders,
    IngestedRecordings,
    MediaDisposal,
    RecordingRecords,
    RetentionMetrics,
)


class DisposalHandlers:
    def __init__(
        self,
        *,
        recordings: RecordingRecords,
        ingested: IngestedRecordings,
        orders: DisposalOrders,
        media: MediaDisposal,
        clock: Callable[[], datetime],
        new_id: Callable[[], str] = lambda: f"disposal-{uuid.uuid4()}",
        metrics: RetentionMetrics | None = None,
    ) -> None:
        self.metrics = metrics or RetentionMetrics()
        self.recordings = recordings
        self.ingested = ingested
        self.orders = orders
        self.media = media
        self.clock = clock
        self.new_id = new_id

    async def candidates(self, actor: Actor, unit: str) -> list[RecordingRecord]:
        if not unit:
            raise InvalidArgument("unit is required")
        authorize(actor, Action.READ_RETENTION, unit)
        now = self.clock()
        due = [r for r in await self.ingested.ingested(unit, now) if why_not_candidate(r, now) is None]
        return sorted(due, key=lambda r: (r.decision.retain_until if r.decision else now, r.recording_id))

    async def update_metrics(self) -> None:
        """Per-unit gauges: held recordings and disposal candidates (the scheduled job)."""
        now = self.clock()
        held: dict[str, int] = {}
        due: dict[str, int] = {}
        for rec in await self.ingested.ingested(None, now):
            held[rec.unit] = held.get(rec.unit, 0) + rec.held
            due[rec.unit] = due.get(rec.unit, 0) + (why_not_candidate(rec, now) is None)
        self.metrics.unit_totals(held, due)

    async def propose(self, actor: Actor, unit: str, recording_ids: list[str], reason: str) -> DisposalOrder:
        if not unit:
            raise InvalidArgument("unit is required")
        authorize(actor, Action.DISPOSE, unit)
        now = self.clock()
        order = DisposalOrder.propose(self.new_id(), actor, unit, recording_ids, reason, now)
        for recording_id in recording_ids:
            rec = await self.recordings.get(recording_id)
            if rec is None or rec.unit != unit:
                raise InvalidArgument(f"recording {recording_id} is not a recording of unit {unit}")
            refusal = why_not_candidate(rec, now)
            if refusal:
                raise InvalidArgument(f"{refusal}; it cannot be proposed for disposal")
        await self.orders.add(order)
        return order

    async def approve(self, actor: Actor, order_id: str) -> DisposalOrder:
        if not order_id:
            raise InvalidArgument("order_id is required")
        order = await self.orders.get(order_id)
        if order is None:
            raise NotFound(f"disposal order {order_id} does not exist")
        authorize(actor, Action.DISPOSE, order.unit)
        approved = order.approve(actor)
        now = self.clock()
        outcome: list[DisposalItem] = []
        for item in approved.items:
            rec = await self.recordings.get(item.recording_id)
            refusal = "unknown recording" if rec is None else why_not_candidate(rec, now)
            if refusal:  # a hold placed since the proposal wins (R13)
                outcome.append(DisposalItem(item.recording_id, False, f"retention-svc: {refusal}"))
                continue
            try:
                await self.media.dispose(
                    item.recording_id, order.order_id, (order.proposed_by, actor.subject), order.reason
                )
            except (FailedPrecondition, NotFound) as refused:
                outcome.append(DisposalItem(item.recording_id, False, f"media-svc: {refused.message}"))
                continue
            except DomainError as failed:
                outcome.append(DisposalItem(item.recording_id, False, f"media-svc: {failed.message}"))
                continue
            outcome.append(DisposalItem(item.recording_id, True, ""))
        done = approved.carried_out(tuple(outcome))
        await self.orders.save(done)
        return done
