"""Settings: defaults are the local stack, services override their own, env vars win."""

from pathlib import Path

import pytest
from servicekit.config import ServiceSettings


class CaseSettings(ServiceSettings):
    service_name: str = "case-svc"
    grpc_address: str = "127.0.0.1:50051"
    metrics_address: str = "127.0.0.1:9101"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LAWTRAIL_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_local_stack() -> None:
    settings = CaseSettings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.mongo_uri == "mongodb://127.0.0.1:27017/"
    assert settings.mongo_database == "case_svc"
    assert settings.grpc_address == "127.0.0.1:50051"
    assert settings.metrics_address == "127.0.0.1:9101"
    assert settings.data_dir == Path(".lawtrail/data")
    assert settings.auth_public_keys == [Path(".lawtrail/data/keys/dev-public.pem")]
    assert (settings.auth_issuer, settings.auth_audience) == ("lawtrail-dev", "lawtrail")
    assert settings.log_level == "INFO"
    assert settings.grace_period_s == 10.0
    assert settings.event_source == "/lawtrail/case-svc"
    assert not settings.tls_enabled


def test_environment_overrides_with_lawtrail_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAWTRAIL_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("LAWTRAIL_MONGO_DATABASE", "cases_test")
    monkeypatch.setenv("LAWTRAIL_AUTH_PUBLIC_KEYS", "/keys/a.pem, /keys/b.pem")
    monkeypatch.setenv("LAWTRAIL_LOG_LEVEL", "debug")
    monkeypatch.setenv("LAWTRAIL_DATA_DIR", "/var/lawtrail")
    settings = CaseSettings()
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert settings.mongo_database == "cases_test"
    assert settings.auth_public_keys == [Path("/keys/a.pem"), Path("/keys/b.pem")]
    assert settings.log_level == "DEBUG"


def test_dev_key_default_follows_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAWTRAIL_DATA_DIR", "/var/lawtrail")
    assert CaseSettings().auth_public_keys == [Path("/var/lawtrail/keys/dev-public.pem")]


def test_unknown_log_level_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="use DEBUG, INFO"):
        CaseSettings(log_level="LOUD")


def test_partial_tls_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="mTLS needs all of"):
        CaseSettings(grpc_tls_cert=Path("/tls/cert.pem"))


@pytest.mark.parametrize(
    "tls",
    [
        {"kafka_tls_cert": Path("/k/user.crt")},
        {"kafka_tls_key": Path("/k/user.key")},
        {"kafka_tls_cert": Path("/k/user.crt"), "kafka_tls_key": Path("/k/user.key")},
    ],
)
def test_partial_kafka_tls_configuration_is_refused(tls: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="Kafka mutual TLS needs"):
        CaseSettings(**tls)


def test_kafka_tls_with_only_a_ca_is_server_authenticated_tls() -> None:
    settings = CaseSettings(kafka_tls_ca=Path("/k/ca.crt"))
    assert settings.kafka_tls_cert is None
