"""Files access requests in access-svc for spot-check reviewers (R16, R22): `AccessService.RequestAccess`
with `on_behalf_of` = the reviewer, as service account `compliance-svc` (role SERVICE, a bearer token signed
by a key access-svc trusts). The reviewer is the request's requester: the unit head of the material's unit
or the legal affairs office approves it in access-svc, and the reviewer reads the grant token there
(`GetAccessRequest`) to open the material in media-svc / case-svc.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

import grpc
from google.protobuf.duration_pb2 import Duration
from lawtrail.access.v1 import access_grant_pb2 as gpb
from lawtrail.access.v1 import access_service_pb2 as apb
from lawtrail.access.v1 import access_service_pb2_grpc as agrpc
from servicekit.errors import FailedPrecondition, InvalidArgument

from compliance_svc.domain.spotcheck import GRANT_HOURS

KINDS = {"RECORDING": gpb.GRANT_RESOURCE_KIND_RECORDING, "CASE": gpb.GRANT_RESOURCE_KIND_CASE}


class GrpcAccessFiler:
    def __init__(self, address: str, token: Callable[[], str]) -> None:
        self.address = address
        self._token = token

    async def file(self, reviewer: str, material: Sequence[tuple[str, str]], purpose: str) -> str:
        duration = Duration()
        duration.FromTimedelta(timedelta(hours=GRANT_HOURS))
        async with grpc.aio.insecure_channel(self.address) as channel:
            try:
                answer = await agrpc.AccessServiceStub(channel).RequestAccess(
                    apb.RequestAccessRequest(
                        resources=[gpb.GrantResource(kind=KINDS[k], id=i) for k, i in material],
                        # A reviewer watches recordings and reads case files; DOWNLOAD is what
                        # media-svc's DownloadRecording asks for.
                        actions=[gpb.GRANTED_ACTION_VIEW, gpb.GRANTED_ACTION_DOWNLOAD],
                        purpose=purpose,
                        duration=duration,
                        on_behalf_of=reviewer,
                    ),
                    metadata=(("authorization", f"Bearer {self._token()}"),),
                    timeout=30,
                )
            except grpc.aio.AioRpcError as error:
                text = (
                    f"access-svc did not take the access request for reviewer {reviewer}: {error.details()}"
                )
                if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidArgument(f"reviewers: {text}") from error
                raise FailedPrecondition(
                    f"{text} ({error.code().name}); draw the spot check again"
                ) from error
        return str(answer.request.request_id)
