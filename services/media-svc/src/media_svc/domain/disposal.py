"""Disposal after retention, as media-svc checks it on its own (R12, R13, R23-5). Pure Python.

retention-svc decides what is due; media-svc refuses, from its own projections of the events, to dispose of
a recording under a long-term hold or linked to a case that is open or not known to be closed — so a fault
in retention-svc cannot destroy evidence. What remains is a tombstone with the hash and the metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from servicekit.errors import FailedPrecondition, InvalidArgument


@dataclass(frozen=True)
class Tombstone:
    recording_id: str
    sha256: str
    size_bytes: int
    unit: str
    case_id: str
    order_id: str
    approved_by: tuple[str, ...]
    reason: str
    disposed_at: datetime


def check_order(order_id: str, approved_by: tuple[str, ...], reason: str) -> None:
    if not order_id:
        raise InvalidArgument("order_id is required: disposal happens only under an approved order")
    if len(set(approved_by)) < 2:
        raise InvalidArgument(
            "approved_by must name two different people (the unit head and the archive room)"
        )
    if not reason.strip() or len(reason) > 1000:
        raise InvalidArgument("reason must be 1–1000 characters")


def check_disposable(recording_id: str, *, holds: list[str], case_id: str, case_closed: bool) -> None:
    """Raises FailedPrecondition when the recording must be kept whatever retention-svc says."""
    if holds:
        raise FailedPrecondition(
            f"recording {recording_id} is under a long-term hold ({', '.join(holds)}) and is never "
            "disposed of (R13); media-svc refuses"
        )
    if case_id and not case_closed:
        raise FailedPrecondition(
            f"recording {recording_id} is linked to case {case_id}, which is open or not known to be "
            "closed; media-svc refuses to dispose of evidence of an open case (R12)"
        )
