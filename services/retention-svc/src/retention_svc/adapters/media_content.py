"""Reads recordings through media-svc's verified download (DownloadRecording, R16, R23-3).

retention-svc calls as its own service account (role SERVICE, a bearer token signed by a key media-svc
trusts) and presents an access grant scoped to the one case (offline copies) or to the recordings (archive
backup), action DOWNLOAD, with the stated purpose; so media-svc verifies the grant, checks every block
against the hashes recorded at ingest, and records a ContentAccessed naming the grant for every copy.
retention-svc never reads media-svc's content store.

Grants: `AccessSvcGrants` takes them from access-svc (`AccessService.RequestStandingGrant`) under the
standing order that covers the purpose — `r13-offline-copy` for "R13 offline copy …", `r11b-archive-backup`
for "R11b monthly archive backup …" (configured in access-svc, approved there by a named person, never by
retention-svc). A grant is short-lived (`GRANT_TTL`); it is reused for the same purpose and records while
more than `RENEW_BEFORE` of it is left, and a new one is asked for after that (renewal). A grant media-svc
refuses (revoked: AccessRevoked) is dropped, so nothing retries with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
from google.protobuf.duration_pb2 import Duration
from lawtrail.access.v1 import access_grant_pb2 as gpb
from lawtrail.access.v1 import access_service_pb2 as apb
from lawtrail.access.v1 import access_service_pb2_grpc as agrpc
from lawtrail.media.v1 import disposal_service_pb2 as dpb
from lawtrail.media.v1 import disposal_service_pb2_grpc as dgrpc
from lawtrail.media.v1 import recording_service_pb2 as mpb
from lawtrail.media.v1 import recording_service_pb2_grpc as mgrpc
from servicekit.auth.devtoken import mint_token
from servicekit.errors import DataLoss, FailedPrecondition, NotFound, PermissionDenied

from retention_svc.service_layer.ports import ContentHeader, MediaContent, MediaDisposal

GRANT_TTL = timedelta(minutes=30)
RENEW_BEFORE = timedelta(minutes=5)  # a grant with less left than this is renewed before a download
MAX_RESOURCES = 100  # access-svc takes at most 100 records per request
RETRY_EVERY_S = 1.0
CASE: gpb.GrantResourceKind.ValueType = gpb.GRANT_RESOURCE_KIND_CASE
RECORDING: gpb.GrantResourceKind.ValueType = gpb.GRANT_RESOURCE_KIND_RECORDING
Scope = tuple[gpb.GrantResourceKind.ValueType, str]  # one resource of a grant: (kind, id)


@dataclass(frozen=True)
class StandingOrderUse:
    """Which of access-svc's standing orders covers a purpose, and how it names records."""

    order_id: str
    purpose_prefix: str
    by_case: bool  # CASE resources (the held case) rather than RECORDING ones


STANDING_ORDERS = (
    StandingOrderUse("r13-offline-copy", "R13 offline copy", by_case=True),
    StandingOrderUse("r11b-archive-backup", "R11b monthly archive backup", by_case=False),
)


def order_for(purpose: str) -> StandingOrderUse:
    for use in STANDING_ORDERS:
        if purpose.startswith(use.purpose_prefix):
            return use
    raise PermissionDenied(f"no standing order of access-svc covers the purpose {purpose!r}")


class _Retry(Exception):
    """access-svc cannot issue the grant yet (FAILED_PRECONDITION, UNAVAILABLE, …)."""


@dataclass
class _Held:
    resources: frozenset[Scope]
    token: str
    expires: float  # time.monotonic() deadline


class AccessSvcGrants:
    """retention-svc's standing grants from access-svc (see the module docstring)."""

    def __init__(
        self,
        address: str,
        token: Callable[[], str],
        *,
        ttl: timedelta = GRANT_TTL,
        clock: Callable[[], float] = time.monotonic,
        wait_s: float = 60.0,
    ) -> None:
        self.address = address
        self._token = token
        self._ttl = ttl
        self._clock = clock
        self._wait_s = wait_s
        self._held: dict[str, list[_Held]] = {}
        self.issued = 0  # how many grants access-svc issued to this process (tests, logs)

    def _resource(self, use: StandingOrderUse, recording_id: str, case_id: str) -> Scope:
        return (CASE, case_id) if use.by_case and case_id else (RECORDING, recording_id)

    async def prepare(self, purpose: str, items: Sequence[tuple[str, str]]) -> None:
        """Takes the grants a whole copy or batch needs up front: one per case, or one per 100
        recordings, instead of one per download. `items` are (recording id, case id)."""
        use = order_for(purpose)
        wanted = list(dict.fromkeys(self._resource(use, r, c) for r, c in items))
        for start in range(0, len(wanted), MAX_RESOURCES):
            await self._request(use, purpose, wanted[start : start + MAX_RESOURCES])

    async def grant_for(self, purpose: str, recording_id: str, case_id: str) -> str:
        use = order_for(purpose)
        resource = self._resource(use, recording_id, case_id)
        now = self._clock()
        held = [h for h in self._held.get(purpose, []) if h.expires > now]
        self._held[purpose] = held
        for h in held:
            if resource in h.resources and h.expires - now > RENEW_BEFORE.total_seconds():
                return h.token
        return await self._request(use, purpose, [resource])

    def forget(self, purpose: str, token: str) -> None:
        """Drops a grant media-svc refused (e.g. revoked), so it is not presented again."""
        self._held[purpose] = [h for h in self._held.get(purpose, []) if h.token != token]

    def done(self, purpose: str) -> None:
        """The copy or batch of `purpose` is finished: its grants are no longer needed here."""
        self._held.pop(purpose, None)

    async def _request(self, use: StandingOrderUse, purpose: str, resources: list[Scope]) -> str:
        asked_at = self._clock()  # kept until a little before access-svc's expiry: never later
        token = await self._call(use, purpose, resources)
        self.issued += 1
        self._held.setdefault(purpose, []).append(
            _Held(frozenset(resources), token, asked_at + self._ttl.total_seconds() - 1)
        )
        return token

    async def _call(self, use: StandingOrderUse, purpose: str, resources: list[Scope]) -> str:
        """access-svc's RequestStandingGrant; answers the grant token. FAILED_PRECONDITION (access-svc has
        not seen the hold or the recordings' ingest yet: its projections trail retention-svc's by the
        event's trip) and UNAVAILABLE are retried for up to `wait_s`."""
        deadline = self._clock() + self._wait_s
        while True:
            try:
                return await self._call_once(use, purpose, resources)
            except _Retry as retry:
                if self._clock() >= deadline:
                    raise FailedPrecondition(f"{retry}; retry later") from retry.__cause__
                await asyncio.sleep(RETRY_EVERY_S)

    async def _call_once(self, use: StandingOrderUse, purpose: str, resources: list[Scope]) -> str:
        duration = Duration()
        duration.FromTimedelta(self._ttl)
        async with grpc.aio.insecure_channel(self.address) as channel:
            try:
                answer = await agrpc.AccessServiceStub(channel).RequestStandingGrant(
                    apb.RequestStandingGrantRequest(
                        standing_order=use.order_id,
                        resources=[gpb.GrantResource(kind=k, id=i) for k, i in resources],
                        actions=[gpb.GRANTED_ACTION_DOWNLOAD],
                        purpose=purpose,
                        duration=duration,
                    ),
                    metadata=(("authorization", f"Bearer {self._token()}"),),
                    timeout=30,
                )
            except grpc.aio.AioRpcError as error:
                text = f"access-svc refused standing grant {use.order_id} ({purpose}): {error.details()}"
                if error.code() in (
                    grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.INVALID_ARGUMENT,
                ):
                    raise PermissionDenied(text) from error
                raise _Retry(f"{text} ({error.code().name})") from error
        token = answer.request.grant_token
        if not token:
            raise PermissionDenied(f"access-svc issued no grant token for {use.order_id} ({purpose})")
        return str(token)


class GrpcMediaContent(MediaContent, MediaDisposal):
    def __init__(
        self,
        address: str,
        *,
        token_key_pem: bytes,
        grants: AccessSvcGrants | None = None,
        access_address: str = "127.0.0.1:50054",
        subject: str = "retention-svc",
        unit: str = "lawtrail-services",
        token_file: Path | None = None,
    ) -> None:
        self.address = address
        self._token_key = token_key_pem
        self._token_file = token_file
        self._grants = grants or AccessSvcGrants(access_address, self._token)
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

    async def prepare(self, purpose: str, items: Sequence[tuple[str, str]]) -> None:
        await self._grants.prepare(purpose, items)

    def finished(self, purpose: str) -> None:
        self._grants.done(purpose)

    @asynccontextmanager
    async def download(
        self, recording_id: str, *, case_id: str, purpose: str
    ) -> AsyncIterator[tuple[ContentHeader, AsyncIterator[bytes]]]:
        grant = await self._grants.grant_for(purpose, recording_id, case_id)
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
                if error.code() == grpc.StatusCode.PERMISSION_DENIED:
                    self._grants.forget(purpose, grant)
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
