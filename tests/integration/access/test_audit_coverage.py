"""R4, R23-3 audit coverage on the real stack: every RPC of every service (enumerated from the service
descriptors, so a new RPC is covered by construction) leaves an entry in access-svc's audit ledger, refusals
included — each is called without a token (UNAUTHENTICATED) and with a forged one, and the ledger is then
asked for the RpcCalled entries about that method."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
from lawtrail.access.v1 import access_grant_pb2, access_service_pb2, ledger_service_pb2
from lawtrail.access.v1 import ledger_service_pb2 as lpb
from lawtrail.access.v1 import ledger_service_pb2_grpc as lpb_grpc
from lawtrail.audit.v1 import audit_events_pb2
from lawtrail.case.v1 import case_service_pb2
from lawtrail.compliance.v1 import compliance_service_pb2
from lawtrail.media.v1 import device_service_pb2, disposal_service_pb2, recording_service_pb2
from lawtrail.retention.v1 import retention_service_pb2
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceProcess
from lawtrail_local.stack import Stack
from servicekit.auth.devtoken import ensure_dev_keys, generate_keypair, mint_token
from servicekit.testing import empty_request, invoke

pytestmark = pytest.mark.integration

SERVICES = {
    "case-svc": [case_service_pb2.DESCRIPTOR.services_by_name["CaseService"]],
    "media-svc": [
        recording_service_pb2.DESCRIPTOR.services_by_name["RecordingService"],
        device_service_pb2.DESCRIPTOR.services_by_name["DeviceService"],
        disposal_service_pb2.DESCRIPTOR.services_by_name["DisposalService"],
    ],
    "retention-svc": [retention_service_pb2.DESCRIPTOR.services_by_name["RetentionService"]],
    "compliance-svc": [compliance_service_pb2.DESCRIPTOR.services_by_name["ComplianceService"]],
    "access-svc": [
        access_service_pb2.DESCRIPTOR.services_by_name["AccessService"],
        access_grant_pb2.DESCRIPTOR.services_by_name["AccessGrantStatusService"],
        ledger_service_pb2.DESCRIPTOR.services_by_name["LedgerService"],
    ],
}


@pytest.fixture(scope="module")
def running(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, ServiceProcess], bytes]]:
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("audit"))
    pem = ensure_dev_keys(starter.data_dir)[0].read_bytes()
    try:
        started = {
            "access-svc": starter("access-svc", env={"LAWTRAIL_ACCESS_CHECKPOINT_INTERVAL_S": "3600"}),
            "case-svc": starter("case-svc"),
            "media-svc": starter("media-svc", env={"LAWTRAIL_MEDIA_SCRUB_INTERVAL_S": "0"}),
        }
        started["retention-svc"] = starter(
            "retention-svc",
            env={
                "LAWTRAIL_RETENTION_MEDIA_ADDRESS": started["media-svc"].grpc_address,
                "LAWTRAIL_RETENTION_ACCESS_ADDRESS": started["access-svc"].grpc_address,
                "LAWTRAIL_RETENTION_AUTO_COPY_INTERVAL_S": "0",
            },
        )
        started["compliance-svc"] = starter(
            "compliance-svc",
            env={"LAWTRAIL_COMPLIANCE_ACCESS_ADDRESS": started["access-svc"].grpc_address},
        )
        yield started, pem
    finally:
        starter.stop_all()


def test_r23_every_rpc_of_every_service_leaves_a_ledger_entry_refusals_included(
    running: tuple[dict[str, ServiceProcess], bytes],
) -> None:
    started, pem = running
    forged = mint_token(generate_keypair()[0], subject="mallory", unit="unit-a", roles=["LEGAL_OFFICE"])
    called: list[str] = []
    for name, services in SERVICES.items():
        with grpc.insecure_channel(started[name].grpc_address) as channel:
            for service in services:
                for method in service.methods:
                    for metadata in ((), (("authorization", f"Bearer {forged}"),)):
                        with pytest.raises(grpc.RpcError) as refused:
                            invoke(channel, method, empty_request(method), metadata=metadata)
                        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
                    called.append(f"/{service.full_name}/{method.name}")
    assert len(called) == sum(len(s.methods) for ss in SERVICES.values() for s in ss)

    legal = mint_token(pem, subject="legal-1", unit="legal", roles=["LEGAL_OFFICE"])
    md = (("authorization", f"Bearer {legal}"),)
    missing = set(called)
    audited: dict[str, list[audit_events_pb2.RpcCalled]] = {}
    with grpc.insecure_channel(started["access-svc"].grpc_address) as channel:
        ledger = lpb_grpc.LedgerServiceStub(channel)
        deadline = time.monotonic() + 120
        while missing and time.monotonic() < deadline:
            for full in sorted(missing):
                indexes = ledger.ListLedgerEntries(
                    lpb.ListLedgerEntriesRequest(ce_subject=full), metadata=md
                ).leaf_indexes
                events = []
                for i in indexes:
                    leaf = lpb.LedgerLeaf.FromString(
                        ledger.GetLedgerEntry(lpb.GetLedgerEntryRequest(leaf_index=i), metadata=md).leaf
                    )
                    if leaf.ce_type == "lawtrail.audit.v1.RpcCalled":
                        events.append(audit_events_pb2.RpcCalled.FromString(leaf.data))
                refusals = [e for e in events if e.code == "UNAUTHENTICATED"]
                if len(refusals) >= 2:
                    audited[full] = events
                    missing.discard(full)
            time.sleep(0.5)
    assert not missing, f"{len(missing)} RPCs left no ledger entry: {sorted(missing)[:10]}"
    forged_calls = [e for events in audited.values() for e in events if e.subject == "mallory"]
    assert forged_calls, "the claimed subject of a forged token is recorded"
    assert all(not e.subject_verified for e in forged_calls)
    print(f"\nR23-3: {len(audited)} RPCs of {len(SERVICES)} services each left ledger entries for refusals")
