"""Access grants as case-svc verifies them (lawtrail/access/v1/access_grant.proto, R16), the revocations
it honours, and the log of document reads.

Verification steps 1–2 of the proto (format, trusted key by key id, Ed25519 signature) are here; the rest
is the domain's permission policy (`domain/access.py`). Trusted issuer keys: `LAWTRAIL_CASE_GRANT_PUBLIC_KEYS`
(default: access-svc's local key `<data dir>/keys/access-grant-dev-public.pem`). Revocations: access-svc's
AccessRevoked events, projected into `revoked_grants` by the consumer `case-svc.access-events`.

media-svc has the same steps in `media_svc.adapters.access_grants` (its own copy until a shared grant
module lands in servicekit).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.access.v1 import access_grant_pb2 as pb
from lawtrail.case.v1 import case_events_pb2
from pymongo.asynchronous.collection import AsyncCollection
from servicekit.errors import InvalidArgument, PermissionDenied
from servicekit.messaging.outbox import OutboundEvent
from servicekit.mongo import VersionedRepository, serialized
from servicekit.topics import events_topic_of

from case_svc.domain.access import GrantClaims
from case_svc.service_layer.ports import CaseView, DocumentRead, GrantVerifier, ReadLog

TOKEN_PREFIX = "lg1."  # noqa: S105 - a format tag, not a secret
SIGNING_CONTEXT = b"lawtrail.access.v1.AccessGrant\n"
MAX_TOKEN_LEN = 16 * 1024
ACTIONS = {
    pb.GRANTED_ACTION_VIEW: "VIEW",
    pb.GRANTED_ACTION_DOWNLOAD: "DOWNLOAD",
    pb.GRANTED_ACTION_EXPORT: "EXPORT",
}
READS = "document_reads"
CASE_TOPIC = events_topic_of(case_events_pb2)
REVOKED = "revoked_grants"


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def load_public_keys(paths: Iterable[Path]) -> list[Ed25519PublicKey]:
    keys = []
    for path in paths:
        key = serialization.load_pem_public_key(path.read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path} is not an Ed25519 public key (access grants are signed with Ed25519)")
        keys.append(key)
    return keys


class MongoRevocations:
    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._collection = serialized(collection)

    async def record(self, grant_id: str, reason: str) -> None:
        await self._collection.update_one({"_id": grant_id}, {"$set": {"reason": reason}}, upsert=True)

    async def is_revoked(self, grant_id: str) -> bool:
        return await self._collection.find_one({"_id": grant_id}, projection={"_id": 1}) is not None


class Ed25519GrantVerifier(GrantVerifier):
    def __init__(self, public_keys: Sequence[Ed25519PublicKey], revocations: MongoRevocations | None) -> None:
        self._keys = {key_id(k): k for k in public_keys}
        self._revocations = revocations
        self._revoked: set[str] = set()

    def revoke(self, grant_id: str) -> None:
        self._revoked.add(grant_id)

    async def is_revoked(self, grant_id: str) -> bool:
        if grant_id in self._revoked:
            return True
        if self._revocations is not None and await self._revocations.is_revoked(grant_id):
            self._revoked.add(grant_id)
            return True
        return False

    def decode(self, token: str) -> GrantClaims:
        if len(token) > MAX_TOKEN_LEN or not token.startswith(TOKEN_PREFIX):
            raise InvalidArgument("access_grant is not a Lawtrail access grant (expected the 'lg1.' token)")
        body = token[len(TOKEN_PREFIX) :]
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
            signed = pb.SignedAccessGrant.FromString(raw)
            grant = pb.AccessGrant.FromString(signed.grant)
            if not signed.grant or not signed.signature:
                raise ValueError("empty grant or signature")
        except (ValueError, binascii.Error, DecodeError):
            raise InvalidArgument(
                "access_grant is malformed (not base64url of a SignedAccessGrant)"
            ) from None
        key = self._keys.get(signed.key_id)
        if key is None:
            raise PermissionDenied(
                f"access grant {grant.grant_id or '?'} is signed with key {signed.key_id!r}, which case-svc "
                "does not trust (LAWTRAIL_CASE_GRANT_PUBLIC_KEYS)"
            )
        try:
            key.verify(signed.signature, SIGNING_CONTEXT + signed.grant)
        except InvalidSignature:
            raise PermissionDenied(f"access grant {grant.grant_id or '?'} has an invalid signature") from None
        if not grant.HasField("issued_at") or not grant.HasField("expires_at"):
            raise InvalidArgument(f"access grant {grant.grant_id} lacks issued_at or expires_at")
        return GrantClaims(
            grant_id=grant.grant_id,
            grantee_subject=grant.grantee_subject,
            cases=frozenset(r.id for r in grant.resources if r.kind == pb.GRANT_RESOURCE_KIND_CASE),
            actions=frozenset(ACTIONS[a] for a in grant.actions if a in ACTIONS),
            purpose=grant.purpose,
            approver_subject=grant.approver_subject,
            issued_at=grant.issued_at.ToDatetime(tzinfo=UTC),
            expires_at=grant.expires_at.ToDatetime(tzinfo=UTC),
        )


class ReadDocuments(VersionedRepository):
    what = "document read"
    indexes = ()


class MongoReadLog(ReadLog):
    """`document_reads`: one document per read, written with its CaseDocumentRead event (outbox)."""

    def __init__(self, documents: ReadDocuments) -> None:
        self._documents = documents

    async def record(self, read: DocumentRead) -> None:
        at = Timestamp()
        at.FromDatetime(read.at)
        event = case_events_pb2.CaseDocumentRead(
            case_id=read.case_id,
            unit=read.unit,
            document_id=read.document_id,
            sha256=read.sha256,
            reader=read.reader,
            reader_unit=read.reader_unit,
            at=at,
            grant_id=read.grant_id,
            basis=read.basis,
            purpose=read.purpose,
        )
        await self._documents.insert(
            {
                "_id": f"read/{read.case_id}/{read.document_id}/{read.reader}/{uuid.uuid4().hex}",
                "case_id": read.case_id,
                "document_id": read.document_id,
                "reader": read.reader,
                "at": read.at,
                "grant_id": read.grant_id,
                "basis": read.basis,
            },
            events=[OutboundEvent(CASE_TOPIC, event, subject=read.case_id)],
        )

    async def record_view(self, view: CaseView) -> None:
        at = Timestamp()
        at.FromDatetime(view.at)
        millis = int(view.at.timestamp() * 1000)
        if view.case_id:
            event: Any = case_events_pb2.CaseViewed(
                case_id=view.case_id,
                unit=view.unit,
                viewer=view.viewer,
                viewer_unit=view.viewer_unit,
                at=at,
                rpc=view.rpc,
            )
            subject, key = view.case_id, f"view/{view.case_id}/{view.viewer}/{millis}/{uuid.uuid4().hex[:8]}"
        else:
            event = case_events_pb2.CasesSearched(
                viewer=view.viewer,
                viewer_unit=view.viewer_unit,
                at=at,
                unit=view.unit,
                case_ids=view.case_ids,
            )
            subject, key = view.viewer, f"search/{view.viewer}/{millis}/{uuid.uuid4().hex[:8]}"
        await self._documents.insert(
            {"_id": key, "viewer": view.viewer, "at": view.at, "rpc": view.rpc, "case_id": view.case_id},
            events=[OutboundEvent(CASE_TOPIC, event, subject=subject)],
        )
