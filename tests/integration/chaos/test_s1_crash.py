"""S1 — the crash suite (`make chaos`): nothing accepted is lost when every component is killed.

A client sends a few thousand keyed commands through the public APIs (OpenCase, RecordActivity,
RecordIncident with their request ids; uploads of real MP4s whose classification links them to the
case and activity, by content identity) while the suite kills with SIGKILL, one after the other,
case-svc, media-svc, the Kafka broker and FerretDB, and restarts each. The client retries a command
that failed for an outage with the same key, as a real client does; a command counts as accepted
when it was answered OK.

Afterwards:
- every accepted command's event is on its topic, as exactly one distinct ce_id per command (a retry
  never made a second event); redeliveries of one ce_id (the relay's at-least-once) are counted;
- the consumer (case-svc's projection of media-svc's RecordingLinked) applied every link exactly once;
- nothing accepted was lost (GetCase / GetRecording find every one);
- the time from the last restart until both services' outboxes are empty is measured.

The figures are printed (run with `-s`, as `make chaos` does). Scale: LAWTRAIL_CHAOS_ROUNDS rounds of
4 commands (default 500 → 2,000 commands), and the load goes on until every component was killed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from lawtrail.case.v1 import case_pb2
from lawtrail.case.v1 import case_service_pb2 as api
from lawtrail.media.v1 import recording_pb2
from lawtrail.media.v1 import recording_service_pb2 as rpb
from lawtrail_client import CaseClient, MediaClient
from lawtrail_client.errors import LawtrailError
from lawtrail_client.upload import upload_file
from lawtrail_local.ferretdb import ensure_ferretdb_binary
from lawtrail_local.kafka import ensure_kafka_libs
from lawtrail_local.kafka_probe import read_from_start
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceProcess
from lawtrail_local.stack import Stack
from pymongo import MongoClient
from servicekit.auth.devtoken import ensure_dev_keys, mint_token
from servicekit.messaging.envelope import decode

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (make setup)"),
]

ROUNDS = int(os.environ.get("LAWTRAIL_CHAOS_ROUNDS", "500"))
UNIT = "unit-chaos"
CASE_TOPIC, MEDIA_TOPIC = "lawtrail.case.v1.events", "lawtrail.media.v1.events"
# A command failing with these is retried with the same key: the outage ends, the answer does not change.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,  # a dependency down mid-call (the database): logged server-side
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
}
T = TypeVar("T")


@dataclass
class Round:
    case_id: str = ""
    activity_id: str = ""
    incident_id: str = ""
    recording_id: str = ""


@dataclass
class Ledger:
    rounds: list[Round] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)  # by status code
    refused: list[str] = field(default_factory=list)


def _say(line: str) -> None:
    print(f"chaos: {line}", flush=True)


def _retrying(what: str, ledger: Ledger, call: Callable[[], T], within_s: float = 240.0) -> T:
    deadline = time.monotonic() + within_s
    while True:
        try:
            result = call()
        except (grpc.RpcError, LawtrailError) as error:
            code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
            if code in RETRYABLE and time.monotonic() < deadline:
                ledger.retried[code.name] += 1
                time.sleep(0.3)
                continue
            raise
        except (ConnectionError, OSError):
            if time.monotonic() < deadline:
                ledger.retried["connection"] += 1
                time.sleep(0.3)
                continue
            raise
        ledger.accepted[what] += 1
        return result


def _video(folder: Path, base: Path, n: int) -> Path:
    """A unique real MP4: the base clip with bytes of its own appended (players and ffprobe ignore them)."""
    path = folder / f"clip-{n}.mp4"
    path.write_bytes(base.read_bytes() + uuid.uuid4().bytes)
    return path


def _load(
    case: ServiceProcess,
    media: ServiceProcess,
    key: bytes,
    folder: Path,
    ledger: Ledger,
    stop: threading.Event,
) -> None:
    token = mint_token(key, subject="alice", unit=UNIT, roles=["OFFICER", "UNIT_HEAD"], ttl_s=7200)
    base = folder / "base.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=1:size=160x120:rate=10",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", str(base)],
        check=True, timeout=60,
    )  # fmt: skip
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC).replace(microsecond=0)
    with (
        CaseClient.connect(case.grpc_address, token=token, timeout_s=15, retries=0) as cases,
        MediaClient.connect(media.grpc_address, token=token, timeout_s=15, retries=0) as recordings,
    ):
        n = 0
        while n < ROUNDS or not stop.is_set():
            n += 1
            r = Round()
            # Every lambda below is called at once by _retrying (B023 does not apply).
            open_request = api.OpenCaseRequest(
                act_type=case_pb2.ACT_TYPE_INSPECTION,
                unit=UNIT,
                cause="fire-safety inspection",
                responsible_officer="alice",
                parties=[case_pb2.Party(name="Acme Ltd", kind=case_pb2.PARTY_KIND_ORGANIZATION)],
                request_id=f"open-{run}-{n}",
            )
            opened = _retrying("OpenCase", ledger, lambda: cases.cases.OpenCase(open_request))  # noqa: B023
            r.case_id = opened.case.case_id
            ledger.rounds.append(r)
            start = now - timedelta(hours=2)
            activity = api.RecordActivityRequest(
                case_id=r.case_id,
                kind=case_pb2.ACTIVITY_KIND_EVIDENCE_COLLECTION,
                place="warehouse 3",
                officers=["alice", "carl"],
                record_mode=case_pb2.RECORD_MODE_CONTINUOUS_AV,
                request_id=f"act-{run}-{n}",
            )
            activity.started_at.FromDatetime(start)
            activity.ended_at.FromDatetime(start + timedelta(hours=1))
            r.activity_id = _retrying(
                "RecordActivity",
                ledger,
                lambda: cases.cases.RecordActivity(activity),  # noqa: B023
            ).activity.activity_id
            incident = api.RecordIncidentRequest(
                case_id=r.case_id,
                kind=case_pb2.INCIDENT_KIND_COMPLAINT,
                reporter="Z",
                description="complaint about the inspection",
                request_id=f"inc-{run}-{n}",
            )
            incident.occurred_at.FromDatetime(now - timedelta(minutes=30))
            r.incident_id = _retrying(
                "RecordIncident",
                ledger,
                lambda: cases.cases.RecordIncident(incident),  # noqa: B023
            ).incident.incident_id
            clip = _video(folder, base, n)
            classification = recording_pb2.Classification(
                unit=UNIT,
                device_number="CAM-CHAOS-1",
                officer="alice",
                party="Acme Ltd",
                case_cause="fire-safety inspection",
                media_kind=recording_pb2.MEDIA_KIND_VIDEO,
                party_informed=True,
                case_id=r.case_id,
                activity_id=r.activity_id,
            )
            classification.recorded_from.FromDatetime(start + timedelta(minutes=10))
            classification.recorded_to.FromDatetime(start + timedelta(minutes=10, seconds=1))
            uploaded = _retrying(
                "UploadRecording",
                ledger,
                lambda: upload_file(recordings, clip, classification),  # noqa: B023
            )
            r.recording_id = uploaded.recording.recording_id
            clip.unlink()
            if n % 50 == 0:
                accepted = sum(ledger.accepted.values())
                _say(f"{n} rounds, {accepted} commands accepted, retries {dict(ledger.retried)}")


def _pending_outbox(stack: Stack, databases: list[str]) -> int:
    client: MongoClient[dict[str, Any]] = MongoClient(stack.mongo_uri, serverSelectionTimeoutMS=5000)
    try:
        total = 0
        for name in databases:
            db = client[name]
            for collection in db.list_collection_names():
                total += db[collection].count_documents({"outbox_pending": True})
        return total
    finally:
        client.close()


async def _read_topic(bootstrap: str, topic: str) -> list[tuple[str, str, str]]:
    """(type, subject, ce_id) of every record on `topic`, from the beginning to its current end."""
    found = []
    for record in await read_from_start(bootstrap, [topic]):
        envelope = decode(record)
        found.append((envelope.type.rsplit(".", 1)[-1], envelope.subject, envelope.id))
    return found


def _restart_kafka(stack: Stack) -> None:
    stack.kafka.process.kill()
    time.sleep(2)
    stack.kafka.start(ensure_kafka_libs(stack.progress))
    stack.kafka.wait_ready(180)


def _restart_ferretdb(stack: Stack) -> None:
    stack.ferretdb.process.kill()
    time.sleep(2)
    # FerretDB's backend (PostgreSQL by default, ADR 0007) keeps running: only FerretDB is killed.
    stack.ferretdb.start(
        ensure_ferretdb_binary(stack.progress), stack.postgres.url if stack.postgres else None
    )
    stack.ferretdb.wait_ready(120)


@pytest.fixture
def services(stack: Stack, tmp_path: Path) -> Iterator[tuple[ServiceProcess, ServiceProcess, bytes]]:
    starter = ServiceStarter(stack, tmp_path / "svc")
    private, _ = ensure_dev_keys(starter.data_dir)
    try:
        yield starter("case-svc"), starter("media-svc"), private.read_bytes()
    finally:
        starter.stop_all()


def test_s1_kill_9_every_component_under_load_loses_nothing(
    stack: Stack, services: tuple[ServiceProcess, ServiceProcess, bytes], tmp_path: Path
) -> None:
    case, media, key = services
    ledger = Ledger()
    stop = threading.Event()
    failure: list[BaseException] = []

    def load() -> None:
        try:
            _load(case, media, key, tmp_path, ledger, stop)
        except BaseException as error:
            failure.append(error)

    began = time.monotonic()
    loader = threading.Thread(target=load, name="chaos-load", daemon=True)
    loader.start()
    victims: list[tuple[str, Callable[[], object]]] = [
        ("case-svc", lambda: (case.kill(), time.sleep(2), case.restart(120))),
        ("media-svc", lambda: (media.kill(), time.sleep(2), media.restart(120))),
        ("kafka", lambda: _restart_kafka(stack)),
        ("ferretdb", lambda: _restart_ferretdb(stack)),
    ]
    last_restart = time.monotonic()
    for name, kill_and_restart in victims:
        time.sleep(8)  # let traffic flow between crashes
        assert not failure, failure
        _say(f"kill -9 {name} at {sum(ledger.accepted.values())} accepted commands")
        kill_and_restart()
        last_restart = time.monotonic()
        _say(f"{name} restarted")
    # FerretDB restarted under the services: they must have reconnected by themselves.
    stop.set()
    loader.join(timeout=1800)
    assert not loader.is_alive(), "the load did not finish within 30 minutes"
    assert not failure, f"a command was refused for good: {failure[0]!r}"
    load_end = time.monotonic()
    load_s = load_end - began

    databases = [case.env["LAWTRAIL_MONGO_DATABASE"], media.env["LAWTRAIL_MONGO_DATABASE"]]
    drain_deadline = time.monotonic() + 600
    while (pending := _pending_outbox(stack, databases)) and time.monotonic() < drain_deadline:
        time.sleep(0.2)
    drained = time.monotonic()
    drain_s, drain_after_load_s = drained - last_restart, drained - load_end
    assert pending == 0, f"{pending} documents still have outbox events 10 minutes after the last restart"

    case_events = asyncio.run(_read_topic(stack.kafka_bootstrap, CASE_TOPIC))
    media_events = asyncio.run(_read_topic(stack.kafka_bootstrap, MEDIA_TOPIC))
    records = case_events + media_events
    by_id = Counter(ce_id for _, _, ce_id in records)
    duplicates = sum(count - 1 for count in by_id.values())
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for event_type, subject, ce_id in records:
        ids[(event_type, subject)].add(ce_id)

    lost: list[str] = []
    doubled: list[str] = []

    def expect(event_type: str, subject: str, count: int = 1) -> None:
        found = len(ids.get((event_type, subject), ()))
        if found < count:
            lost.append(f"{event_type} {subject}")
        elif found > count:
            doubled.append(f"{event_type} {subject}: {found} distinct ce_ids")

    for r in ledger.rounds:
        expect("CaseOpened", r.case_id)
        expect("ActivityRecorded", r.case_id)
        expect("CaseIncidentRecorded", r.case_id)
        expect("CaseFlagged", r.case_id)
        if r.recording_id:
            expect("RecordingIngested", r.recording_id)
            expect("RecordingLinked", r.recording_id)

    # every consumer applied it once, and nothing accepted is missing from the services themselves
    token = mint_token(key, subject="auditor", unit=UNIT, roles=["UNIT_HEAD"], ttl_s=3600)
    not_applied: list[str] = []
    with (
        CaseClient.connect(case.grpc_address, token=token) as cases,
        MediaClient.connect(media.grpc_address, token=token) as recordings,
    ):
        for r in ledger.rounds:
            got = cases.cases.GetCase(api.GetCaseRequest(case_id=r.case_id)).case
            if [a.activity_id for a in got.activities] != [r.activity_id]:
                lost.append(f"activity of {r.case_id}")
            if [i.incident_id for i in got.incidents] != [r.incident_id]:
                lost.append(f"incident of {r.case_id}")
            if r.recording_id:
                links = [lk.recording_id for lk in got.recording_links]
                if links.count(r.recording_id) != 1:
                    not_applied.append(
                        f"{r.recording_id} linked {links.count(r.recording_id)}× in {r.case_id}"
                    )
                recordings.recordings.GetRecording(rpb.GetRecordingRequest(recording_id=r.recording_id))

    accepted = sum(ledger.accepted.values())
    _say("--- S1 figures ---")
    _say(f"commands accepted: {accepted} ({dict(ledger.accepted)}) in {load_s:.0f} s")
    _say(f"retries during outages (by status): {dict(ledger.retried)}")
    _say(f"events published: {len(records)} records, {len(by_id)} distinct ce_ids")
    _say(f"duplicates by ce_id (redelivered records): {duplicates}")
    _say(
        f"outbox drain time after the last restart: {drain_s:.1f} s (the load went on after it); "
        f"after the last accepted command: {drain_after_load_s:.1f} s"
    )
    _say(f"lost: {len(lost)}, applied twice or not at all: {len(not_applied)}, doubled: {len(doubled)}")
    assert accepted >= 4 * ROUNDS
    assert not lost, lost[:20]
    assert not doubled, doubled[:20]
    assert not not_applied, not_applied[:20]
