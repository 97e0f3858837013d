"""Offline verification of what access-svc publishes (R4, R23-3), with no service running: only the files
and the published public key(s) of access-svc.

- `verify_checkpoint(cp, keys)`: the Ed25519 signature of a ledger checkpoint (key chosen by key id).
- `verify_entry(doc, keys)`: an exported ledger entry — its checkpoint's signature and the RFC 9162
  inclusion proof of the entry's leaf in that checkpoint's tree.
- `verify_consistency_pair(doc, keys)`: two checkpoints and the consistency proof between them — the
  later tree extends the earlier one (history was not rewritten).

File formats (JSON, UTF-8; binary values base64, standard alphabet):

    checkpoint: {"origin", "tree_size", "root_hash", "signed_at_ms", "key_id", "signature"}
    lawtrail-ledger-entry/1: {"format", "leaf_index", "leaf", "checkpoint", "inclusion_proof": [..]}
    lawtrail-consistency/1: {"format", "first", "second", "consistency_proof": [..]}

`leaf` is the serialized `lawtrail.access.v1.LedgerLeaf` exactly as hashed (SHA-256(0x00 || leaf)).
Pure Python plus `cryptography` (Ed25519) and `lawtrail_merkle`; every failure is a `VerificationError`
naming what did not hold.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lawtrail_merkle as merkle
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from lawtrail_merkle.checkpoint import checkpoint_body

ENTRY_FORMAT = "lawtrail-ledger-entry/1"
CONSISTENCY_FORMAT = "lawtrail-consistency/1"


class VerificationError(Exception):
    """What was checked did not hold (or could not be read); the message says which check."""


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def load_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as error:
            raise VerificationError(f"cannot read public key {path}: {error}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise VerificationError(f"{path} is not an Ed25519 public key")
        keys[key_id(key)] = key
    if not keys:
        raise VerificationError("no public key given (--public-key: access-svc's published PEM)")
    return keys


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationError(f"{what} is missing or not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError(f"{what} is not valid base64") from None


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise VerificationError(f"{what} is missing or not a non-negative integer")
    return value


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    signed_at_ms: int
    key_id: str
    signature: bytes

    @classmethod
    def from_json(cls, d: Any, what: str = "checkpoint") -> Checkpoint:
        if not isinstance(d, Mapping):
            raise VerificationError(f"{what} is not a JSON object")
        origin, kid = d.get("origin"), d.get("key_id")
        if not isinstance(origin, str) or not isinstance(kid, str):
            raise VerificationError(f"{what}: origin and key_id must be strings")
        return cls(
            origin,
            _int(d.get("tree_size"), f"{what}.tree_size"),
            _b64(d.get("root_hash"), f"{what}.root_hash"),
            _int(d.get("signed_at_ms"), f"{what}.signed_at_ms"),
            kid,
            _b64(d.get("signature"), f"{what}.signature"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash": base64.b64encode(self.root_hash).decode(),
            "signed_at_ms": self.signed_at_ms,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }


def verify_checkpoint(cp: Checkpoint, keys: Mapping[str, Ed25519PublicKey], what: str = "checkpoint") -> None:
    key = keys.get(cp.key_id)
    if key is None:
        raise VerificationError(
            f"{what} is signed with key {cp.key_id!r}, which is not among the given public keys "
            f"({', '.join(sorted(keys))})"
        )
    try:
        key.verify(cp.signature, checkpoint_body(cp.origin, cp.tree_size, cp.root_hash, cp.signed_at_ms))
    except InvalidSignature:
        raise VerificationError(
            f"{what}: the signature does not match its content (size, root, time)"
        ) from None


def _proof(values: Any, what: str) -> list[bytes]:
    if not isinstance(values, list):
        raise VerificationError(f"{what} is missing or not a list")
    return [_b64(v, f"{what}[{i}]") for i, v in enumerate(values)]


def _format(doc: Any, expected: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping) or doc.get("format") != expected:
        got = doc.get("format") if isinstance(doc, Mapping) else type(doc).__name__
        raise VerificationError(f"not a {expected} document (format: {got!r})")
    return doc


@dataclass(frozen=True)
class EntryReport:
    leaf_index: int
    tree_size: int
    leaf: bytes
    checkpoint: Checkpoint


def verify_entry(doc: Any, keys: Mapping[str, Ed25519PublicKey]) -> EntryReport:
    d = _format(doc, ENTRY_FORMAT)
    cp = Checkpoint.from_json(d.get("checkpoint"))
    verify_checkpoint(cp, keys)
    index = _int(d.get("leaf_index"), "leaf_index")
    leaf = _b64(d.get("leaf"), "leaf")
    try:
        merkle.verify_inclusion(
            index,
            cp.tree_size,
            merkle.leaf_hash(leaf),
            _proof(d.get("inclusion_proof"), "inclusion_proof"),
            cp.root_hash,
        )
    except merkle.ProofError as error:
        raise VerificationError(f"the entry is not in the checkpoint's tree: {error}") from None
    return EntryReport(index, cp.tree_size, leaf, cp)


def verify_consistency_pair(doc: Any, keys: Mapping[str, Ed25519PublicKey]) -> tuple[Checkpoint, Checkpoint]:
    d = _format(doc, CONSISTENCY_FORMAT)
    first = Checkpoint.from_json(d.get("first"), "first")
    second = Checkpoint.from_json(d.get("second"), "second")
    verify_checkpoint(first, keys, "first")
    verify_checkpoint(second, keys, "second")
    if first.origin != second.origin:
        raise VerificationError(
            f"the checkpoints are of different ledgers ({first.origin!r}, {second.origin!r})"
        )
    try:
        merkle.verify_consistency(
            first.tree_size,
            second.tree_size,
            first.root_hash,
            second.root_hash,
            _proof(d.get("consistency_proof"), "consistency_proof"),
        )
    except merkle.ProofError as error:
        raise VerificationError(f"the second checkpoint does not extend the first: {error}") from None
    return first, second


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except OSError as error:
        raise VerificationError(f"cannot read {path}: {error}") from None
    except ValueError as error:
        raise VerificationError(f"{path} is not JSON: {error}") from None


# --- disclosure packages (R14, R15) ---------------------------------------------------------------

PACKAGE_FORMAT = "lawtrail-disclosure/1"
MANIFEST, APPROVAL, LEDGER_ENTRIES = "manifest.json", "approval.json", "ledger/entries.json"
APPROVED_TYPE = "lawtrail.access.v1.AccessRequestApproved"
ACCESSED_TYPE = "lawtrail.media.v1.ContentAccessed"


def canonical_json(doc: Any) -> bytes:
    """The one rendering of the package's JSON members: any byte changed in them changes this."""
    return (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def approval_record(approved: Any) -> dict[str, Any]:
    """The approval record of a package, derived from the ledger's AccessRequestApproved event."""
    grant = approved.grant
    return {
        "request_id": approved.request_id,
        "recipient": approved.recipient,
        "grant_id": grant.grant_id,
        "grantee": grant.grantee_subject,
        "purpose": grant.purpose,
        "resources": [{"kind": int(r.kind), "id": r.id} for r in grant.resources],
        "approvals": [
            {"subject": a.subject, "unit": a.unit, "at": a.at.ToJsonString()} for a in approved.approvals
        ],
        "approved_at": approved.decided.at.ToJsonString(),
    }


@dataclass(frozen=True)
class PackageReport:
    request_id: str
    recipient: str
    files: int
    approvers: tuple[str, ...]
    entries: int
    tree_size: int


def verify_package(path: Path, keys: Mapping[str, Ed25519PublicKey]) -> PackageReport:
    """Checks a disclosure package (zip) offline: every ledger entry in it against its signed checkpoint;
    the approval record against the ledger's AccessRequestApproved (two different approvers); every file
    against the manifest and against the SHA-256 media-svc recorded in the ledger when it was read under
    the disclosure's grant; and that the zip holds nothing else."""
    import zipfile

    from lawtrail.access.v1 import access_events_pb2, ledger_service_pb2
    from lawtrail.media.v1 import media_events_pb2

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            members = {name: z.read(name) for name in names}
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile) as error:
        raise VerificationError(f"{path} is not a readable zip package: {error}") from None
    if len(set(names)) != len(names):
        raise VerificationError("the package holds two members with the same name")
    for required in (MANIFEST, APPROVAL, LEDGER_ENTRIES):
        if required not in members:
            raise VerificationError(f"the package has no {required}")
    try:
        manifest = json.loads(members[MANIFEST])
        entries = json.loads(members[LEDGER_ENTRIES])
    except ValueError as error:
        raise VerificationError(f"manifest.json or ledger/entries.json is not JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACKAGE_FORMAT:
        raise VerificationError(f"manifest.json is not a {PACKAGE_FORMAT} manifest")
    if canonical_json(manifest) != members[MANIFEST]:
        raise VerificationError("manifest.json was changed (it is not in its canonical form)")
    if not isinstance(entries, list) or not entries:
        raise VerificationError("ledger/entries.json holds no ledger entries")
    if canonical_json(entries) != members[LEDGER_ENTRIES]:
        raise VerificationError("ledger/entries.json was changed (it is not in its canonical form)")

    approved = None
    accessed: dict[str, str] = {}
    tree_size = 0
    for i, doc in enumerate(entries):
        try:
            report = verify_entry(doc, keys)
        except VerificationError as error:
            raise VerificationError(f"ledger entry {i}: {error}") from None
        tree_size = max(tree_size, report.tree_size)
        leaf = ledger_service_pb2.LedgerLeaf.FromString(report.leaf)
        if leaf.ce_type == APPROVED_TYPE:
            approved = access_events_pb2.AccessRequestApproved.FromString(leaf.data)
        elif leaf.ce_type == ACCESSED_TYPE:
            event = media_events_pb2.ContentAccessed.FromString(leaf.data)
            accessed.setdefault(event.grant_id, "")
            accessed[f"{event.grant_id}/{event.recording_id}"] = event.sha256
    if approved is None:
        raise VerificationError(
            "the ledger entries hold no AccessRequestApproved: the approval is not proven"
        )
    if approved.request_id != manifest.get("request_id") or approved.recipient != manifest.get("recipient"):
        raise VerificationError("the manifest names another request or recipient than the ledger's approval")
    approvers = tuple(dict.fromkeys(a.subject for a in approved.approvals))
    if not approved.recipient or len(approvers) < 2 or approved.grant.grantee_subject in approvers:
        raise VerificationError(
            "the approval is not a disclosure approved by two people other than the requester "
            f"(approvers: {', '.join(approvers) or 'none'})"
        )
    if canonical_json(approval_record(approved)) != members[APPROVAL]:
        raise VerificationError("approval.json differs from the approval recorded in the ledger")

    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise VerificationError("the manifest lists no files")
    covered = {r.id for r in approved.grant.resources}
    listed = set()
    for item in files:
        if not isinstance(item, dict):
            raise VerificationError("a manifest entry is not an object")
        name, rid, sha = item.get("path"), item.get("recording_id"), item.get("sha256")
        if not isinstance(name, str) or name not in members:
            raise VerificationError(f"the manifest lists {name!r}, which is not in the package")
        listed.add(name)
        data = members[name]
        if hashlib.sha256(data).hexdigest() != sha or len(data) != item.get("size_bytes"):
            raise VerificationError(f"{name} does not match its SHA-256 / size in the manifest")
        if rid not in covered:
            raise VerificationError(f"{name}: recording {rid} is not covered by the approved grant")
        if accessed.get(f"{approved.grant.grant_id}/{rid}") != sha:
            raise VerificationError(
                f"{name}: no ledger entry shows recording {rid} read with SHA-256 {sha} under the grant"
            )
    extra = set(members) - listed - {MANIFEST, APPROVAL, LEDGER_ENTRIES}
    if extra:
        raise VerificationError(f"the package holds members the manifest does not list: {sorted(extra)}")
    return PackageReport(
        approved.request_id, approved.recipient, len(files), approvers, len(entries), tree_size
    )
