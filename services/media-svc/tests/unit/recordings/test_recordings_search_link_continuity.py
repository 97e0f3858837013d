"""Search (R17), linking (R5, R17) and continuity (R19c) use cases, and the access events of views and
searches from outside the owning unit (R16)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from lawtrail.media.v1 import media_events_pb2 as ev
from lawtrail.media.v1 import recording_pb2 as rpb
from media_svc.adapters.event_mapping import to_outbound
from media_svc.adapters.recording_repository import SEARCH_FIELDS, SEARCH_INDEXES
from media_svc.domain.commands import ExplainInterruption, LinkRecording, UploadManifest, UploadRecording
from media_svc.domain.events import (
    InterruptionExplained,
    RecordingLinked,
    RecordingsSearched,
    RecordingViewed,
)
from media_svc.domain.recordings import MediaKind, Recording
from media_svc.service_layer.ports import SearchQuery
from recordings_support import (
    LEGAL,
    OFFICER,
    OTHER_UNIT,
    T0,
    App,
    Media,
    chunks_of,
    classification,
    data_of,
    open_case,
)
from servicekit.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from servicekit.errors import NotFound as NotFoundError
from servicekit.policy import Actor


async def store(app: App, media: Media, **kw: object) -> Recording:
    """Stores the same test video under a distinct classification: a unique suffix makes distinct bytes."""
    base = data_of(media.video)
    suffix = repr(sorted(kw.items())).encode()
    data = base + b"\0" * 16 + suffix  # trailing bytes after the MP4 atoms: still the same video
    c = classification(**kw)  # type: ignore[arg-type]
    m = UploadManifest(c, hashlib.sha256(data).hexdigest(), len(data))
    return (await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data), OFFICER)).recording


async def test_r17_search_by_every_classification_criterion(app: App, media: Media) -> None:
    a = await store(app, media, device="CAM-1", start=T0)
    b = await store(app, media, device="CAM-2", start=T0 + timedelta(minutes=5), case_id="case-1")
    c = await store(app, media, device="CAM-2", start=T0 + timedelta(minutes=10))

    async def ids(**q: object) -> list[str]:
        page = await app.handlers.search_recordings(SearchQuery(**q), 0, "", OFFICER)  # type: ignore[arg-type]
        return [r.recording_id for r in page.recordings]

    assert await ids() == [a.recording_id, b.recording_id, c.recording_id]
    assert await ids(device_number="CAM-2") == [b.recording_id, c.recording_id]
    assert await ids(case_id="case-1") == [b.recording_id]
    assert await ids(officer="officer-1", party="Party Ltd", case_cause="unlicensed construction") == [
        a.recording_id,
        b.recording_id,
        c.recording_id,
    ]
    assert await ids(party="someone else") == []
    assert await ids(media_kind=MediaKind.AUDIO) == []
    # time range: overlap with [T0+1 min, T0+6 min)
    assert await ids(recorded_after=T0 + timedelta(minutes=1), recorded_before=T0 + timedelta(minutes=6)) == [
        b.recording_id
    ]


async def test_r17_search_is_cursor_paged(app: App, media: Media) -> None:
    made = [await store(app, media, start=T0 + timedelta(minutes=i)) for i in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = await app.handlers.search_recordings(SearchQuery(), 2, token, OFFICER)
        seen += [r.recording_id for r in page.recordings]
        token = page.next_page_token
        if not token:
            break
    assert seen == [r.recording_id for r in made]
    with pytest.raises(InvalidArgument, match="page_token"):
        await app.handlers.search_recordings(SearchQuery(), 2, "garbage!", OFFICER)


async def test_r08_a_unit_searches_and_reads_only_its_own_recordings(app: App, media: Media) -> None:
    r = await store(app, media)
    assert (await app.handlers.search_recordings(SearchQuery(), 0, "", OTHER_UNIT)).recordings == []
    with pytest.raises(PermissionDenied):
        await app.handlers.search_recordings(SearchQuery(unit="unit-a"), 0, "", OTHER_UNIT)
    # R8: a record of another unit answers PERMISSION_DENIED in every service (docs/permissions.md)
    with pytest.raises(PermissionDenied, match=r"may not read recordings of unit 'unit-a'"):
        await app.handlers.get_recording(r.recording_id, OTHER_UNIT)
    with pytest.raises(NotFoundError):
        await app.handlers.get_recording("no-such-recording", OTHER_UNIT)
    # the legal affairs office supervises every unit
    assert (await app.handlers.get_recording(r.recording_id, LEGAL)).recording_id == r.recording_id
    assert len((await app.handlers.search_recordings(SearchQuery(), 0, "", LEGAL)).recordings) == 1


def test_r17_every_search_criterion_has_an_index_in_result_order() -> None:
    """Each criterion that narrows a search leads a compound index ending in (recorded_from, _id), with and
    without the unit, so a search is an index range scan in the order of its results."""
    keys = [tuple(k for k, _ in spec.keys) for spec in SEARCH_INDEXES]
    assert ("unit", "recorded_from", "_id") in keys
    assert ("recorded_from", "_id") in keys
    for field in SEARCH_FIELDS:
        assert ("unit", field, "recorded_from", "_id") in keys
        assert (field, "recorded_from", "_id") in keys
    assert set(SEARCH_FIELDS) == {"case_id", "device_number", "officer", "party", "case_cause", "media_kind"}


async def test_r05_linking_emits_recording_linked_once_and_is_additive(app: App, media: Media) -> None:
    await open_case(app, "case-1")
    await open_case(app, "case-2")
    r = await store(app, media)
    linked = await app.handlers.link_recording(LinkRecording(r.recording_id, "case-1", ""), OFFICER)
    assert (linked.link.case_id, linked.link.activity_id) == ("case-1", "")
    again = await app.handlers.link_recording(LinkRecording(r.recording_id, "case-1", ""), OFFICER)
    assert again.version == linked.version, "the same link again changes nothing"
    with_activity = await app.handlers.link_recording(
        LinkRecording(r.recording_id, "case-1", "act-1"), OFFICER
    )
    assert with_activity.link.activity_id == "act-1"
    links = [e for e in app.events() if isinstance(e, RecordingLinked)]
    assert [(e.case_id, e.activity_id) for e in links] == [("case-1", ""), ("case-1", "act-1")]
    with pytest.raises(FailedPrecondition, match="never moved to another case"):
        await app.handlers.link_recording(LinkRecording(r.recording_id, "case-2", ""), OFFICER)
    with pytest.raises(FailedPrecondition, match="never moved to another activity"):
        await app.handlers.link_recording(LinkRecording(r.recording_id, "case-1", "act-2"), OFFICER)
    with pytest.raises(PermissionDenied, match=r"may not read recordings of unit 'unit-a'"):
        await app.handlers.link_recording(LinkRecording(r.recording_id, "case-1", "act-1"), OTHER_UNIT)


async def segments(
    app: App, media: Media, *starts_ends: tuple[int, int], device: str = "CAM-1"
) -> list[Recording]:
    """Recordings of one device during activity act-1 of case-1, at (start, end) seconds after T0."""
    await open_case(app, "case-1")
    out = []
    for s, e in starts_ends:
        r = await store(app, media, start=T0 + timedelta(seconds=s), seconds=e - s, device=device)
        out.append(
            await app.handlers.link_recording(LinkRecording(r.recording_id, "case-1", "act-1"), OFFICER)
        )
    return out


async def test_r19c_gaps_over_the_threshold_need_an_explanation(app: App, media: Media) -> None:
    # 0–100 s, 130–200 s (30 s gap: under the 60 s threshold), 400–500 s (200 s gap), 490–600 s (overlap)
    _, b, c, _ = await segments(app, media, (0, 100), (130, 200), (400, 500), (490, 600))
    page = await app.handlers.list_unexplained_gaps(
        unit="unit-a", case_id="", page_size=0, page_token="", actor=OFFICER
    )
    assert [(g.gap.previous_recording_id, g.gap.next_recording_id, g.gap.duration) for g in page.gaps] == [
        (b.recording_id, c.recording_id, timedelta(seconds=200))
    ]
    by_case = await app.handlers.list_unexplained_gaps(
        unit="", case_id="case-1", page_size=0, page_token="", actor=OFFICER
    )
    assert [g.gap for g in by_case.gaps] == [g.gap for g in page.gaps]

    explained = await app.handlers.explain_interruption(
        ExplainInterruption(c.recording_id, written_text="battery swapped"), OFFICER
    )
    assert explained.explanation is not None
    assert explained.explanation.written_text == "battery swapped"
    assert explained.explanation.explained.subject == "officer-1"
    events = [e for e in app.events() if isinstance(e, InterruptionExplained)]
    assert [(e.gap.next_recording_id, e.explanation.written_text) for e in events] == [
        (c.recording_id, "battery swapped")
    ]
    after = await app.handlers.list_unexplained_gaps(
        unit="unit-a", case_id="", page_size=0, page_token="", actor=OFFICER
    )
    assert after.gaps == []


async def test_r19c_an_explanation_in_a_later_recording(app: App, media: Media) -> None:
    a, b, c = await segments(app, media, (0, 100), (300, 400), (500, 600))
    with pytest.raises(InvalidArgument, match="later recording"):
        await app.handlers.explain_interruption(
            ExplainInterruption(b.recording_id, spoken_in_recording_id=a.recording_id), OFFICER
        )
    with pytest.raises(InvalidArgument, match="outside recording"):
        await app.handlers.explain_interruption(
            ExplainInterruption(
                b.recording_id, spoken_in_recording_id=c.recording_id, spoken_offset=timedelta(seconds=500)
            ),
            OFFICER,
        )
    g = await app.handlers.explain_interruption(
        ExplainInterruption(
            b.recording_id, spoken_in_recording_id=b.recording_id, spoken_offset=timedelta(seconds=3)
        ),
        OFFICER,
    )
    assert g.explanation is not None
    assert (g.explanation.spoken_in_recording_id, g.explanation.spoken_offset) == (
        b.recording_id,
        timedelta(seconds=3),
    )
    left = await app.handlers.list_unexplained_gaps(
        unit="unit-a", case_id="", page_size=0, page_token="", actor=OFFICER
    )
    assert [g.gap.next_recording_id for g in left.gaps] == [c.recording_id]


async def test_r19c_a_late_segment_splitting_an_explained_gap_keeps_it_explained(
    app: App, media: Media
) -> None:
    _, b = await segments(app, media, (0, 100), (500, 600))
    await app.handlers.explain_interruption(
        ExplainInterruption(b.recording_id, written_text="lost signal"), OFFICER
    )
    await segments(app, media, (250, 300))
    left = await app.handlers.list_unexplained_gaps(
        unit="unit-a", case_id="", page_size=0, page_token="", actor=OFFICER
    )
    assert left.gaps == []


async def test_r19c_nothing_to_explain(app: App, media: Media) -> None:
    (a,) = await segments(app, media, (0, 100))
    with pytest.raises(FailedPrecondition, match="no gap before it"):
        await app.handlers.explain_interruption(
            ExplainInterruption(a.recording_id, written_text="x"), OFFICER
        )
    unlinked = await store(app, media, start=T0 + timedelta(hours=5))
    with pytest.raises(FailedPrecondition, match="not linked to an enforcement activity"):
        await app.handlers.explain_interruption(
            ExplainInterruption(unlinked.recording_id, written_text="x"), OFFICER
        )


async def test_r19c_gaps_are_per_device(app: App, media: Media) -> None:
    await segments(app, media, (0, 100), device="CAM-1")
    await segments(app, media, (500, 600), device="CAM-2")
    page = await app.handlers.list_unexplained_gaps(
        unit="unit-a", case_id="", page_size=0, page_token="", actor=OFFICER
    )
    assert page.gaps == []


async def test_r19c_unexplained_gaps_are_paged(app: App, media: Media) -> None:
    for device in ("CAM-1", "CAM-2", "CAM-3"):
        await segments(app, media, (0, 10), (200, 210), (400, 410), device=device)
    seen = []
    token = ""
    while True:
        page = await app.handlers.list_unexplained_gaps(
            unit="unit-a", case_id="", page_size=3, page_token=token, actor=OFFICER
        )
        seen += [g.gap.next_recording_id for g in page.gaps]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 6
    with pytest.raises(PermissionDenied):
        await app.handlers.list_unexplained_gaps(
            unit="unit-a", case_id="", page_size=0, page_token="", actor=OTHER_UNIT
        )


async def test_r19c_a_crash_between_link_and_series_is_finished_by_the_sweep(app: App, media: Media) -> None:
    app.handlers.reactions = {}  # as if the process died right after the link was written
    a, b = await segments(app, media, (0, 100), (500, 600))
    assert all(app.recordings.docs[r.recording_id].continuity_pending for r in (a, b))
    assert await app.handlers.settle_pending() == 2
    assert not any(app.recordings.docs[r.recording_id].continuity_pending for r in (a, b))
    page = await app.handlers.list_unexplained_gaps(
        unit="unit-a", case_id="", page_size=0, page_token="", actor=OFFICER
    )
    assert len(page.gaps) == 1


# ---------------------------------------------------------------------------------------------
# R16, R23-3: views and searches from outside the owning unit are access events (as case-svc's)
# ---------------------------------------------------------------------------------------------

INSPECTOR = Actor("inspector-1", "inspection", frozenset({"INSPECTOR"}))


async def test_r16_get_recording_by_another_unit_publishes_recording_viewed(app: App, media: Media) -> None:
    r = await store(app, media)
    await app.handlers.get_recording(r.recording_id, LEGAL)
    assert app.access_log.views == [
        RecordingViewed(
            view_id=app.access_log.views[0].view_id,
            recording_id=r.recording_id,
            unit="unit-a",
            viewer="legal-1",
            viewer_unit="legal",
            at=T0 + timedelta(hours=1),
            rpc="GetRecording",
        )
    ]
    (out,) = to_outbound(app.access_log.views)
    assert (out.topic, out.subject) == ("lawtrail.media.v1.events", r.recording_id)
    assert isinstance(out.message, ev.RecordingViewed)
    assert (out.message.recording_id, out.message.unit, out.message.viewer, out.message.viewer_unit) == (
        r.recording_id,
        "unit-a",
        "legal-1",
        "legal",
    )
    assert (out.message.rpc, out.message.at.ToDatetime(tzinfo=T0.tzinfo)) == (
        "GetRecording",
        T0 + timedelta(hours=1),
    )


async def test_r16_views_and_searches_within_the_owning_unit_publish_nothing(app: App, media: Media) -> None:
    _, b, c = await segments(app, media, (0, 100), (130, 200), (400, 500))
    await app.handlers.get_recording(b.recording_id, OFFICER)
    await app.handlers.search_recordings(SearchQuery(), 0, "", OFFICER)
    await app.handlers.search_recordings(SearchQuery(unit="unit-a", device_number="CAM-1"), 0, "", OFFICER)
    await app.handlers.list_unexplained_gaps(
        unit="unit-a", case_id="", page_size=0, page_token="", actor=OFFICER
    )
    await app.handlers.list_unexplained_gaps(
        unit="", case_id="case-1", page_size=0, page_token="", actor=OFFICER
    )
    await app.handlers.explain_interruption(
        ExplainInterruption(c.recording_id, written_text="battery"), OFFICER
    )
    assert app.access_log.views == []


async def test_r16_a_refused_view_publishes_no_view_event(app: App, media: Media) -> None:
    """A refusal is not a view (the ledger has its RpcCalled with PERMISSION_DENIED, issue 11 item 7)."""
    r = await store(app, media)
    with pytest.raises(PermissionDenied):
        await app.handlers.get_recording(r.recording_id, OTHER_UNIT)
    with pytest.raises(PermissionDenied):
        await app.handlers.search_recordings(SearchQuery(unit="unit-a"), 0, "", OTHER_UNIT)
    assert app.access_log.views == []


async def test_r16_loading_a_recording_for_a_command_is_not_a_view(app: App, media: Media) -> None:
    r = await store(app, media)
    await open_case(app, "case-1")
    await app.handlers.link_recording(LinkRecording(r.recording_id, "case-1", "act-1"), LEGAL)
    assert app.access_log.views == []


async def test_r16_a_search_across_units_publishes_recordings_searched_with_its_criteria_and_results(
    app: App, media: Media
) -> None:
    a = await store(app, media, device="CAM-2", start=T0)
    await store(app, media, device="CAM-1", start=T0 + timedelta(minutes=1))
    b = await store(app, media, device="CAM-2", start=T0 + timedelta(minutes=2))
    after = T0 - timedelta(days=1)
    query = SearchQuery(device_number="CAM-2", media_kind=MediaKind.VIDEO, recorded_after=after)
    page = await app.handlers.search_recordings(query, 0, "", LEGAL)
    assert [r.recording_id for r in page.recordings] == [a.recording_id, b.recording_id]
    (searched,) = app.access_log.views
    assert isinstance(searched, RecordingsSearched)
    assert (searched.viewer, searched.viewer_unit, searched.rpc) == ("legal-1", "legal", "SearchRecordings")
    assert searched.query == query, "every unit: the unit searched is empty"
    assert searched.recording_ids == (a.recording_id, b.recording_id)

    (out,) = to_outbound([searched])
    assert out.subject == "legal-1", "a search is keyed by who searched (as CasesSearched)"
    m = out.message
    assert isinstance(m, ev.RecordingsSearched)
    assert (m.viewer, m.rpc, m.unit, m.device_number, m.officer, m.party, m.case_id) == (
        "legal-1",
        "SearchRecordings",
        "",
        "CAM-2",
        "",
        "",
        "",
    )
    assert m.media_kind == rpb.MEDIA_KIND_VIDEO
    assert m.HasField("recorded_after")
    assert not m.HasField("recorded_before")
    assert m.recorded_after.ToDatetime(tzinfo=T0.tzinfo) == after
    assert list(m.recording_ids) == [a.recording_id, b.recording_id]


async def test_r16_a_search_of_one_named_unit_by_a_reader_of_every_unit_publishes_it_paged(
    app: App, media: Media
) -> None:
    made = [await store(app, media, start=T0 + timedelta(minutes=i)) for i in range(3)]
    first = await app.handlers.search_recordings(SearchQuery(unit="unit-a"), 2, "", INSPECTOR)
    await app.handlers.search_recordings(SearchQuery(unit="unit-a"), 2, first.next_page_token, INSPECTOR)
    await app.handlers.search_recordings(SearchQuery(party="nobody"), 0, "", INSPECTOR)
    views = app.access_log.views
    assert all(isinstance(v, RecordingsSearched) for v in views)
    assert [(v.query.unit, v.recording_ids) for v in views if isinstance(v, RecordingsSearched)] == [
        ("unit-a", (made[0].recording_id, made[1].recording_id)),
        ("unit-a", (made[2].recording_id,)),
        ("", ()),  # a search that found nothing is a search all the same
    ]


async def test_r16_listing_gaps_across_units_publishes_recordings_searched(app: App, media: Media) -> None:
    _, b, c = await segments(app, media, (0, 100), (130, 200), (400, 500))
    await app.handlers.list_unexplained_gaps(
        unit="", case_id="case-1", page_size=0, page_token="", actor=LEGAL
    )
    await app.handlers.list_unexplained_gaps(
        unit="unit-a", case_id="", page_size=0, page_token="", actor=INSPECTOR
    )
    views = [v for v in app.access_log.views if isinstance(v, RecordingsSearched)]
    assert len(views) == len(app.access_log.views) == 2
    assert [(v.viewer, v.rpc, v.query.unit, v.query.case_id, v.recording_ids) for v in views] == [
        ("legal-1", "ListUnexplainedGaps", "", "case-1", (b.recording_id, c.recording_id)),
        ("inspector-1", "ListUnexplainedGaps", "unit-a", "", (b.recording_id, c.recording_id)),
    ]
