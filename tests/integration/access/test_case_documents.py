"""R6, R16 on the real stack: case-svc serves a document's content only under a grant issued by the real
access-svc (or to the case's own responsible officer while it is open), checks its SHA-256 on every read,
records CaseDocumentRead (which reaches the audit ledger), and honours AccessRevoked within seconds."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from lawtrail.access.v1 import access_grant_pb2 as gpb
from lawtrail.access.v1 import access_service_pb2 as api
from lawtrail.access.v1 import ledger_service_pb2 as lpb
from lawtrail.case.v1 import case_pb2
from lawtrail.case.v1 import case_service_pb2 as cpb
from lawtrail.case.v1 import case_service_pb2_grpc as cpb_grpc
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceProcess
from lawtrail_local.stack import Stack
from servicekit.auth.devtoken import ensure_dev_keys, mint_token

sys.path.insert(0, str(Path(__file__).parent))

from access_it import call, eventually, find_event, person

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def services(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, ServiceProcess, bytes]]:
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("case-docs"))
    private_pem = ensure_dev_keys(starter.data_dir)[0].read_bytes()
    access = starter("access-svc", env={"LAWTRAIL_ACCESS_CHECKPOINT_INTERVAL_S": "3600"})
    case = starter("case-svc")
    try:
        yield access, case, private_pem
    finally:
        starter.stop_all()


def test_r16_case_file_content_is_read_under_a_grant_and_refused_after_revocation(
    services: tuple[ServiceProcess, ServiceProcess, bytes], stack: Stack
) -> None:
    access, case_svc, pem = services
    channel = grpc.insecure_channel(case_svc.grpc_address)
    a_channel = grpc.insecure_channel(access.grpc_address)
    stub = cpb_grpc.CaseServiceStub(channel)

    def as_(subject: str, unit: str, roles: list[str]) -> list[tuple[str, str]]:
        return [("authorization", "Bearer " + mint_token(pem, subject=subject, unit=unit, roles=roles))]

    alice, reviewer = as_("alice", "unit-a", ["OFFICER"]), as_("reviewer-9", "unit-b", ["OFFICER"])
    try:
        opened = stub.OpenCase(
            cpb.OpenCaseRequest(
                act_type=case_pb2.ACT_TYPE_PENALTY,
                procedure=case_pb2.PROCEDURE_GENERAL,
                unit="unit-a",
                cause="未按规定修建防空地下室",
                responsible_officer="alice",
                parties=[case_pb2.Party(name="某某建设有限公司", kind=case_pb2.PARTY_KIND_ORGANIZATION)],
            ),
            metadata=alice,
        ).case
        content = "立案审批表 正文".encode()
        filed = stub.FileDocument(
            cpb.FileDocumentRequest(
                case_id=opened.case_id,
                document_type="FILING_APPROVAL",
                number="许人防立〔2026〕9号",
                title="立案审批表",
                author="alice",
                signed_on="2026-05-01",
                content=content,
                sha256=hashlib.sha256(content).hexdigest(),
                content_type="application/pdf",
            ),
            metadata=alice,
        ).document
        read = cpb.ReadDocumentRequest(case_id=opened.case_id, document_id=filed.document_id)

        # The responsible officer reads the open case without a grant.
        assert stub.ReadDocument(read, metadata=alice).content == content
        # Someone from another unit cannot.
        with pytest.raises(grpc.RpcError) as refused:
            stub.ReadDocument(read, metadata=reviewer)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED

        # …until the owning unit's head approves their request in access-svc.
        requester = person(a_channel, pem, "reviewer-9", "unit-b", ["OFFICER"])
        head = person(a_channel, pem, "head-1", "unit-a", ["UNIT_HEAD"])
        d = Duration()
        d.FromTimedelta(timedelta(minutes=10))
        request = call(
            requester,
            "access",
            "RequestAccess",
            api.RequestAccessRequest(
                resources=[gpb.GrantResource(kind=gpb.GRANT_RESOURCE_KIND_CASE, id=opened.case_id)],
                actions=[gpb.GRANTED_ACTION_VIEW],
                purpose="administrative reconsideration",
                duration=d,
            ),
        ).request
        decide = api.DecideAccessRequestRequest(
            request_id=request.request_id, decision=api.ACCESS_DECISION_APPROVE, reason="ok"
        )
        approved = eventually(lambda: call(head, "access", "DecideAccessRequest", decide)).request
        token = call(
            requester,
            "access",
            "GetAccessRequest",
            api.GetAccessRequestRequest(request_id=request.request_id),
        ).request.grant_token
        with_grant = cpb.ReadDocumentRequest(
            case_id=opened.case_id, document_id=filed.document_id, access_grant=token
        )
        answer = stub.ReadDocument(with_grant, metadata=reviewer)
        assert answer.content == content
        assert answer.document.sha256 == hashlib.sha256(content).hexdigest()
        event = asyncio.run(
            find_event(stack.kafka_bootstrap, "lawtrail.case.v1.events", opened.case_id, ".CaseDocumentRead")
        )
        assert event.type == "lawtrail.case.v1.CaseDocumentRead"

        # The read is in the audit ledger.
        legal = person(a_channel, pem, "legal-1", "legal", ["LEGAL_OFFICE"])
        deadline = time.monotonic() + 30
        while True:
            entries = call(
                legal, "ledger", "ListLedgerEntries", lpb.ListLedgerEntriesRequest(ce_subject=opened.case_id)
            ).leaf_indexes
            types = [
                lpb.LedgerLeaf.FromString(
                    call(legal, "ledger", "GetLedgerEntry", lpb.GetLedgerEntryRequest(leaf_index=i)).leaf
                ).ce_type
                for i in entries
            ]
            if "lawtrail.case.v1.CaseDocumentRead" in types:
                break
            assert time.monotonic() < deadline, f"no CaseDocumentRead in the ledger; got {types}"
            time.sleep(0.2)

        call(
            head,
            "access",
            "RevokeAccessGrant",
            api.RevokeAccessGrantRequest(grant_id=approved.grant_id, reason="done"),
        )
        began = time.monotonic()
        refusal = None
        while time.monotonic() - began < 30:
            try:
                stub.ReadDocument(with_grant, metadata=reviewer)
            except grpc.RpcError as error:
                refusal = error
                break
            time.sleep(0.05)
        assert refusal is not None, "case-svc still accepted the grant 30 s after its revocation"
        delay = time.monotonic() - began
        print(f"\nR16 revocation honoured by case-svc {delay:.2f} s after RevokeAccessGrant returned")
        assert refusal.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "revoked" in (refusal.details() or "")
        assert delay < 10
    finally:
        channel.close()
        a_channel.close()
