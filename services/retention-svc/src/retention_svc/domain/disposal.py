"""Disposal after retention (R12): candidates, and an order that needs two different people — the unit
head and the archive room — before media-svc carries it out. Held material is never a candidate (R13).
Pure Python."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime

from servicekit.errors import FailedPrecondition, InvalidArgument, PermissionDenied

from retention_svc.domain.permissions import ARCHIVE_ROOM, UNIT_HEAD, Actor
from retention_svc.domain.retention import RecordingRecord, RetentionState

APPROVER_ROLES = (UNIT_HEAD, ARCHIVE_ROOM)


def why_not_candidate(rec: RecordingRecord, now: datetime) -> str | None:
    """None when the recording may be proposed for disposal, else why not."""
    if rec.disposed_at is not None:
        return f"recording {rec.recording_id} was disposed of already"
    if rec.held:
        return f"recording {rec.recording_id} is under a long-term hold (R13) and is never disposed of"
    decision = rec.decision
    if decision is None or decision.state is not RetentionState.DATED or decision.retain_until is None:
        state = decision.state.value if decision else "unknown"
        return f"recording {rec.recording_id} has no retention date ({state}): it is not due"
    if decision.retain_until > now:
        return f"recording {rec.recording_id} is kept until {decision.retain_until.isoformat()}: not due yet"
    return None


class OrderState(enum.Enum):
    PROPOSED = "PROPOSED"
    CARRIED_OUT = "CARRIED_OUT"


@dataclass(frozen=True)
class DisposalItem:
    recording_id: str
    disposed: bool = False
    refusal: str = ""


@dataclass(frozen=True)
class DisposalOrder:
    order_id: str
    unit: str
    reason: str
    proposed_by: str
    proposed_role: str
    proposed_at: datetime
    items: tuple[DisposalItem, ...]
    state: OrderState = OrderState.PROPOSED
    approved_by: str = ""
    version: int = field(default=0, compare=False)

    @staticmethod
    def propose(
        order_id: str, actor: Actor, unit: str, recording_ids: list[str], reason: str, at: datetime
    ) -> DisposalOrder:
        if not recording_ids or len(recording_ids) > 1000:
            raise InvalidArgument("recording_ids must list 1–1000 recordings")
        if len(set(recording_ids)) != len(recording_ids):
            raise InvalidArgument("recording_ids lists a recording twice")
        if not reason.strip() or len(reason) > 1000:
            raise InvalidArgument("reason must be 1–1000 characters")
        role = next((r for r in APPROVER_ROLES if r in actor.roles), "")
        if not role:
            raise PermissionDenied("a disposal is proposed by the unit head or the archive room")
        items = tuple(DisposalItem(r) for r in recording_ids)
        return DisposalOrder(order_id, unit, reason, actor.subject, role, at, items)

    def approve(self, actor: Actor) -> DisposalOrder:
        if self.state is not OrderState.PROPOSED:
            raise FailedPrecondition(f"disposal order {self.order_id} was carried out already")
        if actor.subject == self.proposed_by:
            raise PermissionDenied(
                f"disposal order {self.order_id} was proposed by {actor.subject}; the second approval must "
                "come from another person"
            )
        other = ARCHIVE_ROOM if self.proposed_role == UNIT_HEAD else UNIT_HEAD
        if other not in actor.roles:
            raise PermissionDenied(
                f"disposal order {self.order_id} was proposed by the {self.proposed_role}; the second "
                f"approval must come from the {other} (unit head and archive room, two people)"
            )
        return replace(self, approved_by=actor.subject)

    def carried_out(self, items: tuple[DisposalItem, ...]) -> DisposalOrder:
        return replace(self, items=items, state=OrderState.CARRIED_OUT)
