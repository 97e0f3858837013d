"""Access-grant tokens (lawtrail/access/v1/access_grant.proto): encoding, Ed25519 signature, decoding,
and the revocations media-svc honours.

access-svc issues grants, signed with its key (key id in the token); media-svc trusts the issuer public
keys listed in `LAWTRAIL_MEDIA_GRANT_PUBLIC_KEYS` (PEM files; by default the local access-svc key under
`<data dir>/keys`). `mint_grant` remains for unit tests and the bench, which sign with a test key.
Revocations: access-svc's AccessRevoked events, projected into `revoked_grants` (`MongoRevocations`) by
the consumer in `entrypoints/access_events.py`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError
from lawtrail.access.v1 import access_grant_pb2 as pb
from pymongo.asynchronous.collection import AsyncCollection
from servicekit.auth.devtoken import ensure_keypair
from servicekit.errors import InvalidArgument, PermissionDenied
from servicekit.mongo import serialized

from media_svc.domain.access import AccessGrant, GrantedAction, GrantResource, ResourceKind
from media_svc.service_layer.ports import GrantVerifier

TOKEN_PREFIX = "lg1."  # noqa: S105 - a format tag, not a secret
SIGNING_CONTEXT = b"lawtrail.access.v1.AccessGrant\n"
MAX_TOKEN_LEN = 16 * 1024

_ACTIONS = {
    pb.GRANTED_ACTION_VIEW: GrantedAction.VIEW,
    pb.GRANTED_ACTION_DOWNLOAD: GrantedAction.DOWNLOAD,
    pb.GRANTED_ACTION_EXPORT: GrantedAction.EXPORT,
}
_KINDS = {
    pb.GRANT_RESOURCE_KIND_RECORDING: ResourceKind.RECORDING,
    pb.GRANT_RESOURCE_KIND_CASE: ResourceKind.CASE,
}


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def load_public_keys(paths: Iterable[Path]) -> list[Ed25519PublicKey]:
    keys: list[Ed25519PublicKey] = []
    for path in paths:
        key = serialization.load_pem_public_key(path.read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path} is not an Ed25519 public key (access grants are signed with Ed25519)")
        keys.append(key)
    return keys


def mint_grant(private_key: Ed25519PrivateKey, grant: pb.AccessGrant) -> str:
    """Signs `grant` and answers the token text (what access-svc will do; tests use a test key)."""
    body = grant.SerializeToString(deterministic=True)
    signed = pb.SignedAccessGrant(
        grant=body,
        key_id=key_id(private_key.public_key()),
        signature=private_key.sign(SIGNING_CONTEXT + body),
    )
    return TOKEN_PREFIX + base64.urlsafe_b64encode(signed.SerializeToString()).decode().rstrip("=")


def grant_message(
    *,
    grant_id: str,
    grantee: str,
    grantee_unit: str = "",
    recordings: Sequence[str] = (),
    cases: Sequence[str] = (),
    actions: Sequence[pb.GrantedAction.ValueType] = (pb.GRANTED_ACTION_DOWNLOAD,),
    purpose: str = "review",
    approver: str = "approver",
    issued_at: datetime | None = None,
    expires_at: datetime,
    issuer: str = "access-svc",
) -> pb.AccessGrant:
    msg = pb.AccessGrant(
        grant_id=grant_id,
        grantee_subject=grantee,
        grantee_unit=grantee_unit,
        resources=[pb.GrantResource(kind=pb.GRANT_RESOURCE_KIND_RECORDING, id=r) for r in recordings]
        + [pb.GrantResource(kind=pb.GRANT_RESOURCE_KIND_CASE, id=c) for c in cases],
        actions=list(actions),
        purpose=purpose,
        approver_subject=approver,
        issuer=issuer,
    )
    msg.issued_at.FromDatetime(issued_at or datetime.now(UTC))
    msg.expires_at.FromDatetime(expires_at)
    return msg


class MongoRevocations:
    """`revoked_grants`: one document per revoked grant id (`_id`), written from AccessRevoked. Replaying
    the event rewrites the same document, so the projection needs no inbox."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._collection = serialized(collection)

    async def record(self, grant_id: str, reason: str) -> None:
        await self._collection.update_one({"_id": grant_id}, {"$set": {"reason": reason}}, upsert=True)

    async def is_revoked(self, grant_id: str) -> bool:
        return await self._collection.find_one({"_id": grant_id}, projection={"_id": 1}) is not None


class Ed25519GrantVerifier(GrantVerifier):
    """Steps 1–2 of the verification in access_grant.proto (format, signature); the domain checks the
    rest. Revocation: `revoke` (called by the AccessRevoked consumer) and, across restarts and replicas,
    the stored projection."""

    def __init__(
        self, public_keys: Sequence[Ed25519PublicKey], revocations: MongoRevocations | None = None
    ) -> None:
        self._keys = {key_id(k): k for k in public_keys}
        self._revoked: set[str] = set()
        self._revocations = revocations

    def revoke(self, grant_id: str) -> None:
        self._revoked.add(grant_id)

    async def is_revoked(self, grant_id: str) -> bool:
        if grant_id in self._revoked:
            return True
        if self._revocations is not None and await self._revocations.is_revoked(grant_id):
            self._revoked.add(grant_id)
            return True
        return False

    def decode(self, token: str) -> AccessGrant:
        if len(token) > MAX_TOKEN_LEN or not token.startswith(TOKEN_PREFIX):
            raise InvalidArgument(
                "access_grant is not a Lawtrail access grant (expected the 'lg1.' token issued by access-svc)"
            )
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
                f"access grant {grant.grant_id or '?'} is signed with key {signed.key_id!r}, "
                "which this service does not trust (LAWTRAIL_MEDIA_GRANT_PUBLIC_KEYS): ask access-svc for a "
                "grant, or add its current public key"
            )
        try:
            key.verify(signed.signature, SIGNING_CONTEXT + signed.grant)
        except InvalidSignature:
            raise PermissionDenied(f"access grant {grant.grant_id or '?'} has an invalid signature") from None
        if not grant.HasField("issued_at") or not grant.HasField("expires_at"):
            raise InvalidArgument(f"access grant {grant.grant_id} lacks issued_at or expires_at")
        return AccessGrant(
            grant_id=grant.grant_id,
            grantee_subject=grant.grantee_subject,
            grantee_unit=grant.grantee_unit,
            resources=tuple(GrantResource(_KINDS[r.kind], r.id) for r in grant.resources if r.kind in _KINDS),
            actions=frozenset(_ACTIONS[a] for a in grant.actions if a in _ACTIONS),
            purpose=grant.purpose,
            approver_subject=grant.approver_subject,
            issued_at=grant.issued_at.ToDatetime(tzinfo=UTC),
            expires_at=grant.expires_at.ToDatetime(tzinfo=UTC),
            issuer=grant.issuer,
        )


def ensure_dev_grant_keys(data_dir: Path) -> tuple[Path, Path]:
    """Create `<data_dir>/keys/access-grant-dev-{private,public}.pem` once (local development only: the
    key access-svc signs grants with by default, so the two trust each other with no configuration)."""
    return ensure_keypair(data_dir, "access-grant-dev")
