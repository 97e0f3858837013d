"""Consumer building blocks that need no broker: routing by ce_type, DLQ naming, backoff."""

import pytest
from google.protobuf import wrappers_pb2
from lawtrail.common.v1 import common_pb2
from servicekit.messaging._backoff import backoff_delay
from servicekit.messaging.consumer import TypeRouter, dlq_topic
from servicekit.messaging.envelope import Envelope


async def test_type_router_dispatches_parsed_messages_and_ignores_other_types() -> None:
    seen: list[tuple[str, str]] = []

    async def on_string(event: wrappers_pb2.StringValue, envelope: Envelope) -> None:
        seen.append((event.value, envelope.subject))

    router = TypeRouter()
    router.on(wrappers_pb2.StringValue, on_string)
    assert router.accepts("google.protobuf.StringValue")
    assert not router.accepts("lawtrail.common.v1.Attribution")
    await router(Envelope.of(wrappers_pb2.StringValue(value="hi"), source="/s", subject="agg-1"))
    await router(Envelope.of(common_pb2.Attribution(subject="x"), source="/s", subject="agg-2"))
    assert seen == [("hi", "agg-1")]


def test_type_router_refuses_two_handlers_for_one_type() -> None:
    async def handle(event: wrappers_pb2.StringValue, envelope: Envelope) -> None:
        return None

    router = TypeRouter()
    router.on(wrappers_pb2.StringValue, handle)
    with pytest.raises(ValueError, match="already has a handler"):
        router.on(wrappers_pb2.StringValue, handle)


def test_dead_letters_go_to_group_dot_dlq() -> None:
    assert dlq_topic("case-svc.media-events") == "case-svc.media-events.dlq"


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    for attempt, step in [(1, 0.1), (2, 0.2), (3, 0.4), (10, 5.0)]:
        delays = [backoff_delay(attempt, 0.1, 5.0) for _ in range(200)]
        assert all(step * 0.5 <= delay <= step for delay in delays)
        assert max(delays) - min(delays) > 0
