"""The example notifier (examples/notifier) on the kafka-python event SDK, end to end: media-svc and
compliance-svc on the real stack raise a serious finding (R20: a recording from an unregistered device)
and an integrity failure (R23-2: a flipped byte found by the fixity scrub); the notifier mails the legal
affairs office, and the mails arrive in a real SMTP server (aiosmtpd) started by this test.

Also: a poison record is dead-lettered and skipped, and a restarted notifier resumes where it
committed (no mail twice)."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import grpc
import pytest
from aiosmtpd.controller import Controller
from google.protobuf.timestamp_pb2 import Timestamp
from kafka import KafkaConsumer, KafkaProducer
from lawtrail.media.v1 import recording_pb2 as rpb
from lawtrail.media.v1 import recording_service_pb2 as mpb
from lawtrail.media.v1 import recording_service_pb2_grpc as mpb_grpc
from lawtrail_local.kafka_probe import lag_now
from lawtrail_local.ports import free_ports
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.stack import Stack
from lawtrail_local.topics import Topic, create_topics
from servicekit.auth.devtoken import ensure_dev_keys, mint_token

NOTIFIER = Path(__file__).resolve().parents[3] / "examples" / "notifier" / "notifier.py"
sys.path.insert(0, str(NOTIFIER.parent))

import notifier  # noqa: E402

pytestmark = pytest.mark.integration


class Inbox:
    """aiosmtpd handler: keeps every message it receives."""

    def __init__(self) -> None:
        self.mails: list[Message] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.mails.append(message_from_bytes(envelope.original_content))  # type: ignore[attr-defined]
        return "250 Message accepted for delivery"

    def subjects(self) -> list[str]:
        # Long subjects are folded over lines by the mail format: unfold them.
        return [" ".join(str(m["Subject"]).split()) for m in self.mails]

    def event_keys(self) -> list[str]:
        """(ce_source, ce_id) of the event behind each mail, from the footer every mail carries."""
        keys = []
        for mail in self.mails:
            body = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
            found = re.search(r"^event (\S+) from (\S+) at ", body, re.MULTILINE)
            assert found, f"mail without an event footer: {body!r}"
            keys.append(f"{found[2]} {found[1]}")
        return keys


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    (port,) = free_ports(1)
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def stamp(value: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(value)
    return t


def upload(address: str, token: str, unit: str, data: bytes, device: str) -> rpb.Recording:
    start = datetime.now(UTC) - timedelta(minutes=5)
    manifest = mpb.UploadManifest(
        classification=rpb.Classification(
            unit=unit,
            device_number=device,
            officer="officer-9",
            recorded_from=stamp(start),
            recorded_to=stamp(start + timedelta(seconds=2)),
            media_kind=rpb.MEDIA_KIND_VIDEO,
            party_informed=True,
            case_id="case-notifier",
        ),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )
    requests = [
        mpb.UploadRecordingRequest(header=mpb.UploadHeader(manifest=manifest, offset=0)),
        mpb.UploadRecordingRequest(chunk=data),
    ]
    with grpc.insecure_channel(address) as channel:
        return (
            mpb_grpc.RecordingServiceStub(channel)
            .UploadRecording(iter(requests), metadata=(("authorization", f"Bearer {token}"),), timeout=60)
            .recording
        )


def video(path: Path, tag: str) -> bytes:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=2:size=160x120:rate=10",
         "-vf", "noise=alls=40:allf=t+u", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast",
         "-metadata", f"title={tag}", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path.read_bytes()


def eventually(check: Callable[[], bool], what: Callable[[], str], within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"not within {within_s} s: {what()}")


def caught_up(bootstrap: str, group_id: str, topics: list[str]) -> Callable[[], bool]:
    """True once `group_id` has committed every partition of `topics` up to its end offset: the SDK
    commits only after the handler returned, so every record there was then has been mailed."""
    return lambda: lag_now(bootstrap, group_id, topics) == 0


class Running:
    """The notifier as its own process (`python examples/notifier/notifier.py`), stopped with SIGTERM."""

    def __init__(self, settings: notifier.Settings, log: Path) -> None:
        env = {
            **os.environ,
            "LAWTRAIL_KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "NOTIFIER_GROUP_ID": settings.group_id,
            "NOTIFIER_SMTP_HOST": settings.smtp_host,
            "NOTIFIER_SMTP_PORT": str(settings.smtp_port),
            "NOTIFIER_MAIL_TO": settings.mail_to,
            "NOTIFIER_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
            "NOTIFIER_DEBUG_LOGGERS": "lawtrail_client.events",
        }
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, str(NOTIFIER)], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(30) == 0, self.log.read_text()[-3000:]


def test_notifier_mails_integrity_failures_and_serious_findings_only(
    stack: Stack, tmp_path: Path, smtp: tuple[Inbox, int]
) -> None:
    inbox, smtp_port = smtp
    starter = ServiceStarter(stack, tmp_path / "svc")
    private = ensure_dev_keys(starter.data_dir)[0].read_bytes()
    unit = f"unit-{uuid.uuid4().hex[:8]}"
    dlq = f"notifier-it-{uuid.uuid4().hex[:8]}.dlq"
    create_topics(stack.kafka_bootstrap, [Topic(dlq, 1)])
    settings = notifier.Settings(
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=f"notifier-it-{uuid.uuid4().hex[:8]}",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        mail_to="legal-office@example.org",
        dead_letter_topic=dlq,
    )
    try:
        media = starter("media-svc", env={"LAWTRAIL_MEDIA_SCRUB_INTERVAL_S": "0"})
        starter(
            "compliance-svc",
            env={"LAWTRAIL_COMPLIANCE_APP_ID": f"compliance-nt-{uuid.uuid4().hex[:8]}"},
        )
        officer = mint_token(private, subject="officer-9", unit=unit, roles=["OFFICER"])
        archivist = mint_token(private, subject="arch-1", unit=unit, roles=["ARCHIVIST"])

        # A poison record on a topic the notifier reads: it must be dead-lettered, not block the rest.
        # Its value names this test: the media topic is shared with the other tests (and their junk).
        junk = b"\x00not an event from " + unit.encode()
        producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
        sent = producer.send("lawtrail.media.v1.events", key=b"junk", value=junk).get(30)
        producer.close()

        running = Running(settings, tmp_path / "notifier.log")
        # R20: an unregistered device → a SERIOUS finding from compliance-svc → one mail.
        recording = upload(
            media.grpc_address, officer, unit, video(tmp_path / "a.mp4", "a"), f"CAM-UNREG-{unit}"
        )
        eventually(
            lambda: any(f"serious finding in {unit}" in s for s in inbox.subjects()),
            lambda: f"a mail about the serious finding in {unit}; got {inbox.subjects()}",
        )
        running.stop()

        # While the notifier is down: an integrity failure (flip a byte, run the fixity scrub).
        objects = [
            p for p in (starter.data_dir / "content" / "objects").rglob("*") if p.name == recording.sha256
        ]
        os.chmod(objects[0], 0o644)
        with objects[0].open("r+b") as f:
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 1]))
        with grpc.insecure_channel(media.grpc_address) as channel:
            mpb_grpc.RecordingServiceStub(channel).StartFixityScrub(
                mpb.StartFixityScrubRequest(),
                metadata=(("authorization", f"Bearer {archivist}"),),
                timeout=30,
            )
        before = list(inbox.subjects())

        # Restarted with the same group: resumes after its commit — the integrity mail, nothing repeated.
        running = Running(settings, tmp_path / "notifier.log")
        eventually(
            lambda: any(f"recording {recording.recording_id}" in s for s in inbox.subjects()),
            lambda: f"a mail about the integrity failure; got {inbox.subjects()}",
        )
        # The integrity failure also becomes a SERIOUS R23-2 finding in compliance-svc: mailed too.
        eventually(
            lambda: any(f"[Lawtrail R23-2] serious finding in {unit}" in s for s in inbox.subjects()),
            lambda: f"a mail about the R23-2 finding; got {inbox.subjects()}",
        )
        # Let the restarted notifier work through everything on its topics (committed up to the end),
        # so a repeated mail would have been sent by now.
        topics = notifier.build(settings, send=lambda subject, body: None).topics
        eventually(
            caught_up(stack.kafka_bootstrap, settings.group_id, topics),
            lambda: f"group {settings.group_id} committed up to the end of {topics}",
            within_s=180,  # the replayed backlog of a full run on a loaded machine; returns once true
        )
        running.stop()
        after = inbox.subjects()[len(before) :]
        # The topics are shared with the other integration tests, and this test's compliance-svc (a new
        # app id) replays the whole media topic: it raises new R20 findings about other tests' units
        # (e.g. unit-a) whenever it gets to them, also while the notifier is down. Those are new events,
        # mailed once each after the restart. A mail sent twice is the same event (source, id) twice.
        r20_here = f"[Lawtrail R20] serious finding in {unit}"
        assert [s for s in after if r20_here in s] == [], "the R20 mail was sent again after the restart"
        assert len([s for s in inbox.subjects() if r20_here in s]) == 1
        repeated = [key for key, n in Counter(inbox.event_keys()).items() if n > 1]
        assert repeated == [], f"events mailed more than once (across the restart): {repeated}"
        assert len([s for s in inbox.subjects() if recording.recording_id in s]) == 1
        # Minor findings are not mailed; every mail went to the legal affairs office.
        assert all("R19b" not in s and "R11a" not in s for s in inbox.subjects())
        assert {m["To"] for m in inbox.mails} == {"legal-office@example.org"}
        # The poison record was reported once, by the first run only (then committed).
        where = f"{sent.topic}[{sent.partition}]@{sent.offset}"
        assert (tmp_path / "notifier.log").read_text().count(f"skipped poison message {where}:") == 1

        dead = KafkaConsumer(
            dlq,
            bootstrap_servers=stack.kafka_bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=5000,
        )
        records = [r for r in dead if r.value == junk]
        dead.close()
        assert len(records) == 1, f"{len(records)} copies of the poison record in {dlq}"
        headers = dict(records[0].headers)
        assert b"missing header" in headers["lawtrail_error"]
        assert headers["lawtrail_origin"] == f"{sent.topic}/{sent.partition}/{sent.offset}".encode()
    finally:
        starter.stop_all()
