"""R5 end to end on the real stack, through the public APIs only: case-svc → media-svc upload + link →
case-svc through Kafka. No hand-made events: every RecordingLinked case-svc sees is the one media-svc
published for a real upload (a real MP4 made by ffmpeg) and a real LinkRecording call.

The three bypasses of issue 8 are closed: media-svc refuses a LinkRecording to a case it does not know
(FAILED_PRECONDITION, R5_CASE_NOT_KNOWN), to an activity the case does not have (R5_UNKNOWN_ACTIVITY) and to
another unit's case (PERMISSION_DENIED, R5_CROSS_UNIT_LINK) — from its own projection of case-svc's events —
unless the legal affairs office links across units, which case-svc counts as coverage; a link given at
upload (never refused: evidence is always accepted) of another unit or naming an activity the case does
not have is parked by case-svc in its dead-letter topic and covers nothing; a recording made outside the
activity's time covers nothing; and a flagged case with no activity cannot close. R17: a recording
linked to a case is found by the case's cause and parties.

A case opened (or an activity recorded) a moment ago may not have reached media-svc's projection yet; the
link is then refused as FAILED_PRECONDITION saying so, and `link` below retries as a client should.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2
from lawtrail.case.v1 import case_pb2, case_service_pb2_grpc
from lawtrail.case.v1 import case_service_pb2 as api
from lawtrail.media.v1 import recording_service_pb2 as rpb
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceProcess
from lawtrail_local.stack import Stack
from servicekit.auth.devtoken import ensure_dev_keys, mint_token

sys.path.insert(0, str(Path(__file__).parent.parent / "media"))

from recordings_it import caller, classification, make_video, upload

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (make setup)"),
]

UNIT, OTHER_UNIT = "unit-r5", "unit-r5-other"
DLQ = "case-svc.media-events.dlq"


@dataclass
class System:
    case: ServiceProcess
    media: ServiceProcess
    key: bytes
    stack: Stack

    def case_stub(self, channel: grpc.Channel) -> case_service_pb2_grpc.CaseServiceStub:
        return case_service_pb2_grpc.CaseServiceStub(channel)

    def auth(self, subject: str, unit: str, *roles: str) -> tuple[tuple[str, str], ...]:
        token = mint_token(self.key, subject=subject, unit=unit, roles=list(roles))
        return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
def system(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("r5"))
    private_path, _ = ensure_dev_keys(starter.data_dir)
    try:
        case = starter("case-svc")
        media = starter("media-svc")
        yield System(case, media, private_path.read_bytes(), stack)
    finally:
        starter.stop_all()


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


class CaseCalls:
    def __init__(self, system: System, channel: grpc.Channel) -> None:
        self.stub = system.case_stub(channel)
        self.officer = system.auth("alice", UNIT, "OFFICER")
        self.head = system.auth("hank", UNIT, "UNIT_HEAD")

    def __call__(self, method: str, request: Any, *, as_head: bool = False) -> Any:
        return getattr(self.stub, method)(
            request, metadata=self.head if as_head else self.officer, timeout=30
        )

    def open_flagged(
        self,
        procedure: int = case_pb2.PROCEDURE_SIMPLE,
        *,
        cause: str = "未按规定修建防空地下室",
        party: str = "某某建设有限公司",
    ) -> case_pb2.Case:
        case = self(
            "OpenCase",
            api.OpenCaseRequest(
                act_type=case_pb2.ACT_TYPE_PENALTY,
                procedure=procedure,
                unit=UNIT,
                cause=cause,
                responsible_officer="alice",
                parties=[case_pb2.Party(name=party, kind=case_pb2.PARTY_KIND_ORGANIZATION)],
            ),
        ).case
        self(
            "RecordIncident",
            api.RecordIncidentRequest(
                case_id=case.case_id,
                kind=case_pb2.INCIDENT_KIND_COMPLAINT,
                occurred_at=stamp(datetime.now(UTC)),
                reporter="张三",
                description="对调查方式有异议",
            ),
        )
        return case

    def advance(self, case_id: str, stage: int) -> case_pb2.Case:
        request = api.AdvanceStageRequest(case_id=case_id, to_stage=stage, reason="审批同意")
        return self("AdvanceStage", request, as_head=True).case

    def activity(self, case_id: str, start: datetime, end: datetime) -> case_pb2.Activity:
        request = api.RecordActivityRequest(
            case_id=case_id,
            kind=case_pb2.ACTIVITY_KIND_EVIDENCE_COLLECTION,
            started_at=stamp(start),
            ended_at=stamp(end),
            place="许昌市魏都区某工地",
            officers=["alice", "carl"],
            record_mode=case_pb2.RECORD_MODE_CONTINUOUS_AV,
        )
        return self("RecordActivity", request).activity

    def get(self, case_id: str) -> case_pb2.Case:
        return self("GetCase", api.GetCaseRequest(case_id=case_id)).case

    def investigating(
        self, *windows: tuple[datetime, datetime]
    ) -> tuple[case_pb2.Case, list[case_pb2.Activity]]:
        """The R5 coverage tests' starting point: a flagged general-procedure case in INVESTIGATION with one
        enforcement activity (continuous AV) per (start, end) window, in that order."""
        case = self.open_flagged(procedure=case_pb2.PROCEDURE_GENERAL)
        self.advance(case.case_id, case_pb2.STAGE_INVESTIGATION)
        return case, [self.activity(case.case_id, start, end) for start, end in windows]


def _eventually(check: Any, what: str, within_s: float = 60.0) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"gave up after {within_s:.0f} s waiting until {what}")


async def _dead_letters(bootstrap: str, recording_ids: set[str], within_s: float = 60.0) -> dict[str, str]:
    """recording id -> dlq_error of the dead-lettered RecordingLinked events about those recordings."""
    consumer = AIOKafkaConsumer(
        DLQ,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    found: dict[str, str] = {}
    try:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline and not recording_ids <= set(found):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    key = (record.key or b"").decode()
                    if key in recording_ids:
                        headers = dict(record.headers or ())
                        error, by = headers.get("dlq_error", b""), headers.get("dlq_consumer", b"")
                        found[key] = f"{error.decode()} (parked by {by.decode()})"
        return found
    finally:
        await consumer.stop()


def _error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    trailer = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
    status = status_pb2.Status.FromString(trailer["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


# media-svc's refusals while its projection has not seen the case or activity yet: retried by `link`.
NOT_YET = {"R5_CASE_NOT_KNOWN", "R5_UNKNOWN_ACTIVITY"}


def link(who: Any, recording_id: str, case_id: str, activity_id: str, within_s: float = 60.0) -> None:
    """LinkRecording as a client should call it right after opening a case or recording an activity:
    retried while media-svc answers that the case or activity has not reached it yet."""
    request = rpb.LinkRecordingRequest(recording_id=recording_id, case_id=case_id, activity_id=activity_id)
    deadline = time.monotonic() + within_s
    while True:
        try:
            who("LinkRecording", request)
            return
        except grpc.RpcError as error:
            lagging = (
                error.code() == grpc.StatusCode.FAILED_PRECONDITION and _error_info(error).reason in NOT_YET
            )
            if not lagging or time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def refused_link(who: Any, recording_id: str, case_id: str, activity_id: str) -> grpc.RpcError:
    request = rpb.LinkRecordingRequest(recording_id=recording_id, case_id=case_id, activity_id=activity_id)
    with pytest.raises(grpc.RpcError) as refused:
        who("LinkRecording", request)
    return refused.value


def test_r05_coverage_is_counted_only_for_real_links_of_the_unit_overlapping_the_activity(
    system: System, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    a_start, a_end = now - timedelta(hours=3), now - timedelta(hours=2)
    b_start, b_end = now - timedelta(hours=1, minutes=30), now - timedelta(hours=1)
    with (
        grpc.insecure_channel(system.case.grpc_address) as case_channel,
        grpc.insecure_channel(system.media.grpc_address) as media_channel,
    ):
        cases = CaseCalls(system, case_channel)
        case, (first, second) = cases.investigating((a_start, a_end), (b_start, b_end))

        officer = caller(media_channel, system.key, "alice", UNIT, ["OFFICER"])
        stranger = caller(media_channel, system.key, "olga", OTHER_UNIT, ["OFFICER"])

        def recording(who: Any, unit: str, start: datetime, tag: str, activity_id: str = "") -> str:
            path = make_video(tmp_path / f"{tag}.mp4", tag=tag)
            c = classification(start=start, unit=unit, device=f"CAM-{tag}")
            if activity_id:  # linked at upload: never refused (evidence), checked by case-svc
                c.case_id, c.activity_id = case.case_id, activity_id
            return upload(who, path, c).recording_id

        # 1. the real thing: a recording of the unit made during the first activity
        good = recording(officer, UNIT, a_start + timedelta(minutes=10), "good")
        link(officer, good, case.case_id, first.activity_id)
        # 2. a recording of the unit made the day before the second activity: no coverage
        stale = recording(officer, UNIT, b_start - timedelta(days=1), "stale")
        link(officer, stale, case.case_id, second.activity_id)
        # 3. a recording of another unit, linked by that unit's officer: refused by media-svc; linked at
        # upload (accepted as evidence): refused by case-svc
        foreign = recording(
            stranger, OTHER_UNIT, b_start + timedelta(minutes=5), "foreign", second.activity_id
        )
        elsewhere = recording(stranger, OTHER_UNIT, b_start + timedelta(minutes=5), "elsewhere")
        error = refused_link(stranger, elsewhere, case.case_id, second.activity_id)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert _error_info(error).reason == "R5_CROSS_UNIT_LINK"
        assert f"case {case.case_id!r} to unit {UNIT!r}" in error.details()
        # 4. a link naming an activity this case does not have: refused by media-svc; given at upload:
        # refused by case-svc
        guessed = recording(
            officer, UNIT, b_start + timedelta(minutes=6), "guessed", "activity-that-does-not-exist"
        )
        unlinked = recording(officer, UNIT, b_start + timedelta(minutes=7), "unlinked")
        error = refused_link(officer, unlinked, case.case_id, "activity-that-does-not-exist")
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert _error_info(error).reason == "R5_UNKNOWN_ACTIVITY"
        assert "activity_id: " in error.details()
        assert "'activity-that-does-not-exist'" in error.details()
        # 5. a link to a case that does not exist: refused by media-svc, naming it
        error = refused_link(officer, unlinked, "case-that-does-not-exist", "")
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert _error_info(error).reason == "R5_CASE_NOT_KNOWN"
        assert "'case-that-does-not-exist' is not known to media-svc" in error.details()
        for refused_id in (elsewhere, unlinked):  # a refused link writes nothing
            got = officer if refused_id == unlinked else stranger
            stored = got("GetRecording", rpb.GetRecordingRequest(recording_id=refused_id)).recording
            assert stored.link.case_id == "", stored

        def links() -> dict[str, case_pb2.RecordingLink]:
            return {lk.recording_id: lk for lk in cases.get(case.case_id).recording_links}

        _eventually(lambda: {good, stale} <= set(links()), "case-svc learned both links of its unit")
        refused = asyncio.run(_dead_letters(system.stack.kafka_bootstrap, {foreign, guessed}))
        assert set(refused) == {foreign, guessed}, refused
        assert "only the legal affairs office may link a recording across units" in refused[foreign]
        assert "does not have" in refused[guessed]
        known = links()
        assert known[good].covers_activity
        assert known[good].unit == UNIT
        assert not known[stale].covers_activity
        assert foreign not in known
        assert guessed not in known
        assert elsewhere not in known
        assert unlinked not in known

        with pytest.raises(grpc.RpcError) as blocked:
            cases.advance(case.case_id, case_pb2.STAGE_REVIEW_DECISION)
        assert blocked.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"Uncovered (1): {second.activity_id}" in blocked.value.details()
        assert _error_info(blocked.value).reason == "R5_AV_COVERAGE_MISSING"

        # a recording of the unit made during the second activity covers it: the case moves on
        during = recording(officer, UNIT, b_start + timedelta(minutes=2), "during")
        link(officer, during, case.case_id, second.activity_id)
        _eventually(lambda: during in links(), "case-svc learned the covering link")
        assert (
            cases.advance(case.case_id, case_pb2.STAGE_REVIEW_DECISION).stage
            == case_pb2.STAGE_REVIEW_DECISION
        )


def test_r05_the_legal_office_links_across_units_and_case_svc_counts_it(
    system: System, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now - timedelta(hours=2), now - timedelta(hours=1)
    with (
        grpc.insecure_channel(system.case.grpc_address) as case_channel,
        grpc.insecure_channel(system.media.grpc_address) as media_channel,
    ):
        cases = CaseCalls(system, case_channel)
        case, (activity,) = cases.investigating((start, end))
        stranger = caller(media_channel, system.key, "olga", OTHER_UNIT, ["OFFICER"])
        legal = caller(media_channel, system.key, "lena", "legal-affairs", ["LEGAL_OFFICE"])
        path = make_video(tmp_path / "assist.mp4", tag="assist")
        c = classification(start=start + timedelta(minutes=5), unit=OTHER_UNIT, device="CAM-assist")
        assisting = upload(stranger, path, c).recording_id  # another unit's officer assisted

        # wait until media-svc knows the case and activity (a legal-office link then cannot lag)
        def refusal() -> str:
            error = refused_link(stranger, assisting, case.case_id, activity.activity_id)
            return _error_info(error).reason

        _eventually(lambda: refusal() == "R5_CROSS_UNIT_LINK", "media-svc knew the case and refused the unit")
        link(legal, assisting, case.case_id, activity.activity_id)
        stored = legal("GetRecording", rpb.GetRecordingRequest(recording_id=assisting)).recording
        assert (stored.link.case_id, stored.link.activity_id) == (case.case_id, activity.activity_id)
        assert stored.link.linked.subject == "lena"

        def legal_link() -> case_pb2.RecordingLink | None:
            return next(
                (lk for lk in cases.get(case.case_id).recording_links if lk.recording_id == assisting), None
            )

        known = _eventually(legal_link, "case-svc learned the legal office's link")
        assert known.linked_by_legal_office
        assert known.unit == OTHER_UNIT
        assert known.covers_activity
        # the only activity is covered: the flagged case leaves INVESTIGATION
        assert (
            cases.advance(case.case_id, case_pb2.STAGE_REVIEW_DECISION).stage
            == case_pb2.STAGE_REVIEW_DECISION
        )


def test_r17_a_recording_linked_after_upload_is_found_by_its_cases_cause_and_party(
    system: System, tmp_path: Path
) -> None:
    tag = f"{time.time_ns()}"
    cause, party = f"占用消防通道 {tag}", f"某某物业公司 {tag}"
    with (
        grpc.insecure_channel(system.case.grpc_address) as case_channel,
        grpc.insecure_channel(system.media.grpc_address) as media_channel,
    ):
        cases = CaseCalls(system, case_channel)
        case = cases.open_flagged(cause=cause, party=party)
        officer = caller(media_channel, system.key, "alice", UNIT, ["OFFICER"])
        path = make_video(tmp_path / "r17.mp4", tag=f"r17-{tag}")
        c = classification(start=datetime.now(UTC) - timedelta(hours=1), unit=UNIT, device="CAM-r17")
        recording_id = upload(officer, path, c).recording_id

        def search(**criteria: str) -> list[str]:
            request = rpb.SearchRecordingsRequest(unit=UNIT, page={"page_size": 500}, **criteria)
            return [r.recording_id for r in officer("SearchRecordings", request).recordings]

        assert search(case_cause=cause) == []
        assert search(party=party) == []
        link(officer, recording_id, case.case_id, "")
        # the link's write carries the case's cause and parties: found at once, by either
        assert search(case_cause=cause) == [recording_id]
        assert search(party=party) == [recording_id]
        got = officer("GetRecording", rpb.GetRecordingRequest(recording_id=recording_id)).recording
        assert (got.link.case_cause, list(got.link.case_parties)) == (cause, [party])
        assert (got.classification.case_cause, got.classification.party) == (
            "unlicensed construction",
            "Party Ltd",
        )
        # and still by what the uploader declared
        # (one criterion per search: each leads its own index, R17)
        assert recording_id in search(case_cause="unlicensed construction")
        assert recording_id in search(party="Party Ltd")

        # the unit head amends the case's cause and adds a party: the linked recording follows (through
        # case-svc's CaseParticularsAmended on Kafka)
        new_cause, new_party = f"堵塞消防通道 {tag}", f"李四 {tag}"
        amended = cases(
            "AmendCaseParticulars",
            api.AmendCaseParticularsRequest(
                case_id=case.case_id,
                cause=new_cause,
                parties=[
                    case_pb2.Party(name=party, kind=case_pb2.PARTY_KIND_ORGANIZATION),
                    case_pb2.Party(name=new_party, kind=case_pb2.PARTY_KIND_PERSON),
                ],
                reason="调查后变更案由并追加当事人",
            ),
            as_head=True,
        ).case
        assert amended.cause == new_cause
        _eventually(
            lambda: search(case_cause=new_cause) == [recording_id], "the recording followed the new cause"
        )
        assert search(party=new_party) == [recording_id]
        assert search(party=party) == [recording_id]  # still a party
        assert search(case_cause=cause) == []  # the old cause is no longer the case's
        got = officer("GetRecording", rpb.GetRecordingRequest(recording_id=recording_id)).recording
        assert (got.link.case_cause, list(got.link.case_parties)) == (new_cause, [party, new_party])


def test_r05_a_flagged_case_with_no_activity_cannot_close_until_one_is_recorded(system: System) -> None:
    with grpc.insecure_channel(system.case.grpc_address) as channel:
        cases = CaseCalls(system, channel)
        case = cases.open_flagged()
        cases.advance(case.case_id, case_pb2.STAGE_INVESTIGATION)
        cases.advance(case.case_id, case_pb2.STAGE_SERVICE_EXECUTION)
        close = api.CloseCaseRequest(case_id=case.case_id, reason="结案")
        with pytest.raises(grpc.RpcError) as refused:
            cases("CloseCase", close, as_head=True)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no enforcement activity recorded" in refused.value.details()
        assert _error_info(refused.value).reason == "R5_NO_ACTIVITY_RECORDED"
        exempt = api.RecordActivityRequest(
            case_id=case.case_id,
            kind=case_pb2.ACTIVITY_KIND_DOCUMENT_SERVICE,
            started_at=stamp(datetime.now(UTC) - timedelta(hours=1)),
            ended_at=stamp(datetime.now(UTC) - timedelta(minutes=30)),
            place="危化品仓库",
            officers=["alice", "carl"],
            record_mode=case_pb2.RECORD_MODE_EXEMPT,
            exemption_reason=case_pb2.EXEMPTION_REASON_HAZARDOUS_CHEMICALS,
            exemption_note="危化品仓库内禁止使用电子设备",
        )
        cases("RecordActivity", exempt)
        assert cases("CloseCase", close, as_head=True).case.stage == case_pb2.STAGE_CLOSED
