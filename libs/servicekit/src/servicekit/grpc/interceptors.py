"""Server interceptors: request context, metrics, authentication, the error table.

Each concern is written once as an async context manager around a call, and ``_wrap`` applies it to
whichever of the four RPC kinds the handler is. Wrapping the *behaviour* (not only inspecting the
call in ``intercept_service``) is what lets an interceptor see the end of a streaming call, an
exception raised halfway through a stream, and set context variables the servicer then reads.

Order, outermost first: request context → metrics → auth → errors. Metrics sits outside auth so
that rejected calls are counted (an alert on ``grpc_code="UNAUTHENTICATED"`` needs them).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeAlias

import grpc
import grpc.aio

from servicekit.auth import TokenVerifier, acting_as
from servicekit.errors import DomainError, PermissionDenied, Unauthenticated, status_name
from servicekit.logging import bound_fields, log_context
from servicekit.metrics import Metrics

__all__ = [
    "AuthInterceptor",
    "ErrorInterceptor",
    "MetricsInterceptor",
    "RequestContextInterceptor",
    "RolePolicy",
]

log = logging.getLogger(__name__)

# Full method name ("/lawtrail.case.v1.CaseService/OpenCase") -> roles or token scopes allowed.
# An empty set admits any authenticated caller.
RolePolicy = Mapping[str, frozenset[str]]

# String aliases: grpcio's classes are generic only in the type stubs, not at run time.
_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
_Around: TypeAlias = "Callable[[grpc.aio.ServicerContext[Any, Any]], AbstractAsyncContextManager[None]]"
_Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]]"


def _wrap(handler: _Handler, around: _Around) -> _Handler:
    """The same handler with every call of its behaviour running inside ``around(context)``."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary_response(handler.unary_unary, around),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary_response(handler.stream_unary, around),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream_response(handler.unary_stream, around),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream_response(handler.stream_stream, around),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    raise TypeError(f"gRPC handler {handler!r} has no behaviour to wrap")


def _wrap_unary_response(behaviour: Callable[..., Any], around: _Around) -> Callable[..., Any]:
    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async with around(context):
            result = behaviour(request, context)
            return await result if inspect.isawaitable(result) else result

    return call


def _wrap_stream_response(behaviour: Callable[..., Any], around: _Around) -> Callable[..., Any]:
    # grpc.aio decides how to drive a streaming handler from its function type: a coroutine
    # function streams with `context.write()`, anything else must return an iterator. Keep the type.
    if inspect.iscoroutinefunction(behaviour):

        async def write_style(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            async with around(context):
                await behaviour(request, context)

        return write_style

    async def iterator_style(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        async with around(context):
            responses = behaviour(request, context)
            if inspect.isasyncgen(responses):
                # Close the servicer's generator as soon as the call ends (a cancelled download must
                # release its file now, not whenever the generator is garbage-collected).
                async with contextlib.aclosing(responses):
                    async for response in responses:
                        yield response
            elif hasattr(responses, "__aiter__"):
                async for response in responses:
                    yield response
            else:
                for response in responses:
                    yield response

    return iterator_style


def _rpc_type(handler: _Handler) -> str:
    """The go-grpc-prometheus name of the RPC kind, so standard dashboards work."""
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: DomainError) -> None:
    """End the call with the status the one table (servicekit.errors) gives ``error``."""
    await context.abort(grpc.StatusCode[status_name(error)], error.message)


# A caller-supplied request id is echoed into logs, so only accept something that looks like an id.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _metadata(context: grpc.aio.ServicerContext[Any, Any], key: str) -> str | None:
    for entry_key, value in context.invocation_metadata() or ():
        if entry_key == key:
            return value.decode() if isinstance(value, bytes) else value
    return None


class RequestContextInterceptor(grpc.aio.ServerInterceptor):
    """Binds a request id (the caller's ``x-request-id`` or a new one) to the logs, and echoes it."""

    async def intercept_service(
        self, continuation: _Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        @asynccontextmanager
        async def around(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            supplied = _metadata(context, "x-request-id")
            request_id = supplied if supplied and _REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
            # Initial metadata, not trailing: it reaches the caller even when the call is aborted.
            await context.send_initial_metadata((("x-request-id", request_id),))
            with log_context(request_id=request_id, rpc=method):
                yield

        return _wrap(handler, around)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts started and handled RPCs (by status code) and times them, for every RPC kind."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self, continuation: _Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        labels = {"grpc_service": service, "grpc_method": method, "grpc_type": _rpc_type(handler)}
        metrics = self._metrics

        @asynccontextmanager
        async def around(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            metrics.grpc_started.labels(**labels).inc()
            started = time.perf_counter()
            code = grpc.StatusCode.UNKNOWN
            try:
                yield
                code = context.code() or grpc.StatusCode.OK
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except BaseException as error:
                # CancelledError: the caller went away or the server is stopping.
                if isinstance(error, GeneratorExit | asyncio.CancelledError):
                    code = grpc.StatusCode.CANCELLED
                raise
            finally:
                metrics.grpc_handled.labels(**labels, grpc_code=code.name).inc()
                metrics.grpc_handling_seconds.labels(**labels).observe(time.perf_counter() - started)

        return _wrap(handler, around)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Verifies the bearer token and the method's role policy; binds the caller for the servicer.

    Fail closed: a method that is not in the policy is refused, so a new RPC is unreachable until
    someone decides who may call it. Health checks and reflection are public, because Kubernetes
    probes and grpcurl hold no token.
    """

    def __init__(self, verifier: TokenVerifier, policy: RolePolicy, public_services: Collection[str]) -> None:
        self._verifier = verifier
        self._policy = policy
        self._public_services = frozenset(public_services)

    async def intercept_service(
        self, continuation: _Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if method.lstrip("/").rpartition("/")[0] in self._public_services:
            return handler
        allowed = self._policy.get(method)
        verifier = self._verifier

        @asynccontextmanager
        async def around(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            try:
                principal = verifier.verify(_bearer_token(context))
                if allowed is None:
                    raise PermissionDenied(
                        f"method {method} is not in this service's role policy, so nobody may call it "
                        "(fail closed): add it to the role policy"
                    )
                granted = principal.roles | principal.scopes
                if allowed and not allowed & granted:
                    raise PermissionDenied(
                        f"method {method} requires one of {sorted(allowed)}; the token of "
                        f"{principal.subject!r} has {sorted(granted)}"
                    )
            except (Unauthenticated, PermissionDenied) as refusal:
                log.info("call refused: %s", refusal.message, extra={"grpc_code": status_name(refusal)})
                await _abort(context, refusal)
            with log_context(subject=principal.subject, unit=principal.unit), acting_as(principal):
                yield

        return _wrap(handler, around)


def _bearer_token(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    value = _metadata(context, "authorization")
    if not value:
        raise Unauthenticated("missing bearer token: send metadata 'authorization: Bearer <jwt>'")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            f"authorization metadata must be 'Bearer <jwt>', got a {scheme!r} credential: "
            "send metadata 'authorization: Bearer <jwt>'"
        )
    return token.strip()


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns exceptions into status codes through the one table; anything unexpected is INTERNAL.

    Domain errors carry messages written for the caller and pass through verbatim. Any other
    exception is a bug or an outage: it is logged with its traceback and the caller gets only the
    request id to report, never internals (paths, queries, stack frames).
    """

    async def intercept_service(
        self, continuation: _Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None

        @asynccontextmanager
        async def around(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            try:
                yield
            except grpc.aio.AbortError:
                raise  # the servicer already chose a status with context.abort()
            except DomainError as error:
                if status_name(error) == "INTERNAL":
                    log.error("%s raised without a kind: use a DomainError subclass", type(error).__name__)
                    await _internal(context)
                await _abort(context, error)
            except Exception:
                log.exception("unhandled exception in %s", handler_call_details.method)
                await _internal(context)

        return _wrap(handler, around)


async def _internal(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    request_id = bound_fields().get("request_id", "unknown")
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"internal error (request id {request_id}): it has been logged; retry later or report the request id",
    )
