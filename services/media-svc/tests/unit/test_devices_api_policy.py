"""The DeviceService role policy names every RPC of the contract and nothing else."""

from __future__ import annotations

from lawtrail.media.v1 import device_service_pb2
from media_svc.adapters.proto_mapping import decode_device_page_token as decode_page_token
from media_svc.adapters.proto_mapping import encode_device_page_token as encode_page_token
from media_svc.entrypoints.grpc_api import role_policy

DEVICE_ROLE_POLICY = {
    m: roles for m, roles in role_policy().items() if m.startswith("/lawtrail.media.v1.DeviceService/")
}

SERVICE = device_service_pb2.DESCRIPTOR.services_by_name["DeviceService"]


def test_role_policy_covers_exactly_the_device_rpcs() -> None:
    assert set(DEVICE_ROLE_POLICY) == {f"/{SERVICE.full_name}/{m.name}" for m in SERVICE.methods}


def test_r21_repairs_need_a_unit_head_or_archivist() -> None:
    assert DEVICE_ROLE_POLICY[f"/{SERVICE.full_name}/RecordRepair"] == {"UNIT_HEAD", "ARCHIVIST"}


def test_every_rpc_needs_a_role() -> None:
    assert all(DEVICE_ROLE_POLICY.values())


def test_page_token_round_trip() -> None:
    assert decode_page_token(encode_page_token("BC-0007")) == "BC-0007"
    assert encode_page_token(None) == ""
    assert decode_page_token("") is None
