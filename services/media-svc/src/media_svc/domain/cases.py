"""media-svc's view of case-svc's cases: what a link to a case is checked against (R5) and what a linked
recording takes from its case for search (R17). Pure Python.

The view is a projection of case-svc's events (`lawtrail.case.v1.events`, consumer group
`media-svc.case-projection`): the owning unit, cause and party names from `CaseOpened`, the activity ids from
`ActivityRecorded`, and whether the case is closed (`CaseClosed`/`CaseArchived`), which disposal checks
(R12: media-svc refuses to dispose of evidence of a case not known to be closed). It lags case-svc by the
consumer's delay, so "not known" means "no such case, or its `CaseOpened` has not reached media-svc yet" — a
refusal the caller may retry.
"""

from __future__ import annotations

from dataclasses import dataclass

from servicekit.errors import FailedPrecondition, PermissionDenied


@dataclass(frozen=True)
class CaseParticulars:
    """What a linked recording takes from its case for search (R17): the cause and the parties' names.

    `version` grows with every change of them in the projection, so a recording holds the newest it saw
    and an older copy never replaces a newer one."""

    cause: str
    parties: tuple[str, ...]
    version: int


@dataclass(frozen=True)
class CaseView:
    case_id: str
    unit: str
    particulars: CaseParticulars
    activity_ids: frozenset[str]
    # A closure (CaseClosed or CaseArchived) was seen; case-svc has no reopening, so it is never undone.
    closed: bool = False


class CaseNotKnown(FailedPrecondition):
    """The case is not in media-svc's projection: no such case, or case-svc's event is still on its way."""

    REASON = "R5_CASE_NOT_KNOWN"


class UnknownActivity(FailedPrecondition):
    """The case has no such activity (yet: an activity recorded a moment ago may still be on its way)."""

    REASON = "R5_UNKNOWN_ACTIVITY"


class CrossUnitLink(PermissionDenied):
    """The recording's unit is not the case's; only the legal affairs office links across units (R5)."""

    REASON = "R5_CROSS_UNIT_LINK"


def check_link(
    case: CaseView | None,
    *,
    case_id: str,
    activity_id: str,
    recording_id: str,
    recording_unit: str,
    by_legal_office: bool,
) -> None:
    """R5: a link names a case media-svc knows, one of its activities, and a case of the recording's own
    unit unless the legal affairs office makes it. Raises the refusal, naming what is wrong."""
    if case is None:
        raise CaseNotKnown(
            f"case_id: case {case_id!r} is not known to media-svc: there is no such case in case-svc, or it "
            "was opened a moment ago and case-svc's CaseOpened has not reached media-svc yet — retry in a "
            "few seconds; a link is accepted only for a case that exists (R5)",
            field="case_id",
            metadata={"case_id": case_id},
        )
    if activity_id and activity_id not in case.activity_ids:
        raise UnknownActivity(
            f"activity_id: case {case_id!r} has no activity {activity_id!r} known to media-svc (it has "
            f"{len(case.activity_ids)}); name one of the case's enforcement activities — one recorded a "
            "moment ago may still be on its way, retry in a few seconds (R5)",
            field="activity_id",
            metadata={"case_id": case_id, "activity_id": activity_id},
        )
    if case.unit != recording_unit and not by_legal_office:
        raise CrossUnitLink(
            f"R5: recording {recording_id} belongs to unit {recording_unit!r} and case {case_id!r} to unit "
            f"{case.unit!r}; only the legal affairs office (LEGAL_OFFICE) links a recording to another "
            "unit's case",
            metadata={"case_id": case_id, "case_unit": case.unit, "recording_unit": recording_unit},
        )
