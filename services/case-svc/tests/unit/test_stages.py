"""R3, R4: stages only move forward, each change attributed and timestamped by the server; the
history is append-only and the published events replay to the same case."""

from __future__ import annotations

import copy

import pytest
from case_svc.domain import commands as c
from case_svc.domain import events as e
from case_svc.domain.case import Case
from case_svc.domain.model import ActType, CaseFlag, Procedure, Stage, TransitionKind
from servicekit.errors import FailedPrecondition, InvalidArgument

WORK = (Stage.INVESTIGATION, Stage.REVIEW_DECISION, Stage.SERVICE_EXECUTION)


async def test_r03_case_opens_in_initiation_with_an_attributed_history_entry(world):
    world.clock.tick(5)
    case = await world.open()
    assert case.stage is Stage.INITIATION
    [opening] = case.history
    assert opening.kind is TransitionKind.OPENED
    assert opening.from_stage is None
    assert (opening.changed.subject, opening.changed.unit, opening.changed.at) == (
        "alice",
        "unit-a",
        world.clock.now,
    )
    [event] = world.cases.events_of(case.case_id)
    assert isinstance(event, e.CaseOpened)
    assert event.unit == "unit-a"
    assert event.act_type is ActType.PENALTY


async def test_r03_stages_move_forward_one_at_a_time_recording_who_when_why(world):
    case = await world.open()
    for stage in WORK:
        world.clock.tick()
        case = await world.advance(case.case_id, stage)
        last = case.history[-1]
        assert (last.to_stage, last.kind, last.changed.subject, last.changed.at) == (
            stage,
            TransitionKind.FORWARD,
            "hank",
            world.clock.now,
        )
        assert last.reason == f"move to {stage}"
    case = await world.close(case.case_id)
    assert case.stage is Stage.CLOSED
    assert [t.to_stage for t in case.history] == [Stage.INITIATION, *WORK, Stage.CLOSED]
    published = [type(ev).__name__ for ev in world.cases.events_of(case.case_id)]
    assert published == [
        "CaseOpened",
        "CaseStageAdvanced",
        "CaseStageAdvanced",
        "CaseStageAdvanced",
        "CaseClosed",
    ]


async def test_r03_an_applicable_stage_cannot_be_skipped(world):
    case = await world.open()
    with pytest.raises(FailedPrecondition, match="next stage is INVESTIGATION, not REVIEW_DECISION"):
        await world.advance(case.case_id, Stage.REVIEW_DECISION)
    with pytest.raises(FailedPrecondition, match="advance it to INVESTIGATION first"):
        await world.close(case.case_id)


async def test_r03_advance_never_moves_backwards(world):
    case = await world.open()
    await world.to_stage(case.case_id, Stage.SERVICE_EXECUTION)
    with pytest.raises(FailedPrecondition, match=r"only move forward.*ReturnForReinvestigation"):
        await world.advance(case.case_id, Stage.INVESTIGATION)
    with pytest.raises(FailedPrecondition, match="already in SERVICE_EXECUTION"):
        await world.advance(case.case_id, Stage.SERVICE_EXECUTION)


async def test_r03_repeated_advance_request_does_not_move_the_case_twice(world):
    case = await world.open()
    await world.advance(case.case_id, Stage.INVESTIGATION)
    with pytest.raises(FailedPrecondition):
        await world.advance(case.case_id, Stage.INVESTIGATION)
    assert [t.to_stage for t in (await world.cases.get(case.case_id)).history] == [
        Stage.INITIATION,
        Stage.INVESTIGATION,
    ]


@pytest.mark.parametrize(("target", "hint"), [(Stage.CLOSED, "CloseCase"), (Stage.ARCHIVED, "ArchiveCase")])
async def test_r03_advance_points_to_the_closing_and_archiving_calls(world, target, hint):
    case = await world.open()
    with pytest.raises(InvalidArgument, match=rf"to_stage: .*{hint}"):
        await world.advance(case.case_id, target)


async def test_r03_inspection_passes_over_review_decision_and_records_why(world, rules):
    case = await world.open(act_type=ActType.INSPECTION, procedure=None)
    reason = rules.for_case(ActType.INSPECTION, None).inapplicable_stages[Stage.REVIEW_DECISION]
    assert [(s.stage, s.reason) for s in case.inapplicable_stages] == [(Stage.REVIEW_DECISION, reason)]
    await world.advance(case.case_id, Stage.INVESTIGATION)
    case = await world.advance(case.case_id, Stage.SERVICE_EXECUTION)
    last = case.history[-1]
    assert (last.from_stage, last.to_stage) == (Stage.INVESTIGATION, Stage.SERVICE_EXECUTION)
    assert [(s.stage, s.reason) for s in last.skipped] == [(Stage.REVIEW_DECISION, reason)]


async def test_r03_an_inapplicable_stage_is_refused_with_the_configured_reason(world):
    case = await world.open(act_type=ActType.INSPECTION, procedure=None)
    await world.advance(case.case_id, Stage.INVESTIGATION)
    with pytest.raises(
        FailedPrecondition, match=r"REVIEW_DECISION does not apply to INSPECTION cases .*行政检查"
    ):
        await world.advance(case.case_id, Stage.REVIEW_DECISION)


async def test_r03_simple_procedure_penalty_has_no_review_stage(world):
    case = await world.open(procedure=Procedure.SIMPLE)
    assert [s.stage for s in case.inapplicable_stages] == [Stage.REVIEW_DECISION]
    assert (await world.open()).inapplicable_stages == ()


async def test_r03_return_for_reinvestigation_is_recorded_as_such(world):
    case = await world.open()
    await world.to_stage(case.case_id, Stage.REVIEW_DECISION)
    case = await world.handlers.return_for_reinvestigation(
        c.ReturnForReinvestigation(case.case_id, "证据不足，补充调查"), world.head
    )
    last = case.history[-1]
    assert (last.from_stage, last.to_stage, last.kind, last.reason) == (
        Stage.REVIEW_DECISION,
        Stage.INVESTIGATION,
        TransitionKind.RETURNED_FOR_REINVESTIGATION,
        "证据不足，补充调查",
    )
    assert isinstance(world.cases.events_of(case.case_id)[-1], e.CaseReturnedForReinvestigation)
    # and it moves forward again from there
    case = await world.advance(case.case_id, Stage.REVIEW_DECISION)
    assert case.stage is Stage.REVIEW_DECISION


@pytest.mark.parametrize("stage", [Stage.INITIATION, Stage.INVESTIGATION, Stage.SERVICE_EXECUTION])
async def test_r03_only_a_case_in_review_decision_can_be_returned(world, stage):
    case = await world.open()
    await world.to_stage(case.case_id, stage)
    with pytest.raises(FailedPrecondition, match=rf"only a case in REVIEW_DECISION.*is in {stage}"):
        await world.handlers.return_for_reinvestigation(
            c.ReturnForReinvestigation(case.case_id, "x"), world.head
        )


async def test_r03_closed_case_takes_no_activity_and_no_stage_change(world):
    case = await world.open()
    await world.to_stage(case.case_id, Stage.CLOSED)
    with pytest.raises(FailedPrecondition, match="is CLOSED"):
        await world.activity(case.case_id)
    with pytest.raises(FailedPrecondition, match="is CLOSED"):
        await world.advance(case.case_id, Stage.INVESTIGATION)
    with pytest.raises(FailedPrecondition, match="is CLOSED"):
        await world.close(case.case_id)


async def test_r04_history_is_append_only(world):
    case = await world.open()
    before = list(case.history)
    await world.to_stage(case.case_id, Stage.REVIEW_DECISION)
    await world.handlers.return_for_reinvestigation(
        c.ReturnForReinvestigation(case.case_id, "补充"), world.head
    )
    after = (await world.cases.get(case.case_id)).history
    assert after[: len(before)] == before
    assert [t.sequence for t in after] == [0, 1, 2, 3]  # opened, investigation, review, returned


async def _rich_case(world) -> Case:
    case = await world.open()
    await world.advance(case.case_id, Stage.INVESTIGATION)
    activity = await world.activity(case.case_id)
    await world.document(case.case_id, "FILING_APPROVAL")
    await world.flag(case.case_id, CaseFlag.MAJOR_COMPLEX)
    await world.link(case.case_id, activity.activity_id)
    await world.handlers.record_incident(
        c.RecordIncident(case.case_id, c.IncidentKind.COMPLAINT, world.clock.now, "张三", "投诉执法态度"),
        world.officer,
    )
    await world.advance(case.case_id, Stage.REVIEW_DECISION)
    await world.review(case.case_id, c.LegalReviewOutcome.NOT_APPROVED)
    await world.handlers.return_for_reinvestigation(
        c.ReturnForReinvestigation(case.case_id, "补充"), world.head
    )
    await world.advance(case.case_id, Stage.REVIEW_DECISION)
    await world.review(case.case_id, c.LegalReviewOutcome.APPROVED)
    await world.advance(case.case_id, Stage.SERVICE_EXECUTION)
    return await world.cases.get(case.case_id)


def _history_of(world, case: Case) -> list[e.CaseEvent]:
    """Published events plus the recording links the case learned (from media-svc's events)."""
    links = [e.RecordingLinkNoted(case.case_id, link) for link in case.recording_links]
    published = world.cases.events_of(case.case_id)
    return [published[0], *links, *published[1:]]


async def test_r04_the_events_replay_to_the_same_case(world):
    case = await _rich_case(world)
    replayed = Case.replay(_history_of(world, case))
    assert replayed.snapshot() == case.snapshot()


async def test_r04_replaying_every_event_twice_leaves_the_same_state(world):
    case = await _rich_case(world)
    events = _history_of(world, case)
    doubled = [ev for ev in events for _ in range(2)]
    assert Case.replay(doubled).snapshot() == case.snapshot()
    assert Case.replay(events + copy.deepcopy(events)).snapshot() == case.snapshot()


def test_r04_a_history_starts_with_the_opening():
    with pytest.raises(ValueError, match="starts with CaseOpened"):
        Case.replay([e.RecordingLinkNoted("x", None)])  # type: ignore[arg-type]
