"""Audit of every RPC (R4, R23-3): one `lawtrail.audit.v1.RpcCalled` event per call, refusals included,
published on `lawtrail.audit.v1.events` — access-svc's ledger appends it like every event.

The interceptor sits outside authentication (after metrics), so calls refused for a missing, forged or
under-privileged token are audited too; it records the subject the token *claims* and whether the token
was verified. Publishing never delays or fails the call: the record is handed to the producer in the
background (acks=all, idempotent), and a failure is logged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.audit.v1 import audit_events_pb2

from servicekit.grpc.interceptors import _Continuation, _Handler, _metadata, _wrap
from servicekit.logging import bound_fields
from servicekit.messaging.envelope import KafkaRecord, encode
from servicekit.topics import events_topic_of

log = logging.getLogger(__name__)

AUDIT_TOPIC = events_topic_of(audit_events_pb2)
Publish = Callable[[str, KafkaRecord], Awaitable[Any]]


def _claims(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, Any]:
    """The token's claims, NOT verified (the auth interceptor verifies; this only names the caller)."""
    value = _metadata(context, "authorization") or ""
    try:
        payload = value.split(" ", 1)[1].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


class AuditInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, publish: Publish, *, server: str, source: str, skip_services: frozenset[str]) -> None:
        self._publish = publish
        self._server = server
        self._source = source
        self._skip = skip_services
        self._pending: set[asyncio.Task[Any]] = set()

    async def intercept_service(
        self, continuation: _Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        full = handler_call_details.method
        service, _, method = full.lstrip("/").rpartition("/")
        if service in self._skip:
            return handler

        @asynccontextmanager
        async def around(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            code = grpc.StatusCode.UNKNOWN
            try:
                yield
                code = context.code() or grpc.StatusCode.OK
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except BaseException as error:
                if isinstance(error, GeneratorExit | asyncio.CancelledError):
                    code = grpc.StatusCode.CANCELLED
                raise
            finally:
                self._emit(full, service, method, code, context)

        return _wrap(handler, around)

    def _emit(
        self,
        full: str,
        service: str,
        method: str,
        code: grpc.StatusCode,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        claims = _claims(context)
        at = Timestamp()
        at.FromDatetime(datetime.now(UTC))
        event = audit_events_pb2.RpcCalled(
            server=self._server,
            service=service,
            method=method,
            code=code.name,
            subject=str(claims.get("sub", "")),
            unit=str(claims.get("unit", "")),
            subject_verified=code is not grpc.StatusCode.UNAUTHENTICATED and bool(claims),
            request_id=str(bound_fields().get("request_id") or ""),
            at=at,
        )
        record = encode(event, source=self._source, subject=full)
        task = asyncio.get_running_loop().create_task(self._send(record, full))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, record: KafkaRecord, full: str) -> None:
        try:
            await self._publish(AUDIT_TOPIC, record)
        except Exception:
            log.warning("audit event of %s not published", full, exc_info=True)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Waits for the audit events in flight (at stop, before the producer closes); cancels the rest."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=timeout_s)
        for task in late:
            task.cancel()
        if late:
            log.warning("%d audit events not published before stop", len(late))
            await asyncio.gather(*late, return_exceptions=True)
