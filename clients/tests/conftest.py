"""A small in-process RecordingService for the client's unit tests (the real one is exercised by
tests/integration/media/test_station_agent.py). It follows the published contract: resumable upload
sessions keyed by SHA-256, BeginUpload answers the offset it holds, the upload is stored only when all
bytes arrived and the hash matches, and the answer confirms the stored hash."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from lawtrail.media.v1 import recording_pb2, recording_service_pb2, recording_service_pb2_grpc
from lawtrail_client.client import MediaClient

TOKEN = "good-token"


class FakeRecordingService(recording_service_pb2_grpc.RecordingServiceServicer):
    def __init__(self) -> None:
        self.stored: dict[str, recording_pb2.Recording] = {}
        self.content: dict[str, bytes] = {}
        self.partial: dict[str, bytearray] = {}
        self.lock = threading.Lock()
        # Abort the stream with UNAVAILABLE once this many bytes of it were received (then reset to None).
        self.drop_after: int | None = None
        # Refuse every upload with INVALID_ARGUMENT and this message.
        self.refuse: str | None = None
        self.begin_calls = 0
        # Answer this many uploads with ABORTED (a dead stream of the same content still open).
        self.aborted_uploads = 0
        self.unavailable_begins = 0

    def _auth(self, context: grpc.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata())
        if metadata.get("authorization") != f"Bearer {TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "bearer token is not valid")

    def BeginUpload(
        self, request: recording_service_pb2.BeginUploadRequest, context: grpc.ServicerContext
    ) -> recording_service_pb2.BeginUploadResponse:
        self._auth(context)
        self.begin_calls += 1
        if self.unavailable_begins:
            self.unavailable_begins -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        sha = request.manifest.sha256
        with self.lock:
            if sha in self.stored:
                return recording_service_pb2.BeginUploadResponse(recording=self.stored[sha])
            held = len(self.partial.get(sha, b""))
        return recording_service_pb2.BeginUploadResponse(resume_offset=held, max_chunk_bytes=256 * 1024)

    def UploadRecording(
        self,
        request_iterator: Iterator[recording_service_pb2.UploadRecordingRequest],
        context: grpc.ServicerContext,
    ) -> recording_service_pb2.UploadRecordingResponse:
        self._auth(context)
        header = next(request_iterator).header
        manifest = header.manifest
        sha = manifest.sha256
        if self.refuse:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, self.refuse)
        if self.aborted_uploads:
            self.aborted_uploads -= 1
            context.abort(grpc.StatusCode.ABORTED, "another upload of this content is in progress")
        with self.lock:
            if sha in self.stored:
                return recording_service_pb2.UploadRecordingResponse(
                    recording=self.stored[sha], already_stored=True
                )
            buffer = self.partial.setdefault(sha, bytearray())
        if header.offset != len(buffer):
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"resume at {len(buffer)}, not {header.offset}"
            )
        received = 0
        for message in request_iterator:
            buffer.extend(message.chunk)
            received += len(message.chunk)
            if self.drop_after is not None and received >= self.drop_after:
                self.drop_after = None
                context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost")
        if len(buffer) != manifest.size_bytes:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "stream ended early: resume")
        actual = hashlib.sha256(buffer).hexdigest()
        if actual != sha:
            del self.partial[sha]
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"SHA-256 mismatch: declared {sha}, received {actual}"
            )
        recording = recording_pb2.Recording(
            recording_id=uuid.uuid4().hex,
            sha256=actual,
            size_bytes=len(buffer),
            classification=manifest.classification,
        )
        with self.lock:
            self.stored[sha] = recording
            self.content[sha] = bytes(buffer)
            del self.partial[sha]
        return recording_service_pb2.UploadRecordingResponse(recording=recording)


@pytest.fixture
def fake_media(tmp_path: Path) -> Iterator[tuple[FakeRecordingService, str]]:
    service = FakeRecordingService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    recording_service_pb2_grpc.add_RecordingServiceServicer_to_server(service, server)
    address = f"unix:{tmp_path / 'media.sock'}"
    server.add_insecure_port(address)
    server.start()
    try:
        yield service, address
    finally:
        server.stop(grace=None)


@pytest.fixture
def media(fake_media: tuple[FakeRecordingService, str]) -> Iterator[MediaClient]:
    with MediaClient.connect(fake_media[1], token=TOKEN, timeout_s=5, retries=2) as client:
        yield client
