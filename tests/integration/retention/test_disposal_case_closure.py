"""R12 through the real services: media-svc refuses on its own to dispose of a recording linked to an open
case, and learns the closure from case-svc's events in its one case projection (the view its R5 link checks
read, consumer group `media-svc.case-projection`). That projection, rebuilt by replaying its group from
offset 0 (the operators' migration and rebuild in docs/media-svc.md), holds the closure again.

No event is made by hand: case-svc publishes them because the test called its API; the disposal order is
sent to media-svc directly as retention-svc's service account, as if retention-svc had a bug.
"""

from __future__ import annotations

import shutil
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from lawtrail.case.v1 import case_pb2, case_service_pb2_grpc
from lawtrail.case.v1 import case_service_pb2 as case_api
from lawtrail.media.v1 import disposal_service_pb2, disposal_service_pb2_grpc
from media_svc.entrypoints.case_events import CASE_TOPIC, INBOX
from media_svc.entrypoints.case_events import GROUP_ID as CASE_GROUP

sys.path.insert(0, str(Path(__file__).parent.parent / "media"))

from recordings_it import caller, classification, make_video, upload

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (make setup installs it)"
    ),
]


def cases(services: Any, unit: str, method: str, request: Any, role: str = "UNIT_HEAD") -> Any:
    with grpc.insecure_channel(services.case.grpc_address) as channel:
        stub = case_service_pb2_grpc.CaseServiceStub(channel)
        return getattr(stub, method)(request, metadata=services.metadata("head-1", unit, role), timeout=30)


def open_levy_case(services: Any, unit: str) -> str:
    """A levy case: no incident, no flag, so it closes after its working stages."""
    request = case_api.OpenCaseRequest(
        act_type=case_pb2.ACT_TYPE_LEVY,
        unit=unit,
        cause="易地建设费",
        responsible_officer="officer-1",
        parties=[case_pb2.Party(name="某某建设有限公司", kind=case_pb2.PARTY_KIND_ORGANIZATION)],
    )
    return str(cases(services, unit, "OpenCase", request, "OFFICER").case.case_id)


def close(services: Any, unit: str, case_id: str) -> None:
    for stage in (
        case_pb2.STAGE_INVESTIGATION,
        case_pb2.STAGE_REVIEW_DECISION,
        case_pb2.STAGE_SERVICE_EXECUTION,
    ):
        cases(
            services, unit, "AdvanceStage",
            case_api.AdvanceStageRequest(case_id=case_id, to_stage=stage, reason="审批同意"),
        )  # fmt: skip
    closed = cases(services, unit, "CloseCase", case_api.CloseCaseRequest(case_id=case_id, reason="已缴清"))
    assert closed.case.stage == case_pb2.STAGE_CLOSED


def upload_old(services: Any, unit: str, case_id: str, tmp_path: Path, tag: str) -> Any:
    """A recording that ended eight months ago (past its 6 months, R12), linked to `case_id` at upload."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=240)
    video = make_video(tmp_path / f"{tag}.mp4", tag=f"{tag}-{uuid.uuid4()}")
    with grpc.insecure_channel(services.media.grpc_address) as channel:
        officer = caller(channel, services.private_key, "officer-1", unit, ["OFFICER"])
        return upload(
            officer, video, classification(start=start, unit=unit, device="CAM-OLD", case_id=case_id)
        )


async def dispose(services: Any, recording_id: str) -> disposal_service_pb2.DisposeRecordingResponse:
    async with grpc.aio.insecure_channel(services.media.grpc_address) as channel:
        return await disposal_service_pb2_grpc.DisposalServiceStub(channel).DisposeRecording(
            disposal_service_pb2.DisposeRecordingRequest(
                recording_id=recording_id, order_id=f"order-{uuid.uuid4().hex[:8]}",
                approved_by=["head-1", "room-1"], reason="6 months passed",
            ),
            metadata=services.metadata("retention-svc", "lawtrail-services", "SERVICE"),
            timeout=30,
        )  # fmt: skip


async def refused_for_the_open_case(services: Any, recording_id: str, case_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await dispose(services, recording_id)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"linked to case {case_id}, which is open or not known to be closed" in (
        refused.value.details() or ""
    )


async def test_r12_media_svc_refuses_a_recording_of_an_open_case_until_its_case_projection_learns_the_closure(
    services: Any, kit: Any, unit: str, tmp_path: Path
) -> None:
    case_id = open_levy_case(services, unit)
    recording = upload_old(services, unit, case_id, tmp_path, "open")
    media_db = services.db(services.media)

    async def case_known() -> bool:
        return bool((media_db["case_projection"].find_one({"_id": case_id}) or {}).get("opened"))

    await kit.eventually(case_known, "media-svc's case projection knows the case")
    # Known and open: refused for the case, not for want of it.
    await refused_for_the_open_case(services, recording.recording_id, case_id)

    close(services, unit, case_id)

    async def disposed() -> bool:
        try:
            response = await dispose(services, recording.recording_id)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            return False
        assert response.tombstone.case_id == case_id
        assert response.tombstone.sha256 == recording.sha256
        return True

    await kit.eventually(disposed, "media-svc disposes of the recording once it learned the closure")
    view = media_db["case_projection"].find_one({"_id": case_id})
    assert (view["opened"], view["closed"], view["unit"]) == (True, True, unit)
    # The one projection: the disposal guard's old collection is not written any more.
    assert media_db["disposal_cases"].find_one({"_id": case_id}) is None


async def reset_to_offset_0(bootstrap: str, group: str, topic: str) -> None:
    """What `kafka-consumer-groups.sh --reset-offsets --to-earliest --execute` does for a group with no
    members: commit offset 0 of every partition of `topic` for `group`."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        await probe._client.force_metadata_update()  # the metadata partitions_for_topic reads
        partitions = [TopicPartition(topic, p) for p in sorted(probe.partitions_for_topic(topic) or ())]
    finally:
        await probe.stop()
    assert partitions, f"no partitions of {topic}"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit(dict.fromkeys(partitions, 0))
    finally:
        await consumer.stop()


async def test_r12_the_case_projection_replayed_from_offset_0_rebuilds_the_closure_and_the_link_view(
    services: Any, kit: Any, unit: str, tmp_path: Path
) -> None:
    closed_case, open_case = open_levy_case(services, unit), open_levy_case(services, unit)
    close(services, unit, closed_case)
    media_db = services.db(services.media)
    bootstrap = services.stack.kafka_bootstrap

    def projected() -> dict[str, Any]:
        found = media_db["case_projection"].find({"_id": {"$in": [closed_case, open_case]}})
        return {d["_id"]: d for d in found}

    async def both_known() -> bool:
        docs = projected()
        return docs.get(closed_case, {}).get("closed") is True and open_case in docs

    await kit.eventually(both_known, "media-svc's case projection knows both cases and the closure")
    before = projected()

    # The rebuild of docs/media-svc.md: media-svc stopped, the projection and its inbox dropped (the inbox
    # would skip every event it remembers), the group reset to offset 0, media-svc started again.
    services.media.stop()
    media_db.drop_collection("case_projection")
    media_db.drop_collection(INBOX)
    await reset_to_offset_0(bootstrap, CASE_GROUP, CASE_TOPIC)
    services.media.restart()
    await kit.caught_up(bootstrap, CASE_GROUP, [CASE_TOPIC])

    async def rebuilt() -> bool:
        return projected() == before

    await kit.eventually(rebuilt, "the replayed case projection equals the one before, for both cases")
    after = projected()
    assert (after[closed_case]["closed"], after[open_case].get("closed", False)) == (True, False)
    # and what each reader of the projection decides from it is the same as before.
    of_closed = upload_old(services, unit, closed_case, tmp_path, "closed")
    of_open = upload_old(services, unit, open_case, tmp_path, "open")
    assert (await dispose(services, of_closed.recording_id)).tombstone.case_id == closed_case
    await refused_for_the_open_case(services, of_open.recording_id, open_case)
