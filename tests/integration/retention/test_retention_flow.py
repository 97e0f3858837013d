"""R12, R13 through the real services: case-svc, media-svc and retention-svc processes on real Kafka and
FerretDB. No event is made by hand: case-svc and media-svc publish them because the test called their APIs.

1. open a case (case-svc) → upload three recordings linked to it (media-svc) → record an ASSAULT incident
   (case-svc) → retention-svc holds all three (R13);
2. an ISO offline copy is made through retention-svc (which reads the content through media-svc's verified
   download: a ContentAccessed per recording, naming the standing grant access-svc issued to retention-svc
   under the order `r13-offline-copy`, approved by the order's approver) and verified by reading it back
   with pycdlib, and by `sha256sum -c` on its extracted contents; revoking that grant in access-svc makes
   media-svc refuse it;
3. a fourth recording linked later is held too;
4. every topic replayed from the start into a fresh retention database gives the identical state.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pycdlib
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.access.v1 import access_grant_pb2 as gpb
from lawtrail.access.v1 import access_service_pb2 as access_api
from lawtrail.access.v1 import access_service_pb2_grpc as access_grpc
from lawtrail.case.v1 import case_pb2, case_service_pb2_grpc
from lawtrail.case.v1 import case_service_pb2 as case_api
from lawtrail.media.v1 import disposal_service_pb2, disposal_service_pb2_grpc, media_events_pb2
from lawtrail.media.v1 import recording_pb2 as media_pb2
from lawtrail.media.v1 import recording_service_pb2 as media_api
from lawtrail.media.v1 import recording_service_pb2_grpc as media_service_grpc
from lawtrail.retention.v1 import retention_pb2 as rpb
from lawtrail.retention.v1 import retention_service_pb2 as api
from lawtrail.retention.v1 import retention_service_pb2_grpc as api_grpc
from lawtrail_client import offline_copy
from retention_svc.entrypoints.consumers import CASE_TOPIC, MEDIA_TOPIC
from retention_svc.entrypoints.consumers import DEFAULT_GROUP_ID as RETENTION_GROUP

sys.path.insert(0, str(Path(__file__).parent.parent / "media"))

from recordings_it import caller, classification, events_about, make_video, upload

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (make setup installs it)"
    ),
]

IGNORED_FIELDS = {"version", "outbox", "outbox_pending", "outbox_lease_until", "applied_events"}


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


def open_case(services: Any, unit: str) -> str:
    with grpc.insecure_channel(services.case.grpc_address) as channel:
        stub = case_service_pb2_grpc.CaseServiceStub(channel)
        response = stub.OpenCase(
            case_api.OpenCaseRequest(
                act_type=case_pb2.ACT_TYPE_PENALTY,
                procedure=case_pb2.PROCEDURE_GENERAL,
                unit=unit,
                cause="未按规定修建防空地下室",
                responsible_officer="officer-1",
                parties=[case_pb2.Party(name="某某建设有限公司", kind=case_pb2.PARTY_KIND_ORGANIZATION)],
            ),
            metadata=services.metadata("officer-1", unit, "OFFICER"),
            timeout=30,
        )
    return str(response.case.case_id)


def record_assault(services: Any, unit: str, case_id: str) -> None:
    with grpc.insecure_channel(services.case.grpc_address) as channel:
        case_service_pb2_grpc.CaseServiceStub(channel).RecordIncident(
            case_api.RecordIncidentRequest(
                case_id=case_id,
                kind=case_pb2.INCIDENT_KIND_ASSAULT,
                occurred_at=stamp(datetime.now(UTC) - timedelta(minutes=10)),
                reporter="officer-1",
                description="当事人殴打执法人员",
            ),
            metadata=services.metadata("officer-1", unit, "OFFICER"),
            timeout=30,
        )


def upload_recordings(services: Any, unit: str, case_id: str, count: int, tmp: Path, tag: str) -> list[Any]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    recordings = []
    with grpc.insecure_channel(services.media.grpc_address) as channel:
        officer = caller(channel, services.private_key, "officer-1", unit, ["OFFICER"])
        for n in range(count):
            video = make_video(tmp / f"{tag}-{n}.mp4", tag=f"{tag}-{n}-{uuid.uuid4()}")
            cls = classification(
                start=start + timedelta(minutes=10 * n), unit=unit, device=f"CAM-{tag}", case_id=case_id
            )
            recordings.append(upload(officer, video, cls))
    return recordings


async def explain(services: Any, unit: str, recording_id: str) -> rpb.Retention | None:
    async with grpc.aio.insecure_channel(services.retention.grpc_address) as channel:
        try:
            response = await api_grpc.RetentionServiceStub(channel).ExplainRetention(
                api.ExplainRetentionRequest(recording_id=recording_id),
                metadata=services.metadata("head-1", unit, "UNIT_HEAD"),
                timeout=10,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
    return response.retention


async def wait_held(services: Any, kit: Any, unit: str, recording_ids: list[str]) -> list[rpb.Retention]:
    found: dict[str, rpb.Retention] = {}

    async def all_held() -> bool:
        for rid in recording_ids:
            retention = await explain(services, unit, rid)
            if retention is not None and retention.holds:
                found[rid] = retention
        return len(found) == len(recording_ids)

    await kit.eventually(all_held, f"retention-svc holds {recording_ids}")
    return [found[r] for r in recording_ids]


def documents(db: Any, collection: str, unit: str) -> dict[str, dict[str, Any]]:
    return {
        doc["_id"]: {k: v for k, v in doc.items() if k not in IGNORED_FIELDS}
        for doc in db[collection].find({"unit": unit})
    }


async def test_r13_assault_holds_every_recording_of_the_case_copies_them_offline_and_replays_identically(
    services: Any, kit: Any, unit: str, tmp_path: Path
) -> None:
    case_id = open_case(services, unit)
    first = upload_recordings(services, unit, case_id, 3, tmp_path, "a")
    first_ids = [r.recording_id for r in first]
    record_assault(services, unit, case_id)

    # (1) every recording of the case is held, with the reason and the source event (R13).
    held = await wait_held(services, kit, unit, first_ids)
    for retention in held:
        assert retention.state == rpb.RETENTION_STATE_PERMANENT
        (hold,) = retention.holds
        assert hold.incident_kind == "ASSAULT"
        assert hold.case_id == case_id
        assert hold.source_event.startswith("/lawtrail/case-svc/")
        assert any(r.rule_class == "held" for r in retention.rules)
        assert any(r.rule_class == "recording_evidence" for r in retention.rules)
    placed = await events_about_retention(services, first_ids, "LongTermHoldPlaced")
    assert sorted(placed) == sorted(first_ids)

    # (2) an ISO offline copy, read through media-svc's verified download, verified by reading it back.
    progress, copy = await create_copy(services, unit, case_id)
    assert progress, "a copy reports its progress"
    assert copy.format == rpb.COPY_FORMAT_ISO
    assert sorted(i.recording_id for i in copy.items) == sorted(first_ids)
    by_id = {r.recording_id: r for r in first}
    for item in copy.items:
        assert item.sha256 == by_id[item.recording_id].sha256
        assert item.size_bytes == by_id[item.recording_id].size_bytes
    await asyncio.to_thread(check_iso, Path(copy.path), copy.root_hash, tmp_path / "extracted")
    copy_grants = await copy_accesses(services, first_ids, copy.copy_id, "R13")
    # One grant for the whole copy: scoped to the held case, issued by access-svc under the standing order.
    assert len(set(copy_grants.values())) == 1, copy_grants
    grant_id = next(iter(copy_grants.values()))
    issued = await standing_request(services, grant_id)
    assert issued.standing_order == "r13-offline-copy"
    assert issued.requested.subject == "retention-svc"
    assert issued.decided.subject == "legal-demo"  # the order's named approver, never retention-svc
    assert [(r.kind, r.id) for r in issued.resources] == [(gpb.GRANT_RESOURCE_KIND_CASE, case_id)]
    assert copy.copy_id in issued.purpose
    await revoked_grant_is_refused(services, first_ids[0], grant_id)
    inventory = await list_copies(services, unit, case_id)
    assert [c.copy_id for c in inventory] == [copy.copy_id]
    assert inventory[0].storage_location == "archive room cabinet 3"

    # (3) a fourth recording linked later is held too.
    (fourth,) = upload_recordings(services, unit, "", 1, tmp_path, "b")
    with grpc.insecure_channel(services.media.grpc_address) as channel:
        officer = caller(channel, services.private_key, "officer-1", unit, ["OFFICER"])
        officer(
            "LinkRecording", media_api.LinkRecordingRequest(recording_id=fourth.recording_id, case_id=case_id)
        )
    (late,) = await wait_held(services, kit, unit, [fourth.recording_id])
    assert late.holds[0].incident_kind == "ASSAULT"

    # (4) replay every topic from the start into a fresh retention database → identical state.
    group = f"retention-replay-{uuid.uuid4().hex[:8]}"
    await kit.create_topic(services.stack.kafka_bootstrap, f"{group}.dlq")
    replay = services.starter(
        "retention-svc",
        env={
            "LAWTRAIL_MONGO_DATABASE": f"retention_replay_{uuid.uuid4().hex[:8]}",
            "LAWTRAIL_RETENTION_CONSUMER_GROUP": group,
            "LAWTRAIL_RETENTION_MEDIA_ADDRESS": services.media.grpc_address,
            "LAWTRAIL_RETENTION_AUTO_COPY_INTERVAL_S": "0",
        },
    )
    original_db, replay_db = services.db(services.retention), services.db(replay)
    # The topics hold the events of every earlier test of the session too (the original service resumed
    # its group where an earlier test's retention-svc left it; the replay starts at the beginning), so the
    # comparison is of this test's unit, once the replay has applied everything on the topics.
    await kit.caught_up(services.stack.kafka_bootstrap, group, [CASE_TOPIC, MEDIA_TOPIC])
    await kit.caught_up(services.stack.kafka_bootstrap, RETENTION_GROUP, [CASE_TOPIC, MEDIA_TOPIC])

    async def same_state() -> bool:
        return all(
            documents(original_db, c, unit) == documents(replay_db, c, unit)
            for c in ("retention_cases", "retention_recordings")
        )

    await kit.eventually(same_state, "the replayed retention database equals the original for this unit")
    assert len(documents(replay_db, "retention_recordings", unit)) >= 4
    assert documents(replay_db, "retention_cases", unit)[case_id]["held"] is True
    replay.stop()


async def events_about_retention(services: Any, recording_ids: list[str], kind: str) -> list[str]:
    found: list[str] = []
    for rid in recording_ids:
        envelopes = await events_about_topic(services.stack.kafka_bootstrap, rid, kind)
        found += [rid for e in envelopes if e.type.endswith(kind)][:1]
    return found


async def events_about_topic(bootstrap: str, subject: str, kind: str) -> list[Any]:
    from aiokafka import AIOKafkaConsumer
    from servicekit.messaging.envelope import decode

    consumer = AIOKafkaConsumer(
        "lawtrail.retention.v1.events",
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [decode(r) for r in records if r.key == subject.encode()]
            if any(e.type.endswith(kind) for e in found):
                return found
        raise AssertionError(f"no {kind} about {subject}; saw {[e.type for e in found]}")
    finally:
        await consumer.stop()


async def create_copy(services: Any, unit: str, case_id: str) -> tuple[list[Any], rpb.OfflineCopy]:
    progress: list[Any] = []
    result: rpb.OfflineCopy | None = None
    async with grpc.aio.insecure_channel(services.retention.grpc_address) as channel:
        stream = api_grpc.RetentionServiceStub(channel).CreateOfflineCopy(
            api.CreateOfflineCopyRequest(
                case_id=case_id, format=rpb.COPY_FORMAT_ISO, storage_location="archive room cabinet 3"
            ),
            metadata=services.metadata("archivist-1", unit, "ARCHIVIST"),
            timeout=300,
        )
        async for part in stream:
            if part.HasField("progress"):
                progress.append(part.progress)
            else:
                result = part.copy
    assert result is not None
    return progress, result


async def list_copies(services: Any, unit: str, case_id: str) -> list[rpb.OfflineCopy]:
    async with grpc.aio.insecure_channel(services.retention.grpc_address) as channel:
        response = await api_grpc.RetentionServiceStub(channel).ListOfflineCopies(
            api.ListOfflineCopiesRequest(case_id=case_id),
            metadata=services.metadata("head-1", unit, "UNIT_HEAD"),
            timeout=10,
        )
    return list(response.copies)


def check_iso(image: Path, root_hash: str, into: Path) -> None:
    """Re-reads the image with pycdlib (verify), then extracts it and runs `sha256sum -c` on its contents."""
    assert image.suffix == ".iso"
    assert image.is_file()
    report = offline_copy.verify(image)
    assert report.ok, report.problems
    assert report.root_hash == root_hash
    assert report.files_checked == 3
    extracted = extract_iso(image, into)
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=extracted, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 4  # three recordings and manifest.json
    assert hashlib.sha256((extracted / "manifest.json").read_bytes()).hexdigest() == root_hash


def extract_iso(image: Path, into: Path) -> Path:
    """Extracts every file of the image by its Rock Ridge name (what a mounted disc shows on Linux)."""
    iso = pycdlib.PyCdlib()
    iso.open(str(image))
    try:
        for root, _dirs, files in iso.walk(rr_path="/"):
            for name in files:
                rr_path = f"{root.rstrip('/')}/{name}"
                target = into / rr_path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as out:
                    iso.get_file_from_iso_fp(out, rr_path=rr_path)
    finally:
        iso.close()
    return into


async def test_r11b_monthly_archive_batch_backs_up_a_units_recordings_and_reverification_finds_tampering(
    services: Any, unit: str, tmp_path: Path
) -> None:
    recordings = upload_recordings(services, unit, "", 2, tmp_path, "arch")
    ids = sorted(r.recording_id for r in recordings)
    month = datetime.now(UTC).strftime("%Y-%m")
    room = services.metadata("room-1", unit, "ARCHIVE_ROOM")
    async with grpc.aio.insecure_channel(services.retention.grpc_address) as channel:
        stub = api_grpc.RetentionServiceStub(channel)

        async def unbacked() -> list[str]:
            response = await stub.ListUnbackedRecordings(
                api.ListUnbackedRecordingsRequest(unit=unit), metadata=room, timeout=10
            )
            return sorted(r.recording_id for r in response.recordings)

        async def both_seen() -> bool:
            return await unbacked() == ids

        await kit_eventually(both_seen, "retention-svc lists both recordings as not backed up")
        created = await stub.CreateArchiveBatch(
            api.CreateArchiveBatchRequest(unit=unit, month=month), metadata=room, timeout=120
        )
        batch = created.batch
        assert sorted(i.recording_id for i in batch.items) == ids
        assert batch.last_verification_ok
        batch_grants = await copy_accesses(services, ids, batch.batch_id, "R11b")
        assert len(set(batch_grants.values())) == 1, batch_grants  # one grant for the batch's recordings
        issued = await standing_request(services, next(iter(batch_grants.values())))
        assert issued.standing_order == "r11b-archive-backup"
        assert issued.requested.subject == "retention-svc"
        assert issued.decided.subject == "legal-demo"
        assert sorted((r.kind, r.id) for r in issued.resources) == [
            (gpb.GRANT_RESOURCE_KIND_RECORDING, i) for i in ids
        ]
        assert await unbacked() == []
        with pytest.raises(grpc.aio.AioRpcError) as nothing_left:
            await stub.CreateArchiveBatch(
                api.CreateArchiveBatchRequest(unit=unit, month=month), metadata=room, timeout=60
            )
        assert nothing_left.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as bad_month:
            await stub.CreateArchiveBatch(
                api.CreateArchiveBatchRequest(unit=unit, month="2026-13"), metadata=room, timeout=60
            )
        assert bad_month.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "month" in (bad_month.value.details() or "")

        folder = Path(batch.path)
        report = await asyncio.to_thread(offline_copy.verify, folder)
        assert report.ok, report.problems
        assert report.root_hash == batch.root_hash
        victim = folder / batch.items[0].path
        data = bytearray(await asyncio.to_thread(victim.read_bytes))
        data[len(data) // 2] ^= 0x01
        await asyncio.to_thread(victim.write_bytes, bytes(data))
        checked = (
            await stub.VerifyArchiveBatch(
                api.VerifyArchiveBatchRequest(batch_id=batch.batch_id), metadata=room, timeout=60
            )
        ).batch
        assert not checked.last_verification_ok
        assert any(batch.items[0].path in p for p in checked.last_verification_problems)
        listed = await stub.ListArchiveBatches(
            api.ListArchiveBatchesRequest(unit=unit), metadata=room, timeout=10
        )
        assert [b.batch_id for b in listed.batches] == [batch.batch_id]
        assert not listed.batches[0].last_verification_ok


async def approved_grant(services: Any, subject: str, unit: str, role: str, recording_id: str) -> str:
    """A person's grant to download a recording: asked for in access-svc, approved by the legal affairs
    office (R16), the token read back by the requester."""
    me = services.metadata(subject, unit, role)
    async with grpc.aio.insecure_channel(services.access.grpc_address) as channel:
        access = access_grpc.AccessServiceStub(channel)
        asked = await access.RequestAccess(
            access_api.RequestAccessRequest(
                resources=[gpb.GrantResource(kind=gpb.GRANT_RESOURCE_KIND_RECORDING, id=recording_id)],
                actions=[gpb.GRANTED_ACTION_DOWNLOAD],
                purpose="look at a disposed recording",
                duration=Duration(seconds=600),
            ),
            metadata=me,
            timeout=10,
        )
        request_id = asked.request.request_id
        await access.DecideAccessRequest(
            access_api.DecideAccessRequestRequest(
                request_id=request_id, decision=access_api.ACCESS_DECISION_APPROVE, reason="disposal check"
            ),
            metadata=services.metadata("legal-demo", "legal-office", "LEGAL_OFFICE"),
            timeout=10,
        )
        got = await access.GetAccessRequest(
            access_api.GetAccessRequestRequest(request_id=request_id), metadata=me, timeout=10
        )
    return str(got.request.grant_token)


async def copy_accesses(services: Any, recording_ids: list[str], copy_id: str, rule: str) -> dict[str, str]:
    """The grant id of the ContentAccessed media-svc recorded for each recording read for copy `copy_id`
    (its purpose names the copy and the rule); each grant is one access-svc issued ("gr-…")."""
    grants: dict[str, str] = {}
    for recording_id in recording_ids:
        accessed = await events_about(
            services.stack.kafka_bootstrap, recording_id, ["RecordingIngested", "ContentAccessed"]
        )
        reads = [
            e.parse(media_events_pb2.ContentAccessed) for e in accessed if e.type.endswith("ContentAccessed")
        ]
        mine = [r for r in reads if copy_id in r.purpose and rule in r.purpose]
        assert mine, [r.purpose for r in reads]
        assert mine[0].grant_id.startswith("gr-"), mine[0].grant_id
        assert mine[0].approver == "legal-demo"
        grants[recording_id] = mine[0].grant_id
    return grants


async def standing_request(services: Any, grant_id: str) -> access_api.AccessRequest:
    """The access request behind a grant, as the legal affairs office reads it in access-svc."""
    async with grpc.aio.insecure_channel(services.access.grpc_address) as channel:
        response = await access_grpc.AccessServiceStub(channel).GetAccessRequest(
            access_api.GetAccessRequestRequest(request_id="ar-" + grant_id.removeprefix("gr-")),
            metadata=services.metadata("legal-demo", "legal-office", "LEGAL_OFFICE"),
            timeout=10,
        )
    request = response.request
    assert request.grant_id == grant_id
    assert request.state in (
        access_api.ACCESS_REQUEST_STATE_APPROVED,
        access_api.ACCESS_REQUEST_STATE_EXPIRED,
    )
    return request


async def revoked_grant_is_refused(services: Any, recording_id: str, grant_id: str) -> None:
    """R16: a standing grant is revocable — after RevokeAccessGrant, media-svc refuses it (AccessRevoked).
    Its token is what access-svc gives its grantee; a person cannot take a standing grant at all."""
    retention = services.metadata("retention-svc", "lawtrail-services", "SERVICE")
    legal = services.metadata("legal-demo", "legal-office", "LEGAL_OFFICE")
    request_id = "ar-" + grant_id.removeprefix("gr-")
    async with (
        grpc.aio.insecure_channel(services.access.grpc_address) as access_channel,
        grpc.aio.insecure_channel(services.media.grpc_address) as media_channel,
    ):
        access = access_grpc.AccessServiceStub(access_channel)
        token = (
            await access.GetAccessRequest(
                access_api.GetAccessRequestRequest(request_id=request_id), metadata=retention, timeout=10
            )
        ).request.grant_token
        assert token.startswith("lg1.")
        with pytest.raises(grpc.aio.AioRpcError) as person:
            await access.RequestStandingGrant(
                access_api.RequestStandingGrantRequest(
                    standing_order="r13-offline-copy",
                    resources=[gpb.GrantResource(kind=gpb.GRANT_RESOURCE_KIND_RECORDING, id=recording_id)],
                    actions=[gpb.GRANTED_ACTION_DOWNLOAD],
                    purpose="R13 offline copy by hand",
                    duration=Duration(seconds=600),
                ),
                metadata=legal,
                timeout=10,
            )
        assert person.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await access.RevokeAccessGrant(
            access_api.RevokeAccessGrantRequest(grant_id=grant_id, reason="copy checked; grant withdrawn"),
            metadata=legal,
            timeout=10,
        )
        media = media_service_grpc.RecordingServiceStub(media_channel)

        async def refused() -> bool:
            call = media.DownloadRecording(
                media_api.DownloadRecordingRequest(recording_id=recording_id, access_grant=token),
                metadata=retention,
                timeout=10,
            )
            try:
                await call.read()
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.PERMISSION_DENIED:
                    raise
                return "revoked" in (error.details() or "")
            finally:
                call.cancel()
            return False

        await kit_eventually(refused, "media-svc refuses the revoked standing grant")


async def kit_eventually(check: Any, what: str, within_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"gave up after {within_s:.0f} s waiting until {what}")


async def test_r13_disposal_needs_two_people_and_a_held_recording_is_refused_by_both_services(
    services: Any, unit: str, tmp_path: Path
) -> None:
    # A recording that ended eight months ago, used as evidence nowhere: past its 6 months (R12).
    old_start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=240)
    video = make_video(tmp_path / "old.mp4", tag=f"old-{uuid.uuid4()}")
    with grpc.insecure_channel(services.media.grpc_address) as channel:
        officer = caller(channel, services.private_key, "officer-1", unit, ["OFFICER"])
        due = upload(officer, video, classification(start=old_start, unit=unit, device="CAM-OLD"))
    # A recording of a case with a complaint: held (R13).
    case_id = open_case(services, unit)
    (held,) = upload_recordings(services, unit, case_id, 1, tmp_path, "held")
    record_assault(services, unit, case_id)
    head = services.metadata("head-1", unit, "UNIT_HEAD")
    room = services.metadata("room-1", unit, "ARCHIVE_ROOM")
    service_token = services.metadata("retention-svc", "lawtrail-services", "SERVICE")
    async with (
        grpc.aio.insecure_channel(services.retention.grpc_address) as channel,
        grpc.aio.insecure_channel(services.media.grpc_address) as media_channel,
    ):
        stub = api_grpc.RetentionServiceStub(channel)
        media = disposal_service_pb2_grpc.DisposalServiceStub(media_channel)

        async def candidates() -> list[str]:
            response = await stub.ListDisposalCandidates(
                api.ListDisposalCandidatesRequest(unit=unit), metadata=head, timeout=10
            )
            return [c.record_id for c in response.candidates]

        async def due_listed() -> bool:
            return due.recording_id in await candidates() and bool(
                (r := await explain(services, unit, held.recording_id)) and r.holds
            )

        await kit_eventually(due_listed, "the due recording is a candidate and the other one is held")
        assert held.recording_id not in await candidates()

        # retention-svc refuses to propose the held recording.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ProposeDisposal(
                api.ProposeDisposalRequest(unit=unit, recording_ids=[held.recording_id], reason="expired"),
                metadata=head,
                timeout=10,
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "long-term hold" in (refused.value.details() or "")

        # media-svc refuses too, on its own, as if retention-svc had a bug and sent the order anyway.
        async def media_refuses_for_the_hold() -> bool:
            with pytest.raises(grpc.aio.AioRpcError) as media_refused:
                await media.DisposeRecording(
                    disposal_service_pb2.DisposeRecordingRequest(
                        recording_id=held.recording_id, order_id="bogus-order",
                        approved_by=["head-1", "room-1"], reason="a bug in retention-svc",
                    ),
                    metadata=service_token,
                    timeout=10,
                )  # fmt: skip
            assert media_refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            return "long-term hold" in (media_refused.value.details() or "")

        await kit_eventually(media_refuses_for_the_hold, "media-svc refuses naming the long-term hold")

        # Two people: proposed by the unit head, approved by the archive room (not by the proposer).
        order = (
            await stub.ProposeDisposal(
                api.ProposeDisposalRequest(
                    unit=unit, recording_ids=[due.recording_id], reason="6 months passed"
                ),
                metadata=head,
                timeout=10,
            )
        ).order
        assert order.state == rpb.DISPOSAL_ORDER_STATE_PROPOSED
        for wrong in (head, services.metadata("head-2", unit, "UNIT_HEAD")):
            with pytest.raises(grpc.aio.AioRpcError) as one_person:
                await stub.ApproveDisposal(
                    api.ApproveDisposalRequest(order_id=order.order_id), metadata=wrong, timeout=10
                )
            assert one_person.value.code() == grpc.StatusCode.PERMISSION_DENIED
        done = (
            await stub.ApproveDisposal(
                api.ApproveDisposalRequest(order_id=order.order_id), metadata=room, timeout=60
            )
        ).order
        assert done.state == rpb.DISPOSAL_ORDER_STATE_CARRIED_OUT
        assert [(i.recording_id, i.disposed, i.refusal) for i in done.items] == [(due.recording_id, True, "")]

        # The tombstone: content gone from media-svc's store, downloads refused, no longer a candidate.
        sha = due.sha256
        assert not (services.starter.data_dir / "content" / "objects" / sha[:2] / sha[2:4] / sha).exists()
        grant = await approved_grant(services, "room-1", unit, "ARCHIVE_ROOM", due.recording_id)
        download = media_service_grpc.RecordingServiceStub(media_channel).DownloadRecording(
            media_api.DownloadRecordingRequest(recording_id=due.recording_id, access_grant=grant),
            metadata=room,
            timeout=10,
        )
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await download.read()
        assert gone.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert order.order_id in (gone.value.details() or "")

        async def no_longer_candidate() -> bool:
            return due.recording_id not in await candidates()

        await kit_eventually(no_longer_candidate, "retention-svc learns the disposal from RecordingDisposed")

        # media-svc's fixity scrub visits the disposed recording without calling its content lost (R23-2).
        recordings = media_service_grpc.RecordingServiceStub(media_channel)
        archivist = services.metadata("archivist-1", unit, "ARCHIVIST")
        run = (
            await recordings.StartFixityScrub(
                media_api.StartFixityScrubRequest(), metadata=archivist, timeout=10
            )
        ).run

        async def scrub_finished() -> bool:
            status = await recordings.GetFixityScrubStatus(
                media_api.GetFixityScrubStatusRequest(), metadata=archivist, timeout=10
            )
            last = status.last_finished
            return last.run_id == run.run_id and last.state == media_api.FIXITY_SCRUB_STATE_FINISHED

        await kit_eventually(scrub_finished, "the fixity scrub finished")
        status = await recordings.GetFixityScrubStatus(
            media_api.GetFixityScrubStatusRequest(), metadata=archivist, timeout=10
        )
        assert status.last_finished.failures == 0
        assert status.last_finished.recordings_checked == status.last_finished.recordings_total
        legal = services.metadata("legal-1", unit, "LEGAL_OFFICE")
        after = (
            await recordings.GetRecording(
                media_api.GetRecordingRequest(recording_id=due.recording_id), metadata=legal, timeout=10
            )
        ).recording
        assert after.integrity != media_pb2.INTEGRITY_STATUS_FAILED
