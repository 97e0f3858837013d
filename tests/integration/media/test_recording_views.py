"""R16, R23-3 on the real stack: views and searches of recordings by someone outside the owning unit are
access events (RecordingViewed, RecordingsSearched), as case-svc's views of cases are; the same calls from
the owning unit publish nothing. A real `python -m media_svc` on the real Kafka + FerretDB of the
lawtrail_local plugin, a real MP4 from ffmpeg, and an outside Kafka consumer reading
`lawtrail.media.v1.events` from the start (lawtrail_local.kafka_probe)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from lawtrail.media.v1 import media_events_pb2 as ev
from lawtrail.media.v1 import recording_service_pb2 as pb
from lawtrail_local.kafka_probe import Records, read_from_start
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.stack import Stack
from servicekit.auth.devtoken import ensure_dev_keys
from servicekit.messaging.envelope import Envelope, decode

sys.path.insert(0, str(Path(__file__).parent))

from recordings_it import T0, TOPIC, Caller, caller, classification, make_video, upload

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (make setup installs it)"
    ),
]

VIEWED = ev.RecordingViewed.DESCRIPTOR.full_name
SEARCHED = ev.RecordingsSearched.DESCRIPTOR.full_name


@dataclass
class Views:
    officer: Caller  # unit-a, the owning unit
    head: Caller  # unit-a
    legal: Caller  # the legal affairs office: reads every unit's recordings
    inspector: Caller  # reads every unit's recordings
    bootstrap: str
    files: Path


@pytest.fixture(scope="module")
def views(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Views]:
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("media-views"))
    private_pem = ensure_dev_keys(starter.data_dir)[0].read_bytes()
    service = starter("media-svc", env={"LAWTRAIL_MEDIA_SCRUB_INTERVAL_S": "0"})
    channel = grpc.insecure_channel(service.grpc_address)
    try:
        yield Views(
            officer=caller(channel, private_pem, "view-officer", "unit-a", ["OFFICER"]),
            head=caller(channel, private_pem, "view-head", "unit-a", ["UNIT_HEAD"]),
            legal=caller(channel, private_pem, "view-legal", "legal", ["LEGAL_OFFICE"]),
            inspector=caller(channel, private_pem, "view-inspector", "inspection", ["INSPECTOR"]),
            bootstrap=stack.kafka_bootstrap,
            files=tmp_path_factory.mktemp("view-files"),
        )
    finally:
        channel.close()
        starter.stop_all()


def view_events(records: Records) -> list[Envelope]:
    found = [decode(r) for r in records]
    return [e for e in found if e.type in (VIEWED, SEARCHED)]


def by(
    envelopes: list[Envelope], viewer: str
) -> list[tuple[str, ev.RecordingViewed | ev.RecordingsSearched]]:
    out: list[tuple[str, ev.RecordingViewed | ev.RecordingsSearched]] = []
    for e in envelopes:
        message = e.parse(ev.RecordingViewed) if e.type == VIEWED else e.parse(ev.RecordingsSearched)
        if message.viewer == viewer:
            out.append((e.subject, message))
    return out


async def test_r16_views_and_searches_from_another_unit_publish_access_events_and_the_owning_unit_none(
    views: Views,
) -> None:
    path = make_video(views.files / "viewed.mp4", tag="r16-views")
    r = upload(views.officer, path, classification(start=T0 + timedelta(days=30), device="CAM-VIEWS"))
    search = pb.SearchRecordingsRequest(device_number="CAM-VIEWS")

    # The owning unit first: its views must leave nothing on the topic.
    for own in (views.officer, views.head):
        got = own("GetRecording", pb.GetRecordingRequest(recording_id=r.recording_id))
        assert got.recording.recording_id == r.recording_id  # type: ignore[attr-defined]
        found = own("SearchRecordings", search)
        assert [x.recording_id for x in found.recordings] == [r.recording_id]  # type: ignore[attr-defined]
        own("ListUnexplainedGaps", pb.ListUnexplainedGapsRequest(unit="unit-a"))

    # Then from outside the unit: the legal affairs office views and searches every unit, an inspector
    # searches unit-a by name.
    views.legal("GetRecording", pb.GetRecordingRequest(recording_id=r.recording_id))
    views.legal("SearchRecordings", search)
    views.inspector("SearchRecordings", pb.SearchRecordingsRequest(unit="unit-a", device_number="CAM-VIEWS"))

    def arrived(records: Records) -> bool:
        seen = view_events(records)
        return len(by(seen, "view-legal")) >= 2 and len(by(seen, "view-inspector")) >= 1

    # Read to the end offsets of the moment the outsiders' events are in: the owning unit's calls came
    # earlier, so anything they had written would be there too.
    events = view_events(await read_from_start(views.bootstrap, [TOPIC], until=arrived, within_s=120))

    legal = by(events, "view-legal")
    viewed = [(s, m) for s, m in legal if isinstance(m, ev.RecordingViewed)]
    searched = [(s, m) for s, m in legal if isinstance(m, ev.RecordingsSearched)]
    assert len(viewed) == 1
    assert len(searched) == 1
    subject, v = viewed[0]
    assert subject == r.recording_id, "a view is keyed by the recording"
    assert (v.recording_id, v.unit, v.viewer_unit, v.rpc) == (
        r.recording_id,
        "unit-a",
        "legal",
        "GetRecording",
    )
    assert v.HasField("at")
    subject, s = searched[0]
    assert subject == "view-legal", "a search is keyed by who searched"
    assert (s.rpc, s.unit, s.device_number, list(s.recording_ids)) == (
        "SearchRecordings",
        "",  # every unit
        "CAM-VIEWS",
        [r.recording_id],
    )

    ((_, i),) = by(events, "view-inspector")
    assert isinstance(i, ev.RecordingsSearched)
    assert (i.unit, i.viewer_unit, list(i.recording_ids)) == ("unit-a", "inspection", [r.recording_id])

    assert by(events, "view-officer") == [], "views within the owning unit are not access events"
    assert by(events, "view-head") == []
