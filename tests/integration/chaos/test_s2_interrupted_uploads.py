"""S2 — interrupted uploads (`make chaos`): 100 uploads cut at random offsets, nothing partial visible.

Each upload is cut at a random byte offset in one of three ways, a third each:
- client killed: a separate client process SIGKILLs itself once that many bytes were handed to gRPC;
- server killed: media-svc is SIGKILLed at that point (and restarted);
- connection dropped: the client abandons the stream at that point (the call is cancelled).

Right after the cut, nothing of the upload may be visible anywhere: no recording with its SHA-256 in
the database, no object of it in the content store, and (checked at the end for all) no
RecordingIngested for it on the topic. Then half of them are resumed with the SDK's `upload_file`,
which asks the server where to continue, and must complete with the declared SHA-256 (stored once);
the other half must stay cleanly absent.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lawtrail.media.v1 import recording_pb2
from lawtrail_client import MediaClient
from lawtrail_client.errors import LawtrailError
from lawtrail_client.upload import upload_file
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

UPLOADS = int(os.environ.get("LAWTRAIL_CHAOS_UPLOADS", "100"))
UNIT = "unit-s2"
PADDING = 3 * 1024 * 1024  # three 1 MiB chunks and more: cuts land between and inside chunks
MODES = ("client killed", "server killed", "connection dropped")

_CLIENT = """
import os, signal, sys
from pathlib import Path
from lawtrail.media.v1 import recording_pb2
from lawtrail_client import MediaClient
from lawtrail_client.upload import upload_file
address, token, path, cut, classification = sys.argv[1:6]
def progress(done, total):
    if done >= int(cut):
        os.kill(os.getpid(), signal.SIGKILL)  # the client dies mid-upload, no cleanup
with MediaClient.connect(address, token=token, retries=0) as media:
    upload_file(media, Path(path), recording_pb2.Classification.FromString(bytes.fromhex(classification)),
                progress=progress)
print("completed before the cut", flush=True)
"""


class Cut(Exception):
    """Raised from the progress callback: the client walks away from the stream."""


def _say(line: str) -> None:
    print(f"chaos S2: {line}", flush=True)


def _classification(n: int) -> recording_pb2.Classification:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1, seconds=n)
    c = recording_pb2.Classification(
        unit=UNIT,
        device_number="CAM-S2-1",
        officer="alice",
        party="Acme Ltd",
        case_cause="inspection",
        media_kind=recording_pb2.MEDIA_KIND_VIDEO,
        party_informed=True,
    )
    c.recorded_from.FromDatetime(start)
    c.recorded_to.FromDatetime(start + timedelta(seconds=1))
    return c


def _intact(media: ServiceProcess, sha: str) -> bool:
    """Whether the committed object of `sha` holds exactly the content that hashes to it."""
    objects = media.data_dir / "content" / "objects"
    found = [p for p in objects.rglob(sha) if p.is_file()] if objects.exists() else []
    return len(found) == 1 and hashlib.sha256(found[0].read_bytes()).hexdigest() == sha


def _visible(stack: Stack, media: ServiceProcess, sha: str) -> list[str]:
    """Where an upload with this SHA-256 can be seen: recordings in the database, committed objects."""
    seen = []
    client: MongoClient[dict[str, Any]] = MongoClient(stack.mongo_uri)
    try:
        db = client[media.env["LAWTRAIL_MONGO_DATABASE"]]
        for name in db.list_collection_names():
            if name.startswith("recordings") and db[name].count_documents({"sha256": sha}):
                seen.append(f"database collection {name}")
    finally:
        client.close()
    objects = media.data_dir / "content" / "objects"
    if objects.exists() and any(p.name.startswith(sha) for p in objects.rglob("*") if p.is_file()):
        seen.append("content store objects/")
    return seen


async def _ingested(bootstrap: str) -> tuple[Counter[str], dict[str, set[str]]]:
    """Per recording id: RecordingIngested records on the topic, and their distinct ce_ids."""
    subjects: Counter[str] = Counter()
    ids: dict[str, set[str]] = {}
    for record in await read_from_start(bootstrap, ["lawtrail.media.v1.events"]):
        envelope = decode(record)
        if envelope.type.endswith("RecordingIngested"):
            subjects[envelope.subject] += 1
            ids.setdefault(envelope.subject, set()).add(envelope.id)
    return subjects, ids


@pytest.fixture
def media(stack: Stack, tmp_path: Path) -> Iterator[tuple[ServiceProcess, bytes]]:
    starter = ServiceStarter(stack, tmp_path / "svc")
    private, _ = ensure_dev_keys(starter.data_dir)
    try:
        yield starter("media-svc"), private.read_bytes()
    finally:
        starter.stop_all()


def test_s2_uploads_cut_at_random_offsets_resume_or_stay_absent(
    stack: Stack, media: tuple[ServiceProcess, bytes], tmp_path: Path
) -> None:
    service, key = media
    token = mint_token(key, subject="station-1", unit=UNIT, roles=["OFFICER"], ttl_s=7200)
    base = tmp_path / "base.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=1:size=160x120:rate=10",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-movflags", "+faststart",
         str(base)],
        check=True, timeout=60,
    )  # fmt: skip
    rng = random.Random(int(os.environ.get("LAWTRAIL_CHAOS_SEED", "8")))
    outcome: Counter[str] = Counter()
    problems: list[str] = []
    resumed_from: list[int] = []
    completed: dict[str, str] = {}  # sha -> recording id
    abandoned: set[str] = set()
    began = time.monotonic()

    for n in range(UPLOADS):
        mode = MODES[n % 3]
        path = tmp_path / f"clip-{n}.mp4"
        path.write_bytes(base.read_bytes() + rng.randbytes(PADDING) + uuid.uuid4().bytes)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        size = path.stat().st_size
        cut = rng.randrange(1, size)
        classification = _classification(n)

        if mode == "client killed":
            done = subprocess.run(
                [sys.executable, "-c", _CLIENT, service.grpc_address, token, str(path), str(cut),
                 classification.SerializeToString().hex()],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            if done.returncode != -signal.SIGKILL:
                problems.append(f"#{n} client did not die at the cut: {done.returncode} {done.stderr[-300:]}")
        else:
            with MediaClient.connect(service.grpc_address, token=token, retries=0) as client:
                killed = threading.Event()

                def progress(sent: int, total: int, cut: int = cut, mode: str = mode) -> None:
                    if sent < cut:
                        return
                    if mode == "server killed" and not killed.is_set():  # noqa: B023 - used at once
                        killed.set()  # noqa: B023
                        service.kill()
                    elif mode == "connection dropped":
                        raise Cut

                try:
                    upload_file(client, path, classification, progress=progress)
                    problems.append(f"#{n} {mode}: the upload completed although it was cut at {cut}")
                except (Cut, LawtrailError):
                    pass
            if mode == "server killed":
                service.restart(120)
        outcome[mode] += 1

        seen = _visible(stack, service, sha)
        whole = seen == ["database collection recordings", "content store objects/"] and _intact(service, sha)
        if seen and not whole:
            problems.append(f"#{n} {mode} cut at {cut}/{size}: partial upload visible in {seen}")
        if whole:
            # The last chunk reached the server and was committed before the cut took effect (the
            # progress callback runs as bytes are handed over): a whole recording, not a partial one.
            outcome["committed before the cut"] += 1

        if n % 2 == 0 or whole:  # resume this one to completion
            with MediaClient.connect(service.grpc_address, token=token) as client:
                result = upload_file(client, path, classification)
            if result.recording.sha256 != sha:
                problems.append(f"#{n} resumed to another hash {result.recording.sha256}")
            resumed_from.append(result.resumed_from)
            completed[sha] = result.recording.recording_id
            if _visible(stack, service, sha) != [
                "database collection recordings",
                "content store objects/",
            ] or not _intact(service, sha):
                problems.append(f"#{n} completed but seen as {_visible(stack, service, sha)}")
        else:
            abandoned.add(sha)
        path.unlink()
        if (n + 1) % 10 == 0:
            _say(f"{n + 1} uploads cut ({dict(outcome)}), {len(problems)} problems")

    time.sleep(3)  # let the relay publish the last ingests
    for sha in abandoned:
        seen = _visible(stack, service, sha)
        if seen:
            problems.append(f"abandoned upload {sha[:12]} became visible in {seen}")
    ingested, ingested_ids = asyncio.run(_ingested(stack.kafka_bootstrap))
    for recording_id in completed.values():
        found = len(ingested_ids.get(recording_id, ()))
        if found != 1:
            problems.append(f"completed {recording_id} has {found} RecordingIngested ce_ids")

    resumed_mid = sum(1 for offset in resumed_from if offset > 0)
    _say("--- S2 figures ---")
    cuts = sum(outcome[m] for m in MODES)
    _say(f"uploads cut: {cuts} ({dict(outcome)}) in {time.monotonic() - began:.0f} s")
    _say(f"resumed to completion: {len(completed)} (from a server offset > 0: {resumed_mid})")
    _say(f"left cleanly absent: {len(abandoned)}")
    distinct = sum(len(v) for v in ingested_ids.values())
    _say(
        f"RecordingIngested: {sum(ingested.values())} records, {distinct} distinct ce_ids, for "
        f"{len(completed)} completed uploads (records beyond the ce_ids are at-least-once redeliveries)"
    )
    _say(f"problems: {len(problems)}")
    assert not problems, "\n".join(problems[:20])
    assert resumed_mid > 0, "no upload resumed from a server-side offset: the cuts did not test resumption"
