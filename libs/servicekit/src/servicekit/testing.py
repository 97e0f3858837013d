"""Helpers for tests that exercise a service through its published contract.

`invoke` calls any RPC of a service descriptor — unary or streaming in either direction — with one
request message and given metadata, so a test can enumerate every method of a service (for example to
prove that each one refuses a missing, expired, forged or under-privileged token) without knowing the
method's kind. It uses only grpc and protobuf; no test framework.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

__all__ = ["empty_request", "invoke"]


def empty_request(method: MethodDescriptor) -> Message:
    """A default instance of the method's request message (every field unset)."""
    return message_factory.GetMessageClass(method.input_type)()


def invoke(
    channel: grpc.Channel,
    method: MethodDescriptor,
    request: Message,
    *,
    metadata: Sequence[tuple[str, str]] = (),
    timeout: float = 10.0,
) -> bytes | list[bytes]:
    """Call `method` on `channel` with `request` (sent once, also for a client stream).

    Returns the raw response (a list of raw responses for a server stream); a failed call raises
    `grpc.RpcError` with the server's status and details.
    """
    path = f"/{method.containing_service.full_name}/{method.name}"
    kind = (method.client_streaming, method.server_streaming)
    serialize, deserialize = (lambda m: m.SerializeToString()), (lambda b: b)
    md = tuple(metadata)
    if kind == (False, False):
        call = channel.unary_unary(path, request_serializer=serialize, response_deserializer=deserialize)
        return bytes(call(request, metadata=md, timeout=timeout))
    if kind == (False, True):
        stream = channel.unary_stream(path, request_serializer=serialize, response_deserializer=deserialize)
        return [bytes(r) for r in stream(request, metadata=md, timeout=timeout)]
    if kind == (True, False):
        upload = channel.stream_unary(path, request_serializer=serialize, response_deserializer=deserialize)
        return bytes(upload(iter([request]), metadata=md, timeout=timeout))
    both = channel.stream_stream(path, request_serializer=serialize, response_deserializer=deserialize)
    return [bytes(r) for r in both(iter([request]), metadata=md, timeout=timeout)]
