"""media-svc benchmark: ingest, verified download and fixity scrub as ratios to bare baselines measured in
the same run on the same bytes (issue 4 "Tests and figures").

- ingest ÷ min(bare gRPC stream of the same bytes doing no work, raw write + fsync of the same bytes)
  target ≥ 0.7. Ingest = UploadRecording to the real media-svc: hash while receiving, write, fsync,
  ffprobe, metadata write with its RecordingIngested event — until the response confirms the hash.
- verified download ÷ raw single-core SHA-256 of the same bytes — target ≥ 0.25.
- fixity scrub ÷ `hashlib.file_digest` of the same stored files — target ≥ 0.8.

`main()` starts its own Kafka + FerretDB + media-svc on free ports in a temporary directory (never a stack
left running by `make run`), and prints the figures. Run: `make bench` or `python -m bench media`.
Options (environment): MEDIA_BENCH_MIB (content size, default 256), MEDIA_BENCH_REPEAT (paired runs,
default 7; each ratio is taken within a pair measured back to back, and the median is reported).
Before the pairs, one warm-up round of every operation and baseline is run and not counted (the first
upload also pays for the first database writes, the first ffprobe and connection set-up).
"""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.access.v1 import access_grant_pb2 as gpb
from lawtrail.media.v1 import recording_pb2 as rpb
from lawtrail.media.v1 import recording_service_pb2 as pb
from lawtrail.media.v1 import recording_service_pb2_grpc as pb_grpc
from lawtrail_local.ports import free_ports
from lawtrail_local.services import service_spec
from lawtrail_local.stack import Stack
from media_svc.adapters.access_grants import grant_message, mint_grant
from servicekit.auth.devtoken import ensure_dev_keys, mint_token

MIB = 1024 * 1024
CHUNK = MIB
TARGETS = {"ingest": 0.7, "download": 0.25, "scrub": 0.8}


def _ts(value: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(value)
    return t


def make_content(path: Path, mib: int) -> None:
    """A real video of about `mib` MiB: uncompressed frames in Matroska (fast to make, ffprobe reads it)."""
    frame = 1280 * 720 * 3 // 2
    frames = max(1, mib * MIB // frame)
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=25",
            "-frames:v", str(frames), "-c:v", "rawvideo", "-pix_fmt", "yuv420p", str(path),
        ],
        check=True,
        timeout=600,
    )  # fmt: skip


def variant(data: bytes, n: int) -> bytes:
    """The same bytes with a few pixel bytes changed: distinct content (no idempotent short-cut)."""
    b = bytearray(data)
    middle = len(b) // 2 + n * 4096
    b[middle : middle + 8] = n.to_bytes(8, "big")
    return bytes(b)


# ---------------------------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------------------------


def raw_sha256_s(data: bytes) -> float:
    view = memoryview(data)
    began = time.perf_counter()
    h = hashlib.sha256()
    for i in range(0, len(view), CHUNK):
        h.update(view[i : i + CHUNK])
    h.hexdigest()
    return time.perf_counter() - began


def raw_write_fsync_s(data: bytes, directory: Path) -> float:
    path = directory / f"raw-{time.monotonic_ns()}.bin"
    view = memoryview(data)
    began = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for i in range(0, len(view), CHUNK):
            os.write(fd, view[i : i + CHUNK])
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - began
    path.unlink()
    return elapsed


def file_digest_s(paths: list[Path]) -> float:
    began = time.perf_counter()
    for path in paths:
        with path.open("rb") as f:
            hashlib.file_digest(f, "sha256")
    return time.perf_counter() - began


BARE_SERVER = textwrap.dedent(
    """
    import asyncio, sys, grpc

    async def sink(request_iterator, context):
        n = 0
        async for chunk in request_iterator:
            n += len(chunk)
        return n.to_bytes(8, "big")

    async def main():
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 4 * 1024 * 1024)])
        handler = grpc.stream_unary_rpc_method_handler(sink)
        generic = grpc.method_handlers_generic_handler("bench.Sink", {"Put": handler})
        server.add_generic_rpc_handlers([generic])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        await server.wait_for_termination()

    asyncio.run(main())
    """
)


class BareStream:
    """A gRPC server in its own process that receives a client stream and does nothing with it."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", BARE_SERVER], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        port = int(self.process.stdout.readline())
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 4 * MIB)]
        )
        self.put: grpc.StreamUnaryMultiCallable[bytes, bytes] = self.channel.stream_unary("/bench.Sink/Put")

    def send_s(self, data: bytes) -> float:
        def chunks() -> Iterator[bytes]:
            # The same framing cost as an upload: a protobuf message around every chunk.
            for i in range(0, len(data), CHUNK):
                yield pb.UploadRecordingRequest(chunk=data[i : i + CHUNK]).SerializeToString()

        began = time.perf_counter()
        got = self.put(chunks(), timeout=600)
        elapsed = time.perf_counter() - began
        assert int.from_bytes(got, "big") > 0
        return elapsed

    def close(self) -> None:
        self.channel.close()
        self.process.kill()
        self.process.wait()


# ---------------------------------------------------------------------------------------------
# media-svc
# ---------------------------------------------------------------------------------------------


class MediaService:
    def __init__(self, stack: Stack, work: Path) -> None:
        self.data_dir = work / "data"
        private_pem = ensure_dev_keys(self.data_dir)[0].read_bytes()
        self.issuer = Ed25519PrivateKey.generate()
        grant_key = work / "grant-issuer.pem"
        grant_key.write_bytes(
            self.issuer.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        grpc_port, metrics_port = free_ports(2)
        self.process = stack.service(
            service_spec("media-svc"),
            run_dir=work,
            data_dir=self.data_dir,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
            env={
                "LAWTRAIL_MEDIA_GRANT_PUBLIC_KEYS": str(grant_key),
                "LAWTRAIL_MEDIA_SCRUB_INTERVAL_S": "0",
                "LAWTRAIL_LOG_LEVEL": "WARNING",
            },
        )
        self.process.start()
        self.process.wait_ready(120)
        self.channel = grpc.insecure_channel(
            self.process.grpc_address, options=[("grpc.max_receive_message_length", 4 * MIB)]
        )
        self.stub = pb_grpc.RecordingServiceStub(self.channel)

        def md(subject: str, unit: str, roles: list[str]) -> tuple[tuple[str, str | bytes], ...]:
            return (
                (
                    "authorization",
                    "Bearer " + mint_token(private_pem, subject=subject, unit=unit, roles=roles),
                ),
            )

        self.officer = md("bench-officer", "unit-bench", ["OFFICER"])
        self.reviewer = md("bench-reviewer", "legal", ["LEGAL_OFFICE"])
        self.archivist = md("bench-archivist", "unit-bench", ["ARCHIVIST"])

    def ingest_s(self, data: bytes, n: int) -> tuple[float, pb.UploadRecordingResponse]:
        start = datetime(2026, 6, 1, 9, 0, tzinfo=UTC) + timedelta(hours=n)
        manifest = pb.UploadManifest(
            classification=rpb.Classification(
                unit="unit-bench",
                device_number="CAM-BENCH",
                officer="bench-officer",
                recorded_from=_ts(start),
                recorded_to=_ts(start + timedelta(seconds=len(data) // (1280 * 720 * 3 // 2) / 25)),
                media_kind=rpb.MEDIA_KIND_VIDEO,
                party_informed=True,
            ),
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
        )

        def requests() -> Iterator[pb.UploadRecordingRequest]:
            yield pb.UploadRecordingRequest(header=pb.UploadHeader(manifest=manifest, offset=0))
            for i in range(0, len(data), CHUNK):
                yield pb.UploadRecordingRequest(chunk=data[i : i + CHUNK])

        began = time.perf_counter()
        response = self.stub.UploadRecording(requests(), metadata=self.officer, timeout=600)
        elapsed = time.perf_counter() - began
        assert response.recording.sha256 == manifest.sha256
        assert not response.already_stored
        return elapsed, response

    def download_s(self, recording: rpb.Recording) -> float:
        grant = mint_grant(
            self.issuer,
            grant_message(
                grant_id=f"bench-{time.monotonic_ns()}",
                grantee="bench-reviewer",
                recordings=[recording.recording_id],
                actions=[gpb.GRANTED_ACTION_DOWNLOAD],
                purpose="benchmark",
                approver="bench-head",
                expires_at=datetime.now(UTC) + timedelta(minutes=30),
            ),
        )
        request = pb.DownloadRecordingRequest(recording_id=recording.recording_id, access_grant=grant)
        began = time.perf_counter()
        received = 0
        for message in self.stub.DownloadRecording(request, metadata=self.reviewer, timeout=600):
            received += len(message.chunk)
        elapsed = time.perf_counter() - began
        assert received == recording.size_bytes
        return elapsed

    def scrub(self) -> pb.FixityScrubRun:
        run = self.stub.StartFixityScrub(pb.StartFixityScrubRequest(), metadata=self.archivist).run
        while True:
            status = self.stub.GetFixityScrubStatus(pb.GetFixityScrubStatusRequest(), metadata=self.archivist)
            last = status.last_finished
            if last.run_id == run.run_id and last.state == pb.FIXITY_SCRUB_STATE_FINISHED:
                return last
            time.sleep(0.05)

    def stored_paths(self) -> list[Path]:
        return sorted(p for p in (self.data_dir / "content" / "objects").rglob("*") if p.is_file())

    def close(self) -> None:
        self.channel.close()
        self.process.stop()


def _mbps(size: int, seconds: float) -> float:
    return size / MIB / seconds


def measure(stack: Stack, work: Path, mib: int, repeat: int, say: Callable[[str], None]) -> dict[str, float]:
    """Each figure is measured next to its baseline, in pairs, on the same bytes (this machine is shared:
    its speed drifts within seconds); the ratio of each pair is computed and the median and best kept."""
    content = work / "bench.mkv"
    say(f"making {mib} MiB of real video with ffmpeg…")
    make_content(content, mib)
    data = content.read_bytes()
    size = len(data)
    say(f"content: {size / MIB:.1f} MiB ({content.name}); starting media-svc…")
    load_start = os.getloadavg()[0]
    media = MediaService(stack, work)
    bare = BareStream()
    ingest_ratios, download_ratios, scrub_ratios = [], [], []
    speeds: dict[str, list[float]] = {
        k: [] for k in ("sha", "write", "bare", "ingest", "download", "digest", "scrub")
    }
    try:
        # Warm-up, not counted: a distinct variant (its recording is scrubbed with the others, and
        # the scrub baseline hashes the same stored files, so it stays fair).
        say("warm-up round (not counted)…")
        warm = variant(data, repeat)
        raw_write_fsync_s(warm, media.data_dir)
        bare.send_s(warm)
        raw_sha256_s(warm)
        media.download_s(media.ingest_s(warm, repeat)[1].recording)
        recordings: list[rpb.Recording] = []
        for n in range(repeat):
            same = variant(data, n)
            # Baselines just before and just after the ingest, averaged: fsync speed drifts quickly here.
            write_before, stream_before = raw_write_fsync_s(same, media.data_dir), bare.send_s(same)
            elapsed, response = media.ingest_s(same, n)
            write_after, stream_after = raw_write_fsync_s(same, media.data_dir), bare.send_s(same)
            write = (write_before + write_after) / 2
            stream = (stream_before + stream_after) / 2
            recordings.append(response.recording)
            # ÷ the slower baseline: throughput ratio = time of the slower baseline ÷ time of the ingest
            ingest_ratios.append(max(write, stream) / elapsed)
            speeds["write"].append(_mbps(size, write))
            speeds["bare"].append(_mbps(size, stream))
            speeds["ingest"].append(_mbps(size, elapsed))
            say(
                f"ingest {n + 1}/{repeat}: ratio {ingest_ratios[-1]:.2f} (ingest "
                f"{speeds['ingest'][-1]:.0f} MiB/s, write+fsync {speeds['write'][-1]:.0f}, "
                f"bare gRPC {speeds['bare'][-1]:.0f})"
            )
        for n, recording in enumerate(recordings):
            same = variant(data, n)
            sha_before = raw_sha256_s(same)
            download = media.download_s(recording)
            sha = (sha_before + raw_sha256_s(same)) / 2
            download_ratios.append(sha / download)
            speeds["sha"].append(_mbps(size, sha))
            speeds["download"].append(_mbps(size, download))
            say(
                f"download {n + 1}/{repeat}: ratio {download_ratios[-1]:.2f} (download "
                f"{speeds['download'][-1]:.0f} MiB/s, SHA-256 {speeds['sha'][-1]:.0f})"
            )
        # The scrub and its baseline re-hash the same stored files, both with a warm page cache.
        paths = media.stored_paths()
        total = sum(p.stat().st_size for p in paths)
        for n in range(repeat):
            digest_before = file_digest_s(paths)
            run = media.scrub()
            digest = (digest_before + file_digest_s(paths)) / 2
            assert run.failures == 0
            assert run.bytes_checked == total
            scrub = (run.finished_at.ToDatetime() - run.started_at.ToDatetime()).total_seconds()
            scrub_ratios.append(digest / scrub)
            speeds["digest"].append(_mbps(total, digest))
            speeds["scrub"].append(_mbps(total, scrub))
            say(
                f"scrub {n + 1}/{repeat}: ratio {scrub_ratios[-1]:.2f} (scrub "
                f"{speeds['scrub'][-1]:.0f} MiB/s, file_digest {speeds['digest'][-1]:.0f})"
            )
    finally:
        bare.close()
        media.close()
    f = {
        "size_mib": size / MIB,
        "repeat": float(repeat),
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
    }
    for name, values in speeds.items():
        f[f"{name}_mbps"] = statistics.median(values)
    for name, ratios in (("ingest", ingest_ratios), ("download", download_ratios), ("scrub", scrub_ratios)):
        f[f"{name}_ratio"] = statistics.median(ratios)
        f[f"{name}_ratio_best"] = max(ratios)
    return f


def report(f: dict[str, float]) -> str:
    def line(name: str, text: str) -> str:
        verdict = "ok" if f[f"{name}_ratio"] >= TARGETS[name] else "BELOW TARGET"
        return (
            f"  {text:<38} = {f[f'{name}_ratio']:.2f} median, {f[f'{name}_ratio_best']:.2f} best "
            f"(target ≥ {TARGETS[name]})  {verdict}"
        )

    return "\n".join(
        [
            f"media-svc benchmark — {f['size_mib']:.0f} MiB of real video, "
            f"{f['repeat']:.0f} paired runs after a warm-up, medians "
            f"(load average {f['load_start']:.1f} → {f['load_end']:.1f} on {os.cpu_count()} cores)",
            f"  raw SHA-256 (1 core)          {f['sha_mbps']:8.0f} MiB/s",
            f"  raw write + fsync             {f['write_mbps']:8.0f} MiB/s",
            f"  bare gRPC client stream       {f['bare_mbps']:8.0f} MiB/s",
            f"  ingest (UploadRecording)      {f['ingest_mbps']:8.0f} MiB/s",
            f"  verified download             {f['download_mbps']:8.0f} MiB/s",
            f"  hashlib.file_digest           {f['digest_mbps']:8.0f} MiB/s",
            f"  fixity scrub                  {f['scrub_mbps']:8.0f} MiB/s",
            line("ingest", "ingest ÷ min(bare gRPC, write+fsync)"),
            line("download", "verified download ÷ SHA-256"),
            line("scrub", "scrub ÷ hashlib.file_digest"),
        ]
    )


def main() -> None:
    mib = int(os.environ.get("MEDIA_BENCH_MIB", "256"))
    repeat = int(os.environ.get("MEDIA_BENCH_REPEAT", "7"))

    def say(text: str) -> None:
        print(f"[media-bench] {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="media-bench-") as tmp:
        work = Path(tmp)
        stack = Stack.for_benchmark(work / "stack", progress=say)
        say("starting Kafka + FerretDB on free ports…")
        stack.start()
        try:
            figures = measure(stack, work, mib, repeat, say)
        finally:
            stack.stop()
    print(report(figures), flush=True)


if __name__ == "__main__":
    main()
