"""The gRPC server, through a real in-process grpc.aio server: auth, error table, metrics, RPC kinds."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from servicekit.auth.devtoken import generate_keypair
from servicekit.grpc import GrpcServer, ServiceBinding, check_role_policy
from servicekit.metrics import Metrics, start_metrics_server

from .conftest import ECHO, ECHO_POLICY, EchoServicer

StringValue = wrappers_pb2.StringValue
Mint = Callable[..., str]


def _codec() -> dict[str, Any]:
    return {
        "request_serializer": StringValue.SerializeToString,
        "response_deserializer": StringValue.FromString,
    }


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def unary(channel: grpc.aio.Channel, text: str, metadata: Any = ()) -> str:
    call = channel.unary_unary(f"/{ECHO}/Unary", **_codec())
    response: StringValue = await call(StringValue(value=text), metadata=metadata)
    return response.value


async def _requests(*texts: str) -> AsyncIterator[StringValue]:
    for text in texts:
        yield StringValue(value=text)


async def _drain(responses: AsyncIterator[StringValue], into: list[str] | None = None) -> None:
    async for response in responses:
        if into is not None:
            into.append(response.value)


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# --- authentication and the role policy ----------------------------------------------------------


async def test_valid_token_reaches_the_servicer_with_the_principal(
    channel: grpc.aio.Channel, mint: Mint
) -> None:
    assert await unary(channel, "whoami", _auth(mint())) == "alice@unit-a"


async def test_missing_token_says_how_to_send_one(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await unary(channel, "hi")
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert raised.value.details() == "missing bearer token: send metadata 'authorization: Bearer <jwt>'"


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ((("authorization", "Basic YWxpY2U6cHc="),), "must be 'Bearer <jwt>'"),
        ((("authorization", "Bearer not.a.jwt"),), "malformed bearer token"),
        ((("authorization", "Bearer"),), "must be 'Bearer <jwt>'"),
    ],
)
async def test_malformed_credentials_are_unauthenticated(
    channel: grpc.aio.Channel, metadata: Any, expected: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await unary(channel, "hi", metadata)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert expected in (raised.value.details() or "")


async def test_expired_token_says_when(channel: grpc.aio.Channel, mint: Mint) -> None:
    expired = mint(now=datetime(2026, 1, 1, tzinfo=UTC), ttl_s=60)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await unary(channel, "hi", _auth(expired))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "token expired at 2026-01-01T00:01:00+00:00" in (raised.value.details() or "")


async def test_forged_token_is_unauthenticated(channel: grpc.aio.Channel, mint: Mint) -> None:
    forged = mint(key=generate_keypair()[0])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await unary(channel, "hi", _auth(forged))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "signature does not verify" in (raised.value.details() or "")


async def test_wrong_issuer_is_unauthenticated(channel: grpc.aio.Channel, mint: Mint) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await unary(channel, "hi", _auth(mint(issuer="someone-else")))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_under_privileged_caller_is_told_which_roles_are_needed(
    channel: grpc.aio.Channel, mint: Mint
) -> None:
    bidi = channel.stream_stream(f"/{ECHO}/Bidi", **_codec())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _drain(bidi(_requests(), metadata=_auth(mint(roles=["OFFICER"]))))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert raised.value.details() == (
        f"method /{ECHO}/Bidi requires one of ['UNIT_HEAD']; the token of 'alice' has ['OFFICER']"
    )


async def test_a_scope_in_the_policy_admits_a_service_account(channel: grpc.aio.Channel, mint: Mint) -> None:
    upload = channel.stream_unary(f"/{ECHO}/ClientStream", **_codec())
    token = mint(subject="svc-archive", roles=["SERVICE"], scopes=["cases:write"])
    response = await upload(_requests("a", "b"), metadata=_auth(token))
    assert response.value == "a+b"


async def test_every_method_refuses_missing_and_under_privileged_tokens(
    channel: grpc.aio.Channel, mint: Mint
) -> None:
    """What each service's own test does over its descriptors, here over the echo service."""
    nobody = mint(roles=["INSPECTOR"])
    for method, allowed in ECHO_POLICY.items():
        kind = {"Unary": "uu", "ServerStream": "us", "ServerWrite": "us", "ClientStream": "su", "Bidi": "ss"}
        code = await _call_code(channel, method, kind[method.rsplit("/", 1)[1]], ())
        assert code == grpc.StatusCode.UNAUTHENTICATED, method
        if allowed:
            code = await _call_code(channel, method, kind[method.rsplit("/", 1)[1]], _auth(nobody))
            assert code == grpc.StatusCode.PERMISSION_DENIED, method


async def _call_code(channel: grpc.aio.Channel, method: str, kind: str, metadata: Any) -> grpc.StatusCode:
    """The status of one call. Request streams are empty: a grpc.aio *client* still writing when the
    server rejects the call may report INTERNAL "Internal error from Core" instead of the server's
    status (grpc/grpc#36066, fix pending in grpc/grpc#43486) — a client bug, not the server's."""
    try:
        if kind == "uu":
            await channel.unary_unary(method, **_codec())(StringValue(value="x"), metadata=metadata)
        elif kind == "us":
            async for _ in channel.unary_stream(method, **_codec())(
                StringValue(value="x"), metadata=metadata
            ):
                pass
        elif kind == "su":
            await channel.stream_unary(method, **_codec())(_requests(), metadata=metadata)
        else:
            await _drain(channel.stream_stream(method, **_codec())(_requests(), metadata=metadata))
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


# --- the error table ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "details"),
    [
        ("missing", grpc.StatusCode.NOT_FOUND, "record 'missing' does not exist"),
        ("closed", grpc.StatusCode.FAILED_PRECONDITION, "case is closed: reopen it first"),
    ],
)
async def test_domain_errors_map_through_the_table(
    channel: grpc.aio.Channel, mint: Mint, text: str, code: grpc.StatusCode, details: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await unary(channel, text, _auth(mint()))
    assert (raised.value.code(), raised.value.details()) == (code, details)


async def test_unexpected_exception_is_internal_without_leaking_details(
    channel: grpc.aio.Channel, mint: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await unary(channel, "bug", (*_auth(mint()), ("x-request-id", "req-42")))
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert "password" not in (raised.value.details() or "")
    assert "request id req-42" in (raised.value.details() or "")
    assert any("secret internal detail" in (record.exc_text or "") for record in caplog.records)


async def test_errors_in_every_rpc_kind_map_through_the_table(channel: grpc.aio.Channel, mint: Mint) -> None:
    metadata = _auth(mint(roles=["OFFICER", "UNIT_HEAD"]))
    streamed = channel.unary_stream(f"/{ECHO}/ServerStream", **_codec())
    received: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _drain(streamed(StringValue(value="a,missing"), metadata=metadata), received)
    assert received == ["a"]
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND

    written = channel.unary_stream(f"/{ECHO}/ServerWrite", **_codec())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in written(StringValue(value="a,closed"), metadata=metadata):
            pass
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    upload = channel.stream_unary(f"/{ECHO}/ClientStream", **_codec())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await upload(_requests("a", "bug"), metadata=metadata)
    assert raised.value.code() == grpc.StatusCode.INTERNAL

    bidi = channel.stream_stream(f"/{ECHO}/Bidi", **_codec())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in bidi(_requests("a", "missing"), metadata=metadata):
            pass
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_all_four_rpc_kinds_work(channel: grpc.aio.Channel, mint: Mint) -> None:
    metadata = _auth(mint(roles=["OFFICER", "UNIT_HEAD"]))
    assert await unary(channel, "x", metadata) == "x"
    streamed = channel.unary_stream(f"/{ECHO}/ServerStream", **_codec())
    assert [r.value async for r in streamed(StringValue(value="a,b"), metadata=metadata)] == ["a", "b"]
    written = channel.unary_stream(f"/{ECHO}/ServerWrite", **_codec())
    assert [r.value async for r in written(StringValue(value="c,whoami"), metadata=metadata)] == [
        "c",
        "alice@unit-a",
    ]
    upload = channel.stream_unary(f"/{ECHO}/ClientStream", **_codec())
    assert (await upload(_requests("a", "whoami"), metadata=metadata)).value == "a+alice@unit-a"
    bidi = channel.stream_stream(f"/{ECHO}/Bidi", **_codec())
    assert [r.value async for r in bidi(_requests("p", "q"), metadata=metadata)] == ["p", "q"]


async def test_request_id_is_echoed_or_generated(channel: grpc.aio.Channel, mint: Mint) -> None:
    call = channel.unary_unary(f"/{ECHO}/Unary", **_codec())(
        StringValue(value="x"), metadata=(*_auth(mint()), ("x-request-id", "req-7"))
    )
    await call
    assert ("x-request-id", "req-7") in tuple(await call.initial_metadata())
    generated = channel.unary_unary(f"/{ECHO}/Unary", **_codec())(
        StringValue(value="x"), metadata=_auth(mint())
    )
    await generated
    assert len(dict(await generated.initial_metadata())["x-request-id"]) == 32


async def test_a_cancelled_stream_closes_the_servicer_and_counts_cancelled(
    channel: grpc.aio.Channel, mint: Mint, echo_binding: ServiceBinding, metrics: Metrics
) -> None:
    call = channel.unary_stream(f"/{ECHO}/ServerStream", **_codec())(
        StringValue(value="endless"), metadata=_auth(mint())
    )
    assert (await call.read()).value == "tick"
    call.cancel()
    servicer = echo_binding.servicer
    assert isinstance(servicer, EchoServicer)
    await asyncio.wait_for(servicer.stream_closed.wait(), 5)
    labels = {"grpc_service": ECHO, "grpc_method": "ServerStream", "grpc_type": "server_stream"}

    async def counted() -> bool:
        return _sample(metrics, "grpc_server_handled_total", **labels, grpc_code="CANCELLED") == 1

    for _ in range(50):
        if await counted():
            break
        await asyncio.sleep(0.05)
    assert await counted()


# --- metrics ------------------------------------------------------------------------------------


async def test_metrics_count_started_handled_and_time_per_code(
    channel: grpc.aio.Channel, mint: Mint, metrics: Metrics
) -> None:
    await unary(channel, "x", _auth(mint()))
    with pytest.raises(grpc.aio.AioRpcError):
        await unary(channel, "x")
    with pytest.raises(grpc.aio.AioRpcError):
        await unary(channel, "missing", _auth(mint()))
    labels = {"grpc_service": ECHO, "grpc_method": "Unary", "grpc_type": "unary"}
    assert _sample(metrics, "grpc_server_started_total", **labels) == 3
    assert _sample(metrics, "grpc_server_handled_total", **labels, grpc_code="OK") == 1
    assert _sample(metrics, "grpc_server_handled_total", **labels, grpc_code="UNAUTHENTICATED") == 1
    assert _sample(metrics, "grpc_server_handled_total", **labels, grpc_code="NOT_FOUND") == 1
    assert _sample(metrics, "grpc_server_handling_seconds_count", **labels) == 3

    upload = channel.stream_unary(f"/{ECHO}/ClientStream", **_codec())
    await upload(_requests("a"), metadata=_auth(mint()))
    stream_labels = {"grpc_service": ECHO, "grpc_method": "ClientStream", "grpc_type": "client_stream"}
    assert _sample(metrics, "grpc_server_handled_total", **stream_labels, grpc_code="OK") == 1


async def test_metrics_endpoint_serves_the_conventional_names(
    channel: grpc.aio.Channel, mint: Mint, metrics: Metrics
) -> None:
    await unary(channel, "x", _auth(mint()))
    server = start_metrics_server("127.0.0.1:0", metrics.registry)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    finally:
        server.close()
    for name in (
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
    ):
        assert name in body
    assert 'grpc_code="OK"' in body


def test_metrics_address_must_be_host_and_port(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="host:port"):
        start_metrics_server("9101", metrics.registry)


# --- health, reflection, policy check, shutdown --------------------------------------------------


async def test_health_and_reflection_need_no_token(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", ECHO):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {
        service.name async for response in responses for service in response.list_services_response.service
    }
    assert {ECHO, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_policy_must_cover_every_method_and_name_only_real_ones(echo_binding: ServiceBinding) -> None:
    incomplete = {k: v for k, v in ECHO_POLICY.items() if not k.endswith("/Bidi")}
    with pytest.raises(ValueError, match=r"without a role policy entry.*Bidi"):
        check_role_policy([echo_binding], incomplete)
    with pytest.raises(ValueError, match=r"no bound service has.*Typo"):
        check_role_policy([echo_binding], {**ECHO_POLICY, f"/{ECHO}/Typo": frozenset()})
    check_role_policy([echo_binding], ECHO_POLICY)


async def test_stop_drains_in_flight_calls_and_reports_not_serving(
    echo_server: GrpcServer, channel: grpc.aio.Channel, mint: Mint
) -> None:
    in_flight = asyncio.create_task(unary(channel, "sleep:0.3", _auth(mint())))
    await asyncio.sleep(0.1)
    await echo_server.stop(grace=5)
    assert await in_flight == "slept"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await unary(channel, "x", _auth(mint()))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_refusals_carry_google_rpc_status_details(channel: grpc.aio.Channel, mint: Mint) -> None:
    """AIP-193: the grpc-status-details-bin trailer holds a google.rpc.Status with an ErrorInfo."""
    from google.rpc import error_details_pb2, status_pb2

    for text, metadata, reason in [
        ("missing", _auth(mint()), "NOT_FOUND"),
        ("hi", (), "UNAUTHENTICATED"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await unary(channel, text, metadata)
        trailer = dict(raised.value.trailing_metadata() or ())
        status = status_pb2.Status.FromString(trailer["grpc-status-details-bin"])
        assert status.code == raised.value.code().value[0]
        assert status.message == raised.value.details()
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info)
        assert info.reason == reason
