"""R4: what is stored and what is published describe the same case — the stored document and the
published events round-trip to identical domain values; every RPC has a role policy (R8)."""

from __future__ import annotations

import pytest
from case_svc.adapters import event_mapping, proto_mapping
from case_svc.adapters.repository import case_from_doc, case_to_doc
from case_svc.domain import commands as c
from case_svc.domain import events as e
from case_svc.domain.case import Case
from case_svc.domain.model import ActType, CaseFlag, LegalReviewOutcome, PartyKind, RecordMode, Stage
from case_svc.entrypoints.grpc_api import SERVICE, role_policy
from lawtrail.case.v1 import case_events_pb2, case_pb2
from servicekit.errors import InvalidArgument


async def _every_kind_of_record(world) -> Case:
    case = await world.open(act_type=ActType.PENALTY)
    await world.advance(case.case_id, Stage.INVESTIGATION)
    text = await world.document(case.case_id, "ACTIVITY_TEXT_RECORD")
    await world.activity(
        case.case_id,
        record_mode=RecordMode.KEY_STAGES_ONLY,
        key_stages_reason="信号屏蔽",
        text_record_document_id=text.document_id,
    )
    exempt = await world.exempt_activity(case.case_id)
    await world.link(case.case_id, exempt.activity_id)
    await world.flag(case.case_id, CaseFlag.LEGACY_ISSUE)
    await world.handlers.amend_particulars(
        c.AmendCaseParticulars(
            case.case_id,
            "未按规定修建防空地下室（变更）",
            (
                c.PartyInput("某某建设有限公司", PartyKind.ORGANIZATION),
                c.PartyInput("李四", PartyKind.PERSON),
            ),
            "追加当事人",
        ),
        world.head,
    )
    await world.handlers.record_incident(
        c.RecordIncident(
            case.case_id, c.IncidentKind.OTHER_IMPORTANT, world.clock.now, "carl", "记者到场", "舆情"
        ),
        world.officer,
    )
    linked = await world.activity(case.case_id)
    await world.link(case.case_id, linked.activity_id)
    stored = await world.cases.get(case.case_id)
    await world.link(case.case_id, stored.activities[0].activity_id)
    await world.advance(case.case_id, Stage.REVIEW_DECISION)
    await world.review(case.case_id, LegalReviewOutcome.APPROVED)
    await world.advance(case.case_id, Stage.SERVICE_EXECUTION)
    await world.close(case.case_id)
    await world.complete_file(case.case_id)
    await world.archive(case.case_id)
    return await world.cases.get(case.case_id)


async def test_r04_a_case_survives_the_round_trip_through_its_stored_document(world):
    case = await _every_kind_of_record(world)
    doc = {"_id": case.case_id, "version": case.version, **case_to_doc(case)}
    restored = case_from_doc(doc)
    assert restored.snapshot() == case.snapshot()
    assert restored.version == case.version
    assert doc["flag_names"] == ["LEGACY_ISSUE"]
    assert set(doc["officers"]) == {"alice", "carl"}


async def test_r04_every_published_event_round_trips_through_its_protobuf(world):
    case = await _every_kind_of_record(world)
    published = world.cases.events_of(case.case_id)
    kinds = {type(ev).__name__ for ev in published}
    assert {
        "CaseOpened",
        "CaseStageAdvanced",
        "CaseFlagged",
        "CaseParticularsAmended",
        "CaseIncidentRecorded",
        "ActivityRecorded",
    } <= kinds
    assert {"DocumentFiled", "LegalReviewRecorded", "CaseClosed", "CaseArchived"} <= kinds
    for event in published:
        message = event_mapping.to_pb(event)
        assert message.DESCRIPTOR.full_name == f"lawtrail.case.v1.{type(event).__name__}"
        wire = type(message).FromString(message.SerializeToString())
        assert event_mapping.from_pb(wire) == event


async def test_r04_the_published_events_replay_to_the_stored_case(world):
    case = await _every_kind_of_record(world)
    wire = [
        event_mapping.from_pb(
            event_mapping.to_pb(ev).__class__.FromString(event_mapping.to_pb(ev).SerializeToString())
        )
        for ev in world.cases.events_of(case.case_id)
    ]
    links = [e.RecordingLinkNoted(case.case_id, link) for link in case.recording_links]
    assert Case.replay([*wire, *links]).snapshot() == case.snapshot()


def test_recording_links_are_not_published():
    link_event = e.RecordingLinkNoted("c", None)  # type: ignore[arg-type]
    assert event_mapping.outbound([link_event]) == []


async def test_the_api_shows_each_activitys_recordings(world):
    case = await world.open()
    activity = await world.activity(case.case_id)
    await world.link(case.case_id, activity.activity_id, "rec-9")
    message = proto_mapping.case_pb(await world.cases.get(case.case_id))
    assert list(message.activities[0].recording_ids) == ["rec-9"]
    assert message.stage == case_pb2.STAGE_INITIATION
    assert message.version == 3


def test_an_undefined_enum_number_names_the_field():
    with pytest.raises(
        InvalidArgument, match="act_type: 42 is not a defined value; use one of ACT_TYPE_LICENSING"
    ):
        proto_mapping.enum_from_pb(ActType, 42, "act_type")
    assert proto_mapping.enum_from_pb(ActType, 0, "act_type") is None
    assert proto_mapping.enum_from_pb(ActType, case_pb2.ACT_TYPE_LEVY, "act_type") is ActType.LEVY


def test_every_domain_enum_value_has_a_proto_value():
    for enum_type in proto_mapping._ENUMS:
        for member in enum_type:
            number = proto_mapping.enum_to_pb(member)
            assert proto_mapping.enum_from_pb(enum_type, number, "f") is member


def test_r08_every_rpc_of_the_service_has_a_role_policy():
    policy = role_policy()
    assert set(policy) == {f"/lawtrail.case.v1.CaseService/{m.name}" for m in SERVICE.methods}
    assert all(policy.values())
    assert policy["/lawtrail.case.v1.CaseService/RecordLegalReview"] == {"LEGAL_OFFICE"}


def test_the_event_catalogue_is_complete():
    names = {m for m in case_events_pb2.DESCRIPTOR.message_types_by_name}
    assert {t.rsplit(".", 1)[1] for t in event_mapping.EVENT_TYPES} == names
