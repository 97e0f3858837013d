"""Building the package of an approved disclosure (R14, R15), as its requester:

1. the request (access-svc): approved, with its grant and the receiving body;
2. every recording it covers, downloaded through media-svc with the grant (each read verified against its
   stored SHA-256 by media-svc, and recorded by it as ContentAccessed);
3. the ledger entries of the request (its approvals) and of those reads, each with its inclusion proof
   against one freshly signed checkpoint;
4. a zip: `files/…`, `manifest.json` (SHA-256s), `approval.json` (the approval record, derived from the
   ledger), `ledger/entries.json`; then its SHA-256 and the retained copy are recorded in access-svc
   (RecordDisclosurePackage → DisclosurePackageCreated).

`lawtrail verify <package.zip>` checks it offline. Progress is printed as files are downloaded.
"""

from __future__ import annotations

import base64
import hashlib
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lawtrail.access.v1 import access_events_pb2, access_service_pb2, ledger_service_pb2
from lawtrail.media.v1 import media_events_pb2, recording_service_pb2

from lawtrail_client.client import AccessClient, MediaClient
from lawtrail_client.verify import (
    ACCESSED_TYPE,
    APPROVAL,
    APPROVED_TYPE,
    ENTRY_FORMAT,
    LEDGER_ENTRIES,
    MANIFEST,
    PACKAGE_FORMAT,
    Checkpoint,
    approval_record,
    canonical_json,
)

Progress = Callable[[str], None]


class PackageError(Exception):
    pass


@dataclass(frozen=True)
class Built:
    path: Path
    package_sha256: str
    manifest_sha256: str
    files: int


def _leaves(access: AccessClient, subject: str) -> list[tuple[int, ledger_service_pb2.LedgerLeaf, bytes]]:
    found = access.ledger.ListLedgerEntries(ledger_service_pb2.ListLedgerEntriesRequest(ce_subject=subject))
    out = []
    for index in found.leaf_indexes:
        raw = access.ledger.GetLedgerEntry(ledger_service_pb2.GetLedgerEntryRequest(leaf_index=index)).leaf
        out.append((index, ledger_service_pb2.LedgerLeaf.FromString(raw), raw))
    return out


def build_package(
    access: AccessClient,
    media: MediaClient,
    request_id: str,
    output: Path,
    *,
    retained_copy: str,
    progress: Progress = print,
    ledger_timeout_s: float = 60.0,
) -> Built:
    request = access.access.GetAccessRequest(
        access_service_pb2.GetAccessRequestRequest(request_id=request_id)
    )
    r = request.request
    if r.state != access_service_pb2.ACCESS_REQUEST_STATE_APPROVED or not r.grant_token:
        raise PackageError(f"request {request_id} is not an approved disclosure of yours (state {r.state})")
    if not r.recipient:
        raise PackageError(f"request {request_id} names no receiving body: it is not a disclosure")
    recordings = [res.id for res in r.resources if res.kind == 1]  # GRANT_RESOURCE_KIND_RECORDING
    if not recordings:
        raise PackageError(f"request {request_id} covers no recordings to package")

    files: list[tuple[str, str, bytes]] = []
    for n, rid in enumerate(recordings, 1):
        stream = media.recordings.DownloadRecording(
            recording_service_pb2.DownloadRecordingRequest(recording_id=rid, access_grant=r.grant_token)
        )
        chunks, size, total = [], 0, 0
        for message in stream:
            if message.WhichOneof("part") == "header":
                total = message.header.size_bytes
            else:
                chunks.append(message.chunk)
                size += len(message.chunk)
                if total and size % (8 * 1024 * 1024) < len(message.chunk):
                    progress(f"   {rid}: {size / total:.0%} of {total:,} bytes")
        data = b"".join(chunks)
        progress(f"{n}/{len(recordings)} downloaded {rid} ({len(data):,} bytes)")
        files.append((f"files/{rid}", rid, data))

    # The reads and the approval must be in the ledger before the checkpoint is signed.
    wanted = {rid: hashlib.sha256(data).hexdigest() for _, rid, data in files}
    deadline = time.monotonic() + ledger_timeout_s
    while True:
        entries = [e for e in _leaves(access, request_id) if e[1].ce_type == APPROVED_TYPE]
        for rid in recordings:
            for e in _leaves(access, rid):
                if e[1].ce_type == ACCESSED_TYPE:
                    event = media_events_pb2.ContentAccessed.FromString(e[1].data)
                    if event.grant_id == r.grant_id and event.sha256 == wanted[rid]:
                        entries.append(e)
                        break
        if len(entries) == 1 + len(recordings):
            break
        if time.monotonic() > deadline:
            raise PackageError("the approval or the reads did not reach the audit ledger in time; retry")
        progress("   waiting for the reads to reach the audit ledger…")
        time.sleep(0.5)
    checkpoint = access.ledger.SignCheckpoint(ledger_service_pb2.SignCheckpointRequest()).checkpoint
    ms = checkpoint.signed_at.seconds * 1000 + checkpoint.signed_at.nanos // 1_000_000
    cp = Checkpoint(
        checkpoint.origin,
        checkpoint.tree_size,
        checkpoint.root_hash,
        ms,
        checkpoint.key_id,
        checkpoint.signature,
    ).to_json()
    ledger_docs = []
    approved = None
    for index, leaf, raw in entries:
        proof = access.ledger.GetInclusionProof(
            ledger_service_pb2.GetInclusionProofRequest(leaf_index=index, tree_size=checkpoint.tree_size)
        )
        ledger_docs.append(
            {
                "format": ENTRY_FORMAT,
                "leaf_index": index,
                "leaf": base64.b64encode(raw).decode(),
                "checkpoint": cp,
                "inclusion_proof": [base64.b64encode(p).decode() for p in proof.proof],
            }
        )
        if leaf.ce_type == APPROVED_TYPE:
            approved = access_events_pb2.AccessRequestApproved.FromString(leaf.data)
    assert approved is not None
    manifest = {
        "format": PACKAGE_FORMAT,
        "request_id": request_id,
        "recipient": r.recipient,
        "files": [
            {"path": name, "recording_id": rid, "sha256": wanted[rid], "size_bytes": len(data)}
            for name, rid, data in files
        ],
    }
    manifest_bytes = canonical_json(manifest)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(MANIFEST, manifest_bytes)
        z.writestr(APPROVAL, canonical_json(approval_record(approved)))
        z.writestr(LEDGER_ENTRIES, canonical_json(ledger_docs))
        for name, _, data in files:
            z.writestr(name, data)
    package_sha = hashlib.sha256(output.read_bytes()).hexdigest()
    manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    access.access.RecordDisclosurePackage(
        access_service_pb2.RecordDisclosurePackageRequest(
            request_id=request_id,
            package_sha256=package_sha,
            manifest_sha256=manifest_sha,
            files=len(files),
            retained_copy=retained_copy,
        )
    )
    progress(f"wrote {output} (SHA-256 {package_sha}); DisclosurePackageCreated recorded in access-svc")
    return Built(output, package_sha, manifest_sha, len(files))
