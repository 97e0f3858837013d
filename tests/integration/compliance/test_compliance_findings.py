"""compliance-svc on the real stack, through the real services: case-svc and media-svc produce the
events (nothing is injected), compliance-svc (faust agent, table and timer) turns them into findings.

Time: the deadlines are days long (7 d unlinked, 3 d for a gap's explanation and an activity's
record), as in production; the test moves compliance-svc's clock 10 days ahead through configuration
(LAWTRAIL_COMPLIANCE_CLOCK_OFFSET_S) instead of sleeping.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.access.v1 import access_service_pb2 as access_api
from lawtrail.access.v1 import access_service_pb2_grpc as access_grpc
from lawtrail.case.v1 import case_pb2, case_service_pb2_grpc
from lawtrail.case.v1 import case_service_pb2 as case_api
from lawtrail.compliance.v1 import compliance_service_pb2 as api
from lawtrail.compliance.v1 import compliance_service_pb2_grpc as api_grpc
from lawtrail.compliance.v1 import finding_pb2 as fpb
from lawtrail.media.v1 import recording_pb2 as rpb
from lawtrail.media.v1 import recording_service_pb2 as mpb
from lawtrail.media.v1 import recording_service_pb2_grpc as mpb_grpc
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.stack import Stack
from prometheus_client.parser import text_string_to_metric_families
from servicekit.auth.devtoken import ensure_dev_keys, mint_token

pytestmark = pytest.mark.integration

DAY = 86400
CHUNK = 256 * 1024


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


def make_video(path: Path, tag: str) -> bytes:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=2:size=160x120:rate=10",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast",
         "-metadata", f"title={tag}", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path.read_bytes()


@dataclass
class World:
    stack: Stack
    starter: ServiceStarter
    private_pem: bytes
    unit: str
    compliance_env: dict[str, str]
    case: Any
    media: Any
    files: Path
    compliance: Any
    access: Any

    def token(self, subject: str, unit: str, *roles: str) -> tuple[tuple[str, str]]:
        token = mint_token(self.private_pem, subject=subject, unit=unit, roles=list(roles), ttl_s=3600)
        return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("compliance"))
    private_pem = ensure_dev_keys(starter.data_dir)[0].read_bytes()
    env = {
        "LAWTRAIL_COMPLIANCE_APP_ID": f"compliance-it-{uuid.uuid4().hex[:8]}",
        "LAWTRAIL_COMPLIANCE_TIMER_INTERVAL_S": "0.5",
        "LAWTRAIL_COMPLIANCE_CLOCK_OFFSET_S": str(10 * DAY),
        "LAWTRAIL_COMPLIANCE_METRICS_INTERVAL_S": "0.5",
        # The stall watchdog (docs/compliance-svc.md): an agent that reads nothing for 20 s while records
        # wait stops its process, which is then restarted (by Kubernetes; here by the test that saw it).
        "LAWTRAIL_COMPLIANCE_STALL_S": "20",
    }
    try:
        # access-svc first: media-svc trusts the grant key it creates; compliance-svc files spot-check
        # reviewers' access requests there (R22).
        access = starter("access-svc", env={"LAWTRAIL_ACCESS_CHECKPOINT_INTERVAL_S": "3600"})
        env["LAWTRAIL_COMPLIANCE_ACCESS_ADDRESS"] = access.grpc_address
        case = starter("case-svc")
        media = starter("media-svc", env={"LAWTRAIL_MEDIA_GAP_THRESHOLD_S": "60"})
        compliance = starter("compliance-svc", env=env)
        yield World(
            stack,
            starter,
            private_pem,
            f"unit-{uuid.uuid4().hex[:8]}",
            env,
            case,
            media,
            tmp_path_factory.mktemp("compliance-files"),
            compliance,
            access,
        )
    finally:
        starter.stop_all()


def upload(w: World, *, tag: str, start: datetime, case_id: str = "", activity_id: str = "",
           informed: bool = True, device: str = "CAM-C-1") -> str:  # fmt: skip
    data = make_video(w.files / f"{tag}.mp4", tag)
    import hashlib

    manifest = mpb.UploadManifest(
        classification=rpb.Classification(
            unit=w.unit,
            device_number=device,
            officer="officer-7",
            recorded_from=stamp(start),
            recorded_to=stamp(start + timedelta(seconds=2)),
            party="Party Ltd",
            case_cause="unlicensed construction",
            media_kind=rpb.MEDIA_KIND_VIDEO,
            party_informed=informed,
            case_id=case_id,
            activity_id=activity_id,
        ),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )

    def requests() -> Iterator[mpb.UploadRecordingRequest]:
        yield mpb.UploadRecordingRequest(header=mpb.UploadHeader(manifest=manifest, offset=0))
        for i in range(0, len(data), CHUNK):
            yield mpb.UploadRecordingRequest(chunk=data[i : i + CHUNK])

    with grpc.insecure_channel(w.media.grpc_address) as channel:
        stub = mpb_grpc.RecordingServiceStub(channel)
        response = stub.UploadRecording(
            requests(), metadata=w.token("officer-7", w.unit, "OFFICER"), timeout=60
        )
    return str(response.recording.recording_id)


def list_findings(address: str, w: World, **filters: Any) -> list[fpb.Finding]:
    found: list[fpb.Finding] = []
    token = ""
    with grpc.insecure_channel(address) as channel:
        stub = api_grpc.ComplianceServiceStub(channel)
        while True:
            page = stub.ListFindings(
                api.ListFindingsRequest(unit=w.unit, page={"page_size": 2, "page_token": token}, **filters),
                metadata=w.token("legal-1", "legal", "LEGAL_OFFICE"),
                timeout=10,
            )
            found.extend(page.findings)
            token = page.page.next_page_token
            if not token:
                return found


def eventually(check: Callable[[], bool], what: str, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {within_s} s: {what}")


@pytest.fixture(scope="module")
def scenario(world: World) -> dict[str, str]:
    """A case with two activities; a late upload without 告知, a second segment after a 10-minute gap,
    an upload linked to nothing, and an activity that never gets a recording."""
    w = world
    now = datetime.now(UTC).replace(microsecond=0)
    with grpc.insecure_channel(w.case.grpc_address) as channel:
        stub = case_service_pb2_grpc.CaseServiceStub(channel)
        md = w.token("officer-7", w.unit, "OFFICER")
        case = stub.OpenCase(
            case_api.OpenCaseRequest(
                act_type=case_pb2.ACT_TYPE_PENALTY,
                procedure=case_pb2.PROCEDURE_GENERAL,
                unit=w.unit,
                cause="unlicensed construction",
                responsible_officer="officer-7",
                parties=[case_pb2.Party(name="Party Ltd", kind=case_pb2.PARTY_KIND_ORGANIZATION)],
            ),
            metadata=md,
            timeout=15,
        ).case
        activities = []
        for hours in (50, 30):
            activities.append(
                stub.RecordActivity(
                    case_api.RecordActivityRequest(
                        case_id=case.case_id,
                        kind=case_pb2.ACTIVITY_KIND_EVIDENCE_COLLECTION,
                        started_at=stamp(now - timedelta(hours=hours)),
                        ended_at=stamp(now - timedelta(hours=hours - 1)),
                        place="site 3",
                        officers=["officer-7"],
                        record_mode=case_pb2.RECORD_MODE_CONTINUOUS_AV,
                    ),
                    metadata=md,
                    timeout=15,
                ).activity.activity_id
            )
    start = now - timedelta(hours=50)
    late = upload(w, tag="late", start=start, case_id=case.case_id, activity_id=activities[0], informed=False)
    after_gap = upload(
        w,
        tag="after-gap",
        start=start + timedelta(minutes=10),
        case_id=case.case_id,
        activity_id=activities[0],
    )
    unlinked = upload(w, tag="unlinked", start=now - timedelta(minutes=30), device="CAM-C-2")
    return {
        "case": case.case_id,
        "covered_activity": activities[0],
        "bare_activity": activities[1],
        "late": late,
        "after_gap": after_gap,
        "unlinked": unlinked,
        "start_month": start.strftime("%Y-%m"),
        "gap_subject": f"CAM-C-1|{activities[0]}|{(start + timedelta(seconds=2)).isoformat()}",
    }


EXPECTED = {
    ("R11a", "late", "MINOR"),
    ("R19b", "late", "MINOR"),
    ("R11a", "after_gap", "MINOR"),
    ("R19c", "gap_subject", "MINOR"),
    ("R23-4", "unlinked", "MINOR"),
    ("R23-1", "bare_activity", "SERIOUS"),
}


def conduct_findings(findings: list[fpb.Finding]) -> list[tuple[str, str, str]]:
    # R20 (unregistered devices) is raised too, by media-svc's device check; asserted separately.
    return sorted(
        (f.article, f.subject, fpb.Severity.Name(f.severity).removeprefix("SEVERITY_"))
        for f in findings
        if f.article not in ("R20", "R22")
    )


def test_r11a_r19b_r19c_r23_findings_appear_once_each_with_severity(
    world: World, scenario: dict[str, str]
) -> None:
    address = world.compliance.grpc_address
    want = sorted((article, scenario[key], severity) for article, key, severity in EXPECTED)
    eventually(lambda: conduct_findings(list_findings(address, world)) == want, f"findings {want}")
    # The timer keeps firing every 0.5 s and events are not re-read: nothing is raised twice.
    time.sleep(3)
    findings = list_findings(address, world)
    assert conduct_findings(findings) == want
    assert len({f.finding_id for f in findings}) == len(findings)
    r20 = [f for f in findings if f.article == "R20"]
    assert {f.subject for f in r20} <= {scenario["late"], scenario["after_gap"], scenario["unlinked"]}
    assert all(f.severity == fpb.SEVERITY_SERIOUS for f in r20)
    late = next(f for f in findings if f.article == "R19b")
    assert late.officer == "officer-7"
    assert late.unit == world.unit
    assert late.evidence_event_ids
    assert late.consequence.startswith("criticism")
    # The covered activity has recordings: no R23-1 for it.
    assert not [f for f in findings if f.subject == scenario["covered_activity"]]


def metric(service: Any, name: str) -> float:
    """An unlabelled sample of the service's metrics endpoint (0 when absent)."""
    with urllib.request.urlopen(f"http://{service.metrics_address}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    return 0.0


def test_replaying_all_topics_gives_the_same_findings_and_retiring_the_state_changes_none(
    world: World, scenario: dict[str, str]
) -> None:
    first = world.compliance
    want = conduct_findings(list_findings(first.grpc_address, world))
    assert want, "the first instance has no findings yet"
    # The replay keeps a series or a link's marker 1 s past its last event (the first instance: 30 days),
    # on a clock 10 days ahead: once caught up it retires every wait that came due and every series and
    # link it read (docs/compliance-svc.md, "Retiring the state").
    replay = world.starter(
        "compliance-svc",
        env={
            **world.compliance_env,
            "LAWTRAIL_COMPLIANCE_APP_ID": f"compliance-replay-{uuid.uuid4().hex[:8]}",
            "LAWTRAIL_MONGO_DATABASE": f"compliance_replay_{uuid.uuid4().hex[:8]}",
            "LAWTRAIL_COMPLIANCE_STATE_KEPT_S": "1",
        },
    )

    def same() -> bool:
        return conduct_findings(list_findings(replay.grpc_address, world)) == want

    eventually(same, "the replaying instance raised the same findings")
    a = {(f.finding_id, f.raised_at.ToDatetime()) for f in list_findings(first.grpc_address, world)}
    b = {(f.finding_id, f.raised_at.ToDatetime()) for f in list_findings(replay.grpc_address, world)}
    assert a == b

    def retired() -> bool:
        kept = metric(replay, "lawtrail_compliance_state_entries")
        return metric(replay, "lawtrail_compliance_state_retired_total") > 0 and 0 < kept < metric(
            first, "lawtrail_compliance_state_entries"
        )

    eventually(retired, "the replay retired the state whose purpose is over")
    # Judged again every 0.5 s with that state gone: nothing new is raised (no R23-4 for a recording
    # whose link marker was retired, no finding twice).
    time.sleep(3)
    assert conduct_findings(list_findings(replay.grpc_address, world)) == want
    assert {(f.finding_id, f.raised_at.ToDatetime()) for f in list_findings(replay.grpc_address, world)} == b
    replay.stop()


def test_lifecycle_open_acknowledged_resolved_by_the_legal_office(
    world: World, scenario: dict[str, str]
) -> None:
    address = world.compliance.grpc_address
    finding = next(f for f in list_findings(address, world) if f.article == "R19b")
    with grpc.insecure_channel(address) as channel:
        stub = api_grpc.ComplianceServiceStub(channel)
        legal = world.token("legal-1", "legal", "LEGAL_OFFICE")
        officer = world.token("officer-7", world.unit, "OFFICER")
        with pytest.raises(grpc.RpcError) as denied:
            stub.AcknowledgeFinding(
                api.AcknowledgeFindingRequest(finding_id=finding.finding_id), metadata=officer
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        acked = stub.AcknowledgeFinding(
            api.AcknowledgeFindingRequest(finding_id=finding.finding_id), metadata=legal
        ).finding
        assert acked.state == fpb.FINDING_STATE_ACKNOWLEDGED
        assert acked.acknowledged.subject == "legal-1"
        with pytest.raises(grpc.RpcError) as bad:
            stub.ResolveFinding(api.ResolveFindingRequest(finding_id=finding.finding_id), metadata=legal)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "disposition" in bad.value.details()
        done = stub.ResolveFinding(
            api.ResolveFindingRequest(finding_id=finding.finding_id, disposition="criticised and educated"),
            metadata=legal,
        ).finding
        assert done.state == fpb.FINDING_STATE_RESOLVED
        assert done.disposition == "criticised and educated"
        with pytest.raises(grpc.RpcError) as again:
            stub.AcknowledgeFinding(
                api.AcknowledgeFindingRequest(finding_id=finding.finding_id), metadata=legal
            )
        assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetFinding(api.GetFindingRequest(finding_id="nope"), metadata=legal)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as other_unit:
            stub.GetFinding(
                api.GetFindingRequest(finding_id=finding.finding_id),
                metadata=world.token("x", "unit-other", "OFFICER"),
            )
        assert other_unit.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert sys.version_info >= (3, 11)


def test_findings_gauge_counts_what_the_api_lists_per_unit_article_severity_state(
    world: World, scenario: dict[str, str]
) -> None:
    """The gauge comes from counts kept with each write (raised by the agent and the timer, moved by
    AcknowledgeFinding/ResolveFinding above), not from reading the findings: it must agree with them."""
    service = world.compliance

    def gauge() -> Counter[tuple[str, str, str, str]]:
        with urllib.request.urlopen(f"http://{service.metrics_address}/metrics", timeout=5) as response:
            text = response.read().decode()
        out: Counter[tuple[str, str, str, str]] = Counter()
        for family in text_string_to_metric_families(text):
            if family.name != "lawtrail_compliance_findings":
                continue
            for sample in family.samples:
                labels = sample.labels
                if labels["unit"] == world.unit and sample.value:
                    key = (labels["unit"], labels["article"], labels["severity"], labels["state"])
                    out[key] = int(sample.value)
        return out

    def listed() -> Counter[tuple[str, str, str, str]]:
        return Counter(
            (
                f.unit,
                f.article,
                fpb.Severity.Name(f.severity).removeprefix("SEVERITY_"),
                fpb.FindingState.Name(f.state).removeprefix("FINDING_STATE_"),
            )
            for f in list_findings(service.grpc_address, world)
        )

    want = listed()
    assert any(state == "RESOLVED" for _, _, _, state in want), "the lifecycle test resolved one"
    eventually(lambda: gauge() == want, f"gauge {want}")


def test_r22_spot_check_drawn_twice_with_one_seed_is_identical_and_reviews_raise_findings(
    world: World, scenario: dict[str, str]
) -> None:
    address = world.compliance.grpc_address
    now = datetime.now(UTC)
    legal = world.token("legal-1", "legal", "LEGAL_OFFICE")

    def draw(seed: int) -> Any:
        with grpc.insecure_channel(address) as channel:
            return (
                api_grpc.ComplianceServiceStub(channel)
                .DrawSpotCheck(
                    api.DrawSpotCheckRequest(
                        unit=world.unit,
                        period_from=stamp(now - timedelta(days=5)),
                        period_to=stamp(now + timedelta(days=1)),
                        per_officer=2,
                        reviewers=["officer-7", "rev-1", "rev-2"],
                        seed=seed,
                    ),
                    metadata=legal,
                    timeout=15,
                )
                .spot_check
            )

    # The material (3 recordings, 1 case file of officer-7) is projected from the events.
    def sample(check: Any) -> list[tuple[str, int, str, str]]:
        return [(i.item_id, i.kind, i.material_id, i.reviewer) for i in check.items]

    eventually(lambda: len(draw(99).items) == 3, "2 recordings + 1 case file drawn for officer-7")
    first, second = draw(12345), draw(12345)
    assert first.spot_check_id != second.spot_check_id
    assert first.seed == second.seed == 12345
    assert sample(first) == sample(second)
    assert {i.material_id for i in first.items} <= {
        scenario["late"],
        scenario["after_gap"],
        scenario["unlinked"],
        scenario["case"],
    }
    assert all(i.reviewer in {"rev-1", "rev-2"} for i in first.items)  # never officer-7 himself
    reviewer_material_opens_through_an_access_grant(world, first)

    item = first.items[0]
    with grpc.insecure_channel(address) as channel:
        stub = api_grpc.ComplianceServiceStub(channel)
        reviewer = world.token(item.reviewer, "legal", "LEGAL_OFFICE")
        with pytest.raises(grpc.RpcError) as bad:
            stub.RecordReview(
                api.RecordReviewRequest(
                    spot_check_id=first.spot_check_id,
                    item_id=item.item_id,
                    failed_aspects=[api.REVIEW_ASPECT_CIVILITY],
                ),
                metadata=reviewer,
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "notes" in (bad.value.details() or "")
        done = stub.RecordReview(
            api.RecordReviewRequest(
                spot_check_id=first.spot_check_id,
                item_id=item.item_id,
                failed_aspects=[api.REVIEW_ASPECT_CIVILITY],
                notes="raised voice at the party",
            ),
            metadata=reviewer,
        )
        assert [f.code for f in done.findings] == ["R22_CIVILITY"]
        assert done.findings[0].officer == "officer-7"
        assert done.item.review.reviewed.subject == item.reviewer
    assert [f.code for f in list_findings(address, world, article="R22")] == ["R22_CIVILITY"]


def reviewer_material_opens_through_an_access_grant(world: World, check: Any) -> None:
    """R16, R22: compliance-svc filed one access request per reviewer in access-svc, on their behalf, for
    exactly their items; the legal affairs office approves it there; the reviewer then downloads a drawn
    recording from media-svc with the grant (and could not without it)."""
    by_reviewer = {a.reviewer: a for a in check.access_requests}
    assert set(by_reviewer) == {i.reviewer for i in check.items}
    items = {i.item_id: i for i in check.items}
    for reviewer, filed in by_reviewer.items():
        assert sorted(filed.item_ids) == sorted(i.item_id for i in check.items if i.reviewer == reviewer)
    recording = next(i for i in check.items if i.kind == api.MATERIAL_KIND_RECORDING)
    filed = by_reviewer[recording.reviewer]
    me = world.token(recording.reviewer, "legal", "INSPECTOR")
    with grpc.insecure_channel(world.access.grpc_address) as channel:
        access = access_grpc.AccessServiceStub(channel)
        pending = access.GetAccessRequest(
            access_api.GetAccessRequestRequest(request_id=filed.request_id), metadata=me, timeout=10
        ).request
        assert pending.state == access_api.ACCESS_REQUEST_STATE_PENDING
        assert (pending.requested.subject, pending.filed_by) == (recording.reviewer, "compliance-svc")
        assert check.spot_check_id in pending.purpose
        assert sorted(r.id for r in pending.resources) == sorted(items[i].material_id for i in filed.item_ids)
        with pytest.raises(grpc.RpcError) as own:
            access.DecideAccessRequest(
                access_api.DecideAccessRequestRequest(
                    request_id=filed.request_id, decision=access_api.ACCESS_DECISION_APPROVE, reason="mine"
                ),
                metadata=world.token(recording.reviewer, "legal", "LEGAL_OFFICE"),
                timeout=10,
            )
        assert own.value.code() == grpc.StatusCode.PERMISSION_DENIED
        access.DecideAccessRequest(
            access_api.DecideAccessRequestRequest(
                request_id=filed.request_id, decision=access_api.ACCESS_DECISION_APPROVE, reason="R22 review"
            ),
            metadata=world.token("legal-head", "legal", "LEGAL_OFFICE"),
            timeout=10,
        )
        token = access.GetAccessRequest(
            access_api.GetAccessRequestRequest(request_id=filed.request_id), metadata=me, timeout=10
        ).request.grant_token
    assert token.startswith("lg1.")
    with grpc.insecure_channel(world.media.grpc_address) as channel:
        media = mpb_grpc.RecordingServiceStub(channel)
        with pytest.raises(grpc.RpcError) as without:
            next(
                iter(
                    media.DownloadRecording(
                        mpb.DownloadRecordingRequest(recording_id=recording.material_id),
                        metadata=me,
                        timeout=10,
                    )
                )
            )
        assert without.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT)
        first = next(
            iter(
                media.DownloadRecording(
                    mpb.DownloadRecordingRequest(recording_id=recording.material_id, access_grant=token),
                    metadata=me,
                    timeout=30,
                )
            )
        )
    assert first.header.recording_id == recording.material_id
    assert first.header.grant_id == "gr-" + filed.request_id.removeprefix("ar-")


def test_monthly_report_of_the_unit_from_the_real_services(
    world: World, scenario: dict[str, str], tmp_path: Path
) -> None:
    from lawtrail_client.client import ComplianceClient, MediaClient
    from lawtrail_client.report import collect, render

    address = world.compliance.grpc_address
    token = mint_token(world.private_pem, subject="legal-1", unit="legal", roles=["LEGAL_OFFICE"])
    findings = list_findings(address, world)
    # Findings are dated by their event or deadline: the month of the late upload's findings.
    month = next(f for f in findings if f.article == "R19b").raised_at.ToDatetime().strftime("%Y-%m")
    with (
        ComplianceClient.connect(address, token=token) as compliance,
        MediaClient.connect(world.media.grpc_address, token=token) as media,
    ):
        data = collect(compliance, media, world.unit, month)
    paths = render(data, tmp_path / "report")
    assert paths["pdf"].read_bytes().startswith(b"%PDF")
    in_month = [f for f in findings if f.raised_at.ToDatetime().strftime("%Y-%m") == month]
    with paths["csv:by_article_severity"].open() as f:
        rows = list(csv.reader(f))[1:]
    assert sum(int(n) for _, _, n in rows) == len(in_month) > 0
    if scenario["start_month"] == month:  # the late upload was recorded in the report's month
        assert any(d > 24 for d in data.delays_h), data.delays_h  # (R11a)
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(paths["pdf"]), str(tmp_path / "page")], check=True)
    assert len(list(tmp_path.glob("page-*.png"))) == 4


def test_a_second_replica_takes_the_stream_over_and_the_stale_one_stops(
    world: World, scenario: dict[str, str]
) -> None:
    """Several replicas, one stream processor: the faust app runs only in the replica holding the lease
    `consumer:<app id>` (a recording series must live in one process's table). On FerretDB a second live
    process cannot start beside the first (ADR 0007's single-writer lease), so the case tested is the
    take-over: the processing replica freezes (SIGSTOP), a second one takes the leases when they
    expire and raises the findings of a new late upload, and the first, woken, stops instead of
    processing beside it. (Runs last in this module: it freezes the module's compliance-svc.)

    On FerretDB this take-over would pass without the stream lease too: the single-writer lease expires
    and is taken over alike, and stops the woken replica as well. That only the lease holder runs the
    faust app beside a live standby is proven by test_stream_lease.py.

    faust can leave a consumer that took over silently reading nothing; the stall watchdog then stops
    that replica (an ERROR naming the partitions, non-zero exit) and Kubernetes would restart it. The
    test plays Kubernetes' part for that exit only — any other exit fails — within the same window."""
    first = world.compliance
    pid = first.process.pid
    assert pid is not None
    ttl = 15  # servicekit's default writer lease ttl (LAWTRAIL_WRITER_LEASE_TTL_S)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(ttl + 1.5)  # both leases expire: the frozen process cannot renew them
        second = world.starter("compliance-svc", env=world.compliance_env)
        start = datetime.now(UTC) - timedelta(hours=30)  # late (R11a) and without 告知 (R19b)
        recording = upload(w=world, tag="take-over", start=start, informed=False, device="CAM-C-9")

        restarts = []

        def raised_by_second() -> bool:
            if not second.process.running:
                stalls = second.process.log_file.read_text(errors="replace").count(
                    "the faust agent read nothing for"
                )
                assert stalls > len(restarts), (
                    f"the second replica exited, not by the stall watchdog:\n{second.process.log_tail()}"
                )
                restarts.append(time.monotonic())
                second.restart()
            try:
                found = {
                    f.article for f in list_findings(second.grpc_address, world) if f.subject == recording
                }
            except grpc.RpcError:
                return False  # stopping after a stall
            return {"R11a", "R19b"} <= found

        # The frozen member leaves the faust group only when its Kafka session times out.
        eventually(raised_by_second, "the second replica raised the new upload's findings", within_s=180)
        if restarts:
            print(f"the second replica stalled and was restarted {len(restarts)} time(s)")
    finally:
        os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 60
    while first.process.running and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not first.process.running, "the stale replica stops once it sees its lease was taken over"
    findings = [f for f in list_findings(second.grpc_address, world) if f.subject == recording]
    assert sorted(f.article for f in findings if f.article in ("R11a", "R19b")) == ["R11a", "R19b"]
