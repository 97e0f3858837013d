"""The relay measures event lag at the source: from the state change being written (the entry's
time) to the broker's acknowledgement (`lawtrail_outbox_event_lag_seconds`, alert LawtrailEventLagHigh)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.wrappers_pb2 import StringValue
from servicekit.messaging.outbox import OutboundEvent, OutboxRelay, outbox_entries
from servicekit.metrics import Metrics

from .test_tracing import _Producer


async def test_event_lag_is_the_time_from_the_write_to_the_acknowledgement(metrics: Metrics) -> None:
    written = datetime.now(UTC) - timedelta(seconds=30)
    entries = outbox_entries(
        [OutboundEvent("lawtrail.test.v1.events", StringValue(value="x"), subject="s-1")],
        source="/lawtrail/test",
        now=written,
    )
    # A client without tz_aware=True reads BSON dates back naive (UTC): the lag is the same.
    entries[0]["time"] = entries[0]["time"].replace(tzinfo=None)
    relay = OutboxRelay(_Producer(), metrics=metrics)  # type: ignore[arg-type]
    await relay._publish(entries, "s-1", "test")

    registry = metrics.registry
    labels = {"topic": "lawtrail.test.v1.events"}
    assert registry.get_sample_value("lawtrail_outbox_event_lag_seconds_count", labels) == 1
    lag = registry.get_sample_value("lawtrail_outbox_event_lag_seconds_sum", labels)
    assert lag is not None
    assert 30 <= lag < 40
    assert (
        registry.get_sample_value("lawtrail_outbox_event_lag_seconds_bucket", {**labels, "le": "15.0"}) == 0
    )
    assert (
        registry.get_sample_value("lawtrail_outbox_event_lag_seconds_bucket", {**labels, "le": "60.0"}) == 1
    )
