"""The gRPC server every service runs: its APIs plus health and reflection, behind the interceptors."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from servicekit.auth import TokenVerifier
from servicekit.config import ServiceSettings
from servicekit.grpc.interceptors import (
    AuthInterceptor,
    ErrorInterceptor,
    MetricsInterceptor,
    RequestContextInterceptor,
    RolePolicy,
    WireCheckInterceptor,
)
from servicekit.metrics import Metrics
from servicekit.tracing import TracingInterceptor

__all__ = ["ANY_AUTHENTICATED", "GrpcServer", "ServiceBinding", "check_role_policy"]

log = logging.getLogger(__name__)

ANY_AUTHENTICATED: frozenset[str] = frozenset()
"""Role-policy entry admitting any caller with a valid token."""

# Probes (Kubernetes' native gRPC probe) and grpcurl's discovery carry no token.
PUBLIC_SERVICES = (health.SERVICE_NAME, reflection.SERVICE_NAME)


@dataclass(frozen=True)
class ServiceBinding:
    """One API served by this process: the generated ``add_…_to_server``, the servicer, its descriptor.

    The descriptor (``xxx_pb2.DESCRIPTOR.services_by_name["CaseService"]``) lets the server check
    the role policy against the real list of methods and announce the service through reflection.
    """

    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: object
    descriptor: ServiceDescriptor


def check_role_policy(services: Sequence[ServiceBinding], policy: RolePolicy) -> None:
    """Refuse a policy that misses a method of a bound service or names one that does not exist.

    Checked at start so that forgetting a new RPC fails the deployment, not the first caller, and a
    typo in a method name cannot leave the real method unreachable without anyone noticing.
    """
    methods = {
        f"/{binding.descriptor.full_name}/{method.name}"
        for binding in services
        for method in binding.descriptor.methods
    }
    missing, unknown = sorted(methods - set(policy)), sorted(set(policy) - methods)
    problems = []
    if missing:
        problems.append(f"methods without a role policy entry (nobody could call them): {missing}")
    if unknown:
        problems.append(f"role policy entries for methods no bound service has: {unknown}")
    if problems:
        raise ValueError("; ".join(problems))


class GrpcServer:
    """A grpc.aio server on ``settings.grpc_address`` with health, reflection and the interceptors."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        services: Sequence[ServiceBinding],
        role_policy: RolePolicy,
        verifier: TokenVerifier,
        metrics: Metrics,
        audit: grpc.aio.ServerInterceptor | None = None,
    ) -> None:
        """`audit` (servicekit.grpc.audit.AuditInterceptor) sees every call outside authentication, so
        refusals are audited too."""
        check_role_policy(services, role_policy)
        self._settings = settings
        self._services = list(services)
        self._health = health.aio.HealthServicer()
        self._port: int | None = None
        # Health only, plaintext, same servicer (so it reports the same status): for the kubelet's
        # gRPC probes when the API port requires client certificates. No interceptors: nothing to guard.
        self._health_server: grpc.aio.Server | None = None
        self._health_port: int | None = None
        if settings.grpc_health_address:
            self._health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._health_server)
        self._server = grpc.aio.server(
            interceptors=[
                TracingInterceptor(),
                RequestContextInterceptor(),
                MetricsInterceptor(metrics),
                *([audit] if audit is not None else []),
                AuthInterceptor(verifier, role_policy, PUBLIC_SERVICES),
                ErrorInterceptor(domain=f"{settings.service_name}.lawtrail"),
                WireCheckInterceptor(),
            ],
            options=[
                ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
                ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
                # gRPC enables SO_REUSEPORT by default: a second server (a stale process) would then
                # bind the same port silently and steal half the calls. Fail loudly instead.
                ("grpc.so_reuseport", 0),
            ],
        )

    @property
    def port(self) -> int:
        """The bound port (useful with ``grpc_address = "127.0.0.1:0"``)."""
        if self._port is None:
            raise RuntimeError("the gRPC server is not started")
        return self._port

    @property
    def health_port(self) -> int | None:
        """The bound port of the health-only listener, None without one."""
        return self._health_port

    async def start(self) -> None:
        """Bind, start serving, and report SERVING for the server and each bound service."""
        for binding in self._services:
            binding.add_to_server(binding.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        names = [binding.descriptor.full_name for binding in self._services]
        reflection.enable_server_reflection([*names, *PUBLIC_SERVICES], self._server)
        self._port = self._bind()
        await self._server.start()
        if self._health_server is not None:
            self._health_port = self._bind_health(self._health_server)
            await self._health_server.start()
        for name in ["", *names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC server listening on %s", self._address(), extra={"services": names})

    def _bind(self) -> int:
        address = self._settings.grpc_address
        try:
            if self._settings.tls_enabled:
                port = self._server.add_secure_port(address, self._credentials())
            else:
                port = self._server.add_insecure_port(address)
        except RuntimeError as error:
            raise RuntimeError(
                f"cannot listen on {address} ({error}): is another process using the port? "
                "Set LAWTRAIL_GRPC_ADDRESS to a free host:port"
            ) from None
        return port

    def _bind_health(self, server: grpc.aio.Server) -> int:
        address = self._settings.grpc_health_address
        try:
            return server.add_insecure_port(address)
        except RuntimeError as error:
            raise RuntimeError(
                f"cannot listen on {address} for health checks ({error}): set LAWTRAIL_GRPC_HEALTH_ADDRESS "
                "to a free host:port, or empty for none"
            ) from None

    def _credentials(self) -> grpc.ServerCredentials:
        cert, key, client_ca = (
            self._settings.grpc_tls_cert,
            self._settings.grpc_tls_key,
            self._settings.grpc_tls_client_ca,
        )
        if cert is None or key is None or client_ca is None:  # ServiceSettings already refuses half a setup
            raise ValueError(
                "mTLS needs LAWTRAIL_GRPC_TLS_CERT, LAWTRAIL_GRPC_TLS_KEY and LAWTRAIL_GRPC_TLS_CLIENT_CA"
            )
        return grpc.ssl_server_credentials(
            [(key.read_bytes(), cert.read_bytes())],
            root_certificates=client_ca.read_bytes(),
            require_client_auth=True,
        )

    def _address(self) -> str:
        host = self._settings.grpc_address.rpartition(":")[0]
        return f"{host}:{self._port}"

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, stop accepting calls, let in-flight calls finish within ``grace`` seconds."""
        grace_s = self._settings.grace_period_s if grace is None else grace
        await self._health.enter_graceful_shutdown()
        log.info("gRPC server draining for up to %.1f s", grace_s)
        await self._server.stop(grace_s)
        if self._health_server is not None:
            await self._health_server.stop(0)

    async def wait_for_termination(self) -> None:
        """Return when the server has stopped."""
        await self._server.wait_for_termination()
