"""The Kafka producer every service uses: idempotent, acknowledged by all in-sync replicas.

aiokafka's defaults are ``enable_idempotence=False, acks=1``: a retried send after a lost ack would
then write the event twice, and a leader failover could lose an acknowledged one. Lawtrail's outbox
relay and dead-letter writes depend on "acknowledged means durably written once", so both settings
are forced here and cannot be overridden.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from servicekit.config import ServiceSettings
from servicekit.messaging.envelope import KafkaRecord

__all__ = ["create_producer", "kafka_security_options", "send_and_wait"]

_FORCED = {"enable_idempotence": True, "acks": "all"}


def kafka_security_options(settings: ServiceSettings) -> dict[str, Any]:
    """How every Kafka client of the service connects: TLS (mutual with a client certificate, as
    Strimzi's KafkaUser of type tls expects) when ``LAWTRAIL_KAFKA_TLS_CA`` is set, else plaintext."""
    if settings.kafka_tls_ca is None:
        return {}
    context = create_ssl_context(
        cafile=str(settings.kafka_tls_ca),
        certfile=str(settings.kafka_tls_cert) if settings.kafka_tls_cert else None,
        keyfile=str(settings.kafka_tls_key) if settings.kafka_tls_key else None,
    )
    return {"security_protocol": "SSL", "ssl_context": context}


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
        **kafka_security_options(settings),
        **overrides,
        **_FORCED,
    }
    return AIOKafkaProducer(**options)


async def send_and_wait(producer: AIOKafkaProducer, topic: str, record: KafkaRecord) -> None:
    """Send ``record`` to ``topic`` and return only once the broker acknowledged it."""
    await producer.send_and_wait(topic, value=record.value, key=record.key, headers=record.headers)
