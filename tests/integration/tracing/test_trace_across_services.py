"""One OpenTelemetry trace across real services (deploy/k8s issue, item 7), both ways:
- OpenCase (case-svc) → case-svc's outbox relay publishes CaseOpened with the W3C trace context in the
  CloudEvents extension header `ce_traceparent` → media-svc's case projection consumer applies it;
- a collection station's upload to media-svc, linked to that case, → media-svc's relay publishes
  RecordingLinked → case-svc's consumer applies it.
Both services are the real `python -m …` processes on the real Kafka + FerretDB, exporting over
OTLP/HTTP to a receiver in this test (what an OpenTelemetry Collector would receive)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from lawtrail.case.v1 import case_pb2, case_service_pb2_grpc
from lawtrail.case.v1 import case_service_pb2 as api
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.stack import Stack
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from servicekit.auth.devtoken import ensure_dev_keys, mint_token

sys.path.insert(0, str(Path(__file__).parents[1] / "media"))

from recordings_it import GrantIssuer, caller, classification, make_video, upload

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
ROOT_SPAN = "00f067aa0ba902b7"


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent: str


class OtlpReceiver:
    """An OTLP/HTTP endpoint on loopback that keeps every span it is sent (protobuf encoding)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        lock = threading.Lock()
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                with lock:
                    for resource_spans in request.resource_spans:
                        attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                        for scope in resource_spans.scope_spans:
                            spans.extend(
                                Span(
                                    attributes.get("service.name", ""),
                                    s.name,
                                    s.trace_id.hex(),
                                    s.span_id.hex(),
                                    s.parent_span_id.hex(),
                                )
                                for s in scope.spans
                            )
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, describe: str, found: object, timeout_s: float = 60.0) -> list[Span]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            spans = [s for s in list(self.spans) if s.trace_id == TRACE_ID]
            if found(spans):  # type: ignore[operator]
                return spans
            time.sleep(0.2)
        raise AssertionError(f"{describe}: spans of the trace so far: {spans}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()


def test_one_trace_spans_an_rpc_the_relay_and_a_consumer_in_another_service(
    stack: Stack, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    starter = ServiceStarter(stack, tmp_path / "lawtrail")
    private_pem = ensure_dev_keys(starter.data_dir)[0].read_bytes()
    issuer = GrantIssuer(tmp_path)
    tracing = {"LAWTRAIL_OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    traced = (("traceparent", f"00-{TRACE_ID}-{ROOT_SPAN}-01"),)
    try:
        case_svc = starter("case-svc", env=tracing)
        media_svc = starter(
            "media-svc",
            env={
                **tracing,
                "LAWTRAIL_MEDIA_GRANT_PUBLIC_KEYS": str(issuer.public_pem),
                "LAWTRAIL_MEDIA_SCRUB_INTERVAL_S": "0",
            },
        )
        unit = f"unit-{int(time.time() * 1000) % 10**8}"

        def as_case(subject: str, role: str) -> list[tuple[str, str]]:
            token = mint_token(private_pem, subject=subject, unit=unit, roles=[role])
            return [("authorization", f"Bearer {token}"), *traced]

        with grpc.insecure_channel(case_svc.grpc_address) as channel:
            cases = case_service_pb2_grpc.CaseServiceStub(channel)
            case = cases.OpenCase(
                api.OpenCaseRequest(
                    act_type=case_pb2.ACT_TYPE_PENALTY,
                    procedure=case_pb2.PROCEDURE_GENERAL,
                    unit=unit,
                    cause="未按规定修建防空地下室",
                    responsible_officer="alice",
                    parties=[case_pb2.Party(name="某某建设有限公司", kind=case_pb2.PARTY_KIND_ORGANIZATION)],
                ),
                metadata=as_case("alice", "OFFICER"),
                timeout=30,
            ).case
            cases.AdvanceStage(
                api.AdvanceStageRequest(
                    case_id=case.case_id, to_stage=case_pb2.STAGE_INVESTIGATION, reason="审批同意"
                ),
                metadata=as_case("hank", "UNIT_HEAD"),
                timeout=30,
            )
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
            activity = cases.RecordActivity(
                api.RecordActivityRequest(
                    case_id=case.case_id,
                    kind=case_pb2.ACTIVITY_KIND_EVIDENCE_COLLECTION,
                    place="许昌市魏都区某工地",
                    officers=["alice"],
                    record_mode=case_pb2.RECORD_MODE_CONTINUOUS_AV,
                    started_at=_stamp(start),
                    ended_at=_stamp(start + timedelta(hours=1)),
                ),
                metadata=as_case("alice", "OFFICER"),
                timeout=30,
            ).activity

            with grpc.insecure_channel(media_svc.grpc_address) as media_channel:
                officer = caller(media_channel, private_pem, "officer-1", unit, ["OFFICER"])
                officer = type(officer)(officer.stub, [*officer.metadata, *traced])
                path = make_video(tmp_path / "linked.mp4", tag=case.case_id)
                upload(
                    officer,
                    path,
                    classification(
                        start=start, unit=unit, case_id=case.case_id, activity_id=activity.activity_id
                    ),
                )

            # case-svc applied the link its consumer received (the real effect, not only spans).
            deadline = time.monotonic() + 60
            while True:
                current = cases.GetCase(
                    api.GetCaseRequest(case_id=case.case_id), metadata=as_case("alice", "OFFICER"), timeout=30
                ).case
                if any(a.recording_ids for a in current.activities) or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert any(a.recording_ids for a in current.activities), "case-svc never applied RecordingLinked"

        # Each service exports its spans in its own batches (every 100 ms), and a relay now sends an
        # RPC's events before the RPC's own span has ended: so a consumer's span can reach the receiver
        # before the spans it descends from. Wait until every chain asserted below is complete.
        def complete(spans: list[Span]) -> bool:
            return OPENED in chains_of(spans, *OPENED[0]) and LINKED in chains_of(spans, *LINKED[0])

        spans = receiver.wait_for("the chains of CaseOpened and RecordingLinked", complete)
    finally:
        starter.stop_all()

    upload_span = next(s for s in spans if s.name == "lawtrail.media.v1.RecordingService/UploadRecording")
    assert (upload_span.service, upload_span.parent) == ("media-svc", ROOT_SPAN)
    open_span = next(s for s in spans if s.name == "lawtrail.case.v1.CaseService/OpenCase")
    assert (open_span.service, open_span.parent) == ("case-svc", ROOT_SPAN)
    opened = chains_of(spans, *OPENED[0])
    assert OPENED in opened, opened
    linked = chains_of(spans, *LINKED[0])
    assert LINKED in linked, linked


# consumer (media-svc) → publish (case-svc's relay) → the OpenCase RPC (case-svc) → the caller.
OPENED = [
    ("media-svc", "lawtrail.case.v1.events process"),
    ("case-svc", "lawtrail.case.v1.events publish"),
    ("case-svc", "lawtrail.case.v1.CaseService/OpenCase"),
]
# consumer (case-svc) → publish (media-svc's relay) → the upload RPC (media-svc) → the caller.
LINKED = [
    ("case-svc", "lawtrail.media.v1.events process"),
    ("media-svc", "lawtrail.media.v1.events publish"),
    ("media-svc", "lawtrail.media.v1.RecordingService/UploadRecording"),
]


def chains_of(spans: list[Span], service: str, name: str) -> list[list[tuple[str, str]]]:
    """For each span `name` of `service`, the (service, name) of it and its ancestors received so far."""
    by_id = {s.span_id: s for s in spans}
    chains = []
    for span in (s for s in spans if s.service == service and s.name == name):
        chain = [span]
        while chain[-1].parent in by_id:
            chain.append(by_id[chain[-1].parent])
        chains.append([(s.service, s.name) for s in chain])
    return chains


def _stamp(value: datetime) -> object:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
