"""A gRPC channel to a Lawtrail service: bearer token, default deadlines, UNAVAILABLE retries, typed errors.

All of it is done by client interceptors, so the generated stubs are used unchanged (and keep their
generated type hints):

- every call carries `authorization: Bearer <token>` (the token may be a string or a callable returning a
  fresh one) and an `x-request-id`, echoed in the service's logs;
- a call without an explicit `timeout=` gets the default deadline;
- a unary call that fails with UNAVAILABLE (server restarting, connection refused) is retried with
  exponential backoff and jitter, `retries` times. Lawtrail's write RPCs are safe to retry: they are
  idempotent or take a client-chosen `request_id`. Streaming calls are not retried here (their request
  iterator is consumed); uploads resume instead (see `lawtrail_client.upload`);
- a failed call raises a `lawtrail_client.errors.LawtrailError` subclass (`NotFound`, …).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from lawtrail_client.errors import from_rpc_error

log = logging.getLogger(__name__)

TokenSource = str | Callable[[], str]

# Lawtrail chunks are ≤ 1 MiB; leave headroom for the message envelope.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Tls:
    """TLS to the service (production: mTLS): PEM files; `cert`/`key` present a client certificate."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes() if self.ca else None,
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: tuple[tuple[str, str | bytes], ...] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class LawtrailInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(
        self,
        token: TokenSource,
        *,
        timeout_s: float,
        retries: int,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._token = token
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._sleep = sleep

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        token = self._token() if callable(self._token) else self._token
        metadata: list[tuple[str, str | bytes]] = [
            (k, v) for k, v in (details.metadata or ()) if k != "authorization"
        ]
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        if not any(k == "x-request-id" for k, _ in metadata):
            metadata.append(("x-request-id", uuid.uuid4().hex))
        return _CallDetails(
            method=details.method,
            timeout=details.timeout if details.timeout is not None else self._timeout_s,
            metadata=tuple(metadata),
            credentials=details.credentials,
            wait_for_ready=getattr(details, "wait_for_ready", None),
            compression=getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        details = self._details(client_call_details)
        attempt = 0
        while True:
            outcome = continuation(details, request)
            error = outcome.exception()
            if error is None:
                return outcome
            if error.code() == grpc.StatusCode.UNAVAILABLE and attempt < self._retries:
                delay = min(self._max_backoff_s, self._backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
                attempt += 1
                log.info(
                    "%s unavailable (%s); retry %d/%d in %.2fs",
                    details.method,
                    error.details(),
                    attempt,
                    self._retries,
                    delay,
                )
                self._sleep(delay)
                continue
            raise from_rpc_error(error, details.method) from None

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        details = self._details(client_call_details)
        outcome = continuation(details, request_iterator)
        error = outcome.exception()
        if error is not None:
            raise from_rpc_error(error, details.method) from None
        return outcome

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return _TranslatingStream(
            continuation(self._details(client_call_details), request), client_call_details.method
        )

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return _TranslatingStream(
            continuation(self._details(client_call_details), request_iterator), client_call_details.method
        )


class _TranslatingStream:
    """Wraps a response stream so an error while iterating raises a typed `LawtrailError`."""

    def __init__(self, call: Any, method: str) -> None:
        self._call = call
        self._method = method

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except grpc.RpcError as error:
            raise from_rpc_error(error, self._method) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


def open_channel(
    target: str,
    token: TokenSource,
    *,
    tls: Tls | None = None,
    timeout_s: float = 10.0,
    retries: int = 4,
) -> grpc.Channel:
    """A channel to `target` (`host:port`) with the Lawtrail interceptors. Plaintext unless `tls` is given
    (plaintext is for loopback development only)."""
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 30_000),
        # gRPC's default reconnect backoff grows to 120 s: a station whose server restarted would sit idle
        # for minutes. Reconnect attempts stay at most 5 s apart instead.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]
    base = (
        grpc.secure_channel(target, tls.credentials(), options=options)
        if tls
        else grpc.insecure_channel(target, options=options)
    )
    return grpc.intercept_channel(base, LawtrailInterceptor(token, timeout_s=timeout_s, retries=retries))
