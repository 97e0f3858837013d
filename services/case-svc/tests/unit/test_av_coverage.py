"""R5: a flagged case cannot leave its stage, nor close, while an activity that is not EXEMPT lacks a
linked recording; complaints, disputes and petitions flag the case DISPUTED."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from case_svc.domain import commands as c
from case_svc.domain import events as e
from case_svc.domain.model import CaseFlag, IncidentKind, RecordingLink, Stage
from servicekit.errors import FailedPrecondition, NotFound, PermissionDenied


async def test_r05_disputed_case_cannot_leave_stage_without_av(world):
    case = await world.open()
    await world.advance(case.case_id, Stage.INVESTIGATION)
    first = await world.activity(case.case_id)
    second = await world.activity(case.case_id, kind=c.ActivityKind.QUESTIONING, place="询问室")
    await world.flag(case.case_id, CaseFlag.DISPUTED)
    version = (await world.cases.get(case.case_id)).version
    with pytest.raises(FailedPrecondition) as refused:
        await world.advance(case.case_id, Stage.REVIEW_DECISION)
    message = refused.value.message
    assert message.startswith("R5: ")
    assert "flagged DISPUTED" in message
    assert "cannot leave INVESTIGATION" in message
    assert first.activity_id in message
    assert second.activity_id in message
    assert "Uncovered (2)" in message
    stored = await world.cases.get(case.case_id)
    assert stored.stage is Stage.INVESTIGATION
    assert stored.version == version


async def test_r05_a_recording_for_each_activity_unblocks_the_case(world):
    case = await world.open()
    await world.advance(case.case_id, Stage.INVESTIGATION)
    first = await world.activity(case.case_id)
    second = await world.activity(case.case_id)
    await world.flag(case.case_id, CaseFlag.LEGACY_ISSUE)
    assert await world.link(case.case_id, first.activity_id)
    with pytest.raises(FailedPrecondition, match=rf"Uncovered \(1\): {second.activity_id}"):
        await world.advance(case.case_id, Stage.REVIEW_DECISION)
    assert await world.link(case.case_id, second.activity_id)
    case = await world.advance(case.case_id, Stage.REVIEW_DECISION)
    assert case.stage is Stage.REVIEW_DECISION


async def test_r05_major_complex_case_cannot_close_without_av(world):
    case = await world.open(procedure=c.Procedure.SIMPLE)
    await world.advance(case.case_id, Stage.INVESTIGATION)
    await world.advance(case.case_id, Stage.SERVICE_EXECUTION)
    activity = await world.activity(case.case_id, kind=c.ActivityKind.DOCUMENT_SERVICE)
    await world.flag(case.case_id, CaseFlag.MAJOR_COMPLEX)
    with pytest.raises(FailedPrecondition, match=r"R5: .*cannot leave SERVICE_EXECUTION or close"):
        await world.close(case.case_id)
    await world.link(case.case_id, activity.activity_id)
    assert (await world.close(case.case_id)).stage is Stage.CLOSED


async def test_r05_exempt_activities_need_no_recording(world):
    case = await world.open()
    await world.exempt_activity(case.case_id)
    await world.flag(case.case_id, CaseFlag.DISPUTED)
    assert (await world.advance(case.case_id, Stage.INVESTIGATION)).stage is Stage.INVESTIGATION


async def test_r05_key_stages_only_activities_still_need_a_recording(world):
    case = await world.open()
    record = await world.document(case.case_id, "ACTIVITY_TEXT_RECORD")
    await world.activity(
        case.case_id,
        record_mode=c.RecordMode.KEY_STAGES_ONLY,
        key_stages_reason="电池耗尽",
        text_record_document_id=record.document_id,
    )
    await world.flag(case.case_id, CaseFlag.DISPUTED)
    with pytest.raises(FailedPrecondition, match="R5"):
        await world.advance(case.case_id, Stage.INVESTIGATION)


async def test_r05_unflagged_case_moves_without_recordings(world):
    case = await world.open()
    await world.activity(case.case_id)
    assert (await world.advance(case.case_id, Stage.INVESTIGATION)).stage is Stage.INVESTIGATION


@pytest.mark.parametrize("kind", [IncidentKind.COMPLAINT, IncidentKind.DISPUTE, IncidentKind.PETITION])
async def test_r05_complaints_disputes_and_petitions_flag_the_case_disputed(world, kind):
    case = await world.open()
    world.clock.tick()
    case, incident = await world.handlers.record_incident(
        c.RecordIncident(case.case_id, kind, world.clock.now, "张三", "对处罚有异议"), world.officer
    )
    [flag] = case.flags
    assert (flag.flag, flag.incident_id, flag.stage) == (
        CaseFlag.DISPUTED,
        incident.incident_id,
        Stage.INITIATION,
    )
    published = world.cases.events_of(case.case_id)[-2:]
    assert [type(ev) for ev in published] == [e.CaseIncidentRecorded, e.CaseFlagged]


@pytest.mark.parametrize(
    "kind",
    [IncidentKind.OBSTRUCTION, IncidentKind.ASSAULT, IncidentKind.MASS_INCIDENT, IncidentKind.EMERGENCY],
)
async def test_r05_other_incidents_do_not_make_the_case_disputed(world, kind):
    case = await world.open()
    case, _ = await world.handlers.record_incident(
        c.RecordIncident(case.case_id, kind, world.clock.now, "李四", "阻碍执法"), world.officer
    )
    assert case.flags == []


async def test_r05_a_second_complaint_does_not_flag_again(world):
    case = await world.open()
    for _ in range(2):
        case, _ = await world.handlers.record_incident(
            c.RecordIncident(case.case_id, IncidentKind.COMPLAINT, world.clock.now, "张三", "投诉"),
            world.officer,
        )
    assert len(case.flags) == 1
    assert len(case.incidents) == 2


async def test_r05_flags_are_never_set_twice(world):
    case = await world.open()
    await world.flag(case.case_id, CaseFlag.MAJOR_COMPLEX)
    writes = world.cases.writes
    case = await world.flag(case.case_id, CaseFlag.MAJOR_COMPLEX)
    assert [f.flag for f in case.flags] == [CaseFlag.MAJOR_COMPLEX]
    assert world.cases.writes == writes


async def test_r05_a_flag_after_closing_blocks_archiving_until_covered(world):
    case = await world.open(act_type=c.ActType.LEVY, procedure=None)
    activity = await world.activity(case.case_id, kind=c.ActivityKind.DOCUMENT_SERVICE)
    await world.to_stage(case.case_id, Stage.CLOSED)
    await world.complete_file(case.case_id)
    await world.handlers.record_incident(
        c.RecordIncident(case.case_id, IncidentKind.PETITION, world.clock.now, "王五", "上访"), world.officer
    )
    with pytest.raises(FailedPrecondition, match=r"R5: .*cannot leave CLOSED"):
        await world.archive(case.case_id)
    await world.link(case.case_id, activity.activity_id)
    assert (await world.archive(case.case_id)).stage is Stage.ARCHIVED


async def test_r05_the_same_link_applied_twice_changes_the_case_once(world):
    case = await world.open()
    activity = await world.activity(case.case_id)
    assert await world.link(case.case_id, activity.activity_id, "rec-1")
    version = (await world.cases.get(case.case_id)).version
    assert not await world.link(case.case_id, activity.activity_id, "rec-1")
    stored = await world.cases.get(case.case_id)
    assert stored.version == version
    assert stored.recording_ids(activity.activity_id) == ("rec-1",)
    # the projection is not republished as a case event
    assert not any(isinstance(ev, e.RecordingLinkNoted) for ev in world.cases.outbox)


async def test_r05_a_recording_linked_to_the_case_only_covers_no_activity(world):
    case = await world.open()
    await world.activity(case.case_id)
    await world.flag(case.case_id, CaseFlag.DISPUTED)
    await world.link(case.case_id, "")
    with pytest.raises(FailedPrecondition, match="R5"):
        await world.advance(case.case_id, Stage.INVESTIGATION)


async def test_r05_a_link_to_an_unknown_case_is_refused(world):
    with pytest.raises(NotFound, match="names case nope, which case-svc does not know"):
        await world.link("nope", "a-1")


# --- R5 holes closed: unknown activities, other units, time spans, flagged cases with no activity ----


async def test_r05_a_link_to_an_activity_the_case_does_not_have_is_refused_and_covers_nothing(world):
    case = await world.open()
    await world.activity(case.case_id)
    version = (await world.cases.get(case.case_id)).version
    with pytest.raises(NotFound, match=r"which case .* does not have") as refused:
        await world.link(case.case_id, "no-such-activity")
    assert refused.value.reason == "R5_UNKNOWN_ACTIVITY"
    stored = await world.cases.get(case.case_id)
    assert (stored.version, stored.recording_links) == (version, [])


async def test_r05_a_recording_of_another_unit_is_refused_unless_the_legal_office_linked_it(world):
    case = await world.open()  # unit-a
    await world.advance(case.case_id, Stage.INVESTIGATION)
    activity = await world.activity(case.case_id)
    await world.flag(case.case_id, CaseFlag.DISPUTED)
    with pytest.raises(PermissionDenied, match="only the legal affairs office") as refused:
        await world.link(case.case_id, activity.activity_id, unit="unit-b")
    assert refused.value.reason == "R5_CROSS_UNIT_LINK"
    with pytest.raises(FailedPrecondition, match="R5"):
        await world.advance(case.case_id, Stage.REVIEW_DECISION)

    assert await world.link(case.case_id, activity.activity_id, "rec-lo", unit="unit-b", by_legal_office=True)
    stored = await world.cases.get(case.case_id)
    [link] = stored.recording_links
    assert (link.unit, link.linked_by_legal_office) == ("unit-b", True)  # recorded as such
    assert (await world.advance(case.case_id, Stage.REVIEW_DECISION)).stage is Stage.REVIEW_DECISION


async def test_r05_a_recording_outside_the_activitys_time_covers_nothing(world):
    case = await world.open()
    await world.advance(case.case_id, Stage.INVESTIGATION)
    activity = await world.activity(case.case_id)
    await world.flag(case.case_id, CaseFlag.MAJOR_COMPLEX)
    day_before = (activity.started_at - timedelta(days=1), activity.ended_at - timedelta(days=1))
    assert await world.link(case.case_id, activity.activity_id, "rec-old", span=day_before)
    with pytest.raises(FailedPrecondition, match=rf"Uncovered \(1\): {activity.activity_id}"):
        await world.advance(case.case_id, Stage.REVIEW_DECISION)
    # one that starts before the activity and runs into it overlaps: it covers
    overlapping = (activity.started_at - timedelta(minutes=5), activity.started_at + timedelta(minutes=1))
    assert await world.link(case.case_id, activity.activity_id, "rec-now", span=overlapping)
    assert (await world.advance(case.case_id, Stage.REVIEW_DECISION)).stage is Stage.REVIEW_DECISION


def test_r05_a_link_without_a_time_span_covers_nothing():
    link = RecordingLink("r", "a", "ab" * 32, datetime.now(UTC))
    assert not link.overlaps(datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC))


async def test_r05_a_flagged_case_with_no_activity_cannot_close(world):
    case = await world.open(procedure=c.Procedure.SIMPLE)
    await world.advance(case.case_id, Stage.INVESTIGATION)
    await world.advance(case.case_id, Stage.SERVICE_EXECUTION)
    await world.flag(case.case_id, CaseFlag.DISPUTED)
    with pytest.raises(FailedPrecondition, match="has no enforcement activity recorded") as refused:
        await world.close(case.case_id)
    assert refused.value.reason == "R5_NO_ACTIVITY_RECORDED"
    await world.exempt_activity(case.case_id)  # an R19a exemption
    assert (await world.close(case.case_id)).stage is Stage.CLOSED


async def test_r05_a_flagged_case_with_no_activity_closes_once_one_is_covered(world):
    case = await world.open(procedure=c.Procedure.SIMPLE)
    await world.advance(case.case_id, Stage.INVESTIGATION)
    await world.advance(case.case_id, Stage.SERVICE_EXECUTION)
    await world.flag(case.case_id, CaseFlag.LEGACY_ISSUE)
    with pytest.raises(FailedPrecondition, match="R5"):
        await world.close(case.case_id)
    activity = await world.activity(case.case_id, kind=c.ActivityKind.DOCUMENT_SERVICE)
    with pytest.raises(FailedPrecondition, match="R5") as refused:
        await world.close(case.case_id)
    assert refused.value.reason == "R5_AV_COVERAGE_MISSING"
    await world.link(case.case_id, activity.activity_id)
    assert (await world.close(case.case_id)).stage is Stage.CLOSED
