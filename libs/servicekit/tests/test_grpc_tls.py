"""mTLS (production's service-to-service setting): a client needs a certificate signed by the trusted CA."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry
from servicekit.auth import TokenVerifier
from servicekit.auth.devtoken import generate_keypair
from servicekit.config import ServiceSettings
from servicekit.grpc import GrpcServer, ServiceBinding
from servicekit.metrics import Metrics

from .conftest import ECHO, ECHO_POLICY

Pem = tuple[bytes, bytes]  # (certificate, private key)


Issued = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _issue(name: str, issuer: Issued | None, *, ca: bool) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256()), key


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


@pytest.fixture
def pki() -> dict[str, Pem]:
    ca = _issue("lawtrail-test-ca", None, ca=True)
    stranger_ca = _issue("someone-else-ca", None, ca=True)
    return {
        "ca": _pem(*ca),
        "server": _pem(*_issue("case-svc", ca, ca=False)),
        "client": _pem(*_issue("media-svc", ca, ca=False)),
        "stranger": _pem(*_issue("intruder", stranger_ca, ca=False)),
    }


@pytest.fixture
async def tls_server(
    pki: dict[str, Pem], tmp_path: Path, echo_binding: ServiceBinding
) -> AsyncIterator[GrpcServer]:
    async for server in _tls_server(pki, tmp_path, echo_binding, health_address=""):
        yield server


@pytest.fixture
async def tls_server_with_health_port(
    pki: dict[str, Pem], tmp_path: Path, echo_binding: ServiceBinding
) -> AsyncIterator[GrpcServer]:
    async for server in _tls_server(pki, tmp_path, echo_binding, health_address="127.0.0.1:0"):
        yield server


async def _tls_server(
    pki: dict[str, Pem], tmp_path: Path, echo_binding: ServiceBinding, *, health_address: str
) -> AsyncIterator[GrpcServer]:
    paths = {name: tmp_path / f"{name}.pem" for name in ("cert", "key", "ca")}
    for name, content in zip(paths, (*pki["server"], pki["ca"][0]), strict=True):
        paths[name].write_bytes(content)
    settings = ServiceSettings(
        grpc_address="127.0.0.1:0",
        grpc_tls_cert=paths["cert"],
        grpc_tls_key=paths["key"],
        grpc_tls_client_ca=paths["ca"],
        grpc_health_address=health_address,
    )
    verifier = TokenVerifier(
        [load_pem_public_key(generate_keypair()[1])],  # type: ignore[list-item]
        issuer="lawtrail-dev",
        audience="lawtrail",
    )
    server = GrpcServer(
        settings,
        services=[echo_binding],
        role_policy=ECHO_POLICY,
        verifier=verifier,
        metrics=Metrics(CollectorRegistry()),
    )
    await server.start()
    yield server
    await server.stop(grace=0)


async def _health(server: GrpcServer, client: Pem, ca: bytes) -> int:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=client[1], certificate_chain=client[0]
    )
    async with grpc.aio.secure_channel(f"localhost:{server.port}", credentials) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        return int(response.status)


async def test_client_with_a_certificate_of_the_trusted_ca_is_served(
    tls_server: GrpcServer, pki: dict[str, Pem]
) -> None:
    assert await _health(tls_server, pki["client"], pki["ca"][0]) == health_pb2.HealthCheckResponse.SERVING


async def test_client_with_a_certificate_of_another_ca_is_refused(
    tls_server: GrpcServer, pki: dict[str, Pem]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _health(tls_server, pki["stranger"], pki["ca"][0])
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_plaintext_client_is_refused(tls_server: GrpcServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tls_server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_without_a_health_address_there_is_no_health_listener(tls_server: GrpcServer) -> None:
    assert tls_server.health_port is None


async def test_the_health_port_answers_plaintext_probes_while_the_api_port_requires_mtls(
    tls_server_with_health_port: GrpcServer,
) -> None:
    """Kubernetes' native gRPC probes carry no client certificate: they use the health-only port."""
    server = tls_server_with_health_port
    assert server.health_port is not None
    assert server.health_port != server.port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.health_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        response = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        # Only health is served there: the API (and reflection) stay behind mTLS.
        echo = channel.unary_unary(f"/{ECHO}/Unary")  # served on the API port
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await echo(b"", timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_the_health_port_reports_not_serving_while_draining(
    tls_server_with_health_port: GrpcServer,
) -> None:
    server = tls_server_with_health_port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.health_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        await server._health.enter_graceful_shutdown()  # what stop() does first
        response = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING
