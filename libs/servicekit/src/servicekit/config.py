"""Settings every service reads from the environment (prefix ``LAWTRAIL_``).

Defaults are the local stack of ``docs/development.md`` so that ``python -m case_svc`` works on a
developer machine with no configuration at all. A service subclasses ``ServiceSettings`` and sets
its own ``service_name``, ``grpc_address`` and ``metrics_address`` defaults; everything else derives
from those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["ServiceSettings"]


class ServiceSettings(BaseSettings):
    """Base settings of a Lawtrail service; see the table in libs/servicekit/README.md."""

    model_config = SettingsConfigDict(env_prefix="LAWTRAIL_", extra="ignore")

    service_name: str = "service"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    mongo_uri: str = "mongodb://127.0.0.1:27017/"
    # Empty means "derive from service_name" (case-svc -> case_svc): one database per service.
    mongo_database: str = ""
    grpc_address: str = "127.0.0.1:50051"
    metrics_address: str = "127.0.0.1:9101"
    # NoDecode: the variable is a comma-separated list of paths, not JSON (the pydantic default).
    # Empty means "the dev key under data_dir", which `lawtrail-dev-token` creates.
    auth_public_keys: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    auth_issuer: str = "lawtrail-dev"
    auth_audience: str = "lawtrail"
    data_dir: Path = Path(".lawtrail/data")
    log_level: str = "INFO"
    # How long SIGTERM lets in-flight RPCs finish; keep it below the pod's terminationGracePeriodSeconds.
    grace_period_s: float = Field(default=10.0, ge=0)
    # Messages have size limits (architecture, Security); uploads stream in chunks well below this.
    grpc_max_message_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # mTLS in production (certificates mounted from Kubernetes secrets); all unset = plaintext loopback.
    grpc_tls_cert: Path | None = None
    grpc_tls_key: Path | None = None
    grpc_tls_client_ca: Path | None = None
    # A second, plaintext listener that serves only grpc.health.v1 (e.g. "0.0.0.0:8081"): the
    # kubelet's native gRPC probes cannot present a client certificate. Empty = no such listener.
    grpc_health_address: str = ""
    # TLS to Kafka (Strimzi's TLS listener): the cluster CA, and this service's client certificate and
    # key (its KafkaUser) for mutual TLS. All unset = plaintext (the local stack).
    kafka_tls_ca: Path | None = None
    kafka_tls_cert: Path | None = None
    kafka_tls_key: Path | None = None
    # OpenTelemetry: the OTLP/HTTP endpoint spans are exported to (e.g. http://otel-collector:4318);
    # empty = tracing off (servicekit.tracing).
    otel_exporter_otlp_endpoint: str = ""
    # CloudEvents `source` of the events this service publishes; part of the consumers' dedupe key,
    # so it must be the same on every replica and never change.
    event_source: str = ""
    # The outbox relay publishes what this process's writers notify, by _id; a full sweep for pending
    # documents (a collection scan on FerretDB v1) runs at start and then every this many seconds —
    # entries written by another replica or left by a crashed one wait at most this long.
    outbox_sweep_interval_s: float = Field(default=60.0, gt=0)
    # On FerretDB one process per service writes its database (servicekit.writerlease): the lease
    # lasts this long and is renewed every third of it; a crashed holder on another host blocks a
    # new writer at most this long (on this host a dead holder is taken over at once).
    writer_lease_ttl_s: float = Field(default=15.0, ge=1)
    # Tests only: append the shape of every query to this file (servicekit.queryshapes), which the
    # index-coverage test checks against the declared indexes.
    query_shapes_file: Path | None = None

    @field_validator("auth_public_keys", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(part.strip()) for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @model_validator(mode="after")
    def _derive_defaults(self) -> Self:
        if not self.mongo_database:
            self.mongo_database = self.service_name.replace("-", "_")
        if not self.auth_public_keys:
            self.auth_public_keys = [self.data_dir / "keys" / "dev-public.pem"]
        if not self.event_source:
            self.event_source = f"/lawtrail/{self.service_name}"
        tls = [self.grpc_tls_cert, self.grpc_tls_key, self.grpc_tls_client_ca]
        if any(tls) and not all(tls):
            raise ValueError(
                "mTLS needs all of LAWTRAIL_GRPC_TLS_CERT, LAWTRAIL_GRPC_TLS_KEY and "
                "LAWTRAIL_GRPC_TLS_CLIENT_CA (or none of them for plaintext)"
            )
        if (self.kafka_tls_cert is None) != (self.kafka_tls_key is None) or (
            self.kafka_tls_cert is not None and self.kafka_tls_ca is None
        ):
            raise ValueError(
                "Kafka mutual TLS needs LAWTRAIL_KAFKA_TLS_CERT and LAWTRAIL_KAFKA_TLS_KEY together, and "
                "LAWTRAIL_KAFKA_TLS_CA (LAWTRAIL_KAFKA_TLS_CA alone = TLS without a client certificate)"
            )
        return self

    @property
    def tls_enabled(self) -> bool:
        """True when the gRPC server must require client certificates (mTLS)."""
        return self.grpc_tls_cert is not None
