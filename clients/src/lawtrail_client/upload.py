"""Resumable upload of one file to media-svc (RecordingService.BeginUpload + UploadRecording).

BeginUpload tells where to (re)start: 0 for a new upload, the number of bytes the server already holds
for an interrupted one, or the stored recording when this content is already there. The stream then
sends a header and the remaining bytes in chunks. The upload counts as done only when the server's
answer confirms the SHA-256 the client computed — a caller may clear the source only then.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lawtrail.media.v1 import recording_pb2, recording_service_pb2

from lawtrail_client.client import MediaClient

CHUNK_BYTES = 1024 * 1024
# Deadline of an upload stream: this much plus the time the remaining bytes take at a slow 256 KiB/s.
UPLOAD_GRACE_S = 120.0
SLOWEST_RATE = 256 * 1024

Progress = Callable[[int, int], None]


class HashNotConfirmed(Exception):
    """The server answered a different SHA-256 than the client computed: the source must not be cleared."""


@dataclass(frozen=True)
class UploadResult:
    # The stored recording, as the server answered it.
    recording: recording_pb2.Recording
    # The content was already stored (identical earlier upload): nothing was sent.
    already_stored: bool
    # Offset the stream started at (> 0 when an interrupted upload was resumed).
    resumed_from: int
    # Bytes sent by this call.
    sent_bytes: int


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
            done += len(block)
            if progress:
                progress(done, size)
    return digest.hexdigest()


def upload_file(
    media: MediaClient,
    path: Path,
    classification: recording_pb2.Classification,
    *,
    sha256: str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    max_rate: float | None = None,
    progress: Progress | None = None,
    on_resume: Callable[[int, int], None] | None = None,
) -> UploadResult:
    """Uploads `path` (resuming where the server left off) and returns the confirmed recording.

    `max_rate` limits the rate in bytes per second (a station sharing a slow link). `progress(done, total)`
    is called as bytes are handed to gRPC; `on_resume(offset, total)` when the server already holds a prefix.
    Raises `lawtrail_client.errors.LawtrailError` for a refusal and `HashNotConfirmed` if the answer's
    hash differs from the local one.
    """
    size = path.stat().st_size
    sha = sha256 or sha256_file(path)
    manifest = recording_service_pb2.UploadManifest(
        classification=classification, sha256=sha, size_bytes=size
    )
    begin = media.recordings.BeginUpload(recording_service_pb2.BeginUploadRequest(manifest=manifest))
    if begin.HasField("recording"):
        _confirm(begin.recording, sha, path)
        if progress:
            progress(size, size)
        return UploadResult(begin.recording, already_stored=True, resumed_from=size, sent_bytes=0)
    offset = begin.resume_offset
    if not 0 <= offset <= size:
        raise ValueError(f"server answered resume offset {offset} for a file of {size} bytes ({path})")
    if offset and on_resume:
        on_resume(offset, size)
    chunk = max(1, min(chunk_bytes, begin.max_chunk_bytes or chunk_bytes))
    sent = [0]

    def requests() -> Iterator[recording_service_pb2.UploadRecordingRequest]:
        yield recording_service_pb2.UploadRecordingRequest(
            header=recording_service_pb2.UploadHeader(manifest=manifest, offset=offset)
        )
        started = time.monotonic()
        with path.open("rb") as f:
            f.seek(offset)
            while block := f.read(chunk):
                yield recording_service_pb2.UploadRecordingRequest(chunk=block)
                sent[0] += len(block)
                if progress:
                    progress(offset + sent[0], size)
                if max_rate:
                    ahead = sent[0] / max_rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)

    remaining = size - offset
    rate = min(max_rate, SLOWEST_RATE) if max_rate else SLOWEST_RATE
    response = media.recordings.UploadRecording(requests(), timeout=UPLOAD_GRACE_S + remaining / rate)
    _confirm(response.recording, sha, path)
    return UploadResult(
        response.recording, already_stored=response.already_stored, resumed_from=offset, sent_bytes=sent[0]
    )


def _confirm(recording: recording_pb2.Recording, sha: str, path: Path) -> None:
    if recording.sha256 != sha:
        raise HashNotConfirmed(
            f"{path}: the server confirmed SHA-256 {recording.sha256 or '(none)'} but the file's is {sha}; "
            "the file is kept and will be uploaded again"
        )
