"""R7, R18, R19a: activities and how they were recorded; R13: incidents."""

from __future__ import annotations

from datetime import timedelta

import pytest
from case_svc.domain import commands as c
from case_svc.domain import events as e
from case_svc.domain.model import ActivityKind, ExemptionReason, IncidentKind, RecordMode, Stage
from servicekit.errors import FailedPrecondition, InvalidArgument


@pytest.mark.parametrize("kind", list(ActivityKind))
async def test_r07_every_activity_kind_is_recorded_with_span_place_and_officers(world, kind):
    case = await world.open()
    activity = await world.activity(case.case_id, kind=kind)
    assert activity.kind is kind
    assert activity.officers == ("alice", "carl")
    assert activity.stage is Stage.INITIATION
    assert activity.recorded.at == world.clock.now
    assert activity.recorded.subject == "alice"
    event = world.cases.events_of(case.case_id)[-1]
    assert isinstance(event, e.ActivityRecorded)
    assert event.activity == activity


async def test_r18_key_stages_only_needs_a_reason(world):
    case = await world.open()
    with pytest.raises(InvalidArgument, match="key_stages_reason: required"):
        await world.activity(
            case.case_id, record_mode=RecordMode.KEY_STAGES_ONLY, text_record_document_id="d1"
        )


async def test_r18_key_stages_only_needs_a_text_record(world):
    case = await world.open()
    with pytest.raises(InvalidArgument, match="text_record_document_id: required for KEY_STAGES_ONLY"):
        await world.activity(
            case.case_id, record_mode=RecordMode.KEY_STAGES_ONLY, key_stages_reason="设备故障"
        )


async def test_r18_the_text_record_must_be_a_document_of_the_case(world):
    case = await world.open()
    with pytest.raises(FailedPrecondition, match="R18: text_record_document_id 'missing' is not a document"):
        await world.activity(
            case.case_id,
            record_mode=RecordMode.KEY_STAGES_ONLY,
            key_stages_reason="设备故障",
            text_record_document_id="missing",
        )
    record = await world.document(case.case_id, "ACTIVITY_TEXT_RECORD")
    activity = await world.activity(
        case.case_id,
        record_mode=RecordMode.KEY_STAGES_ONLY,
        key_stages_reason="设备故障",
        text_record_document_id=record.document_id,
    )
    assert activity.text_record_document_id == record.document_id


async def test_r18_continuous_recording_takes_no_key_stage_fields(world):
    case = await world.open()
    with pytest.raises(InvalidArgument, match="key_stages_reason: only for record_mode KEY_STAGES_ONLY"):
        await world.activity(case.case_id, key_stages_reason="x")


@pytest.mark.parametrize("reason", list(ExemptionReason))
async def test_r19a_exempt_with_a_permitted_reason_and_a_note(world, reason):
    case = await world.open()
    activity = await world.activity(
        case.case_id, record_mode=RecordMode.EXEMPT, exemption_reason=reason, exemption_note="现场情况说明"
    )
    assert activity.exemption_reason is reason


async def test_r19a_exempt_needs_one_of_the_permitted_reasons(world):
    case = await world.open()
    with pytest.raises(InvalidArgument, match=r"exemption_reason: required for EXEMPT \(R19a\)"):
        await world.activity(case.case_id, record_mode=RecordMode.EXEMPT, exemption_note="不方便录像")


async def test_r19a_exempt_needs_a_note(world):
    case = await world.open()
    with pytest.raises(InvalidArgument, match="exemption_note: required"):
        await world.activity(
            case.case_id, record_mode=RecordMode.EXEMPT, exemption_reason=ExemptionReason.CLASSIFIED_SITE
        )


async def test_r19a_an_exemption_reason_without_exempt_mode_is_refused(world):
    case = await world.open()
    with pytest.raises(InvalidArgument, match="exemption_reason: only for record_mode EXEMPT"):
        await world.activity(case.case_id, exemption_reason=ExemptionReason.CLASSIFIED_SITE)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": None}, "kind: required"),
        ({"record_mode": None}, "record_mode: required"),
        ({"started_at": None}, "started_at: required"),
        ({"place": ""}, "place: required"),
        ({"place": "x" * 201}, "place: 201 characters is too long"),
        ({"officers": ()}, "officers: at least 1 required"),
        ({"officers": ("alice", "alice")}, "officers: 'alice' is listed more than once"),
        ({"officers": ("alice bob",)}, "officers\\[0\\]: 'alice bob' is not a valid id"),
    ],
)
async def test_r07_bad_activity_fields_are_named(world, overrides, message):
    case = await world.open()
    with pytest.raises(InvalidArgument, match=message):
        await world.activity(case.case_id, **overrides)


async def test_r04_activity_times_must_be_in_order_and_not_in_the_future(world):
    case = await world.open()
    now = world.clock.now
    with pytest.raises(InvalidArgument, match=r"ended_at: .* is not after started_at"):
        await world.activity(
            case.case_id, started_at=now - timedelta(hours=1), ended_at=now - timedelta(hours=2)
        )
    with pytest.raises(InvalidArgument, match=r"ended_at: .* is in the future"):
        await world.activity(case.case_id, started_at=now, ended_at=now + timedelta(hours=1))
    with pytest.raises(InvalidArgument, match="at most 7 days per activity"):
        await world.activity(case.case_id, started_at=now - timedelta(days=8), ended_at=now)
    assert (await world.cases.get(case.case_id)).activities == []


async def test_r07_a_repeated_request_records_the_activity_once(world):
    case = await world.open()
    first = await world.activity(case.case_id, request_id="req-1")
    again = await world.activity(case.case_id, request_id="req-1")
    assert first == again
    assert len((await world.cases.get(case.case_id)).activities) == 1


async def test_r13_an_incident_is_recorded_with_its_facts_and_published(world):
    case = await world.open(procedure=c.Procedure.GENERAL)
    occurred = world.clock.now - timedelta(minutes=30)
    world.clock.tick()
    case, incident = await world.handlers.record_incident(
        c.RecordIncident(case.case_id, IncidentKind.ASSAULT, occurred, "carl", "当事人殴打执法人员"),
        world.officer,
    )
    assert (incident.kind, incident.occurred_at, incident.reporter, incident.recorded.at) == (
        IncidentKind.ASSAULT,
        occurred,
        "carl",
        world.clock.now,
    )
    event = world.cases.events_of(case.case_id)[-1]
    assert isinstance(event, e.CaseIncidentRecorded)
    assert (event.incident, event.act_type, event.procedure) == (
        incident,
        c.ActType.PENALTY,
        c.Procedure.GENERAL,
    )


async def test_r13_other_important_needs_a_reason(world):
    case = await world.open()
    cmd = c.RecordIncident(case.case_id, IncidentKind.OTHER_IMPORTANT, world.clock.now, "carl", "媒体到场")
    with pytest.raises(InvalidArgument, match="reason: required"):
        await world.handlers.record_incident(cmd, world.officer)
    cmd = c.RecordIncident(
        case.case_id, IncidentKind.OTHER_IMPORTANT, world.clock.now, "carl", "媒体到场", "舆情"
    )
    _, incident = await world.handlers.record_incident(cmd, world.officer)
    assert incident.reason == "舆情"


async def test_r13_an_incident_cannot_be_in_the_future(world):
    case = await world.open()
    later = world.clock.now + timedelta(hours=1)
    with pytest.raises(InvalidArgument, match=r"occurred_at: .* is in the future"):
        await world.handlers.record_incident(
            c.RecordIncident(case.case_id, IncidentKind.EMERGENCY, later, "carl", "火情"), world.officer
        )


async def test_r13_incidents_are_recorded_after_closing_and_archiving_too(world):
    case = await world.open(act_type=c.ActType.LEVY, procedure=None)
    await world.to_stage(case.case_id, Stage.CLOSED)
    await world.complete_file(case.case_id)
    await world.archive(case.case_id)
    case, incident = await world.handlers.record_incident(
        c.RecordIncident(case.case_id, IncidentKind.COMPLAINT, world.clock.now, "张三", "事后投诉"),
        world.officer,
    )
    assert incident.stage is Stage.ARCHIVED
    assert c.CaseFlag.DISPUTED in case.flag_set


async def test_r13_a_repeated_request_records_the_incident_once(world):
    case = await world.open()
    cmd = c.RecordIncident(
        case.case_id, IncidentKind.COMPLAINT, world.clock.now, "张三", "投诉", request_id="k1"
    )
    _, first = await world.handlers.record_incident(cmd, world.officer)
    _, again = await world.handlers.record_incident(cmd, world.officer)
    assert first == again
    assert len((await world.cases.get(case.case_id)).incidents) == 1
