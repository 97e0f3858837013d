"""The cost of auditing every RPC (R4, R23-3; issue 11), measured in one run on its own Kafka + FerretDB.

One small RPC (`GetAccessGrantStatus`, its servicer doing one point read by `_id` in FerretDB — the
shape of a `GetCase`) served by servicekit's real `GrpcServer` (auth, errors, metrics, wire checks)
three ways, in interleaved rounds:

- **none**: no audit interceptor (the baseline);
- **durable**: servicekit's audit as `run_service` wires it — the record is inserted into the service's
  `audit_outbox` before the answer, and the outbox relay (running) publishes it to Kafka and deletes it;
- **fire-and-forget**: the earlier audit — the record handed to the Kafka producer in the background
  (nothing waited for; lost if the broker is down).

Figures: median latency of a lone caller (sequential calls) and the throughput of 16 concurrent callers
(where the durable store's group commit puts several records in one insert), each as a ratio to
**none**. `python -m bench audit`; `--calls N` per round.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from lawtrail.access.v1 import access_grant_pb2 as gpb
from lawtrail.access.v1 import access_grant_pb2_grpc as gpb_grpc
from lawtrail_local.stack import Stack
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from servicekit.auth import TokenVerifier
from servicekit.auth.devtoken import generate_keypair, mint_token
from servicekit.config import ServiceSettings
from servicekit.grpc import GrpcServer, ServiceBinding
from servicekit.grpc.audit import AUDIT_OUTBOX, AuditInterceptor, AuditOutbox
from servicekit.grpc.server import PUBLIC_SERVICES
from servicekit.messaging.outbox import OutboxRelay
from servicekit.messaging.producer import create_producer, send_and_wait
from servicekit.metrics import Metrics

METHOD = "/lawtrail.access.v1.AccessGrantStatusService/GetAccessGrantStatus"
CONCURRENCY = 16


class Status(gpb_grpc.AccessGrantStatusServiceServicer):
    def __init__(self, collection: Any) -> None:
        self._collection = collection

    async def GetAccessGrantStatus(self, request: Any, context: Any) -> gpb.GetAccessGrantStatusResponse:
        await self._collection.find_one({"_id": request.grant_id})
        return gpb.GetAccessGrantStatusResponse()


async def _serve(name: str, db: Any, verifier: TokenVerifier, audit: AuditInterceptor | None) -> GrpcServer:
    binding = ServiceBinding(
        gpb_grpc.add_AccessGrantStatusServiceServicer_to_server,
        Status(db["grants"]),
        gpb.DESCRIPTOR.services_by_name["AccessGrantStatusService"],
    )
    server = GrpcServer(
        ServiceSettings(service_name=name, grpc_address="127.0.0.1:0"),
        services=[binding],
        role_policy={METHOD: frozenset()},
        verifier=verifier,
        metrics=Metrics(CollectorRegistry()),
        audit=audit,
    )
    await server.start()
    return server


async def _sequential(stub: Any, md: Any, calls: int) -> list[float]:
    took = []
    for i in range(calls):
        began = time.perf_counter()
        await stub.GetAccessGrantStatus(gpb.GetAccessGrantStatusRequest(grant_id=f"gr-{i}"), metadata=md)
        took.append(time.perf_counter() - began)
    return took


async def _concurrent(stub: Any, md: Any, calls: int) -> float:
    """Calls per second with CONCURRENCY callers."""

    async def caller(k: int) -> None:
        for i in range(calls // CONCURRENCY):
            await stub.GetAccessGrantStatus(
                gpb.GetAccessGrantStatusRequest(grant_id=f"gr-{k}-{i}"), metadata=md
            )

    began = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(CONCURRENCY)))
    return (calls // CONCURRENCY * CONCURRENCY) / (time.perf_counter() - began)


async def measure(calls: int, rounds: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="lawtrail-audit-bench-"))
    stack = Stack.for_benchmark(workdir / "stack")
    await asyncio.to_thread(stack.start)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri, tz_aware=True)
    settings = ServiceSettings(service_name="bench-svc", kafka_bootstrap_servers=stack.kafka_bootstrap)
    producer = create_producer(settings)
    await producer.start()
    relay = OutboxRelay(producer, metrics=Metrics(CollectorRegistry()))
    servers: dict[str, GrpcServer] = {}
    try:
        db = mongo["audit_bench"]
        private, public = generate_keypair()
        verifier = TokenVerifier([load_pem_public_key(public)], issuer="lawtrail-dev", audience="lawtrail")  # type: ignore[list-item]
        md = (("authorization", f"Bearer {mint_token(private, subject='b', unit='u', roles=['SERVICE'])}"),)
        outbox = AuditOutbox(db[AUDIT_OUTBOX], notify=relay.notify)
        relay.watch(db[AUDIT_OUTBOX], delete_relayed=True)
        await relay.start()

        # The insert alone, nothing relaying it: what the relay's work in the same process adds.
        unrelayed = AuditOutbox(db["audit_outbox_unrelayed"])

        def audit(store: Any) -> AuditInterceptor:
            return AuditInterceptor(
                lambda topic, record: send_and_wait(producer, topic, record),
                server="bench-svc",
                source="/lawtrail/bench-svc",
                skip_services=frozenset(PUBLIC_SERVICES),
                store=store,
            )

        servers = {
            "none": await _serve("bench-none", db, verifier, None),
            "durable": await _serve("bench-durable", db, verifier, audit(outbox.store)),
            "stored, unrelayed": await _serve("bench-stored", db, verifier, audit(unrelayed.store)),
            "fire-and-forget": await _serve("bench-fire", db, verifier, audit(None)),
        }
        channels = {k: grpc.aio.insecure_channel(f"127.0.0.1:{s.port}") for k, s in servers.items()}
        stubs = {k: gpb_grpc.AccessGrantStatusServiceStub(c) for k, c in channels.items()}
        for stub in stubs.values():  # warm up: connections, the collection, the producer
            await _sequential(stub, md, 20)
        lone: dict[str, list[float]] = {k: [] for k in stubs}
        busy: dict[str, list[float]] = {k: [] for k in stubs}
        for r in range(rounds):
            for name, stub in stubs.items():
                lone[name] += await _sequential(stub, md, calls)
                busy[name].append(await _concurrent(stub, md, calls))
            print(f"   round {r + 1}/{rounds} done", flush=True)
        base_lone = statistics.median(lone["none"])
        base_busy = statistics.median(busy["none"])
        print(f"{'audit':<18} {'median latency':>15} {'÷ none':>8} {'calls/s x16':>12} {'none ÷ it':>10}")
        for name in stubs:
            median = statistics.median(lone[name])
            rate = statistics.median(busy[name])
            print(
                f"{name:<18} {median * 1e3:>12.2f} ms {median / base_lone:>8.2f} "
                f"{rate:>12.0f} {base_busy / rate:>10.2f}"
            )
        left = await db[AUDIT_OUTBOX].count_documents({})
        print(f"audit_outbox documents left unpublished at the end: {left}")
        for channel in channels.values():
            await channel.close()
    finally:
        for server in servers.values():
            await server.stop(grace=0)
        await relay.stop()
        await producer.stop()
        await mongo.close()
        await asyncio.to_thread(stack.stop)
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200, help="calls per way per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv if argv is not None else [])
    asyncio.run(measure(args.calls, args.rounds))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
