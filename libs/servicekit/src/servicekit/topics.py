"""Kafka topic names, from one source: the contracts.

A service publishes its events on `<proto package of its events>.events` (`lawtrail.case.v1.events`),
so the name follows from the generated contract module and is never typed twice. Dead-letter topics are
`<consumer group>.dlq` (`servicekit.messaging.consumer.dlq_topic`). Every topic must also be declared in
deploy/local/topics.toml (topics are never auto-created); `tools/check_shape.py` (`make lint`) checks
that each events package of proto/ has its topic there.
"""

from __future__ import annotations

from typing import Any

__all__ = ["events_topic", "events_topic_of"]


def events_topic(package: str) -> str:
    """The events topic of proto package `package`: `lawtrail.media.v1` -> `lawtrail.media.v1.events`."""
    return f"{package}.events"


def events_topic_of(contract_module: Any) -> str:
    """The topic of the events defined in a generated module (`lawtrail.media.v1.media_events_pb2`)."""
    return events_topic(contract_module.DESCRIPTOR.package)
