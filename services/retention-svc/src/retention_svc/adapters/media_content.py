"""Reads recordings through media-svc's verified download (DownloadRecording, R16, R23-3).

retention-svc calls as its own service account (role SERVICE, a bearer token signed by a key media-svc
trusts) and presents an access grant scoped to the one case, action DOWNLOAD, with the stated purpose; so
media-svc verifies the grant, checks every block against the hashes recorded at ingest, and records a
ContentAccessed for every copy. retention-svc never reads media-svc's content store.

Grants: access-svc (being built in parallel) will issue retention-svc's standing grants. Until it does,
`DevGrantSigner` signs them with the local development grant key (`<data dir>/keys/access-grant-dev-*.pem`,
the one media-svc trusts by default; LAWTRAIL_RETENTION_GRANT_KEY to use another) — the same stand-in
media-svc's own tests and the local tour use. The grant's approver is the retention policy, never
retention-svc itself (an approver is never the grantee, R16).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lawtrail.access.v1 import access_grant_pb2 as gpb
from lawtrail.media.v1 import disposal_service_pb2 as dpb
from lawtrail.media.v1 import disposal_service_pb2_grpc as dgrpc
from lawtrail.media.v1 import recording_service_pb2 as mpb
from lawtrail.media.v1 import recording_service_pb2_grpc as mgrpc
from servicekit.auth.devtoken import mint_token
from servicekit.errors import DataLoss, FailedPrecondition, NotFound, PermissionDenied

from retention_svc.service_layer.ports import ContentHeader, MediaContent, MediaDisposal

TOKEN_PREFIX = "lg1."  # noqa: S105 - the grant token's format tag (lawtrail/access/v1/access_grant.proto)
SIGNING_CONTEXT = b"lawtrail.access.v1.AccessGrant\n"
GRANT_TTL = timedelta(minutes=30)
POLICY_APPROVER = "retention-policy (R13 第十三条 standing order)"


class DevGrantSigner:
    """Signs access grants as access_grant.proto specifies, with a configured Ed25519 key (see module doc)."""

    def __init__(self, private_key_pem: bytes) -> None:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the grant key must be an Ed25519 private key (PEM, PKCS#8)")
        self._key = key
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._key_id = hashlib.sha256(raw).digest()[:8].hex()

    def grant(
        self, *, grantee: str, case_id: str, recording_id: str, purpose: str, now: datetime | None = None
    ) -> str:
        """A grant to download the case's recordings, or (no case) the one recording."""
        issued = now or datetime.now(UTC)
        message = gpb.AccessGrant(
            grant_id=f"retention-{uuid.uuid4()}",
            grantee_subject=grantee,
            resources=[
                gpb.GrantResource(kind=gpb.GRANT_RESOURCE_KIND_CASE, id=case_id)
                if case_id
                else gpb.GrantResource(kind=gpb.GRANT_RESOURCE_KIND_RECORDING, id=recording_id)
            ],
            actions=[gpb.GRANTED_ACTION_DOWNLOAD],
            purpose=purpose,
            approver_subject=POLICY_APPROVER,
            issuer="retention-svc dev grant key (until access-svc issues standing grants)",
        )
        message.issued_at.FromDatetime(issued)
        message.expires_at.FromDatetime(issued + GRANT_TTL)
        body = message.SerializeToString(deterministic=True)
        signed = gpb.SignedAccessGrant(
            grant=body, key_id=self._key_id, signature=self._key.sign(SIGNING_CONTEXT + body)
        )
        return TOKEN_PREFIX + base64.urlsafe_b64encode(signed.SerializeToString()).decode().rstrip("=")


class GrpcMediaContent(MediaContent, MediaDisposal):
    def __init__(
        self,
        address: str,
        *,
        token_key_pem: bytes,
        grants: DevGrantSigner,
        subject: str = "retention-svc",
        unit: str = "lawtrail-services",
        token_file: Path | None = None,
    ) -> None:
        self.address = address
        self._token_key = token_key_pem
        self._token_file = token_file
        self._grants = grants
        self.subject = subject
        self.unit = unit

    def _token(self) -> str:
        if self._token_file is not None:
            return self._token_file.read_text().strip()
        return mint_token(self._token_key, subject=self.subject, unit=self.unit, roles=["SERVICE"], ttl_s=900)

    async def dispose(
        self, recording_id: str, order_id: str, approved_by: tuple[str, str], reason: str
    ) -> None:
        await _dispose(self.address, self._token(), recording_id, order_id, approved_by, reason)

    @asynccontextmanager
    async def download(
        self, recording_id: str, *, case_id: str, purpose: str
    ) -> AsyncIterator[tuple[ContentHeader, AsyncIterator[bytes]]]:
        grant = self._grants.grant(
            grantee=self.subject, case_id=case_id, recording_id=recording_id, purpose=purpose
        )
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = mgrpc.RecordingServiceStub(channel)
            call = stub.DownloadRecording(
                mpb.DownloadRecordingRequest(recording_id=recording_id, access_grant=grant),
                metadata=(("authorization", f"Bearer {self._token()}"),),
                timeout=3600,
            )
            try:
                first = await call.read()
                if not isinstance(first, mpb.DownloadRecordingResponse) or not first.HasField("header"):
                    raise DataLoss(f"media-svc sent no header for recording {recording_id}")
                h = first.header
                header = ContentHeader(h.recording_id, h.sha256, h.size_bytes, h.grant_id)

                async def chunks() -> AsyncIterator[bytes]:
                    # read(), not `async for`: grpc.aio forbids mixing both styles on one call.
                    while isinstance(message := await call.read(), mpb.DownloadRecordingResponse):
                        yield message.chunk

                yield header, chunks()
            except grpc.aio.AioRpcError as error:
                raise _translate(error, recording_id) from error
            finally:
                call.cancel()


async def _dispose(
    address: str, token: str, recording_id: str, order_id: str, approved_by: tuple[str, str], reason: str
) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            await dgrpc.DisposalServiceStub(channel).DisposeRecording(
                dpb.DisposeRecordingRequest(
                    recording_id=recording_id, order_id=order_id, approved_by=list(approved_by), reason=reason
                ),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=60,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise FailedPrecondition(error.details() or "refused") from error
            raise _translate(error, recording_id) from error


def _translate(error: grpc.aio.AioRpcError, recording_id: str) -> Exception:
    text = f"media-svc refused the download of recording {recording_id}: {error.details()}"
    code = error.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(text)
    if code == grpc.StatusCode.DATA_LOSS:
        return DataLoss(text)
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return PermissionDenied(text)
    return FailedPrecondition(f"{text} ({code.name}); retry later")
