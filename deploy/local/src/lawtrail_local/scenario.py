"""`python -m lawtrail_local scenario`: a short guided tour of a running local stack (`make run`).

It acts as an officer of a unit would through the public API, and as an event consumer would on
Kafka: it opens an inspection case through case-svc's gRPC API with a freshly minted dev token, then
reads the `CaseOpened` event back from `lawtrail.case.v1.events` and prints its CloudEvents envelope
and decoded facts. Every step prints what it did; a failure says which step and why.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from lawtrail.case.v1 import case_events_pb2, case_pb2, case_service_pb2
from lawtrail_client import CaseClient, LawtrailError
from servicekit.auth.devtoken import mint_token
from servicekit.messaging.envelope import decode
from servicekit.topics import events_topic_of

from lawtrail_local.errors import StackError
from lawtrail_local.progress import stderr_progress
from lawtrail_local.scenario_access import access_tour
from lawtrail_local.services import service_spec
from lawtrail_local.stack import Stack

CASE_TOPIC = events_topic_of(case_events_pb2)  # lawtrail.case.v1.events
TOUR_OFFICER, TOUR_UNIT = "officer-demo", "unit-demo"


def _say(text: str) -> None:
    print(text, flush=True)


async def _from_now_on(consumer: AIOKafkaConsumer) -> None:
    """Wait until every partition is assigned and positioned at its end: only new events are read."""
    deadline = time.monotonic() + 15.0
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise StackError(f"no partitions of {CASE_TOPIC} assigned: is the stack up (`make up`)?")
        await asyncio.sleep(0.1)
    for tp in consumer.assignment():
        await consumer.position(tp)  # resolves auto_offset_reset=latest now, before the case is opened


async def _read_case_opened(consumer: AIOKafkaConsumer, case_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                envelope = decode(record)
                if envelope.subject != case_id:
                    continue
                event = envelope.parse(case_events_pb2.CaseOpened)
                _say(f"1.3 read it back from Kafka topic {record.topic} (partition {record.partition}):")
                _say(f"   key={record.key.decode()}  ce_type={envelope.type}  ce_id={envelope.id}")
                _say(f"   ce_source={envelope.source}  ce_time={envelope.time.isoformat()}")
                _say(
                    f"   CaseOpened: unit={event.unit} act_type={case_pb2.ActType.Name(event.act_type)} "
                    f"cause={event.cause!r} officer={event.responsible_officer} "
                    f"parties={[p.name for p in event.parties]}"
                )
                return
    raise StackError(f"no CaseOpened event for case {case_id} on {CASE_TOPIC} within {timeout_s:.0f} s")


async def tour(kafka_bootstrap: str, case_address: str, private_key_pem: bytes) -> str:
    """Open a case at `case_address` with a token signed by the dev key; read its CaseOpened back.

    Returns the case id.
    """
    officer, unit = TOUR_OFFICER, TOUR_UNIT
    token = mint_token(private_key_pem, subject=officer, unit=unit, roles=["OFFICER"], ttl_s=600)
    _say("Chapter 1 — a case is opened (R2, R3) and its event is on Kafka")
    _say(f"1.1 minted a dev token for {officer} (OFFICER of {unit}), valid 10 minutes")

    consumer = AIOKafkaConsumer(
        CASE_TOPIC,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        await _from_now_on(consumer)
        request = case_service_pb2.OpenCaseRequest(
            act_type=case_pb2.ACT_TYPE_INSPECTION,
            unit=unit,
            cause="Fire-safety inspection of a civil air-defence basement",
            responsible_officer=officer,
            parties=[
                case_pb2.Party(name="Demo Property Management Ltd", kind=case_pb2.PARTY_KIND_ORGANIZATION)
            ],
            request_id=f"demo-{uuid.uuid4()}",
        )

        def open_case() -> case_service_pb2.OpenCaseResponse:
            with CaseClient.connect(case_address, token=token) as client:
                response: case_service_pb2.OpenCaseResponse = client.cases.OpenCase(request)
                return response

        opened = await asyncio.to_thread(open_case)
        case = opened.case
        _say(
            f"1.2 opened case {case.case_id} on case-svc ({case_address}): "
            f"stage {case_pb2.Stage.Name(case.stage)}"
        )
        await _read_case_opened(consumer, case.case_id, timeout_s=30.0)
    finally:
        await consumer.stop()
    return str(case.case_id)


def compliance_chapter(
    media_address: str,
    compliance_address: str,
    private_key_pem: bytes,
    out_dir: Path,
    timeout_s: float = 60.0,
) -> Path:
    """A late (30 h after recording) upload whose party was not informed (告知, R19b) raises R11a and R19b
    findings in compliance-svc; then the unit's monthly report is written. Returns the PDF's path."""
    _say("")
    _say("Chapter 4 — compliance (R11a, R19b, R20): a late, uninformed upload raises findings")
    import hashlib
    import subprocess
    import tempfile
    from datetime import UTC, datetime, timedelta

    from google.protobuf.timestamp_pb2 import Timestamp
    from lawtrail.compliance.v1 import compliance_service_pb2 as capi
    from lawtrail.compliance.v1 import finding_pb2 as fpb
    from lawtrail.media.v1 import recording_pb2, recording_service_pb2
    from lawtrail_client.client import ComplianceClient, MediaClient
    from lawtrail_client.report import collect, render

    officer, unit = "officer-demo", "unit-demo"
    token = mint_token(private_key_pem, subject=officer, unit=unit, roles=["OFFICER"], ttl_s=600)
    legal = mint_token(private_key_pem, subject="legal-demo", unit="legal", roles=["LEGAL_OFFICE"], ttl_s=600)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "late.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=2:size=160x120:rate=10",
             "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast",
             "-metadata", f"title=demo-{uuid.uuid4()}", str(video)],
            check=True, timeout=120,
        )  # fmt: skip
        data = video.read_bytes()
    start = datetime.now(UTC) - timedelta(hours=30)
    recorded_from, recorded_to = Timestamp(), Timestamp()
    recorded_from.FromDatetime(start)
    recorded_to.FromDatetime(start + timedelta(seconds=2))
    manifest = recording_service_pb2.UploadManifest(
        classification=recording_pb2.Classification(
            unit=unit,
            device_number="CAM-DEMO-1",
            officer=officer,
            recorded_from=recorded_from,
            recorded_to=recorded_to,
            party="Demo Property Management Ltd",
            media_kind=recording_pb2.MEDIA_KIND_VIDEO,
            party_informed=False,
        ),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )
    requests = [
        recording_service_pb2.UploadRecordingRequest(
            header=recording_service_pb2.UploadHeader(manifest=manifest, offset=0)
        ),
        recording_service_pb2.UploadRecordingRequest(chunk=data),
    ]
    with MediaClient.connect(media_address, token=token, timeout_s=60) as media:
        recording = media.recordings.UploadRecording(iter(requests)).recording
    _say(
        f"4.1 uploaded recording {recording.recording_id} 30 h after it was made, party not informed "
        f"(media-svc {media_address})"
    )
    deadline = time.monotonic() + timeout_s
    with ComplianceClient.connect(compliance_address, token=legal) as compliance:
        while True:
            found = compliance.compliance.ListFindings(
                capi.ListFindingsRequest(unit=unit, subject=recording.recording_id)
            ).findings
            if {"R11a", "R19b"} <= {f.article for f in found}:
                break
            if time.monotonic() > deadline:
                raise StackError(
                    f"compliance-svc ({compliance_address}) raised no R11a/R19b findings for recording "
                    f"{recording.recording_id} within {timeout_s:.0f} s"
                )
            time.sleep(0.5)
        _say("4.2 compliance-svc raised, from media-svc's events:")
        for f in sorted(found, key=lambda f: f.article):
            _say(f"   {f.article:<5} {fpb.Severity.Name(f.severity).removeprefix('SEVERITY_'):<8} {f.detail}")
        with MediaClient.connect(media_address, token=legal) as media_as_legal:
            report = collect(compliance, media_as_legal, unit, datetime.now(UTC).strftime("%Y-%m"))
        paths = render(report, out_dir)
    _say(f"4.3 the unit's monthly report: {paths['pdf']} (also {paths['html'].name} and CSV files beside it)")
    return paths["pdf"]


def run(data_dir: Path) -> int:
    """Run the scenario against the stack whose data lives in `data_dir` (default ports)."""
    stack = Stack(data_dir)
    case_svc = stack.service(service_spec("case-svc"))
    key = case_svc.dev_private_key
    try:
        if not key.exists():
            raise StackError(f"no dev key at {key}: is the stack up (`make up`)?")
        case_id = asyncio.run(tour(stack.kafka_bootstrap, case_svc.grpc_address, key.read_bytes()))
        media_spec, retention_spec = service_spec("media-svc"), service_spec("retention-svc")
        if media_spec.unavailable_reason() is None and retention_spec.unavailable_reason() is None:
            from lawtrail_local.tour_retention import retention_chapter

            asyncio.run(
                retention_chapter(
                    case_address=case_svc.grpc_address,
                    media_address=stack.service(media_spec).grpc_address,
                    retention_address=stack.service(retention_spec).grpc_address,
                    private_key_pem=key.read_bytes(),
                    case_id=case_id,
                    unit=TOUR_UNIT,
                    officer=TOUR_OFFICER,
                    work_dir=data_dir / "tour",
                    access_address=stack.service(service_spec("access-svc")).grpc_address,
                )
            )
        media, access = stack.service(media_spec), stack.service(service_spec("access-svc"))
        access_tour(
            media.grpc_address,
            access.grpc_address,
            key.read_bytes(),
            access.data_dir / "keys" / "access-grant-dev-public.pem",
        )
        media, compliance = (
            stack.service(service_spec("media-svc")),
            stack.service(service_spec("compliance-svc")),
        )
        if media.spec.unavailable_reason() is None and compliance.spec.unavailable_reason() is None:
            compliance_chapter(
                media.grpc_address, compliance.grpc_address, key.read_bytes(), data_dir / "reports"
            )
    except (StackError, LawtrailError) as exc:
        stderr_progress(f"scenario failed: {exc}")
        return 1
    _say("Done. The logs follow; press Ctrl-C to stop the stack.")
    return 0
