"""Legal review of major decisions (重大执法决定法制审核, Art. 1): a MAJOR_COMPLEX case leaves
REVIEW_DECISION forward only after the legal affairs office approved during that visit of the stage."""

from __future__ import annotations

import pytest
from case_svc.domain import commands as c
from case_svc.domain import events as e
from case_svc.domain.model import CaseFlag, LegalReviewOutcome, Stage
from servicekit.errors import FailedPrecondition, PermissionDenied


async def _major_case_in_review(world):
    case = await world.open()
    await world.flag(case.case_id, CaseFlag.MAJOR_COMPLEX)
    await world.to_stage(case.case_id, Stage.REVIEW_DECISION)
    return case


async def test_legal_review_major_case_cannot_leave_review_decision_without_one(world):
    case = await _major_case_in_review(world)
    with pytest.raises(FailedPrecondition, match="MAJOR_COMPLEX and no legal review has been recorded"):
        await world.advance(case.case_id, Stage.SERVICE_EXECUTION)


async def test_legal_review_a_refusal_blocks_until_a_later_review_approves(world):
    case = await _major_case_in_review(world)
    await world.review(case.case_id, LegalReviewOutcome.NOT_APPROVED)
    with pytest.raises(FailedPrecondition, match="did not approve"):
        await world.advance(case.case_id, Stage.SERVICE_EXECUTION)
    await world.review(case.case_id, LegalReviewOutcome.APPROVED)
    assert (await world.advance(case.case_id, Stage.SERVICE_EXECUTION)).stage is Stage.SERVICE_EXECUTION
    reviews = [ev for ev in world.cases.events_of(case.case_id) if isinstance(ev, e.LegalReviewRecorded)]
    assert [r.review.outcome for r in reviews] == [
        LegalReviewOutcome.NOT_APPROVED,
        LegalReviewOutcome.APPROVED,
    ]
    assert all(r.review.reviewed.subject == "lena" for r in reviews)


async def test_legal_review_an_approval_before_reinvestigation_does_not_count_after_it(world):
    case = await _major_case_in_review(world)
    await world.review(case.case_id, LegalReviewOutcome.APPROVED)
    await world.handlers.return_for_reinvestigation(
        c.ReturnForReinvestigation(case.case_id, "补充证据"), world.head
    )
    await world.advance(case.case_id, Stage.REVIEW_DECISION)
    with pytest.raises(FailedPrecondition, match="no legal review has been recorded since it entered"):
        await world.advance(case.case_id, Stage.SERVICE_EXECUTION)


async def test_legal_review_sending_back_needs_no_review(world):
    case = await _major_case_in_review(world)
    returned = await world.handlers.return_for_reinvestigation(
        c.ReturnForReinvestigation(case.case_id, "补充证据"), world.head
    )
    assert returned.stage is Stage.INVESTIGATION


async def test_legal_review_a_case_that_is_not_major_needs_none(world):
    case = await world.open()
    await world.to_stage(case.case_id, Stage.REVIEW_DECISION)
    assert (await world.advance(case.case_id, Stage.SERVICE_EXECUTION)).stage is Stage.SERVICE_EXECUTION


async def test_legal_review_is_recorded_only_in_review_decision(world):
    case = await world.open()
    with pytest.raises(FailedPrecondition, match="recorded while the case is in REVIEW_DECISION"):
        await world.review(case.case_id, LegalReviewOutcome.APPROVED)


@pytest.mark.parametrize("who", ["head", "officer", "other_head"])
async def test_r08_only_the_legal_affairs_office_records_a_review(world, who):
    case = await _major_case_in_review(world)
    with pytest.raises(PermissionDenied, match=r"LEGAL_OFFICE \(any unit\)"):
        await world.review(case.case_id, LegalReviewOutcome.APPROVED, by=getattr(world, who))
