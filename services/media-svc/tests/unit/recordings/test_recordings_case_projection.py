"""R5 link checks against media-svc's view of case-svc's cases, and R17: a linked recording is searched by
its case's cause and parties. Handlers on fakes; the case events are fed as the consumer feeds them
(tests/integration/hardening/test_r05_end_to_end.py goes through case-svc and Kafka)."""

from __future__ import annotations

import hashlib

import pytest
from google.protobuf.message import Message
from lawtrail.case.v1 import case_events_pb2 as case_ev
from lawtrail.case.v1 import case_pb2
from media_svc.adapters.event_mapping import recording_message_of
from media_svc.domain.cases import CaseNotKnown, CrossUnitLink, UnknownActivity
from media_svc.domain.commands import LinkRecording, UploadManifest, UploadRecording
from media_svc.domain.events import RecordingLinked
from media_svc.domain.recordings import Recording
from media_svc.entrypoints.case_events import case_events_router
from media_svc.service_layer.ports import SearchQuery
from recordings_support import LEGAL, OFFICER, App, Media, chunks_of, classification, data_of, open_case
from servicekit.errors import FailedPrecondition, PermissionDenied
from servicekit.messaging.envelope import Envelope
from servicekit.policy import Actor

OTHER_OFFICER = Actor("officer-9", "unit-b", frozenset({"OFFICER"}))


async def store(app: App, media: Media, tag: str, **kw: object) -> Recording:
    data = data_of(media.video) + b"\0" * 16 + tag.encode()
    m = UploadManifest(classification(**kw), hashlib.sha256(data).hexdigest(), len(data))  # type: ignore[arg-type]
    return (await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data), OFFICER)).recording


async def found(app: App, actor: Actor = OFFICER, **q: str) -> list[str]:
    page = await app.handlers.search_recordings(SearchQuery(**q), 0, "", actor)  # type: ignore[arg-type]
    return [r.recording_id for r in page.recordings]


async def test_r05_a_link_to_a_case_media_svc_does_not_know_is_refused_naming_it(
    app: App, media: Media
) -> None:
    r = await store(app, media, "a")
    with pytest.raises(CaseNotKnown, match=r"case 'case-404' is not known to media-svc.*retry") as refused:
        await app.handlers.link_recording(LinkRecording(r.recording_id, "case-404", ""), OFFICER)
    assert isinstance(refused.value, FailedPrecondition)
    assert refused.value.reason == "R5_CASE_NOT_KNOWN"
    assert refused.value.metadata["case_id"] == "case-404"
    assert [v.field for v in refused.value.field_violations()] == ["case_id"]
    stored = await app.handlers.get_recording(r.recording_id, OFFICER)
    assert stored.link.case_id == "", "a refused link writes nothing"
    assert stored.version == r.version
    assert not [e for e in app.events() if isinstance(e, RecordingLinked)]


async def test_r05_a_link_to_an_activity_the_case_does_not_have_is_refused(app: App, media: Media) -> None:
    await open_case(app, "case-1", activities=("act-1",))
    r = await store(app, media, "a")
    with pytest.raises(
        UnknownActivity, match=r"activity_id: case 'case-1' has no activity 'act-9'"
    ) as refused:
        await app.handlers.link_recording(LinkRecording(r.recording_id, "case-1", "act-9"), OFFICER)
    assert refused.value.reason == "R5_UNKNOWN_ACTIVITY"
    assert [v.field for v in refused.value.field_violations()] == ["activity_id"]
    assert (await app.handlers.get_recording(r.recording_id, OFFICER)).link.case_id == ""


async def test_r05_a_link_to_another_units_case_is_refused_but_the_legal_office_may(
    app: App, media: Media
) -> None:
    await open_case(app, "case-b", unit="unit-b", cause="fire exits blocked", parties=("B Ltd",))
    r = await store(app, media, "a")
    with pytest.raises(CrossUnitLink, match=r"unit 'unit-a' and case 'case-b' to unit 'unit-b'") as refused:
        await app.handlers.link_recording(LinkRecording(r.recording_id, "case-b", "act-1"), OFFICER)
    assert isinstance(refused.value, PermissionDenied)
    assert refused.value.reason == "R5_CROSS_UNIT_LINK"
    # an officer of the case's unit may not touch unit-a's recording at all (R8)
    with pytest.raises(PermissionDenied, match="R8"):
        await app.handlers.link_recording(LinkRecording(r.recording_id, "case-b", "act-1"), OTHER_OFFICER)

    linked = await app.handlers.link_recording(LinkRecording(r.recording_id, "case-b", "act-1"), LEGAL)
    assert linked.link.by_legal_office
    assert linked.link.case_id == "case-b"
    (event,) = [e for e in app.events() if isinstance(e, RecordingLinked)]
    assert event.by_legal_office
    _, message = recording_message_of(event)
    assert message.linked_by_legal_office is True  # type: ignore[attr-defined]
    assert message.linked.subject == "legal-1"  # type: ignore[attr-defined]
    # R17: it takes the case's cause and parties too
    assert await found(app, LEGAL, case_cause="fire exits blocked") == [r.recording_id]


async def test_r05_a_link_within_the_unit_is_not_marked_as_the_legal_offices(app: App, media: Media) -> None:
    await open_case(app, "case-1")
    r = await store(app, media, "a")
    await app.handlers.link_recording(LinkRecording(r.recording_id, "case-1", "act-1"), OFFICER)
    (event,) = [e for e in app.events() if isinstance(e, RecordingLinked)]
    assert not event.by_legal_office
    assert recording_message_of(event)[1].linked_by_legal_office is False  # type: ignore[attr-defined]


async def test_r17_a_linked_recording_is_found_by_its_cases_cause_and_parties(app: App, media: Media) -> None:
    await open_case(app, "case-1", cause="illegal advertising", parties=("Acme Ltd", "Zhang San"))
    r = await store(app, media, "a")
    other = await store(app, media, "b")
    assert await found(app, case_cause="illegal advertising") == []
    await app.handlers.link_recording(LinkRecording(r.recording_id, "case-1", ""), OFFICER)
    assert await found(app, case_cause="illegal advertising") == [r.recording_id]
    assert await found(app, party="Zhang San") == [r.recording_id]
    assert await found(app, party="Acme Ltd") == [r.recording_id]
    # the uploader's declared values stay, and stay searchable
    both = sorted([r.recording_id, other.recording_id])
    assert sorted(await found(app, party="Party Ltd")) == both
    assert sorted(await found(app, case_cause="unlicensed construction")) == both
    stored = await app.handlers.get_recording(r.recording_id, OFFICER)
    assert (stored.classification.party, stored.classification.case_cause) == (
        "Party Ltd",
        "unlicensed construction",
    )


async def test_r17_a_later_change_of_cause_or_parties_is_followed_by_every_linked_recording(
    app: App, media: Media
) -> None:
    await open_case(app, "case-1", cause="illegal advertising", parties=("Acme Ltd",))
    linked = [await store(app, media, f"r{i}") for i in range(3)]
    for r in linked:
        await app.handlers.link_recording(LinkRecording(r.recording_id, "case-1", ""), OFFICER)
    unlinked = await store(app, media, "x")
    assert (
        await app.handlers.case_particulars_changed("case-1", "illegal billboard", ("Acme Ltd", "Li Si")) == 3
    )
    ids = sorted(r.recording_id for r in linked)
    assert sorted(await found(app, case_cause="illegal billboard")) == ids
    assert sorted(await found(app, party="Li Si")) == ids
    assert await found(app, case_cause="illegal advertising") == []
    assert unlinked.recording_id not in await found(app, party="Li Si")
    assert unlinked.recording_id in await found(app, party="Party Ltd")  # its declared party, untouched
    # the same change again (a redelivery) writes nothing
    versions = [(await app.handlers.get_recording(i, OFFICER)).version for i in ids]
    assert (
        await app.handlers.case_particulars_changed("case-1", "illegal billboard", ("Acme Ltd", "Li Si")) == 0
    )
    assert await app.handlers.follow_case("case-1") == 0
    assert [(await app.handlers.get_recording(i, OFFICER)).version for i in ids] == versions


async def test_r17_a_recording_linked_at_upload_before_the_case_reached_media_svc_takes_it_on_arrival(
    app: App, media: Media
) -> None:
    r = await store(app, media, "a", case_id="case-late")  # evidence is never refused for its link
    assert await found(app, case_cause="late cause") == []
    changed = await app.handlers.case_opened("case-late", "unit-a", "late cause", ("Late Ltd",))
    assert changed == 1
    assert await found(app, case_cause="late cause") == [r.recording_id]
    assert await found(app, party="Late Ltd") == [r.recording_id]
    # a repeated CaseOpened changes nothing
    assert await app.handlers.case_opened("case-late", "unit-a", "late cause", ("Late Ltd",)) == 0


async def test_r17_an_upload_linked_to_another_units_case_does_not_take_its_particulars(
    app: App, media: Media
) -> None:
    await open_case(app, "case-b", unit="unit-b", cause="b's cause")
    r = await store(app, media, "a", case_id="case-b")
    assert await found(app, LEGAL, case_cause="b's cause") == []
    assert (await app.handlers.get_recording(r.recording_id, OFFICER)).case_particulars is None


def envelope_of(message: Message, ce_id: str) -> Envelope:
    return Envelope.of(message, source="case-svc", subject="case-1", id=ce_id)


async def test_r05_the_consumer_projects_case_opened_and_activities_idempotently(
    app: App, media: Media
) -> None:
    router = case_events_router(app.handlers)
    opened = case_ev.CaseOpened(
        case_id="case-1",
        unit="unit-a",
        cause="fire exits blocked",
        parties=[case_pb2.Party(name="Acme Ltd"), case_pb2.Party(name="Wang Wu")],
    )
    activity = case_ev.ActivityRecorded(
        case_id="case-1", unit="unit-a", activity=case_pb2.Activity(activity_id="a-1")
    )
    for _ in range(2):  # redelivered: the same effect
        await router(envelope_of(opened, "e-1"))
        await router(envelope_of(activity, "e-2"))
    view = await app.handlers.cases.get("case-1")
    assert view is not None
    assert (view.unit, view.particulars.cause, view.particulars.parties, view.activity_ids) == (
        "unit-a",
        "fire exits blocked",
        ("Acme Ltd", "Wang Wu"),
        frozenset({"a-1"}),
    )
    r = await store(app, media, "a")
    linked = await app.handlers.link_recording(LinkRecording(r.recording_id, "case-1", "a-1"), OFFICER)
    assert linked.link.activity_id == "a-1"
    assert await found(app, party="Wang Wu") == [r.recording_id]
    amended = case_ev.CaseParticularsAmended(
        case_id="case-1",
        unit="unit-a",
        cause="fire exits locked",
        parties=[case_pb2.Party(name="Acme Ltd"), case_pb2.Party(name="Zhao Liu")],
        previous_cause="fire exits blocked",
    )
    for _ in range(2):  # redelivered: applied once
        await router(envelope_of(amended, "e-3"))
    view = await app.handlers.cases.get("case-1")
    assert view is not None
    assert view.particulars.version == 2
    assert await found(app, case_cause="fire exits locked") == [r.recording_id]
    assert await found(app, party="Zhao Liu") == [r.recording_id]
    assert await found(app, party="Wang Wu") == []
