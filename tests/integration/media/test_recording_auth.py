"""Every RPC of RecordingService refuses a caller it cannot trust or who lacks the role (architecture:
Security; R16 — nobody views recordings without approval starts with knowing who asks).

The methods are enumerated from the published service descriptor, so an RPC added later is covered
without touching this test; the role each one lacks is derived from the service's own role policy.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from lawtrail.media.v1 import recording_service_pb2 as rec
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceProcess
from lawtrail_local.stack import Stack
from media_svc.entrypoints.grpc_api import role_policy
from servicekit.auth import Role
from servicekit.auth.devtoken import ensure_dev_keys, generate_keypair, mint_token
from servicekit.testing import empty_request, invoke

pytestmark = pytest.mark.integration

SERVICE = rec.DESCRIPTOR.services_by_name["RecordingService"]


@pytest.fixture(scope="module")
def media_svc(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, bytes]]:
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("media-auth"))
    private_path, _ = ensure_dev_keys(starter.data_dir)
    try:
        yield starter("media-svc"), private_path.read_bytes()
    finally:
        starter.stop_all()


def _refusals(key: bytes, method: MethodDescriptor) -> dict[str, tuple[str, grpc.StatusCode]]:
    allowed = role_policy()[f"/{SERVICE.full_name}/{method.name}"]
    lacking = sorted(r for r in Role if r not in allowed)
    forged_key = generate_keypair()[0]
    token = {"subject": "officer-1", "unit": "unit-a"}
    entitled = sorted(allowed & set(Role))  # roles that would pass, were the token valid
    refusals = {
        "missing": ("", grpc.StatusCode.UNAUTHENTICATED),
        "malformed": ("not-a-jwt", grpc.StatusCode.UNAUTHENTICATED),
        "expired": (
            mint_token(key, **token, roles=entitled, ttl_s=-60),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        "forged": (
            mint_token(forged_key, **token, roles=entitled),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        "no role": (mint_token(key, **token, roles=()), grpc.StatusCode.PERMISSION_DENIED),
    }
    if lacking:
        refusals[f"only {lacking[0]}"] = (
            mint_token(key, **token, roles=[lacking[0]]),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    return refusals


@pytest.mark.parametrize("method", list(SERVICE.methods), ids=lambda m: m.name)
def test_r16_every_recording_rpc_refuses_untrusted_and_underprivileged_callers(
    media_svc: tuple[ServiceProcess, bytes], method: MethodDescriptor
) -> None:
    service, key = media_svc
    with grpc.insecure_channel(service.grpc_address) as channel:
        for what, (token, expected) in _refusals(key, method).items():
            metadata = [("authorization", f"Bearer {token}")] if token else []
            with pytest.raises(grpc.RpcError) as refused:
                invoke(channel, method, empty_request(method), metadata=metadata)
            assert refused.value.code() == expected, f"{method.name} with a {what} token: {refused.value}"
            assert refused.value.details(), f"{method.name} with a {what} token: no message"
