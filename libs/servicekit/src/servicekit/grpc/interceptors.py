"""Server interceptors: request context, metrics, authentication, the error table.

Each concern is written once as an async context manager around a call, and ``_wrap`` applies it to
whichever of the four RPC kinds the handler is. Wrapping the *behaviour* (not only inspecting the
call in ``intercept_service``) is what lets an interceptor see the end of a streaming call, an
exception raised halfway through a stream, and set context variables the servicer then reads.

Order, outermost first: request context → metrics → audit (servicekit.grpc.audit) → auth → errors →
wire checks. Metrics and audit sit outside auth so that rejected calls are counted and audited (an
alert on ``grpc_code="UNAUTHENTICATED"`` needs them); refusals are sent with ``context.abort()``, which
sends the status at once, so ``BEFORE_STATUS`` lets the audit store its record first. The wire
checks (servicekit.grpc.wirecheck) sit innermost, next to the servicer, so that the
error interceptor turns their refusals into INVALID_ARGUMENT like any other.

Every refusal carries the machine-readable ``google.rpc.Status`` of AIP-193 in the
``grpc-status-details-bin`` trailer: an ``ErrorInfo`` (stable ``reason``, ``domain``, ``metadata``)
and, for bad fields, a ``BadRequest`` with one field violation per field.
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
from contextvars import ContextVar
from typing import Any, TypeAlias

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from servicekit.auth import TokenVerifier, acting_as
from servicekit.errors import DomainError, PermissionDenied, Unauthenticated, status_name
from servicekit.grpc.wirecheck import check_request
from servicekit.logging import bound_fields, log_context
from servicekit.metrics import Metrics

__all__ = [
    "AuthInterceptor",
    "ErrorInterceptor",
    "MetricsInterceptor",
    "RequestContextInterceptor",
    "RolePolicy",
    "WireCheckInterceptor",
    "rich_status",
]

log = logging.getLogger(__name__)

# Full method name ("/lawtrail.case.v1.CaseService/OpenCase") -> roles or token scopes allowed.
# An empty set admits any authenticated caller.
RolePolicy = Mapping[str, frozenset[str]]

# String aliases: grpcio's classes are generic only in the type stubs, not at run time.
_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
_Around: TypeAlias = "Callable[[grpc.aio.ServicerContext[Any, Any]], AbstractAsyncContextManager[None]]"

# Awaited with the status code just before a refusal is sent. ``context.abort()`` sends the status at
# once, before any interceptor further out sees the exception, so an outer interceptor that must act
# before the caller hears the answer (the audit interceptor stores the call's record, R4/R23-3) sets
# this for the duration of the call. Per call: a context variable of the handler's task.
BEFORE_STATUS: ContextVar[Callable[[grpc.StatusCode], Awaitable[None]] | None] = ContextVar(
    "servicekit_before_status", default=None
)


async def _before_status(code: grpc.StatusCode) -> None:
    hook = BEFORE_STATUS.get()
    if hook is not None:
        await hook(code)


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


# The trailer gRPC defines for a serialized google.rpc.Status (read by grpcurl and grpc_status).
STATUS_DETAILS_KEY = "grpc-status-details-bin"
# ErrorInfo.domain when the server is not told its own name.
DEFAULT_ERROR_DOMAIN = "lawtrail"


def rich_status(error: DomainError, domain: str = DEFAULT_ERROR_DOMAIN) -> status_pb2.Status:
    """The AIP-193 ``google.rpc.Status`` of ``error``: ErrorInfo always, BadRequest for bad fields."""
    code = grpc.StatusCode[status_name(error)]
    status = status_pb2.Status(code=code.value[0], message=error.message)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=domain, metadata=dict(error.metadata))
    packed = any_pb2.Any()
    packed.Pack(info)
    status.details.append(packed)
    violations = error.field_violations()
    if violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description, reason=v.reason
                )
                for v in violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        status.details.append(packed)
    return status


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], error: DomainError, domain: str = DEFAULT_ERROR_DOMAIN
) -> None:
    """End the call with the status the one table (servicekit.errors) gives ``error``, with details."""
    status = rich_status(error, domain)
    code = grpc.StatusCode[status_name(error)]
    await _before_status(code)
    await context.abort(
        code,
        error.message,
        trailing_metadata=((STATUS_DETAILS_KEY, status.SerializeToString()),),
    )


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

    def __init__(self, domain: str = DEFAULT_ERROR_DOMAIN) -> None:
        self._domain = domain

    async def intercept_service(
        self, continuation: _Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        domain = self._domain

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
                await _abort(context, error, domain)
            except Exception:
                log.exception("unhandled exception in %s", handler_call_details.method)
                await _internal(context)

        return _wrap(handler, around)


class WireCheckInterceptor(grpc.aio.ServerInterceptor):
    """Checks every request message (each one of a stream) with ``wirecheck.check_request``.

    Public services (health, reflection) are checked too: the check only ever refuses values no
    service could use.
    """

    async def intercept_service(
        self, continuation: _Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _wrap_requests(handler)


def _wrap_requests(handler: _Handler) -> _Handler:
    """The same handler with every request message checked before the servicer sees it."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(_checked_unary(handler.unary_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(_checked_unary(handler.unary_stream), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(_checked_stream(handler.stream_unary), **kwargs)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(_checked_stream(handler.stream_stream), **kwargs)
    raise TypeError(f"gRPC handler {handler!r} has no behaviour to wrap")


def _checked_unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    # Keep the function type (coroutine function / async generator / plain): grpc.aio decides from
    # it how to drive the handler.
    if inspect.iscoroutinefunction(behaviour):

        async def coroutine_style(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            check_request(request)
            return await behaviour(request, context)

        return coroutine_style
    if inspect.isasyncgenfunction(behaviour):

        async def generator_style(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            check_request(request)
            async with contextlib.aclosing(behaviour(request, context)) as responses:
                async for response in responses:
                    yield response

        return generator_style

    def plain_style(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        check_request(request)
        return behaviour(request, context)

    return plain_style


async def _checked_iterator(requests: Any) -> AsyncIterator[Any]:
    if hasattr(requests, "__aiter__"):
        async for request in requests:
            check_request(request)
            yield request
    else:
        for request in requests:
            check_request(request)
            yield request


def _checked_stream(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(behaviour):

        async def coroutine_style(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            return await behaviour(_checked_iterator(requests), context)

        return coroutine_style
    if inspect.isasyncgenfunction(behaviour):

        async def generator_style(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with contextlib.aclosing(behaviour(_checked_iterator(requests), context)) as responses:
                async for response in responses:
                    yield response

        return generator_style

    def plain_style(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return behaviour(_checked_iterator(requests), context)

    return plain_style


async def _internal(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    request_id = bound_fields().get("request_id", "unknown")
    await _before_status(grpc.StatusCode.INTERNAL)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"internal error (request id {request_id}): it has been logged; retry later or report the request id",
    )
