"""Hostile input on the real stack: random and extreme messages built from every RPC's descriptor.

Every service of lawtrail_local's SERVICES table runs as a real process on the real Kafka + FerretDB.
The RPCs are not listed here: they are read from the contracts (every ``lawtrail.*`` service in the
generated descriptors), and each is sent to the running process that announces it through server
reflection — a new service or RPC is covered without touching this file (a contract service that no
process of SERVICES serves yet is reported as skipped, naming it).

For each RPC, at least ``EXAMPLES`` messages built by hypothesis from the request descriptor (random
values, and the extremes of every scalar type: int64 bounds in Timestamp/Duration seconds, NaN, huge
and odd strings, unknown enum numbers, deep nesting) are sent with a valid token. The answer must be
OK or a precise status — never UNKNOWN, INTERNAL (a bug showing as an outage), nor UNAVAILABLE (a
crash). Every refused request must leave both databases and the content store exactly as they were
(a fingerprint of every document and file is taken before and after it; as the services also write in
the background, a change is charged to the request only when the same request, sent again from a settled
state, changes something again), and every service must still answer SERVING at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import pkgutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bson
import grpc
import lawtrail
import pytest
from google.protobuf import descriptor_pool, message_factory, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import SERVICES, ServiceProcess, health_status
from lawtrail_local.stack import Stack
from pymongo import MongoClient
from servicekit.auth.devtoken import ensure_dev_keys, mint_token
from servicekit.grpc.audit import AUDIT_OUTBOX

pytestmark = pytest.mark.integration

EXAMPLES = 200
UNIT = "unit-h"
# Not a precise answer to bad input: a bug (UNKNOWN/INTERNAL) or a crashed/hung server.
FORBIDDEN = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
ALL_ROLES = ("OFFICER", "UNIT_HEAD", "ARCHIVIST", "LEGAL_OFFICE", "ARCHIVE_ROOM", "INSPECTOR")


# --- the RPCs, from the contracts' descriptors ---------------------------------------------------


def _contract_services() -> list[Any]:
    """Every gRPC service declared under proto/lawtrail (the generated lawtrail.* modules)."""
    for module in pkgutil.walk_packages(lawtrail.__path__, "lawtrail."):
        if module.name.endswith("_pb2"):
            importlib.import_module(module.name)
    pool = descriptor_pool.Default()
    found = []
    for module in pkgutil.walk_packages(lawtrail.__path__, "lawtrail."):
        if module.name.endswith("_pb2"):
            file = pool.FindFileByName(importlib.import_module(module.name).DESCRIPTOR.name)
            found.extend(file.services_by_name.values())
    return sorted(found, key=lambda s: s.full_name)


RPCS: list[MethodDescriptor] = [method for service in _contract_services() for method in service.methods]


def test_the_contracts_declare_rpcs() -> None:
    assert len(RPCS) >= 20, [m.full_name for m in RPCS]


# --- messages from descriptors ---------------------------------------------------------------------

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

# Values that look like the real thing reach deeper than random text; the rest are classic attacks.
_PLAUSIBLE = [
    "",
    " ",
    UNIT,
    "unit-a",
    "alice",
    "officer-1",
    "c-1",
    "D-1",
    "0" * 64,
    "../../etc/passwd",
    '{"$gt": ""}',
    "$where",
    "a.b",
    "\x00",
    "\u202e",
    "x" * 10_000,
    "案" * 3000,
]


def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([low, high, 0, -1 if low < 0 else 1, 1]), st.integers(low, high))


def _scalar(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    if f.type in _INT_RANGES:
        return _ints(*_INT_RANGES[f.type])
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if f.type == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if f.type == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if f.type == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(_PLAUSIBLE), st.text(max_size=40))
    if f.type == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"\x00" * 70_000]))
    if f.type == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(known), _ints(-(2**31), 2**31 - 1))
    raise AssertionError(f"no strategy for field type {f.type} of {f.full_name}")


def _value(f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        return _message(f.message_type, depth + 1)
    return _scalar(f)


@st.composite
def _filled(draw: st.DrawFn, descriptor: Descriptor, depth: int) -> Message:
    message = message_factory.GetMessageClass(descriptor)()
    if depth > 4:
        return message
    for f in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key_f, value_f = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            entries = draw(st.dictionaries(_scalar(key_f), _value(value_f, depth), max_size=3))
            target = getattr(message, f.name)
            for k, v in entries.items():
                if value_f.type == FieldDescriptor.TYPE_MESSAGE:
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif f.is_repeated:
            items = draw(st.lists(_value(f, depth), max_size=3))
            target = getattr(message, f.name)
            for item in items:
                if f.type == FieldDescriptor.TYPE_MESSAGE:
                    target.add().CopyFrom(item)
                else:
                    target.append(item)
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, f.name).CopyFrom(draw(_value(f, depth)))
        else:
            setattr(message, f.name, draw(_value(f, depth)))
    return message


def _message(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    return _filled(descriptor, depth)


# --- the running system ----------------------------------------------------------------------------


@dataclass
class Running:
    processes: list[ServiceProcess]
    private_key: bytes
    stack: Stack
    data_dir: Path
    serves: dict[str, ServiceProcess] = field(default_factory=dict)  # service full name -> process


def _announced(address: str) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        return [s.name for answer in answers for s in answer.list_services_response.service]


@pytest.fixture(scope="module")
def running(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    starter = ServiceStarter(stack, tmp_path_factory.mktemp("hostile"))
    private_path, _ = ensure_dev_keys(starter.data_dir)
    try:
        processes: list[ServiceProcess] = []
        for spec in SERVICES:  # media-svc starts before retention-svc, which reads content through it
            peers = {p.spec.name: p.grpc_address for p in processes}
            env = {"LAWTRAIL_RETENTION_MEDIA_ADDRESS": peers["media-svc"]} if "media-svc" in peers else {}
            if "access-svc" in peers:  # compliance-svc files spot-check reviewers' access requests there
                env["LAWTRAIL_COMPLIANCE_ACCESS_ADDRESS"] = peers["access-svc"]
            processes.append(starter(spec.name, env=env))
        system = Running(processes, private_path.read_bytes(), stack, starter.data_dir)
        for process in processes:
            for name in _announced(process.grpc_address):
                system.serves[name] = process
        yield system
    finally:
        starter.stop_all()


Fingerprint = dict[str, str]  # "<database>.<collection>" or "files" -> digest


def _recorded_for_every_call(database: str, collection: str) -> bool:
    """Writes that are not the request's effect: every service stores one RpcCalled per call of every
    RPC, refusals included, in its `audit_outbox` until the broker has it, and access-svc's audit ledger
    appends it (R4, R23-3: a refusal must leave a trace, issue 11); each service renews its
    single-writer lease on a timer (servicekit.writerlease, issue 9)."""
    return collection in ("writer_lease", AUDIT_OUTBOX) or (
        database.startswith("access_svc") and collection.startswith("ledger_")
    )


def _fingerprint(system: Running) -> Fingerprint:
    """A digest per collection of every service database (every document), and one of the data files;
    the audit ledger and the writer leases are left out (`_recorded_for_every_call`)."""
    found: Fingerprint = {}
    client: MongoClient[dict[str, Any]] = MongoClient(system.stack.mongo_uri)
    try:
        for process in system.processes:
            name = process.env["LAWTRAIL_MONGO_DATABASE"]
            database = client[name]
            for collection in sorted(database.list_collection_names()):
                if _recorded_for_every_call(name, collection):
                    continue
                digest = hashlib.sha256()
                for document in database[collection].find({}).sort("_id", 1):
                    digest.update(bson.encode(document))
                found[f"{name}.{collection}"] = digest.hexdigest()
    finally:
        client.close()
    files = hashlib.sha256()
    for path in sorted(system.data_dir.rglob("*")):
        if path.is_file() and "keys" not in path.parts:
            files.update(f"{path.relative_to(system.data_dir)}:{path.stat().st_size}".encode())
    found["files"] = files.hexdigest()
    return found


def _changed(before: Fingerprint, after: Fingerprint) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _settled(system: Running, within_s: float = 10.0) -> Fingerprint:
    """The fingerprint once it holds still (the outbox relay and consumers finished after a write)."""
    previous = _fingerprint(system)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        time.sleep(0.3)
        current = _fingerprint(system)
        if current == previous:
            return current
        previous = current
    return previous


def _show(message: Message) -> str:
    return text_format.MessageToString(message, as_one_line=True)[:400]


def _call(channel: grpc.Channel, method: MethodDescriptor, messages: list[Message], token: str) -> Any:
    path = f"/{method.containing_service.full_name}/{method.name}"
    codec = {"request_serializer": lambda m: m.SerializeToString(), "response_deserializer": lambda b: b}
    metadata = (("authorization", f"Bearer {token}"),)
    if method.client_streaming and method.server_streaming:
        return list(channel.stream_stream(path, **codec)(iter(messages), metadata=metadata, timeout=60))
    if method.client_streaming:
        return channel.stream_unary(path, **codec)(iter(messages), metadata=metadata, timeout=60)
    if method.server_streaming:
        return list(channel.unary_stream(path, **codec)(messages[0], metadata=metadata, timeout=60))
    return channel.unary_unary(path, **codec)(messages[0], metadata=metadata, timeout=60)


@pytest.mark.parametrize("method", RPCS, ids=lambda m: f"{m.containing_service.name}.{m.name}")
def test_hostile_messages_get_a_precise_status_and_write_nothing_when_refused(
    running: Running, method: MethodDescriptor
) -> None:
    service = method.containing_service.full_name
    process = running.serves.get(service)
    if process is None:
        # A contract whose server is not written yet (AccessGrantStatusService: access-svc). Once its
        # service is in lawtrail_local's SERVICES, reflection finds it and it is covered.
        pytest.skip(f"no service in lawtrail_local SERVICES serves {service} yet")
    tokens = [
        mint_token(
            running.private_key, subject="hostile-1", unit=UNIT, roles=ALL_ROLES, scopes=["media.upload"]
        ),
        mint_token(running.private_key, subject="officer-h", unit=UNIT, roles=["OFFICER"]),
    ]
    codes: Counter[str] = Counter()
    problems: list[str] = []
    count = max(1, 3 if method.client_streaming else 1)
    before = [_settled(running)]

    with grpc.insecure_channel(process.grpc_address) as channel:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,  # the same messages every run: a failure reproduces
            phases=[Phase.explicit, Phase.generate],  # report the message itself, not a shrunk one
            suppress_health_check=list(HealthCheck),
        )
        @given(
            messages=st.lists(_message(method.input_type), min_size=1, max_size=count),
            token=st.sampled_from(tokens),
        )
        def send(messages: list[Message], token: str) -> None:
            try:
                _call(channel, method, messages, token)
                codes["OK"] += 1
                before[0] = _settled(running)  # an accepted call may write; start the next from there
            except grpc.RpcError as error:
                code = error.code()
                codes[code.name] += 1
                if code in FORBIDDEN:
                    problems.append(f"{code.name} {error.details()!r} for {_show(messages[0])}")
                    return
                changed = _changed(before[0], _fingerprint(running))
                if not changed:
                    return
                # Something changed while the request was refused. The services also write in the
                # background (outbox relay, consumers, sweeps): send the same refused request again
                # from a settled state; only a change that repeats is the request's own write.
                before[0] = _settled(running)
                with contextlib.suppress(grpc.RpcError):
                    _call(channel, method, messages, token)
                again = _changed(before[0], _fingerprint(running))
                if again:
                    problems.append(
                        f"refused with {code.name} but {again} changed (twice): {_show(messages[0])}"
                    )
                else:
                    codes["background write during a refusal, not repeated"] += 1
                before[0] = _settled(running)

        send()

    answers = sum(n for name, n in codes.items() if not name.startswith("background"))
    assert answers >= EXAMPLES or not method.input_type.fields, dict(codes)
    assert not problems, (
        f"{len(problems)} bad answers of {sum(codes.values())} ({dict(codes)}):\n" + "\n".join(problems[:10])
    )
    for other in running.processes:
        assert health_status(other.grpc_address) == "SERVING", f"{other.name} stopped serving"


def test_every_service_announces_a_contract_service(running: Running) -> None:
    contract = {service.full_name for service in _contract_services()}
    for process in running.processes:
        assert contract & {n for n, p in running.serves.items() if p is process}, process.name


def test_every_service_still_serves(running: Running) -> None:
    for process in running.processes:
        assert health_status(process.grpc_address) == "SERVING", process.name
