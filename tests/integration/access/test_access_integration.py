"""access-svc on the real stack (issue 11): real `python -m access_svc` and `python -m media_svc` processes
on the real Kafka + FerretDB of the lawtrail_local plugin, a real MP4 from ffmpeg, no mocks.

R16: request → approval by the requester refused → approval by the owning unit's head → the download
through media-svc succeeds with the grant → revoked → refused within seconds (measured).
R23-3: the access is in the audit ledger; its inclusion proof verifies offline against a signed checkpoint.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import lawtrail_merkle as merkle
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.duration_pb2 import Duration
from lawtrail.access.v1 import access_grant_pb2 as gpb
from lawtrail.access.v1 import access_service_pb2 as api
from lawtrail.access.v1 import ledger_service_pb2 as lpb
from lawtrail.media.v1 import media_events_pb2 as ev
from lawtrail.media.v1 import recording_service_pb2 as pb
from lawtrail_client.cli import main as cli_main
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceProcess
from lawtrail_local.stack import Stack
from servicekit.auth.devtoken import ensure_dev_keys
from servicekit.messaging.envelope import Envelope

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "media"))

from access_it import Person, call, eventually, find_event, person, request_download
from access_svc.domain.ledger import checkpoint_body
from recordings_it import Caller, caller, classification, make_video, upload

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (make setup installs it)"
    ),
]


@dataclass
class Stackup:
    access: ServiceProcess
    media: ServiceProcess
    bootstrap: str
    data_dir: Path
    uploader: Caller
    requester_media: Caller
    head_media: Caller
    legal_media: Caller
    requester: Person
    head: Person
    legal: Person
    service: Person
    clerk: Person
    outsider: Person
    video: Path


@pytest.fixture(scope="module")
def env(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stackup]:
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("access"))
    private_pem = ensure_dev_keys(starter.data_dir)[0].read_bytes()
    files = tmp_path_factory.mktemp("access-files")
    # access-svc first: it creates its signing key, whose public half media-svc trusts by default.
    access = starter("access-svc", env={"LAWTRAIL_ACCESS_CHECKPOINT_INTERVAL_S": "3600"})
    media = starter("media-svc", env={"LAWTRAIL_MEDIA_SCRUB_INTERVAL_S": "0"})
    a_channel = grpc.insecure_channel(access.grpc_address)
    m_channel = grpc.insecure_channel(media.grpc_address)
    try:
        yield Stackup(
            access=access,
            media=media,
            bootstrap=stack.kafka_bootstrap,
            data_dir=starter.data_dir,
            uploader=caller(m_channel, private_pem, "officer-1", "unit-a", ["OFFICER"]),
            requester_media=caller(m_channel, private_pem, "deputy-1", "unit-a", ["OFFICER", "UNIT_HEAD"]),
            head_media=caller(m_channel, private_pem, "head-1", "unit-a", ["UNIT_HEAD"]),
            legal_media=caller(m_channel, private_pem, "legal-viewer-1", "legal", ["LEGAL_OFFICE"]),
            # The requester is a unit head too, so that the refusal of self-approval is the rule's (R16),
            # not the role policy's.
            requester=person(a_channel, private_pem, "deputy-1", "unit-a", ["OFFICER", "UNIT_HEAD"]),
            head=person(a_channel, private_pem, "head-1", "unit-a", ["UNIT_HEAD"]),
            legal=person(a_channel, private_pem, "legal-1", "legal", ["LEGAL_OFFICE"]),
            service=person(a_channel, private_pem, "media-svc", "system", ["SERVICE"]),
            clerk=person(a_channel, private_pem, "clerk-1", "legal", ["LEGAL_OFFICE"]),
            outsider=person(a_channel, private_pem, "officer-9", "unit-b", ["OFFICER"]),
            video=make_video(files / "clip.mp4", tag="access-it"),
        )
    finally:
        a_channel.close()
        m_channel.close()
        starter.stop_all()


def download(c: Caller, recording_id: str, grant: str) -> bytes:
    stream = c(
        "DownloadRecording", pb.DownloadRecordingRequest(recording_id=recording_id, access_grant=grant)
    )
    chunks = [m.chunk for m in stream if m.WhichOneof("part") == "chunk"]  # type: ignore[attr-defined]
    return b"".join(chunks)


def test_r16_request_approval_download_and_revocation_through_the_real_services(env: Stackup) -> None:
    recording = upload(env.uploader, env.video, classification(unit="unit-a", device="CAM-ACCESS-1"))
    rid = recording.recording_id

    # No grant: refused.
    with pytest.raises(grpc.RpcError) as refused:
        download(env.requester_media, rid, "")
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED

    request = request_download(env.requester, rid)
    assert request.state == api.ACCESS_REQUEST_STATE_PENDING

    decide = api.DecideAccessRequestRequest(
        request_id=request.request_id, decision=api.ACCESS_DECISION_APPROVE, reason="needed for the hearing"
    )
    # The requester cannot approve their own request, though they are a unit head of the owning unit.
    with pytest.raises(grpc.RpcError) as own:
        eventually(lambda: call(env.requester, "access", "DecideAccessRequest", decide))
    assert own.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "cannot decide their own request" in (own.value.details() or "")

    # The owning unit's head approves (once access-svc has projected the recording's unit).
    approved = eventually(lambda: call(env.head, "access", "DecideAccessRequest", decide)).request
    assert approved.state == api.ACCESS_REQUEST_STATE_APPROVED
    assert approved.decided.subject == "head-1"
    assert approved.grant_token == "", "the approver never receives the grantee's token"

    mine = call(
        env.requester,
        "access",
        "GetAccessRequest",
        api.GetAccessRequestRequest(request_id=request.request_id),
    )
    token = mine.request.grant_token
    assert token.startswith("lg1.")

    # Nobody but the grantee can use the token (media-svc checks the grantee against the bearer token).
    with pytest.raises(grpc.RpcError) as stolen:
        download(env.head_media, rid, token)
    assert stolen.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "was issued to 'deputy-1'" in (stolen.value.details() or "")

    content = download(env.requester_media, rid, token)
    assert hashlib.sha256(content).hexdigest() == recording.sha256

    status = call(
        env.service,
        "status",
        "GetAccessGrantStatus",
        gpb.GetAccessGrantStatusRequest(grant_id=approved.grant_id),
    )
    assert status.state == gpb.ACCESS_GRANT_STATE_ACTIVE

    call(
        env.head,
        "access",
        "RevokeAccessGrant",
        api.RevokeAccessGrantRequest(grant_id=approved.grant_id, reason="hearing postponed"),
    )
    revoked_at = time.monotonic()
    delay = None
    refusal: grpc.RpcError | None = None
    while time.monotonic() - revoked_at < 30:
        try:
            download(env.requester_media, rid, token)
        except grpc.RpcError as error:
            refusal = error
            delay = time.monotonic() - revoked_at
            break
        time.sleep(0.05)
    assert delay is not None, "media-svc still accepted the grant 30 s after its revocation"
    assert refusal is not None
    assert refusal.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "revoked" in (refusal.details() or "")
    print(f"\nR16 revocation honoured by media-svc {delay:.2f} s after RevokeAccessGrant returned")
    assert delay < 10, f"revocation took {delay:.2f} s to reach media-svc (must be within seconds)"

    status = call(
        env.service,
        "status",
        "GetAccessGrantStatus",
        gpb.GetAccessGrantStatusRequest(grant_id=approved.grant_id),
    )
    assert status.state == gpb.ACCESS_GRANT_STATE_REVOKED
    assert status.reason == "hearing postponed"

    # Requests and decisions are queryable (on FerretDB: the list filters run there for real).
    def listed(p: Person, state: int = 0) -> list[str]:
        page = call(p, "access", "ListAccessRequests", api.ListAccessRequestsRequest(state=state))
        return [r.request_id for r in page.requests]

    assert request.request_id in listed(env.requester)
    assert request.request_id in listed(env.head), "a unit head sees requests for their unit's records"
    assert request.request_id in listed(env.legal, api.ACCESS_REQUEST_STATE_REVOKED)
    assert request.request_id not in listed(env.legal, api.ACCESS_REQUEST_STATE_PENDING)
    assert request.request_id not in listed(env.outsider), "others do not see it"
    with pytest.raises(grpc.RpcError) as hidden:
        call(
            env.outsider,
            "access",
            "GetAccessRequest",
            api.GetAccessRequestRequest(request_id=request.request_id),
        )
    assert hidden.value.code() is grpc.StatusCode.PERMISSION_DENIED


def ledger_entry_of(env: Stackup, event: Envelope, topic: str) -> lpb.GetLedgerEntryResponse:
    """The ledger entry of `event` once access-svc appended it, checked to be that event of `topic`."""
    found: lpb.GetLedgerEntryResponse = eventually(
        lambda: call(
            env.legal,
            "ledger",
            "GetLedgerEntry",
            lpb.GetLedgerEntryRequest(ce_source=event.source, ce_id=event.id),
        ),
        retry_on=grpc.StatusCode.NOT_FOUND,
    )
    leaf = lpb.LedgerLeaf.FromString(found.leaf)
    assert (leaf.ce_id, leaf.ce_type, leaf.data) == (event.id, event.type, event.data)
    assert leaf.topic == topic
    return found


def test_r23_content_access_is_in_the_ledger_and_its_proof_verifies_offline(env: Stackup) -> None:
    start = datetime(2026, 5, 2, 9, 0, tzinfo=UTC)
    clip = make_video(env.video.with_name("clip-2.mp4"), tag="access-it-2")
    recording = upload(env.uploader, clip, classification(unit="unit-a", device="CAM-ACCESS-2", start=start))
    rid = recording.recording_id
    request = request_download(env.requester, rid)
    decide = api.DecideAccessRequestRequest(
        request_id=request.request_id, decision=api.ACCESS_DECISION_APPROVE, reason="review"
    )
    eventually(lambda: call(env.legal, "access", "DecideAccessRequest", decide))
    token = call(
        env.requester,
        "access",
        "GetAccessRequest",
        api.GetAccessRequestRequest(request_id=request.request_id),
    ).request.grant_token
    download(env.requester_media, rid, token)
    accessed = asyncio.run(find_event(env.bootstrap, "lawtrail.media.v1.events", rid, ".ContentAccessed"))

    found = ledger_entry_of(env, accessed, "lawtrail.media.v1.events")

    first = call(env.legal, "ledger", "SignCheckpoint", lpb.SignCheckpointRequest()).checkpoint
    assert first.tree_size > found.leaf_index
    public = serialization.load_pem_public_key(
        (env.data_dir / "keys" / "access-grant-dev-public.pem").read_bytes()
    )
    assert isinstance(public, Ed25519PublicKey)
    body = checkpoint_body(
        first.origin, first.tree_size, first.root_hash, first.signed_at.ToDatetime(tzinfo=UTC)
    )
    public.verify(first.signature, body)
    with pytest.raises(InvalidSignature):
        public.verify(first.signature, body.replace(b"\n", b"\n\n", 1))

    proof = call(
        env.legal,
        "ledger",
        "GetInclusionProof",
        lpb.GetInclusionProofRequest(leaf_index=found.leaf_index, tree_size=first.tree_size),
    )
    merkle.verify_inclusion(
        found.leaf_index, first.tree_size, merkle.leaf_hash(found.leaf), list(proof.proof), first.root_hash
    )
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(
            found.leaf_index,
            first.tree_size,
            merkle.leaf_hash(found.leaf + b"x"),
            list(proof.proof),
            first.root_hash,
        )

    # The ledger keeps growing (the checkpoint's own event at least); the next checkpoint extends the first.
    second = first
    deadline = time.monotonic() + 30
    while second.tree_size == first.tree_size and time.monotonic() < deadline:
        time.sleep(0.2)
        second = call(env.legal, "ledger", "SignCheckpoint", lpb.SignCheckpointRequest()).checkpoint
    assert second.tree_size > first.tree_size
    consistency = call(
        env.legal,
        "ledger",
        "GetConsistencyProof",
        lpb.GetConsistencyProofRequest(first_size=first.tree_size, second_size=second.tree_size),
    )
    merkle.verify_consistency(
        first.tree_size, second.tree_size, first.root_hash, second.root_hash, list(consistency.proof)
    )


def test_r16_views_and_searches_from_outside_the_unit_are_in_the_ledger(env: Stackup) -> None:
    """media-svc's RecordingViewed / RecordingsSearched (a reader of every unit, no grant needed) reach
    the audit ledger like every event of a `lawtrail.*` topic (R16, R23-3)."""
    clip = make_video(env.video.with_name("clip-viewed.mp4"), tag="access-it-viewed")
    start = datetime(2026, 5, 3, 9, 0, tzinfo=UTC)
    rid = upload(
        env.uploader, clip, classification(unit="unit-a", device="CAM-ACCESS-VIEW", start=start)
    ).recording_id
    env.legal_media("GetRecording", pb.GetRecordingRequest(recording_id=rid))
    env.legal_media("SearchRecordings", pb.SearchRecordingsRequest(device_number="CAM-ACCESS-VIEW"))
    topic = "lawtrail.media.v1.events"
    viewed = asyncio.run(find_event(env.bootstrap, topic, rid, ".RecordingViewed"))
    searched = asyncio.run(find_event(env.bootstrap, topic, "legal-viewer-1", ".RecordingsSearched"))
    assert list(searched.parse(ev.RecordingsSearched).recording_ids) == [rid]
    for event in (viewed, searched):
        ledger_entry_of(env, event, topic)


def test_r23_lawtrail_verify_accepts_an_exported_access_entry_offline_and_rejects_a_changed_byte(
    env: Stackup, tmp_path: Path
) -> None:
    start = datetime(2026, 5, 3, 9, 0, tzinfo=UTC)
    clip = make_video(env.video.with_name("clip-3.mp4"), tag="access-it-3")
    rid = upload(
        env.uploader, clip, classification(unit="unit-a", device="CAM-ACCESS-3", start=start)
    ).recording_id
    request = request_download(env.requester, rid)
    decide = api.DecideAccessRequestRequest(
        request_id=request.request_id, decision=api.ACCESS_DECISION_APPROVE, reason="review"
    )
    eventually(lambda: call(env.head, "access", "DecideAccessRequest", decide))
    token = call(
        env.requester,
        "access",
        "GetAccessRequest",
        api.GetAccessRequestRequest(request_id=request.request_id),
    ).request.grant_token
    download(env.requester_media, rid, token)
    accessed = asyncio.run(find_event(env.bootstrap, "lawtrail.media.v1.events", rid, ".ContentAccessed"))

    legal_token = dict(env.legal.metadata)["authorization"].removeprefix("Bearer ")
    exported = tmp_path / "access-entry.json"
    args = ["ledger", "export-entry", "--source", accessed.source, "--id", accessed.id]
    args += ["--server", env.access.grpc_address, "--token", legal_token, "-o", str(exported)]
    deadline = time.monotonic() + 30
    while cli_main(args) != 0:  # the ledger consumer may not have appended it yet
        assert time.monotonic() < deadline, "the access never reached the ledger"
        time.sleep(0.2)

    # Offline: nothing but the file and the published public key.
    public = str(env.data_dir / "keys" / "access-grant-dev-public.pem")
    assert cli_main(["verify", str(exported), "--public-key", public]) == 0
    raw = bytearray(exported.read_bytes())
    doc = json.loads(raw)
    leaf = bytearray(base64.b64decode(doc["leaf"]))
    leaf[len(leaf) // 2] ^= 1
    doc["leaf"] = base64.b64encode(bytes(leaf)).decode()
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(doc))
    assert cli_main(["verify", str(changed), "--public-key", public]) == 1


def test_r15_disclosure_approved_by_two_people_yields_a_package_lawtrail_verify_accepts_offline(
    env: Stackup, tmp_path: Path
) -> None:
    start = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    clip = make_video(env.video.with_name("clip-4.mp4"), tag="access-it-4")
    recording = upload(env.uploader, clip, classification(unit="unit-a", device="CAM-ACCESS-4", start=start))
    d = Duration()
    d.FromTimedelta(timedelta(hours=1))
    request = call(
        env.clerk,
        "access",
        "RequestAccess",
        api.RequestAccessRequest(
            resources=[gpb.GrantResource(kind=gpb.GRANT_RESOURCE_KIND_RECORDING, id=recording.recording_id)],
            actions=[gpb.GRANTED_ACTION_DOWNLOAD, gpb.GRANTED_ACTION_EXPORT],
            purpose="evidence for the administrative litigation",
            duration=d,
            recipient="Intermediate People's Court, administrative division",
        ),
    ).request
    decide = api.DecideAccessRequestRequest(
        request_id=request.request_id, decision=api.ACCESS_DECISION_APPROVE, reason="court order 2026-17"
    )
    with pytest.raises(grpc.RpcError) as own:
        call(env.clerk, "access", "DecideAccessRequest", decide)
    assert own.value.code() is grpc.StatusCode.PERMISSION_DENIED
    first = call(env.legal, "access", "DecideAccessRequest", decide).request
    assert first.state == api.ACCESS_REQUEST_STATE_PENDING, "one approval is not enough for a disclosure"
    with pytest.raises(grpc.RpcError) as twice:
        call(env.legal, "access", "DecideAccessRequest", decide)
    assert "already approved" in (twice.value.details() or "")
    second = eventually(lambda: call(env.head, "access", "DecideAccessRequest", decide)).request
    assert second.state == api.ACCESS_REQUEST_STATE_APPROVED
    assert [a.subject for a in second.approvals] == ["legal-1", "head-1"]

    token = dict(env.clerk.metadata)["authorization"].removeprefix("Bearer ")
    package = tmp_path / "disclosure.zip"
    args = [
        "disclosure",
        "package",
        request.request_id,
        "-o",
        str(package),
        "--retained-copy",
        "archive shelf 7",
    ]
    args += ["--server", env.access.grpc_address, "--media-server", env.media.grpc_address, "--token", token]
    assert cli_main(args) == 0
    recorded = call(
        env.clerk, "access", "GetAccessRequest", api.GetAccessRequestRequest(request_id=request.request_id)
    ).request
    assert recorded.packages[0].package_sha256 == hashlib.sha256(package.read_bytes()).hexdigest()
    assert recorded.packages[0].retained_copy == "archive shelf 7"
    asyncio.run(
        find_event(
            env.bootstrap, "lawtrail.access.v1.events", request.request_id, ".DisclosurePackageCreated"
        )
    )

    # Offline: only the package and the published key.
    public = str(env.data_dir / "keys" / "access-grant-dev-public.pem")
    assert cli_main(["verify", str(package), "--public-key", public]) == 0
    with zipfile.ZipFile(package) as z:
        members = {n: z.read(n) for n in z.namelist()}
    name = f"files/{recording.recording_id}"
    for target in (name, "manifest.json", "approval.json", "ledger/entries.json"):
        changed = bytearray(members[target])
        changed[len(changed) // 2] ^= 1
        forged = tmp_path / f"forged-{target.replace('/', '_')}.zip"
        with zipfile.ZipFile(forged, "w") as z:  # a well-formed zip (fresh CRCs): only our checks can tell
            for n, data in members.items():
                z.writestr(n, bytes(changed) if n == target else data)
        assert cli_main(["verify", str(forged), "--public-key", public]) == 1, (
            f"a changed byte in {target} passed"
        )
    raw = bytearray(package.read_bytes())
    raw[len(raw) // 2] ^= 1
    (tmp_path / "flipped.zip").write_bytes(bytes(raw))
    assert cli_main(["verify", str(tmp_path / "flipped.zip"), "--public-key", public]) == 1
