"""The producer is idempotent with acks=all (aiokafka's defaults are neither), and that cannot be undone."""

import pytest
from servicekit.config import ServiceSettings
from servicekit.messaging.producer import create_producer

ACKS_ALL = -1  # aiokafka's internal spelling of acks="all"


async def test_producer_is_idempotent_and_waits_for_all_replicas() -> None:
    producer = create_producer(
        ServiceSettings(service_name="case-svc", kafka_bootstrap_servers="k1:9092,k2:9092")
    )
    try:
        # aiokafka keeps these on its sender and transaction manager; there is no public getter.
        assert producer._sender._acks == ACKS_ALL
        assert producer._txn_manager is not None, "enable_idempotence=True creates the idempotence manager"
        assert producer.client._bootstrap_servers == "k1:9092,k2:9092"
        assert producer.client._client_id == "case-svc"
    finally:
        await producer.stop()


async def test_other_options_can_be_tuned() -> None:
    producer = create_producer(ServiceSettings(), request_timeout_ms=3000, linger_ms=5)
    try:
        assert producer._request_timeout_ms == 3000
        assert producer._sender._acks == ACKS_ALL
    finally:
        await producer.stop()


@pytest.mark.parametrize("override", [{"enable_idempotence": False}, {"acks": 1}, {"acks": 0}])
def test_delivery_guarantees_cannot_be_overridden(override: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="is not allowed"):
        create_producer(ServiceSettings(), **override)
