"""Helpers of access-svc's unit tests: in-memory fakes of the ports (honouring their contracts: versions,
NotFound, newest-first) and the people who act. Importable because conftest.py puts this directory on
sys.path."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import lawtrail_merkle as merkle
from access_svc.adapters.signing import Ed25519Signer
from access_svc.bootstrap import build_handlers, load_standing_orders
from access_svc.domain.ledger import Checkpoint
from access_svc.domain.model import AccessRequest, RequestState, Resource, ResourceKind
from access_svc.service_layer.handlers import AccessHandlers
from access_svc.service_layer.ledger import LedgerHandlers
from access_svc.service_layer.ports import (
    LedgerEntry,
    LedgerHead,
    LedgerStore,
    Owners,
    RequestFilter,
    RequestRepository,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from servicekit.errors import ConcurrencyConflict, DataLoss, NotFound
from servicekit.policy import Actor


class FakeRequests(RequestRepository):
    def __init__(self) -> None:
        self.docs: dict[str, AccessRequest] = {}
        self.events: list[object] = []

    async def get(self, request_id: str) -> AccessRequest:
        if request_id not in self.docs:
            raise NotFound(f"no access request {request_id!r}")
        return copy.deepcopy(self.docs[request_id])

    async def by_grant(self, grant_id: str) -> AccessRequest | None:
        for r in self.docs.values():
            if r.grant is not None and r.grant.grant_id == grant_id:
                return copy.deepcopy(r)
        return None

    async def add(self, request: AccessRequest) -> None:
        request.version = 1
        self.events += request.pending_events
        request.pending_events = []
        self.docs[request.request_id] = copy.deepcopy(request)

    async def save(self, request: AccessRequest) -> None:
        if self.docs[request.request_id].version != request.version:
            raise ConcurrencyConflict("changed")
        request.version += 1
        self.events += request.pending_events
        request.pending_events = []
        self.docs[request.request_id] = copy.deepcopy(request)

    def exclusive(self, request_id: str) -> contextlib.AbstractAsyncContextManager[object]:
        return contextlib.nullcontext()

    async def list(
        self, where: RequestFilter, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[AccessRequest]:
        rows = [
            r
            for r in self.docs.values()
            if (
                where.all_units
                or r.requester == where.requester
                or (where.unit and where.unit in r.owning_units)
            )
            and (where.state is None or r.state is where.state)
        ]
        rows.sort(key=lambda r: (r.requested.at, r.request_id), reverse=True)
        if after is not None:
            rows = [r for r in rows if (r.requested.at, r.request_id) < after]
        return rows[:limit]

    async def approved_expiring_before(self, now: datetime, limit: int) -> Sequence[str]:
        return [
            r.request_id
            for r in self.docs.values()
            if r.state is RequestState.APPROVED and r.grant and r.grant.expires_at < now
        ][:limit]


class FakeOwners(Owners):
    def __init__(self) -> None:
        self.units: dict[tuple[ResourceKind, str], str] = {}
        self.holds: set[str] = set()

    async def units_of(self, resources: Sequence[Resource]) -> tuple[str, ...]:
        return tuple(self.units.get((r.kind, r.id), "") for r in resources)

    async def held_cases(self, case_ids: Sequence[str]) -> frozenset[str]:
        return frozenset(c for c in case_ids if c in self.holds)


class MemoryLedger(LedgerStore):
    def __init__(self) -> None:
        self.leaves: list[bytes] = []
        self.node_map: dict[tuple[int, int], bytes] = {}
        self.keys: dict[str, int] = {}
        self.range = merkle.CompactRange.empty()
        self.content_size = 0
        self.checkpoints: list[Checkpoint] = []
        self.subjects: dict[str, list[int]] = {}
        self.batches: list[int] = []
        self.epoch = 0

    async def head(self) -> LedgerHead:
        return LedgerHead(self.range.size, self.range.root(), self.content_size)

    async def append_batch(self, entries: Sequence[LedgerEntry]) -> list[int | None]:
        self.batches.append(len(entries))
        out: list[int | None] = []
        for e in entries:
            if e.key in self.keys:
                out.append(None)
                continue
            index = self.range.size
            if e.subject:
                self.subjects.setdefault(e.subject, []).append(index)
            for level, i, h in self.range.append(merkle.leaf_hash(e.leaf)):
                self.node_map[(level, i)] = h
            self.leaves.append(e.leaf)
            self.keys[e.key] = index
            if not e.checkpoint:
                self.content_size = self.range.size
            out.append(index)
        return out

    async def fence(self, epoch: int) -> None:
        self.epoch = epoch

    async def nodes(self, coordinates: Sequence[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        try:
            return {c: self.node_map[c] for c in coordinates}
        except KeyError as missing:
            raise DataLoss(f"ledger node {missing} is missing") from None

    async def leaf(self, index: int) -> bytes:
        return self.leaves[index]

    async def index_of(self, key: str) -> int | None:
        return self.keys.get(key)

    async def indexes_about(self, subject: str) -> list[int]:
        return list(self.subjects.get(subject, []))

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.checkpoints.append(checkpoint)

    async def latest_checkpoint(self) -> Checkpoint | None:
        return self.checkpoints[-1] if self.checkpoints else None


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 6, 1, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class World:
    access: AccessHandlers
    ledger: LedgerHandlers
    requests: FakeRequests
    owners: FakeOwners
    store: MemoryLedger
    signer: Ed25519Signer
    key: Ed25519PrivateKey
    clock: Clock


def make_world() -> World:
    key = Ed25519PrivateKey.generate()
    signer = Ed25519Signer(key)
    requests, owners, store, clock = FakeRequests(), FakeOwners(), MemoryLedger(), Clock()
    access, ledger = build_handlers(
        requests, signer, owners, store, clock=clock, standing_orders=load_standing_orders()
    )
    return World(access, ledger, requests, owners, store, signer, key, clock)


OFFICER = Actor("officer-1", "unit-a", frozenset({"OFFICER"}))
DEPUTY = Actor("deputy-1", "unit-a", frozenset({"OFFICER", "UNIT_HEAD"}))
HEAD_A = Actor("head-a", "unit-a", frozenset({"UNIT_HEAD"}))
HEAD_B = Actor("head-b", "unit-b", frozenset({"UNIT_HEAD"}))
LEGAL = Actor("legal-1", "legal", frozenset({"LEGAL_OFFICE"}))
INSPECTOR = Actor("inspector-1", "inspection", frozenset({"INSPECTOR"}))
