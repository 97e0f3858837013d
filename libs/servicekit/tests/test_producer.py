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


async def test_kafka_tls_settings_make_the_producer_use_mutual_tls(tmp_path) -> None:
    """Strimzi's TLS listener with KafkaUser certificates: the client presents its certificate."""
    from .test_grpc_tls import _issue, _pem

    ca = _issue("strimzi-cluster-ca", None, ca=True)
    (tmp_path / "ca.crt").write_bytes(_pem(*ca)[0])
    user_cert, user_key = _pem(*_issue("case-svc", ca, ca=False))
    (tmp_path / "user.crt").write_bytes(user_cert)
    (tmp_path / "user.key").write_bytes(user_key)
    settings = ServiceSettings(
        kafka_tls_ca=tmp_path / "ca.crt",
        kafka_tls_cert=tmp_path / "user.crt",
        kafka_tls_key=tmp_path / "user.key",
    )
    producer = create_producer(settings)
    try:
        assert producer.client._security_protocol == "SSL"
        context = producer.client._ssl_context
        assert context is not None
        assert context.verify_mode.name == "CERT_REQUIRED"
        assert context.get_ca_certs()[0]["subject"] == ((("commonName", "strimzi-cluster-ca"),),)
    finally:
        await producer.stop()


async def test_without_kafka_tls_settings_the_producer_is_plaintext() -> None:
    producer = create_producer(ServiceSettings())
    try:
        assert producer.client._security_protocol == "PLAINTEXT"
    finally:
        await producer.stop()
