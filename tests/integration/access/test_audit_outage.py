"""R4, R23-3 on the real stack: the audit record of every RPC survives a broker outage.

The Kafka broker is killed (SIGKILL, as the chaos suite does); case-svc and access-svc keep answering
calls — answered (NOT_FOUND), refused for a forged token (UNAUTHENTICATED), refused for a missing role
(PERMISSION_DENIED) — and each call's RpcCalled record is in the service's own ``audit_outbox`` when the
caller has its answer. case-svc is then killed too (SIGKILL) while the broker is still down, so its
records survive only in its database. The broker is started again, then case-svc; an outside consumer
reads every one of those records from the audit topic exactly once (one record per call, with the ce_id
stored during the outage: access-svc's relay retried in process, case-svc's restarted relay swept its
outbox), and access-svc's ledger holds each exactly once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from lawtrail.access.v1 import ledger_service_pb2 as lpb
from lawtrail.access.v1 import ledger_service_pb2_grpc as lpb_grpc
from lawtrail.audit.v1 import audit_events_pb2
from lawtrail.case.v1 import case_service_pb2 as cpb
from lawtrail.case.v1 import case_service_pb2_grpc as cpb_grpc
from lawtrail_local.kafka import ensure_kafka_libs
from lawtrail_local.kafka_probe import read_from_start
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceProcess
from lawtrail_local.stack import Stack
from pymongo import MongoClient
from servicekit.auth.devtoken import ensure_dev_keys, generate_keypair, mint_token
from servicekit.grpc.audit import AUDIT_OUTBOX, AUDIT_TOPIC
from servicekit.messaging.envelope import Envelope, decode

pytestmark = pytest.mark.integration

RPC_CALLED = "lawtrail.audit.v1.RpcCalled"


@pytest.fixture
def running(stack: Stack, tmp_path: Any) -> Iterator[tuple[ServiceProcess, ServiceProcess, bytes]]:
    starter = ServiceStarter(stack, tmp_path / "svc")
    pem = ensure_dev_keys(starter.data_dir)[0].read_bytes()
    try:
        access = starter("access-svc", env={"LAWTRAIL_ACCESS_CHECKPOINT_INTERVAL_S": "3600"})
        yield access, starter("case-svc"), pem
    finally:
        starter.stop_all()


def _stored(stack: Stack, service: ServiceProcess, request_ids: set[str]) -> Counter[str]:
    """Audit records of these calls still in the service's audit_outbox (not yet published)."""
    found: Counter[str] = Counter()
    client: MongoClient[dict[str, Any]] = MongoClient(stack.mongo_uri)
    try:
        for document in client[service.env["LAWTRAIL_MONGO_DATABASE"]][AUDIT_OUTBOX].find({}):
            for entry in document["outbox"]:
                called = audit_events_pb2.RpcCalled.FromString(bytes(entry["data"]))
                if called.request_id in request_ids:
                    found[called.request_id] += 1
    finally:
        client.close()
    return found


async def _read_topic(bootstrap: str, request_ids: set[str], within_s: float) -> list[Envelope]:
    """Every record of these calls on the audit topic, read from the beginning by an outside consumer:
    waits until each call was seen, then reads on to the end offsets of that moment."""
    ours: list[Envelope] = []
    seen: set[str] = set()
    read = 0

    def all_seen(records: list[Any]) -> bool:
        nonlocal read
        for record in records[read:]:
            envelope = decode(record)
            if envelope.type == RPC_CALLED:
                request_id = envelope.parse(audit_events_pb2.RpcCalled).request_id
                if request_id in request_ids:
                    ours.append(envelope)
                    seen.add(request_id)
        read = len(records)
        return seen >= request_ids

    try:
        records = await read_from_start(
            bootstrap, [AUDIT_TOPIC], until=all_seen, stall_s=within_s, within_s=within_s
        )
    except AssertionError as error:
        missing = sorted(request_ids - seen)
        raise AssertionError(
            f"{len(missing)} calls never reached {AUDIT_TOPIC}: {missing[:5]} ({error})"
        ) from None
    all_seen(records)  # the records read after `until` was first true, to the end offsets
    return ours


def _kill_kafka(stack: Stack) -> None:
    stack.kafka.process.kill()


def _start_kafka(stack: Stack) -> None:
    if not stack.kafka.process.running:
        stack.kafka.start(ensure_kafka_libs(stack.progress))
        stack.kafka.wait_ready(180)


def test_r23_audit_records_made_while_the_broker_is_down_reach_the_topic_and_the_ledger_exactly_once(
    stack: Stack, running: tuple[ServiceProcess, ServiceProcess, bytes]
) -> None:
    access, case, pem = running
    run = uuid.uuid4().hex[:8]
    officer = mint_token(pem, subject=f"officer-{run}", unit="unit-a", roles=["OFFICER"])
    forged = mint_token(
        generate_keypair()[0], subject=f"mallory-{run}", unit="unit-a", roles=["LEGAL_OFFICE"]
    )
    legal = mint_token(pem, subject=f"legal-{run}", unit="legal", roles=["LEGAL_OFFICE"])
    calls: dict[str, tuple[ServiceProcess, str, grpc.StatusCode]] = {}

    _kill_kafka(stack)
    try:
        with (
            grpc.insecure_channel(case.grpc_address) as case_channel,
            grpc.insecure_channel(access.grpc_address) as access_channel,
        ):
            cases = cpb_grpc.CaseServiceStub(case_channel)
            ledger = lpb_grpc.LedgerServiceStub(access_channel)
            for i in range(10):
                for token, expected in (
                    (officer, grpc.StatusCode.NOT_FOUND),
                    (forged, grpc.StatusCode.UNAUTHENTICATED),
                ):
                    request_id = f"outage-{run}-case-{len(calls)}"
                    md = (("authorization", f"Bearer {token}"), ("x-request-id", request_id))
                    with pytest.raises(grpc.RpcError) as refused:
                        cases.GetCase(
                            cpb.GetCaseRequest(case_id=f"no-such-case-{i}"), metadata=md, timeout=30
                        )
                    assert refused.value.code() is expected
                    calls[request_id] = (case, "GetCase", expected)
            for i in range(5):
                # An officer may not read the ledger: PERMISSION_DENIED, audited by access-svc.
                request_id = f"outage-{run}-ledger-{i}"
                md = (("authorization", f"Bearer {officer}"), ("x-request-id", request_id))
                with pytest.raises(grpc.RpcError) as refused:
                    ledger.GetCheckpoint(lpb.GetCheckpointRequest(), metadata=md, timeout=30)
                assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
                calls[request_id] = (access, "GetCheckpoint", grpc.StatusCode.PERMISSION_DENIED)

        # Answered while the broker is down: every record is in its service's own database.
        for service in (case, access):
            ids = {r for r, (s, _, _) in calls.items() if s is service}
            assert _stored(stack, service, ids) == Counter(dict.fromkeys(ids, 1))
        # case-svc crashes before the broker is back: nothing of its audit is left in its memory or its
        # producer's buffers; the restarted process relays what its database holds.
        case.kill()
    finally:
        _start_kafka(stack)
    case.restart(120)

    ours = asyncio.run(_read_topic(stack.kafka_bootstrap, set(calls), within_s=240))

    # Exactly once on the topic: one record per call, no redelivery.
    per_call = Counter(e.parse(audit_events_pb2.RpcCalled).request_id for e in ours)
    assert per_call == Counter(dict.fromkeys(calls, 1)), [r for r, n in per_call.items() if n != 1]
    for envelope in ours:
        called = envelope.parse(audit_events_pb2.RpcCalled)
        service, method, code = calls[called.request_id]
        assert (called.server, called.method, called.code) == (service.spec.name, method, code.name)
        assert envelope.source == f"/lawtrail/{service.spec.name}"
    # Published means gone from the outbox (the relay deletes what the broker acknowledged).
    for service in (case, access):
        assert not _stored(stack, service, set(calls))

    # And in access-svc's ledger, each exactly once (found by its ce_source + ce_id).
    md = (("authorization", f"Bearer {legal}"),)
    with grpc.insecure_channel(access.grpc_address) as channel:
        ledger = lpb_grpc.LedgerServiceStub(channel)
        pending = {e.id: e for e in ours}
        deadline = time.monotonic() + 180
        while pending and time.monotonic() < deadline:
            for ce_id, envelope in list(pending.items()):
                try:
                    entry = ledger.GetLedgerEntry(
                        lpb.GetLedgerEntryRequest(ce_source=envelope.source, ce_id=ce_id), metadata=md
                    )
                except grpc.RpcError as error:
                    if error.code() is not grpc.StatusCode.NOT_FOUND:
                        raise
                    continue
                leaf = lpb.LedgerLeaf.FromString(entry.leaf)
                assert (leaf.ce_type, leaf.data) == (RPC_CALLED, envelope.data)
                del pending[ce_id]
            time.sleep(0.5)
        assert not pending, f"{len(pending)} audit records never reached the ledger"
        for method in (
            "/lawtrail.case.v1.CaseService/GetCase",
            "/lawtrail.access.v1.LedgerService/GetCheckpoint",
        ):
            indexes = ledger.ListLedgerEntries(lpb.ListLedgerEntriesRequest(ce_subject=method), metadata=md)
            leaves = [
                lpb.LedgerLeaf.FromString(
                    ledger.GetLedgerEntry(lpb.GetLedgerEntryRequest(leaf_index=i), metadata=md).leaf
                )
                for i in indexes.leaf_indexes
            ]
            appended = Counter(
                audit_events_pb2.RpcCalled.FromString(leaf.data).request_id
                for leaf in leaves
                if leaf.ce_type == RPC_CALLED
            )
            wanted = {r for r, (_, m, _) in calls.items() if method.endswith(f"/{m}")}
            assert {r: appended[r] for r in wanted} == dict.fromkeys(wanted, 1)
    print(f"\nR23-3: {len(calls)} calls made with the broker down; each once on the topic and in the ledger")
