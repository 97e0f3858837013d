"""The case lifecycle on the real stack (issue 3): an incident → CaseIncidentRecorded on the topic (R13);
R5 — a disputed case is blocked, then unblocked when media-svc's RecordingLinked events for each
activity arrive on `lawtrail.media.v1.events`; replaying every event twice leaves the same state;
a whole case from opening to archive with its case file (R3, R6, R10)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from case_svc.adapters.event_mapping import EVENT_TYPES, from_pb
from case_svc.adapters.repository import case_from_doc
from case_svc.domain import events as domain_events
from case_svc.domain.case import Case
from lawtrail.case.v1 import case_events_pb2, case_pb2
from lawtrail.case.v1 import case_service_pb2 as api
from lawtrail.common.v1 import common_pb2
from lawtrail.media.v1 import media_events_pb2, recording_pb2

pytestmark = pytest.mark.integration

MEDIA_SOURCE = "/lawtrail/media-svc"


async def _advance(head, case_id: str, stage: int) -> case_pb2.Case:
    request = api.AdvanceStageRequest(case_id=case_id, to_stage=stage, reason="审批同意")
    return (await head("AdvanceStage", request)).case


def _linked(case: case_pb2.Case, activity_id: str, recording_id: str) -> media_events_pb2.RecordingLinked:
    now = datetime.now(UTC)
    event = media_events_pb2.RecordingLinked(
        recording_id=recording_id,
        case_id=case.case_id,
        activity_id=activity_id,
        unit=case.unit,
        media_kind=recording_pb2.MEDIA_KIND_VIDEO,
        device_number="BC-0001",
        officer="alice",
        sha256=hashlib.sha256(recording_id.encode()).hexdigest(),
        party_informed=True,
        linked=common_pb2.Attribution(subject="station-1", unit=case.unit),
    )
    event.recorded_from.FromDatetime(now - timedelta(hours=2))
    event.recorded_to.FromDatetime(now - timedelta(hours=1))
    event.linked.at.FromDatetime(now)
    return event


async def test_r13_an_incident_is_published_with_its_facts(case_svc, as_role, unit, kit):
    officer = as_role("OFFICER")
    case = (await officer("OpenCase", kit.open_request(unit))).case
    occurred = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    response = await officer(
        "RecordIncident",
        api.RecordIncidentRequest(
            case_id=case.case_id,
            kind=case_pb2.INCIDENT_KIND_ASSAULT,
            occurred_at=kit.stamp(occurred),
            reporter="carl",
            description="当事人推搡执法人员",
        ),
    )
    found = await kit.read_events(
        case_svc.stack.kafka_bootstrap,
        kit.CASE_TOPIC,
        lambda seen: any(e.type.endswith("CaseIncidentRecorded") for _, e in seen),
        key=case.case_id,
    )
    record, envelope = next((r, e) for r, e in found if e.type.endswith("CaseIncidentRecorded"))
    assert dict(record.headers)["ce_type"] == b"lawtrail.case.v1.CaseIncidentRecorded"
    event = envelope.parse(case_events_pb2.CaseIncidentRecorded)
    assert (event.case_id, event.unit, event.act_type) == (case.case_id, unit, case_pb2.ACT_TYPE_PENALTY)
    assert event.incident == response.incident
    assert event.incident.kind == case_pb2.INCIDENT_KIND_ASSAULT
    assert event.incident.occurred_at.ToDatetime(tzinfo=UTC) == occurred
    assert event.incident.recorded.subject == "alice"


async def test_r05_a_disputed_case_is_blocked_until_each_activity_has_a_linked_recording(
    case_svc, as_role, unit, kit
):
    officer, head = as_role("OFFICER"), as_role("UNIT_HEAD", subject="hank")
    case = (await officer("OpenCase", kit.open_request(unit))).case
    await _advance(head, case.case_id, case_pb2.STAGE_INVESTIGATION)
    first = (await officer("RecordActivity", kit.activity_request(case.case_id))).activity
    second = (
        await officer(
            "RecordActivity",
            kit.activity_request(case.case_id, kind=case_pb2.ACTIVITY_KIND_QUESTIONING, place="询问室"),
        )
    ).activity
    flagged = await officer(
        "RecordIncident",
        api.RecordIncidentRequest(
            case_id=case.case_id,
            kind=case_pb2.INCIDENT_KIND_COMPLAINT,
            occurred_at=kit.stamp(datetime.now(UTC)),
            reporter="张三",
            description="对调查方式有异议",
        ),
    )
    assert [f.flag for f in flagged.case.flags] == [case_pb2.CASE_FLAG_DISPUTED]

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _advance(head, case.case_id, case_pb2.STAGE_REVIEW_DECISION)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details().startswith("R5: ")
    assert first.activity_id in refused.value.details()
    assert second.activity_id in refused.value.details()

    bootstrap = case_svc.stack.kafka_bootstrap
    await kit.publish(
        bootstrap,
        kit.MEDIA_TOPIC,
        _linked(case, first.activity_id, "rec-a"),
        subject="rec-a",
        source=MEDIA_SOURCE,
        event_id=str(uuid.uuid4()),
    )

    async def covered(activity_id: str) -> bool:
        current = (await officer("GetCase", api.GetCaseRequest(case_id=case.case_id))).case
        return any(a.activity_id == activity_id and a.recording_ids for a in current.activities)

    await kit.eventually(lambda: covered(first.activity_id), "the first activity is covered")
    with pytest.raises(grpc.aio.AioRpcError) as still:
        await _advance(head, case.case_id, case_pb2.STAGE_REVIEW_DECISION)
    assert "Uncovered (1)" in still.value.details()
    assert second.activity_id in still.value.details()
    assert first.activity_id not in still.value.details()

    await kit.publish(
        bootstrap,
        kit.MEDIA_TOPIC,
        _linked(case, second.activity_id, "rec-b"),
        subject="rec-b",
        source=MEDIA_SOURCE,
        event_id=str(uuid.uuid4()),
    )
    await kit.eventually(lambda: covered(second.activity_id), "the second activity is covered")
    moved = await _advance(head, case.case_id, case_pb2.STAGE_REVIEW_DECISION)
    assert moved.stage == case_pb2.STAGE_REVIEW_DECISION
    assert {(lk.recording_id, lk.activity_id) for lk in moved.recording_links} == {
        ("rec-a", first.activity_id),
        ("rec-b", second.activity_id),
    }


async def test_r04_replaying_every_event_twice_leaves_the_same_state(case_svc, as_role, unit, kit):
    officer, head = as_role("OFFICER"), as_role("UNIT_HEAD", subject="hank")
    bootstrap = case_svc.stack.kafka_bootstrap
    case = (await officer("OpenCase", kit.open_request(unit))).case
    activities = [
        (await officer("RecordActivity", kit.activity_request(case.case_id))).activity for _ in range(2)
    ]
    await officer(
        "FlagCase",
        api.FlagCaseRequest(case_id=case.case_id, flag=case_pb2.CASE_FLAG_LEGACY_ISSUE, reason="历史遗留"),
    )
    links = [
        (_linked(case, a.activity_id, f"rec-{i}-{unit}"), str(uuid.uuid4())) for i, a in enumerate(activities)
    ]
    for event, event_id in links:
        await kit.publish(
            bootstrap,
            kit.MEDIA_TOPIC,
            event,
            subject=event.recording_id,
            source=MEDIA_SOURCE,
            event_id=event_id,
        )

    async def both_covered() -> bool:
        current = (await officer("GetCase", api.GetCaseRequest(case_id=case.case_id))).case
        return len(current.recording_links) == 2

    await kit.eventually(both_covered, "both recordings are linked")
    await _advance(head, case.case_id, case_pb2.STAGE_INVESTIGATION)
    before = (await officer("GetCase", api.GetCaseRequest(case_id=case.case_id))).case

    # Every media event again, twice: once redelivered (same ce_id), once re-published (new ce_id).
    for event, event_id in links:
        for again in (event_id, str(uuid.uuid4())):
            await kit.publish(
                bootstrap,
                kit.MEDIA_TOPIC,
                event,
                subject=event.recording_id,
                source=MEDIA_SOURCE,
                event_id=again,
            )
    # A marker behind each replayed link, published with the same key (so on the same partition,
    # after it): once every marker is applied, the consumer has passed every replay.
    markers = []
    for event, _ in links:
        marker = _linked(case, "", f"marker-{uuid.uuid4().hex[:8]}")
        markers.append(marker.recording_id)
        await kit.publish(
            bootstrap,
            kit.MEDIA_TOPIC,
            marker,
            subject=event.recording_id,
            source=MEDIA_SOURCE,
            event_id=str(uuid.uuid4()),
        )

    async def markers_applied() -> bool:
        current = (await officer("GetCase", api.GetCaseRequest(case_id=case.case_id))).case
        return set(markers) <= {lk.recording_id for lk in current.recording_links}

    await kit.eventually(markers_applied, "the markers behind the replays are applied")
    after = (await officer("GetCase", api.GetCaseRequest(case_id=case.case_id))).case
    replays_only = [lk for lk in after.recording_links if lk.recording_id not in markers]
    assert replays_only == list(before.recording_links)
    assert after.version == before.version + len(markers)  # the replays changed nothing
    assert after.activities == before.activities
    assert after.history == before.history

    # The case's own events, each applied twice, rebuild exactly the stored case (R4).
    found = await kit.read_events(
        bootstrap,
        kit.CASE_TOPIC,
        lambda seen: any(e.type.endswith("CaseStageAdvanced") for _, e in seen),
        key=case.case_id,
    )
    published = [from_pb(e.parse(EVENT_TYPES[e.type])) for _, e in found]
    stored = case_from_doc(case_svc.db()["cases"].find_one({"_id": case.case_id}))
    noted = [domain_events.RecordingLinkNoted(case.case_id, link) for link in stored.recording_links]
    twice = [ev for ev in [*published, *noted] for _ in range(2)]
    assert Case.replay(twice).snapshot() == stored.snapshot()


async def test_r10_a_levy_case_from_opening_to_archive(case_svc, as_role, unit, kit):
    officer, head = as_role("OFFICER"), as_role("UNIT_HEAD", subject="hank")
    archivist = as_role("ARCHIVIST", subject="arno")
    case = (
        await officer(
            "OpenCase",
            kit.open_request(unit, act_type=case_pb2.ACT_TYPE_LEVY, procedure=0, cause="易地建设费"),
        )
    ).case
    for stage in (
        case_pb2.STAGE_INVESTIGATION,
        case_pb2.STAGE_REVIEW_DECISION,
        case_pb2.STAGE_SERVICE_EXECUTION,
    ):
        await _advance(head, case.case_id, stage)
    closed = (await head("CloseCase", api.CloseCaseRequest(case_id=case.case_id, reason="已缴清"))).case
    assert closed.stage == case_pb2.STAGE_CLOSED

    content = "征收决定书 正文".encode()
    filed = await archivist(
        "FileDocument",
        api.FileDocumentRequest(
            case_id=case.case_id,
            document_type="LEVY_DECISION",
            number="许人防征〔2026〕3号",
            title="征收决定书",
            author="hank",
            signed_on="2026-05-01",
            content=content,
            sha256=hashlib.sha256(content).hexdigest(),
            content_type="application/pdf",
        ),
    )
    assert filed.document.sha256 == hashlib.sha256(content).hexdigest()
    stored = case_svc.db()["document_contents"].find_one({"_id": filed.document.sha256})
    assert bytes(stored["content"]) == content

    gaps = await officer("GetCaseFileGaps", api.GetCaseFileGapsRequest(case_id=case.case_id))
    assert (gaps.checklist, [g.document_type for g in gaps.gaps]) == (
        "LEVY",
        ["SERVICE_RECEIPT", "PAYMENT_RECEIPT"],
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await archivist("ArchiveCase", api.ArchiveCaseRequest(case_id=case.case_id, reason="归档"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SERVICE_RECEIPT (送达回证)" in refused.value.details()
    assert "PAYMENT_RECEIPT (缴款凭证)" in refused.value.details()

    for document_type in ("SERVICE_RECEIPT", "PAYMENT_RECEIPT"):
        await archivist(
            "FileDocument",
            api.FileDocumentRequest(
                case_id=case.case_id,
                document_type=document_type,
                number=f"{document_type}-1",
                title=document_type,
                author="arno",
                signed_on="2026-05-02",
                content=document_type.encode(),
                content_type="image/jpeg",
            ),
        )
    archived = (
        await archivist("ArchiveCase", api.ArchiveCaseRequest(case_id=case.case_id, reason="归档"))
    ).case
    assert archived.stage == case_pb2.STAGE_ARCHIVED
    assert [t.sequence for t in archived.history] == [0, 1, 2, 3, 4, 5]
    found = await kit.read_events(
        case_svc.stack.kafka_bootstrap,
        kit.CASE_TOPIC,
        lambda seen: any(e.type.endswith("CaseArchived") for _, e in seen),
        key=case.case_id,
    )
    archived_event = next(e for _, e in found if e.type.endswith("CaseArchived")).parse(
        case_events_pb2.CaseArchived
    )
    assert [d.document_type for d in archived_event.documents] == [
        "LEVY_DECISION",
        "SERVICE_RECEIPT",
        "PAYMENT_RECEIPT",
    ]
    types = [e.type.rsplit(".", 1)[1] for _, e in found]
    assert types == [
        "CaseOpened",
        "CaseStageAdvanced",
        "CaseStageAdvanced",
        "CaseStageAdvanced",
        "CaseClosed",
        "DocumentFiled",
        "DocumentFiled",
        "DocumentFiled",
        "CaseArchived",
    ]


async def test_r04_concurrent_changes_of_one_case_are_all_kept(case_svc, as_role, unit, kit):
    """FerretDB v1 loses concurrent updates of one document unless case-svc serialises its writes
    (adapters/serialized.py); every one of these concurrent activities must survive, each once."""
    officer = as_role("OFFICER")
    case = (await officer("OpenCase", kit.open_request(unit))).case
    requests = [kit.activity_request(case.case_id, place=f"地点 {i}") for i in range(12)]
    await asyncio.gather(*(officer("RecordActivity", r) for r in requests))
    stored = (await officer("GetCase", api.GetCaseRequest(case_id=case.case_id))).case
    assert sorted(a.place for a in stored.activities) == sorted(r.place for r in requests)
    assert stored.version == 1 + len(requests)
    found = await kit.read_events(
        case_svc.stack.kafka_bootstrap,
        kit.CASE_TOPIC,
        lambda seen: sum(e.type.endswith("ActivityRecorded") for _, e in seen) >= len(requests),
        key=case.case_id,
    )
    published = {
        e.parse(case_events_pb2.ActivityRecorded).activity.activity_id
        for _, e in found
        if e.type.endswith("ActivityRecorded")
    }
    assert published == {a.activity_id for a in stored.activities}
