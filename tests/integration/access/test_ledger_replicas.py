"""R4, R23-3: two access-svc processes on one database keep one ledger — no fork, no duplicate, no gap.

The ledger consumer runs only in the process holding the lease `consumer:access-svc.ledger`, and the
store fences its writes with the lease's epoch. On FerretDB (this stack) a second live process of a
service cannot even start (ADR 0007's single-writer lease), so the dangerous case is the one tested: the
appender is frozen (SIGSTOP — a long GC pause, a partitioned host) while the ledger has records in hand,
a second process takes both leases over when they expire and appends, then the first one wakes up as a
stale appender. Every audited call then appears in the ledger exactly once, and the stored leaves
reproduce a checkpoint signed over them (checked offline against the service's public key).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import grpc
import lawtrail_merkle as merkle
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from lawtrail.access.v1 import ledger_service_pb2 as lpb
from lawtrail.access.v1 import ledger_service_pb2_grpc as lpb_grpc
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_merkle.checkpoint import checkpoint_body
from servicekit.auth.devtoken import ensure_dev_keys, mint_token

pytestmark = pytest.mark.integration

METHOD = lpb.DESCRIPTOR.services_by_name["LedgerService"].methods_by_name["GetConsistencyProof"]
SUBJECT = f"/{METHOD.containing_service.full_name}/{METHOD.name}"
TTL_S = 3
ENV = {
    "LAWTRAIL_WRITER_LEASE_TTL_S": str(TTL_S),
    "LAWTRAIL_ACCESS_CHECKPOINT_INTERVAL_S": "3600",
}


def refused_calls(address: str, n: int) -> None:
    """`n` calls without a token: each is refused (UNAUTHENTICATED) and audited → one ledger entry."""
    with grpc.insecure_channel(address) as channel:
        stub = lpb_grpc.LedgerServiceStub(channel)
        for _ in range(n):
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetConsistencyProof(
                    lpb.GetConsistencyProofRequest(first_size=1, second_size=1), timeout=30
                )
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


def ledger_entries(ledger: lpb_grpc.LedgerServiceStub, md: tuple[tuple[str, str], ...]) -> list[int]:
    return list(
        ledger.ListLedgerEntries(lpb.ListLedgerEntriesRequest(ce_subject=SUBJECT), metadata=md).leaf_indexes
    )


def test_r23_a_stale_appender_after_a_take_over_neither_forks_nor_duplicates_the_ledger(
    start_service: ServiceStarter, tmp_path: Path
) -> None:
    pem = ensure_dev_keys(start_service.data_dir)[0].read_bytes()
    md = (
        (
            "authorization",
            f"Bearer {mint_token(pem, subject='legal-1', unit='legal', roles=['LEGAL_OFFICE'])}",
        ),
    )
    first = start_service("access-svc", env=ENV)
    refused_calls(first.grpc_address, 20)
    with grpc.insecure_channel(first.grpc_address) as channel:
        ledger = lpb_grpc.LedgerServiceStub(channel)
        deadline = time.monotonic() + 60
        while len(ledger_entries(ledger, md)) < 20 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert len(ledger_entries(ledger, md)) == 20
    # Records the first process has not appended yet: its own calls, audited and relayed, then frozen.
    refused_calls(first.grpc_address, 20)
    pid = first.process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(TTL_S + 1.5)  # both leases expire: the frozen process cannot renew them
        second = start_service("access-svc", env=ENV)
        refused_calls(second.grpc_address, 20)
    finally:
        os.kill(pid, signal.SIGCONT)  # the stale appender wakes up with its batch in hand
    refused_calls(second.grpc_address, 20)

    with grpc.insecure_channel(second.grpc_address) as channel:
        ledger = lpb_grpc.LedgerServiceStub(channel)
        deadline = time.monotonic() + 120
        found: list[int] = []
        while time.monotonic() < deadline:
            found = ledger_entries(ledger, md)
            if len(found) >= 80:
                break
            time.sleep(0.5)
        # Whatever the first process still had relayed is in; now nothing more may come.
        time.sleep(3)
        found = ledger_entries(ledger, md)
        checkpoint = ledger.SignCheckpoint(lpb.SignCheckpointRequest(), metadata=md).checkpoint
        size = checkpoint.tree_size
        leaves = [
            ledger.GetLedgerEntry(lpb.GetLedgerEntryRequest(leaf_index=i), metadata=md).leaf
            for i in range(size)
        ]

    parsed = [lpb.LedgerLeaf.FromString(leaf) for leaf in leaves]
    keys = Counter((leaf.ce_source, leaf.ce_id) for leaf in parsed)
    assert [k for k, n in keys.items() if n > 1] == [], "no event appended twice"
    calls = [i for i, leaf in enumerate(parsed) if leaf.ce_subject == SUBJECT]
    assert len(calls) == 80, f"every audited call exactly once, found {len(calls)}"
    assert sorted(found) == calls
    # One tree: the signed root is the RFC 9162 root of the stored leaves, checked offline.
    assert merkle.root_of_leaves(leaves) == checkpoint.root_hash
    public = load_pem_public_key(
        (start_service.data_dir / "keys" / "access-grant-dev-public.pem").read_bytes()
    )
    assert isinstance(public, Ed25519PublicKey)
    public.verify(
        checkpoint.signature,
        checkpoint_body(checkpoint.origin, size, checkpoint.root_hash, checkpoint.signed_at.ToMilliseconds()),
    )
    # The first process lost its leases: it stopped rather than append beside the second.
    deadline = time.monotonic() + 30
    while first.process.running and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not first.process.running, "the stale process stops once it sees its lease was taken over"
