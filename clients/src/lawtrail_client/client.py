"""Typed clients of Lawtrail's services: the generated stubs on an authenticated, retrying channel.

    from lawtrail_client import CaseClient, MediaClient
    from lawtrail.case.v1 import case_service_pb2 as cases

    with CaseClient.connect("127.0.0.1:50051", token=TOKEN) as client:
        opened = client.cases.OpenCase(cases.OpenCaseRequest(...))

    with MediaClient.connect("127.0.0.1:50052", token=TOKEN) as media:
        device = media.devices.GetDevice(device_service_pb2.GetDeviceRequest(device_number="BC-0001"))

Each attribute is the generated stub (`CaseServiceStub`, `RecordingServiceStub`, `DeviceServiceStub`), so
every RPC of the published contract is available with its generated type hints; a failed call raises a
`lawtrail_client.errors.LawtrailError` subclass. `timeout=` on a call overrides the default deadline.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

import grpc
from lawtrail.access.v1 import access_service_pb2_grpc, ledger_service_pb2_grpc
from lawtrail.case.v1 import case_service_pb2_grpc
from lawtrail.media.v1 import device_service_pb2_grpc, recording_service_pb2_grpc

from lawtrail_client.channel import Tls, TokenSource, open_channel

DEFAULT_CASE_TARGET = "127.0.0.1:50051"
DEFAULT_MEDIA_TARGET = "127.0.0.1:50052"
DEFAULT_ACCESS_TARGET = "127.0.0.1:50054"


class _Client:
    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        token: TokenSource,
        tls: Tls | None = None,
        timeout_s: float = 10.0,
        retries: int = 4,
    ) -> Self:
        """Connects to `target` (`host:port`) presenting `token` (a JWT or a callable returning one)."""
        return cls(open_channel(target, token, tls=tls, timeout_s=timeout_s, retries=retries))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class CaseClient(_Client):
    """case-svc: cases, stages, incidents, activities and the case file."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__(channel)
        self.cases = case_service_pb2_grpc.CaseServiceStub(channel)


class MediaClient(_Client):
    """media-svc: recordings (upload, search, links, continuity, download, fixity) and devices."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__(channel)
        self.recordings = recording_service_pb2_grpc.RecordingServiceStub(channel)
        self.devices = device_service_pb2_grpc.DeviceServiceStub(channel)


DEFAULT_COMPLIANCE_TARGET = "127.0.0.1:50055"


class ComplianceClient(_Client):
    """compliance-svc: findings and their lifecycle, R22 spot checks."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__(channel)
        from lawtrail.compliance.v1 import compliance_service_pb2_grpc

        self.compliance = compliance_service_pb2_grpc.ComplianceServiceStub(channel)


class AccessClient(_Client):
    """access-svc: access requests, decisions and grants (R16); the audit ledger's checkpoints and proofs."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__(channel)
        self.access = access_service_pb2_grpc.AccessServiceStub(channel)
        self.ledger = ledger_service_pb2_grpc.LedgerServiceStub(channel)
