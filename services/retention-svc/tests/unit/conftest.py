"""Unit-test world: the real `bootstrap.build_handlers` wired to in-memory fakes of the ports.

The fakes subclass the same abstract ports as the MongoDB adapters and keep the same contract (a stored
copy per save, optimistic versions, events collected at save), so handler tests exercise the real wiring.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import uuid
from collections import defaultdict
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from retention_svc.bootstrap import build_handlers, load_rules
from retention_svc.domain.retention import CaseRecord, Incident, RecordingRecord, RetentionEvent
from retention_svc.service_layer.handlers import CaseFacts, RecordingFacts, RetentionHandlers
from retention_svc.service_layer.ports import CaseRecords, RecordingRecords
from servicekit.errors import ConcurrencyConflict

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class _Store:
    def __init__(self) -> None:
        self.docs: dict[str, Any] = {}
        self.events: list[RetentionEvent] = []
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def lock(self, key: str) -> AbstractAsyncContextManager[object]:
        return self._locks[key]

    def get(self, key: str) -> Any:
        doc = self.docs.get(key)
        return None if doc is None else copy.deepcopy(doc)

    def save(self, key: str, record: Any) -> None:
        stored = self.docs.get(key)
        if (stored.version if stored else 0) != record.version:
            raise ConcurrencyConflict(f"{key} changed since it was read")
        record.version += 1
        self.events.extend(record.pending_events)
        record.pending_events.clear()
        self.docs[key] = copy.deepcopy(record)


class FakeCases(CaseRecords):
    def __init__(self) -> None:
        self.store = _Store()

    async def get(self, case_id: str) -> CaseRecord | None:
        return self.store.get(case_id)

    async def save(self, case: CaseRecord) -> None:
        self.store.save(case.case_id, case)

    def exclusive(self, case_id: str) -> AbstractAsyncContextManager[object]:
        return self.store.lock(case_id)

    async def held_case_ids(self) -> list[str]:
        return sorted(k for k, v in self.store.docs.items() if v.held)

    async def sent(self, case_id: str) -> None:
        return None  # events are "sent" as they are saved here


class FakeRecordings(RecordingRecords):
    def __init__(self) -> None:
        self.store = _Store()

    async def get(self, recording_id: str) -> RecordingRecord | None:
        return self.store.get(recording_id)

    async def save(self, recording: RecordingRecord) -> None:
        self.store.save(recording.recording_id, recording)

    def exclusive(self, recording_id: str) -> AbstractAsyncContextManager[object]:
        return self.store.lock(recording_id)


@dataclass
class World:
    handlers: RetentionHandlers
    cases: FakeCases
    recordings: FakeRecordings
    unit: str = field(default_factory=lambda: f"unit-{uuid.uuid4().hex[:6]}")

    def events(self, kind: str) -> list[RetentionEvent]:
        return [e for e in self.cases.store.events + self.recordings.store.events if e.kind == kind]

    def state(self) -> dict[str, Any]:
        """Everything stored, without versions (a replay may take a different number of writes)."""

        def plain(record: Any) -> Any:
            values = dict(vars(record))
            values.pop("version")
            values.pop("pending_events")
            return values

        return {
            "cases": {k: plain(v) for k, v in self.cases.store.docs.items()},
            "recordings": {k: plain(v) for k, v in self.recordings.store.docs.items()},
        }


def new_world() -> World:
    cases, recordings = FakeCases(), FakeRecordings()
    return World(build_handlers(cases, recordings, rules=load_rules(), clock=lambda: T0), cases, recordings)


@pytest.fixture
def world() -> World:
    return new_world()


def case_facts(case_id: str, unit: str, act_type: str = "PENALTY", procedure: str = "GENERAL") -> CaseFacts:
    return CaseFacts(case_id, unit, act_type, procedure)


def recording_facts(recording_id: str, unit: str, end: datetime = T0) -> RecordingFacts:
    return RecordingFacts(
        recording_id=recording_id,
        unit=unit,
        sha256=hashlib.sha256(recording_id.encode()).hexdigest(),
        size_bytes=1000,
        media_kind="VIDEO",
        recorded_from=end - timedelta(minutes=5),
        recorded_to=end,
        ingested_at=end + timedelta(hours=1),
    )


def incident(incident_id: str = "inc-1", kind: str = "ASSAULT", at: datetime = T0) -> Incident:
    return Incident(incident_id, kind, "", at, f"case-svc/event-{incident_id}")


class Kit:
    """The helpers above, for test modules (with --import-mode=importlib they cannot import conftest)."""

    T0 = T0
    new_world = staticmethod(new_world)
    case_facts = staticmethod(case_facts)
    recording_facts = staticmethod(recording_facts)
    incident = staticmethod(incident)


@pytest.fixture
def kit() -> type[Kit]:
    return Kit
