"""Lawtrail service processes (`python -m case_svc`, ...) started against a running stack.

The table `SERVICES` is the one list of services with their default ports (docs/development.md);
a service whose package is not installed or has no `__main__` yet is skipped, not an error, so the
launcher works while the services are still being written.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc  # type: ignore[import-untyped, unused-ignore]
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lawtrail_local.errors import StackError
from lawtrail_local.ports import HOST, ensure_port_free
from lawtrail_local.process import ManagedProcess


@dataclass(frozen=True)
class ServiceSpec:
    """A Lawtrail service: its name, the module `python -m` runs, and its default ports."""

    name: str
    module: str
    grpc_port: int
    metrics_port: int

    def unavailable_reason(self) -> str | None:
        """Why this service cannot be started yet (not installed, no `__main__`), or None when it can.

        A package that exists but fails to import is a bug, not "not written yet": its ImportError
        propagates instead of turning into a skip.
        """
        if importlib.util.find_spec(self.module) is None:
            return f"module {self.module} is not installed"
        if importlib.util.find_spec(f"{self.module}.__main__") is None:
            return f"module {self.module} has no __main__ yet"
        return None


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("case-svc", "case_svc", grpc_port=50051, metrics_port=9101),
    ServiceSpec("media-svc", "media_svc", grpc_port=50052, metrics_port=9102),
    ServiceSpec("retention-svc", "retention_svc", grpc_port=50053, metrics_port=9103),
    ServiceSpec("access-svc", "access_svc", grpc_port=50054, metrics_port=9104),
    ServiceSpec("compliance-svc", "compliance_svc", grpc_port=50055, metrics_port=9105),
)


def service_spec(name: str) -> ServiceSpec:
    """The entry of `SERVICES` called `name` (`case-svc`) or run as module `name` (`case_svc`)."""
    for spec in SERVICES:
        if name in (spec.name, spec.module):
            return spec
    raise StackError(f"unknown service {name!r}; known: {', '.join(s.name for s in SERVICES)}")


def health_status(address: str, timeout: float = 1.0) -> str | None:
    """The overall grpc.health.v1 status of the server at `address` (e.g. "SERVING"), None if no answer."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return None
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def _ensure_dev_keys(data_dir: Path) -> None:
    """Create the dev token key pair under LAWTRAIL_DATA_DIR before any service starts.

    A service refuses to start without a trusted public key; by default it trusts
    `<LAWTRAIL_DATA_DIR>/keys/dev-public.pem`. Creating the pair here, once, keeps services started
    together from racing to create it, and gives tests the private half to sign tokens with.
    """
    # Imported here: servicekit is present wherever a service is, and Kafka/FerretDB need none of it.
    from servicekit.auth.devtoken import ensure_dev_keys, ensure_keypair

    ensure_dev_keys(data_dir)
    # access-svc signs grants with this key and media-svc trusts its public half by default: created
    # here once, so services started together do not race to create it.
    ensure_keypair(data_dir, "access-grant-dev")


class ServiceProcess:
    """One service process wired to the stack through the `LAWTRAIL_*` environment variables."""

    def __init__(
        self,
        spec: ServiceSpec,
        *,
        kafka_bootstrap: str,
        mongo_uri: str,
        data_dir: Path,
        run_dir: Path,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        env: Mapping[str, str] | None = None,
        instance: str | None = None,
    ) -> None:
        """Ports default to the spec's; `env` adds or overrides variables (e.g. LAWTRAIL_LOG_LEVEL).

        `data_dir` becomes LAWTRAIL_DATA_DIR (content store, dev keys): services that must trust each
        other's tokens share one. Pid file and log go to `run_dir`, named after `instance`.
        """
        self.spec = spec
        self.name = instance or spec.name
        self.grpc_port = spec.grpc_port if grpc_port is None else grpc_port
        self.metrics_port = spec.metrics_port if metrics_port is None else metrics_port
        self.data_dir = data_dir
        self.env: dict[str, str] = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "LAWTRAIL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "LAWTRAIL_MONGO_URI": mongo_uri,
            "LAWTRAIL_GRPC_ADDRESS": self.grpc_address,
            "LAWTRAIL_METRICS_ADDRESS": self.metrics_address,
            "LAWTRAIL_DATA_DIR": str(data_dir),
            **(env or {}),
        }
        self.process = ManagedProcess(
            self.name,
            pid_file=run_dir / "run" / f"{self.name}.pid",
            log_file=run_dir / "logs" / f"{self.name}.log",
        )

    @property
    def grpc_address(self) -> str:
        """host:port of the gRPC server."""
        return f"{HOST}:{self.grpc_port}"

    @property
    def metrics_address(self) -> str:
        """host:port of the Prometheus `/metrics` endpoint."""
        return f"{HOST}:{self.metrics_port}"

    @property
    def dev_private_key(self) -> Path:
        """The private PEM key of the tokens this service trusts (unless LAWTRAIL_AUTH_PUBLIC_KEYS is set)."""
        return self.data_dir / "keys" / "dev-private.pem"

    @property
    def metrics_url(self) -> str:
        """The URL Prometheus scrapes."""
        return f"http://{self.metrics_address}/metrics"

    def start(self) -> None:
        """Start `python -m <module>` detached with this interpreter (the workspace venv)."""
        reason = self.spec.unavailable_reason()
        if reason:
            raise StackError(f"cannot start {self.name}: {reason}")
        ensure_port_free(self.grpc_port, f"{self.name} gRPC")
        ensure_port_free(self.metrics_port, f"{self.name} metrics")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if "LAWTRAIL_AUTH_PUBLIC_KEYS" not in self.env:
            _ensure_dev_keys(self.data_dir)
        self.process.start([sys.executable, "-m", self.spec.module], env=self.env)

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait until the gRPC health check answers SERVING; returns the seconds it took."""
        return self.process.wait_until(
            lambda: health_status(self.grpc_address) == "SERVING",
            what=f"SERVING on the gRPC health check at {self.grpc_address}",
            timeout=timeout,
        )

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the service's clean shutdown), SIGKILL after `timeout` seconds."""
        self.process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, for tests that the service recovers (outbox, idempotent consumers)."""
        self.process.kill()

    def restart(self, timeout: float = 60.0) -> float:
        """Start again on the same ports and environment (after `kill` or `stop`) and wait until ready."""
        self.process.stop()
        self.start()
        return self.wait_ready(timeout)
