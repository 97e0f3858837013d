"""The Kafka producer every service uses: idempotent, acknowledged by all in-sync replicas.

aiokafka's defaults are ``enable_idempotence=False, acks=1``: a retried send after a lost ack would
then write the event twice, and a leader failover could lose an acknowledged one. Lawtrail's outbox
relay and dead-letter writes depend on "acknowledged means durably written once", so both settings
are forced here and cannot be overridden.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from servicekit.config import ServiceSettings
from servicekit.messaging.envelope import KafkaRecord

__all__ = ["create_producer", "send_and_wait"]

_FORCED = {"enable_idempotence": True, "acks": "all"}


def create_producer(settings: ServiceSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer for ``settings.kafka_bootstrap_servers`` (not started: the runner starts it).

    ``overrides`` tune the rest (e.g. ``request_timeout_ms`` in tests); the delivery guarantees are fixed.
    """
    for name, value in _FORCED.items():
        if name in overrides and overrides[name] != value:
            raise ValueError(
                f"{name}={overrides[name]!r} is not allowed: Lawtrail producers need {name}={value!r}"
            )
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.service_name,
        **overrides,
        **_FORCED,
    }
    return AIOKafkaProducer(**options)


async def send_and_wait(producer: AIOKafkaProducer, topic: str, record: KafkaRecord) -> None:
    """Send ``record`` to ``topic`` and return only once the broker acknowledged it."""
    await producer.send_and_wait(topic, value=record.value, key=record.key, headers=record.headers)
