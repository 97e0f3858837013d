"""The access chapter of `make run`'s guided tour (R16, R23-3), against a running local stack:

1. an officer uploads a short recording (made with ffmpeg) to media-svc;
2. a colleague's download without a grant is refused;
3. the colleague asks access-svc for access — approving their own request is refused — and the unit head
   approves;
4. the download with the grant succeeds, its SHA-256 matches;
5. the access (media-svc's ContentAccessed) is found in the audit ledger, exported with its inclusion
   proof and a signed checkpoint, and verified offline against access-svc's public key — the same check
   `lawtrail verify` runs.

Every step prints what it did; a failure raises StackError naming the step.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import grpc  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.access.v1 import access_grant_pb2 as gpb
from lawtrail.access.v1 import access_service_pb2 as api
from lawtrail.access.v1 import ledger_service_pb2 as lpb
from lawtrail.media.v1 import recording_pb2, recording_service_pb2
from lawtrail_client import AccessClient, LawtrailError, MediaClient, upload_file
from lawtrail_client.verify import ENTRY_FORMAT, Checkpoint, load_keys, verify_entry
from servicekit.auth.devtoken import mint_token

from lawtrail_local.errors import StackError

T = TypeVar("T")
UNIT = "unit-demo"


def _say(text: str) -> None:
    print(text, flush=True)


def _video(path: Path) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=2:size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-preset", "ultrafast", "-c:a", "aac", "-shortest", "-metadata", f"title=tour-{time.time_ns()}",
         str(path)],
        check=True,
        timeout=120,
    )  # fmt: skip
    return path


def _ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


def _retry(action: Callable[[], T], what: str, timeout_s: float = 30.0) -> T:
    """Retries while the answer is FAILED_PRECONDITION / NOT_FOUND: an event not consumed yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return action()
        except LawtrailError as error:
            code = error.code()
            if code not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                raise
            if time.monotonic() > deadline:
                raise StackError(f"{what}: still {code.name} after {timeout_s:.0f} s: {error}") from None
        time.sleep(0.2)


def _download(media: MediaClient, recording_id: str, grant: str) -> bytes:
    stream = media.recordings.DownloadRecording(
        recording_service_pb2.DownloadRecordingRequest(recording_id=recording_id, access_grant=grant)
    )
    return b"".join(m.chunk for m in stream if m.WhichOneof("part") == "chunk")


def access_tour(
    media_address: str, access_address: str, private_key_pem: bytes, grant_public_key: Path
) -> str:
    """Runs the chapter; returns the id of the ledger entry's event (ContentAccessed)."""
    _say("")
    _say("Chapter 3 — access (R16, R23-3): viewing needs another person's approval and leaves a trace")

    def token(subject: str, roles: list[str], unit: str = UNIT) -> str:
        return mint_token(private_key_pem, subject=subject, unit=unit, roles=roles, ttl_s=600)

    officer = token("officer-demo", ["OFFICER"])
    # The requester is a unit head too: refusing their self-approval is the R16 rule, not a missing role.
    deputy = token("deputy-demo", ["OFFICER", "UNIT_HEAD"])
    head = token("head-demo", ["UNIT_HEAD"])
    legal = token("legal-demo", ["LEGAL_OFFICE"], unit="legal-office")
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as tmp:
        video = _video(Path(tmp) / "tour.mp4")
        classification = recording_pb2.Classification(
            unit=UNIT,
            device_number="CAM-DEMO-1",
            officer="officer-demo",
            recorded_from=_ts(now - timedelta(minutes=5)),
            recorded_to=_ts(now - timedelta(minutes=5) + timedelta(seconds=2)),
            party="Demo Property Management Ltd",
            case_cause="Fire-safety inspection",
            media_kind=recording_pb2.MEDIA_KIND_VIDEO,
            party_informed=True,
        )
        with MediaClient.connect(media_address, token=officer) as media:
            recording = upload_file(media, video, classification).recording
    rid = recording.recording_id
    _say(f"3.1 officer-demo uploaded recording {rid} (SHA-256 {recording.sha256[:16]}…) to media-svc")

    with (
        MediaClient.connect(media_address, token=deputy) as media_deputy,
        AccessClient.connect(access_address, token=deputy) as access_deputy,
        AccessClient.connect(access_address, token=head) as access_head,
        AccessClient.connect(access_address, token=legal) as access_legal,
    ):
        try:
            _download(media_deputy, rid, "")
            raise StackError("step 5: media-svc released a recording without a grant")
        except LawtrailError as error:
            _say(f"3.2 deputy-demo's download without a grant was refused: {error}")

        duration = Duration()
        duration.FromTimedelta(timedelta(minutes=10))
        request = access_deputy.access.RequestAccess(
            api.RequestAccessRequest(
                resources=[gpb.GrantResource(kind=gpb.GRANT_RESOURCE_KIND_RECORDING, id=rid)],
                actions=[gpb.GRANTED_ACTION_DOWNLOAD],
                purpose="Prepare the reconsideration hearing",
                duration=duration,
            )
        ).request
        _say(f"3.3 deputy-demo asked access-svc for access: request {request.request_id} (PENDING)")
        decide = api.DecideAccessRequestRequest(
            request_id=request.request_id, decision=api.ACCESS_DECISION_APPROVE, reason="Hearing on Monday"
        )
        try:
            _retry(lambda: access_deputy.access.DecideAccessRequest(decide), "self-approval")
            raise StackError("step 7: access-svc let the requester approve their own request")
        except LawtrailError as error:
            _say(f"3.4 deputy-demo approving their own request was refused: {error}")
        approved = _retry(lambda: access_head.access.DecideAccessRequest(decide), "approval").request
        until = approved.grant_expires_at.ToJsonString()
        _say(f"3.5 head-demo approved it: grant {approved.grant_id}, valid until {until}")
        grant = access_deputy.access.GetAccessRequest(
            api.GetAccessRequestRequest(request_id=request.request_id)
        ).request.grant_token
        content = _download(media_deputy, rid, grant)
        if hashlib.sha256(content).hexdigest() != recording.sha256:
            raise StackError("step 9: the downloaded content does not match the recording's SHA-256")
        _say(f"3.6 deputy-demo downloaded {len(content)} bytes with the grant; SHA-256 matches")

        # media-svc's ContentAccessed reaches the ledger through Kafka: find it by its subject's entry.
        entry = _retry(lambda: _find_access(access_legal, rid), "the access in the ledger", timeout_s=60)
        checkpoint = access_legal.ledger.SignCheckpoint(lpb.SignCheckpointRequest()).checkpoint
        proof = access_legal.ledger.GetInclusionProof(
            lpb.GetInclusionProofRequest(leaf_index=entry[0], tree_size=checkpoint.tree_size)
        )
    ms = checkpoint.signed_at.seconds * 1000 + checkpoint.signed_at.nanos // 1_000_000
    exported = {
        "format": ENTRY_FORMAT,
        "leaf_index": entry[0],
        "leaf": base64.b64encode(entry[1]).decode(),
        "checkpoint": Checkpoint(
            checkpoint.origin,
            checkpoint.tree_size,
            checkpoint.root_hash,
            ms,
            checkpoint.key_id,
            checkpoint.signature,
        ).to_json(),
        "inclusion_proof": [base64.b64encode(p).decode() for p in proof.proof],
    }
    report = verify_entry(exported, load_keys([grant_public_key]))
    leaf = lpb.LedgerLeaf.FromString(report.leaf)
    _say(
        f"3.7 the access is ledger entry {report.leaf_index} of {report.tree_size}; verified offline against "
        f"access-svc's public key ({grant_public_key.name}): {leaf.ce_type} {leaf.ce_id}"
    )
    _say(
        "    (the same check from files: `uv run lawtrail ledger export-entry …`, "
        "then `uv run lawtrail verify`)"
    )
    return leaf.ce_id


def _find_access(client: AccessClient, recording_id: str) -> tuple[int, bytes]:
    """The newest ledger entry that is a ContentAccessed of `recording_id`, found through the ledger's
    index of subjects. (Not by scanning back from the head: every lookup is itself an audited call, so
    a busy ledger — this tour's own polling included — pushes the entry ever further back.)"""
    listed = client.ledger.ListLedgerEntries(lpb.ListLedgerEntriesRequest(ce_subject=recording_id))
    for index in reversed(listed.leaf_indexes):
        leaf = client.ledger.GetLedgerEntry(lpb.GetLedgerEntryRequest(leaf_index=index)).leaf
        if lpb.LedgerLeaf.FromString(leaf).ce_type.endswith("ContentAccessed"):
            return index, leaf
    raise LawtrailError(
        f"no ContentAccessed of {recording_id} in the ledger yet", code=grpc.StatusCode.NOT_FOUND
    )
