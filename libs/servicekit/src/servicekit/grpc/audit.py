"""Audit of every RPC (R4, R23-3): one `lawtrail.audit.v1.RpcCalled` event per call, refusals included,
published on `lawtrail.audit.v1.events` — access-svc's ledger appends it like every event.

The interceptor sits outside authentication (after metrics), so calls refused for a missing, forged or
under-privileged token are audited too; it records the subject the token *claims* and whether the token
was verified.

**Durable before the answer.** The record is stored in the service's own database before the caller
receives the status — in ``audit_outbox`` (``AuditOutbox``), an outbox collection relayed to Kafka by the
service's ``OutboxRelay`` like every other outbox — so a broker outage delays audit events but loses
none: they are published when the broker is back, with the ``ce_id`` and ``ce_source`` fixed when the
call ended, so the ledger (which dedupes on them) appends each once. A refusal sent with
``context.abort()`` reaches the caller at once, so the record of a refused call is stored from the
``BEFORE_STATUS`` hook, just before the abort.

Cost on the call's path: one insert of a small document. Calls that end while an insert is in flight
are stored together by the next one (group commit: one document holds up to 999 records), so under
load the inserts per call fall below one. Published documents are deleted by the relay
(``watch(..., delete_relayed=True)``): the collection holds only what the broker has not acknowledged.

If the service's own database does not take the record within ``store_timeout_s`` (it is down: the call
itself most likely failed too), the record is published straight to the broker in the background
instead, with the same ``ce_id`` (a late insert then only makes a duplicate the ledger drops); only
when both are down is a record lost, and that is logged at ERROR. Why this fallback is kept rather
than failing closed, and its duplicates and order: ADR 0009.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio
from bson import Binary, ObjectId
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.audit.v1 import audit_events_pb2
from pymongo.asynchronous.collection import AsyncCollection

from servicekit.doclock import serialized
from servicekit.grpc.interceptors import BEFORE_STATUS, _Continuation, _Handler, _metadata, _wrap
from servicekit.logging import bound_fields
from servicekit.messaging.envelope import Envelope, KafkaRecord, to_record
from servicekit.messaging.outbox import OUTBOX_FIELD, PENDING_FIELD, SEQ_FIELD, Notify
from servicekit.topics import events_topic_of
from servicekit.tracing import current_traceparent

__all__ = ["AUDIT_OUTBOX", "AUDIT_TOPIC", "AuditInterceptor", "AuditOutbox"]

log = logging.getLogger(__name__)

AUDIT_TOPIC = events_topic_of(audit_events_pb2)
# The collection of every service's database that holds audit records until the broker acknowledged them.
AUDIT_OUTBOX = "audit_outbox"
Publish = Callable[[str, KafkaRecord], Awaitable[Any]]
Store = Callable[[Envelope], Awaitable[None]]

# Records per stored document (the outbox's sequence numbering allows 999 per write).
_PER_DOCUMENT = 999


class AuditOutbox:
    """Stores audit records in ``audit_outbox`` for the outbox relay; ``await store(envelope)`` returns
    once the record is in the database.

    Each document is written once (an insert: ``_id`` an ObjectId, so a sweep publishes in about the
    order of writing; ``version`` 1; the records as outbox entries) and never updated, which is what
    lets the relay delete it once published. Records arriving while an insert is in flight wait for
    the next insert, which takes all of them (group commit)."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        *,
        notify: Notify | None = None,
        topic: str = AUDIT_TOPIC,
    ) -> None:
        self._topic = topic
        self._raw = collection
        self._collection = serialized(collection)
        self._notify = notify
        self._queue: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    @property
    def collection(self) -> AsyncCollection[dict[str, Any]]:
        return self._raw

    async def store(self, envelope: Envelope) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((_entry(envelope, self._topic), done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_all(), name="audit-outbox")
        await done

    async def _write_all(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:_PER_DOCUMENT], self._queue[_PER_DOCUMENT:]
            entries = [{**entry, SEQ_FIELD: 1000 + i} for i, (entry, _) in enumerate(batch)]
            document = {"_id": ObjectId(), "version": 1, OUTBOX_FIELD: entries, PENDING_FIELD: True}
            try:
                await self._collection.insert_one(document)
            except BaseException as error:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(
                            error if isinstance(error, Exception) else RuntimeError(str(error))
                        )
                if not isinstance(error, Exception):
                    raise
                continue
            if self._notify is not None:
                self._notify(self._raw, [document["_id"]], written={document["_id"]: (0, entries)})
            for _, done in batch:
                if not done.done():
                    done.set_result(None)


def _entry(envelope: Envelope, topic: str) -> dict[str, Any]:
    """The outbox entry of one record (``seq`` is set when it is grouped into a document)."""
    return {
        "event_id": envelope.id,
        "source": envelope.source,
        "topic": topic,
        "type": envelope.type,
        "subject": envelope.subject,
        "time": envelope.time,
        "data": Binary(envelope.data),
        # The relay's publish span continues the call's trace.
        **({"traceparent": envelope.traceparent} if envelope.traceparent else {}),
    }


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
    """``store``: the durable write (``AuditOutbox.store``), awaited before the caller gets the status;
    ``publish``: the fallback when the store fails or takes longer than ``store_timeout_s``."""

    def __init__(
        self,
        publish: Publish,
        *,
        server: str,
        source: str,
        skip_services: frozenset[str],
        store: Store | None = None,
        store_timeout_s: float = 5.0,
    ) -> None:
        self._publish = publish
        self._store = store
        self._store_timeout_s = store_timeout_s
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
            recorded: asyncio.Task[None] | None = None

            async def record(code: grpc.StatusCode) -> None:
                nonlocal recorded
                if recorded is None:  # once per call: an abort's hook, then the exit, both land here
                    recorded = self._record(full, service, method, code, context)
                # Shielded: a caller's cancellation must not cancel the write of its own audit record.
                await asyncio.shield(recorded)

            code = grpc.StatusCode.UNKNOWN
            hook = BEFORE_STATUS.set(record)
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
                # ValueError: a stream closed from another context (garbage collection).
                with contextlib.suppress(ValueError):
                    BEFORE_STATUS.reset(hook)
                if recorded is None or not recorded.done():
                    await record(code)

        return _wrap(handler, around)

    def _record(
        self,
        full: str,
        service: str,
        method: str,
        code: grpc.StatusCode,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> asyncio.Task[None]:
        claims = _claims(context)
        now = datetime.now(UTC)
        # The database keeps milliseconds: truncate now, so the stored and the published ce_time agree.
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        at = Timestamp()
        at.FromDatetime(now)
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
        envelope = Envelope.of(
            event, source=self._source, subject=full, time=now, traceparent=current_traceparent()
        )
        task = asyncio.get_running_loop().create_task(self._keep(envelope, full))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _keep(self, envelope: Envelope, full: str) -> None:
        if self._store is not None:
            try:
                await asyncio.wait_for(self._store(envelope), self._store_timeout_s)
                return
            except Exception:
                log.warning(
                    "audit record of %s not stored in the database; publishing it directly",
                    full,
                    exc_info=True,
                )
        # Not awaited by the call: the broker may be away too, and the caller should not wait for it.
        task = asyncio.get_running_loop().create_task(self._send(envelope, full))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, envelope: Envelope, full: str) -> None:
        try:
            await self._publish(AUDIT_TOPIC, to_record(envelope))
        except Exception:
            log.error(
                "audit event %s of %s lost: neither stored nor published", envelope.id, full, exc_info=True
            )

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Waits for the audit records in flight (at stop, before the producer closes); cancels the rest."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=timeout_s)
        for task in late:
            task.cancel()
        if late:
            log.warning("%d audit records neither stored nor published before stop", len(late))
            await asyncio.gather(*late, return_exceptions=True)
