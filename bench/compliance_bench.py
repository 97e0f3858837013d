"""compliance-svc benchmark: findings-pipeline throughput against a bare faust agent, and the end-to-end
latency from an event to its stored finding.

`main()` starts its own Kafka + FerretDB on free ports in a temporary directory, creates a benchmark topic
(3 partitions) and fills it with real Lawtrail event types (RecordingIngested, a third of them with
media-svc's R19b ingest finding, and RecordingLinked), encoded as the services encode them. Then, in one run:

- **pipeline**: a real compliance-svc process (`LAWTRAIL_COMPLIANCE_TOPICS` = the benchmark topic, a new
  app id) reads the topic from the start; events/s from its `lawtrail_compliance_events_total` metric,
  scraped every 0.5 s: the events applied between the first scrape that saw the pipeline under way and
  the last one before it finished, ÷ the time between those two scrapes. Each scrape renders every
  metric in the service's own process, a load the bare agent does not carry: at one scrape every 20 ms
  they took ~14 % of its CPU samples, at one every 100 ms still 5–10 % (py-spy, 2026-11-29/30);
- **bare**: a faust agent in this process that only decodes the CloudEvents envelope and parses the
  message, over the same topic from the start; events/s the same way;
- **ratio** pipeline ÷ bare (target ≥ 0.5);
- **deciding**, the ceiling the faust table sets: compliance-svc's own faust app (`build_app`: its agent,
  batches, acks, Monitor on its faust table with the changelog) run in this process with nothing stored —
  its findings and spot-check material go nowhere, no database, no outbox — events/s from its
  `events_total` counter, read in-process every 10 ms. deciding ÷ bare is what the stream processing
  the issue asks for (agents and tables) costs before anything is stored; pipeline ÷ deciding is what
  storing costs on top (the findings, the material, the `FindingRaised` events);
- **end-to-end p99**: events produced one by one at a steady rate while compliance-svc runs; latency =
  the `FindingRaised` event's ce_time (written with the finding) − the source event's ce_time.

Sizes: COMPLIANCE_BENCH_EVENTS (default 12000), COMPLIANCE_BENCH_LATENCY_EVENTS (default 200).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.compliance.v1 import compliance_events_pb2
from lawtrail.media.v1 import media_events_pb2 as ev
from lawtrail.media.v1 import recording_pb2 as rpb
from lawtrail_local.ports import free_ports
from lawtrail_local.services import service_spec
from lawtrail_local.stack import Stack
from lawtrail_local.topics import Topic, create_topics
from servicekit.messaging.envelope import decode, encode

TOPIC = "bench.compliance.events"
SOURCE = "/lawtrail/bench"


def _ts(value: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(value)
    return t


def event(n: int, *, uninformed: bool) -> tuple[str, object]:
    rec = f"bench-{uuid.uuid4().hex}"
    start = datetime(2026, 5, 1, tzinfo=UTC) + timedelta(minutes=n)
    cls = rpb.Classification(
        unit=f"unit-{n % 7}", device_number=f"CAM-{n % 13}", officer=f"officer-{n % 11}",
        recorded_from=_ts(start), recorded_to=_ts(start + timedelta(seconds=30)),
        media_kind=rpb.MEDIA_KIND_VIDEO, party_informed=not uninformed, case_id=f"case-{n % 50}",
    )  # fmt: skip
    findings = [rpb.Finding(code="R19B_PARTY_NOT_INFORMED", requirement="R19b", detail="not informed")]
    if n % 2:
        return rec, ev.RecordingLinked(
            recording_id=rec, case_id=f"case-{n % 50}", activity_id=f"act-{n % 50}", unit=cls.unit,
            recorded_from=cls.recorded_from, recorded_to=cls.recorded_to, device_number=cls.device_number,
            officer=cls.officer, party_informed=True,
        )  # fmt: skip
    return rec, ev.RecordingIngested(
        recording_id=rec, sha256="0" * 64, size_bytes=1000, classification=cls,
        findings=findings if uninformed else [],
    )  # fmt: skip


async def fill(bootstrap: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for i in range(n):
            rec, message = event(i, uninformed=i % 6 == 0)
            r = encode(message, source=SOURCE, subject=rec)  # type: ignore[arg-type]
            futures.append(await producer.send(TOPIC, r.value, key=r.key, headers=r.headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def applied(metrics_address: str) -> float:
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("lawtrail_compliance_events_total{") and 'outcome="applied"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def pipeline_rate(metrics_address: str, n: int, timeout_s: float = 600, every_s: float = 0.5) -> float:
    """Events/s between two scrapes taken while the pipeline was under way: the first that saw an event
    applied and the last that saw fewer than `n` — both counts exact at their scrape, so the rate needs no
    fine polling (a scrape renders every metric in the service's process, a load the bare agent does not
    carry: see the module docstring)."""
    samples: list[tuple[float, float]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = applied(metrics_address)
        samples.append((time.monotonic(), count))
        if count >= n:
            break
        time.sleep(every_s)
    under_way = [(t, c) for t, c in samples if 0 < c < n]
    if samples[-1][1] < n:
        raise RuntimeError(f"compliance-svc applied {samples[-1][1]:.0f} of {n} events in {timeout_s} s")
    if len(under_way) < 2 or under_way[-1][1] - under_way[0][1] < n / 2:
        raise RuntimeError(
            f"the pipeline applied {n} events within {len(under_way)} scrapes {every_s} s apart: too few to "
            "time it — raise COMPLIANCE_BENCH_EVENTS"
        )
    (t0, c0), (t1, c1) = under_way[0], under_way[-1]
    return (c1 - c0) / (t1 - t0)


async def bare_rate(bootstrap: str, n: int, work: Path) -> float:
    import faust
    from faust.contrib.asgi import faust_app_running

    app = faust.App(
        f"bench-bare-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", store="memory://",
        datadir=str(work / "bare"), web_enabled=False, autodiscover=False, topic_partitions=3,
        topic_disable_leader=True, consumer_auto_offset_reset="earliest",
    )  # fmt: skip
    topic = app.topic(TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    types = {c.DESCRIPTOR.full_name: c for c in (ev.RecordingIngested, ev.RecordingLinked)}
    seen = {"n": 0, "first": 0.0, "last": 0.0}
    done = asyncio.Event()

    @app.agent(topic)
    async def bare(stream):  # type: ignore[no-untyped-def]
        async for e in stream.events():
            envelope = decode(e.message)
            envelope.parse(types[envelope.type])
            seen["n"] += 1
            if seen["n"] == 1:
                seen["first"] = time.monotonic()
            if seen["n"] >= n:
                seen["last"] = time.monotonic()
                done.set()

    (work / "bare").mkdir(parents=True, exist_ok=True)
    async with faust_app_running(app, stop_timeout=10):
        await asyncio.wait_for(done.wait(), 600)
    return n / max(seen["last"] - seen["first"], 1e-3)


class _StoreNothing:
    """The handlers of the deciding run: the findings are decided and dropped (nothing stored)."""

    async def record(self, raised: object) -> list[object]:
        return []


async def deciding_rate(bootstrap: str, n: int, work: Path) -> float:
    """compliance-svc's faust app (entrypoints/stream.py) with nothing stored: events/s between the
    first event applied and the n-th."""
    from compliance_svc.domain.rules import Deadlines
    from compliance_svc.entrypoints.stream import StreamConfig, StreamMetrics, build_app
    from faust.contrib.asgi import faust_app_running
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    metrics = StreamMetrics.register(registry)
    config = StreamConfig(
        app_id=f"bench-deciding-{uuid.uuid4().hex[:8]}", broker=bootstrap, topics=(TOPIC,), partitions=3,
        data_dir=work / "deciding", timer_interval_s=3600.0, deadlines=Deadlines(),
    )  # fmt: skip
    app, _ = build_app(config, _StoreNothing(), lambda: datetime.now(UTC), metrics)  # type: ignore[arg-type]
    labels = {"topic": TOPIC, "outcome": "applied"}
    first: float | None = None
    first_count = 0.0
    async with faust_app_running(app, stop_timeout=10):
        deadline = time.monotonic() + 600
        while (count := registry.get_sample_value("lawtrail_compliance_events_total", labels) or 0.0) < n:
            if first is None and count > 0:
                first, first_count = time.monotonic(), count
            if time.monotonic() > deadline:
                raise RuntimeError(f"the deciding agent applied {count:.0f} of {n} events in 600 s")
            await asyncio.sleep(0.01)
        last = time.monotonic()
    if first is None or n - first_count < n / 2:
        raise RuntimeError("the deciding agent applied most events before it was first seen under way")
    return (n - first_count) / max(last - first, 1e-3)


async def latencies(bootstrap: str, m: int, rate_per_s: float) -> list[float]:
    """Produce m R19b-raising events at a steady rate; latency = FindingRaised ce_time − source ce_time."""
    consumer = AIOKafkaConsumer("lawtrail.compliance.v1.events", bootstrap_servers=bootstrap,
                                auto_offset_reset="latest", enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        await consumer.seek_to_end()
        sent: dict[str, datetime] = {}
        for i in range(m):
            rec, message = event(10**6 + 2 * i, uninformed=True)
            r = encode(message, source=SOURCE, subject=rec)  # type: ignore[arg-type]
            await producer.send_and_wait(TOPIC, r.value, key=r.key, headers=r.headers)
            sent[dict(r.headers)["ce_id"].decode()] = decode(r).time
            await asyncio.sleep(1 / rate_per_s)
        out: list[float] = []
        deadline = time.monotonic() + 120
        while len(out) < m and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    envelope = decode(record)
                    finding = envelope.parse(compliance_events_pb2.FindingRaised).finding
                    source = sent.get(finding.evidence_event_ids[0]) if finding.evidence_event_ids else None
                    if source is not None:
                        out.append((envelope.time - source).total_seconds())
        return out
    finally:
        await producer.stop()
        await consumer.stop()


def main() -> None:
    n = int(os.environ.get("COMPLIANCE_BENCH_EVENTS", "12000"))
    m = int(os.environ.get("COMPLIANCE_BENCH_LATENCY_EVENTS", "200"))

    def say(text: str) -> None:
        print(f"[compliance-bench] {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="compliance-bench-") as tmp:
        work = Path(tmp)
        stack = Stack.for_benchmark(work / "stack", progress=say)
        say("starting Kafka + FerretDB on free ports…")
        stack.start()
        try:
            create_topics(stack.kafka_bootstrap, [Topic(TOPIC, 3)])
            say(f"producing {n} events to {TOPIC}…")
            asyncio.run(fill(stack.kafka_bootstrap, n))
            say("bare faust agent (decode + parse only)…")
            bare = asyncio.run(bare_rate(stack.kafka_bootstrap, n, work))
            say(f"bare: {bare:.0f} events/s; compliance-svc's faust app storing nothing…")
            deciding = asyncio.run(deciding_rate(stack.kafka_bootstrap, n, work))
            say(f"deciding: {deciding:.0f} events/s; starting compliance-svc…")
            grpc_port, metrics_port = free_ports(2)
            service = stack.service(
                service_spec("compliance-svc"),
                run_dir=work / "svc", data_dir=work / "svc" / "data", grpc_port=grpc_port,
                metrics_port=metrics_port,
                env={"LAWTRAIL_COMPLIANCE_TOPICS": TOPIC, "LAWTRAIL_COMPLIANCE_APP_ID": "bench-compliance",
                     "LAWTRAIL_MONGO_DATABASE": "compliance_bench", "LAWTRAIL_LOG_LEVEL": "WARNING",
                     "LAWTRAIL_OUTBOX_SWEEP_INTERVAL_S": "5"},
            )  # fmt: skip
            service.start()
            try:
                service.wait_ready(120)
                pipeline = pipeline_rate(service.metrics_address, n)
                say(f"pipeline: {pipeline:.0f} events/s; end-to-end latency with {m} events…")
                lat = sorted(asyncio.run(latencies(stack.kafka_bootstrap, m, rate_per_s=50)))
            finally:
                service.stop()
        finally:
            stack.stop()
    p50 = statistics.median(lat) if lat else float("nan")
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")
    ratio = pipeline / bare
    print(
        "\n".join(
            [
                f"compliance pipeline ÷ bare faust agent: {ratio:.2f} ({pipeline:.0f} ÷ {bare:.0f} events/s; "
                f"target ≥ 0.5: {'met' if ratio >= 0.5 else 'NOT met'})",
                f"  compliance-svc's faust app storing nothing ÷ bare: {deciding / bare:.2f} "
                f"({deciding:.0f} events/s); pipeline ÷ it: {pipeline / deciding:.2f}",
                f"event → stored finding: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
                f"({len(lat)} of {m} findings seen)",
            ]
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
