"""Unit-test world: the real `bootstrap.build_handlers` wired to in-memory fakes of the ports.

The fakes subclass the same abstract ports as the MongoDB adapters and honour the same contract
(optimistic versions, AlreadyExists, NotFound, newest-first paging), so handler tests exercise the
real wiring. Each test opens its own cases with fresh ids; nothing is shared between tests.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from case_svc.bootstrap import build_handlers, load_rules
from case_svc.domain import commands as c
from case_svc.domain import events as e
from case_svc.domain.case import Case
from case_svc.domain.model import (
    Activity,
    ActivityKind,
    ActType,
    CaseFlag,
    Document,
    ExemptionReason,
    LegalReviewOutcome,
    PartyKind,
    Procedure,
    RecordMode,
    Stage,
)
from case_svc.domain.rules import RuleBook
from case_svc.service_layer.handlers import CaseHandlers
from case_svc.service_layer.ports import CaseFilter, CaseRepository, CaseSummary, ContentStore, ListPosition
from servicekit.errors import AlreadyExists, ConcurrencyConflict, NotFound
from servicekit.policy import Actor, Role

T0 = datetime(2026, 5, 4, 1, 0, tzinfo=UTC)


class InMemoryCaseRepository(CaseRepository):
    def __init__(self) -> None:
        self.stored: dict[str, Case] = {}
        self.outbox: list[e.CaseEvent] = []
        self.writes = 0
        self.conflicts_to_inject = 0
        self.conflicts = 0
        self.turns: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)

    async def get(self, case_id: str) -> Case:
        await asyncio.sleep(0)  # a real database suspends here: let concurrent requests interleave
        if case_id not in self.stored:
            raise NotFound(f"case {case_id} not found")
        return copy.deepcopy(self.stored[case_id])

    async def add(self, case: Case) -> None:
        if case.case_id in self.stored:
            raise AlreadyExists(f"case {case.case_id} exists")
        self._write(case, 1)

    async def save(self, case: Case) -> None:
        await asyncio.sleep(0)
        if self.conflicts_to_inject:
            self.conflicts_to_inject -= 1
            raise ConcurrencyConflict("injected")
        if self.stored[case.case_id].version != case.version:
            self.conflicts += 1
            raise ConcurrencyConflict("changed meanwhile")
        self._write(case, case.version + 1)

    def exclusive(self, case_id: str) -> asyncio.Lock:
        return self.turns[case_id]

    def _write(self, case: Case, version: int) -> None:
        self.writes += 1
        self.outbox.extend(ev for ev in case.events if ev.published)
        case.events.clear()
        case.version = version
        self.stored[case.case_id] = copy.deepcopy(case)

    async def list(self, where: CaseFilter, after: ListPosition | None, limit: int) -> Sequence[CaseSummary]:
        def matches(case: Case) -> bool:
            officers = {case.responsible_officer} | {o for a in case.activities for o in a.officers}
            return (
                (where.units is None or case.unit in where.units)
                and (where.stage is None or case.stage is where.stage)
                and (where.act_type is None or case.act_type is where.act_type)
                and (where.flag is None or where.flag in case.flag_set)
                and (not where.officer or where.officer in officers)
                and (not where.party or where.party in {p.name for p in case.parties})
                and case.cause.startswith(where.cause_prefix)
                and (where.opened_from is None or case.opened_at >= where.opened_from)
                and (where.opened_to is None or case.opened_at < where.opened_to)
            )

        ordered = sorted(
            (cs for cs in self.stored.values() if matches(cs)),
            key=lambda cs: (cs.opened_at, cs.case_id),
            reverse=True,
        )
        if after is not None:
            ordered = [cs for cs in ordered if (cs.opened_at, cs.case_id) < (after.opened_at, after.case_id)]
        return [
            CaseSummary(
                cs.case_id,
                cs.act_type,
                cs.procedure,
                cs.unit,
                cs.cause,
                cs.responsible_officer,
                tuple(p.name for p in cs.parties),
                cs.stage,
                tuple(f.flag for f in cs.flags),
                cs.opened_at,
            )
            for cs in ordered[:limit]
        ]

    def events_of(self, case_id: str) -> list[e.CaseEvent]:
        return [ev for ev in self.outbox if ev.case_id == case_id]


class InMemoryContentStore(ContentStore):
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    async def put(self, sha256: str, content: bytes, content_type: str) -> None:
        assert hashlib.sha256(content).hexdigest() == sha256
        self.blobs.setdefault(sha256, content)

    async def get(self, sha256: str) -> bytes | None:
        return self.blobs.get(sha256)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 60) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def actor(subject: str, unit: str, *roles: Role) -> Actor:
    return Actor(subject, unit, frozenset(r.value for r in roles))


OFFICER = actor("alice", "unit-a", Role.OFFICER)
HEAD = actor("hank", "unit-a", Role.UNIT_HEAD)
ARCHIVIST = actor("arno", "unit-a", Role.ARCHIVIST)
LEGAL = actor("lena", "legal-office", Role.LEGAL_OFFICE)
OTHER_OFFICER = actor("bob", "unit-b", Role.OFFICER)
OTHER_HEAD = actor("bea", "unit-b", Role.UNIT_HEAD)


@dataclass
class World:
    """The handlers on fakes, with helpers that build valid requests (tests change one field)."""

    handlers: CaseHandlers
    cases: InMemoryCaseRepository
    contents: InMemoryContentStore
    clock: Clock
    rules: RuleBook
    numbers: dict[str, int] = field(default_factory=dict)
    # The cast: an officer, unit head and archivist of unit-a, the legal affairs office, unit-b's staff.
    officer: Actor = OFFICER
    head: Actor = HEAD
    archivist: Actor = ARCHIVIST
    legal: Actor = LEGAL
    other_officer: Actor = OTHER_OFFICER
    other_head: Actor = OTHER_HEAD

    def open_cmd(self, **overrides: Any) -> c.OpenCase:
        values: dict[str, Any] = {
            "act_type": ActType.PENALTY,
            "procedure": Procedure.GENERAL,
            "unit": "unit-a",
            "cause": "未按规定修建防空地下室",
            "responsible_officer": "alice",
            "parties": (c.PartyInput("某某建设有限公司", PartyKind.ORGANIZATION, "91410000XXXXXXXX"),),
        }
        values.update(overrides)
        return c.OpenCase(**values)

    async def open(self, by: Actor = OFFICER, **overrides: Any) -> Case:
        return await self.handlers.open_case(self.open_cmd(**overrides), by)

    def activity_cmd(self, case_id: str, **overrides: Any) -> c.RecordActivity:
        values: dict[str, Any] = {
            "case_id": case_id,
            "kind": ActivityKind.EVIDENCE_COLLECTION,
            "started_at": self.clock.now - timedelta(hours=2),
            "ended_at": self.clock.now - timedelta(hours=1),
            "place": "许昌市魏都区某工地",
            "officers": ("alice", "carl"),
            "record_mode": RecordMode.CONTINUOUS_AV,
        }
        values.update(overrides)
        return c.RecordActivity(**values)

    async def activity(self, case_id: str, by: Actor = OFFICER, **overrides: Any) -> Activity:
        _, activity = await self.handlers.record_activity(self.activity_cmd(case_id, **overrides), by)
        return activity

    async def exempt_activity(self, case_id: str) -> Activity:
        return await self.activity(
            case_id,
            record_mode=RecordMode.EXEMPT,
            exemption_reason=ExemptionReason.HAZARDOUS_CHEMICALS,
            exemption_note="危化品仓库内禁止使用电子设备",
        )

    def document_cmd(self, case_id: str, document_type: str, **overrides: Any) -> c.FileDocument:
        n = self.numbers[document_type] = self.numbers.get(document_type, 0) + 1
        values: dict[str, Any] = {
            "case_id": case_id,
            "document_type": document_type,
            "number": f"许人防〔2026〕{n}号",
            "title": self.rules.document_name(document_type),
            "author": "alice",
            "signed_on": "2026-05-03",
            "content": f"{document_type} {n} content".encode(),
            "content_type": "application/pdf",
        }
        values.update(overrides)
        return c.FileDocument(**values)

    async def document(
        self, case_id: str, document_type: str, by: Actor = OFFICER, **overrides: Any
    ) -> Document:
        _, document = await self.handlers.file_document(
            self.document_cmd(case_id, document_type, **overrides), by
        )
        return document

    async def advance(self, case_id: str, to_stage: Stage, by: Actor = HEAD) -> Case:
        return await self.handlers.advance_stage(c.AdvanceStage(case_id, to_stage, f"move to {to_stage}"), by)

    async def flag(self, case_id: str, flag: CaseFlag, by: Actor = OFFICER) -> Case:
        return await self.handlers.flag_case(c.FlagCase(case_id, flag, f"flag {flag}"), by)

    async def link(
        self,
        case_id: str,
        activity_id: str,
        recording_id: str = "",
        *,
        unit: str = "unit-a",
        span: tuple[datetime, datetime] | None = None,
        by_legal_office: bool = False,
    ) -> bool:
        """media-svc's RecordingLinked; the recording spans its activity unless `span` says otherwise."""
        self.numbers["rec"] = self.numbers.get("rec", 0) + 1
        if span is None and activity_id and case_id in self.cases.stored:
            activity = self.cases.stored[case_id].activity(activity_id)
            if activity is not None:
                span = (activity.started_at, activity.ended_at)
        return await self.handlers.link_recording(
            c.LinkRecording(
                recording_id=recording_id or f"rec-{self.numbers['rec']}",
                case_id=case_id,
                activity_id=activity_id,
                unit=unit,
                sha256="ab" * 32,
                linked_at=self.clock.now,
                recorded_from=span[0] if span else None,
                recorded_to=span[1] if span else None,
                linked_by_legal_office=by_legal_office,
            )
        )

    async def review(self, case_id: str, outcome: LegalReviewOutcome, by: Actor = LEGAL) -> None:
        await self.handlers.record_legal_review(c.RecordLegalReview(case_id, outcome, "意见"), by)

    async def close(self, case_id: str, by: Actor = HEAD) -> Case:
        return await self.handlers.close_case(c.CloseCase(case_id, "结案"), by)

    async def archive(self, case_id: str, by: Actor = HEAD) -> Case:
        return await self.handlers.archive_case(c.ArchiveCase(case_id, "归档"), by)

    async def to_stage(self, case_id: str, stage: Stage) -> Case:
        """Advances a case (with no flags) through its applicable stages up to `stage`."""
        case = await self.cases.get(case_id)
        while case.stage.order < stage.order:
            nxt, _ = case.next_stage()
            if nxt is Stage.CLOSED:
                case = await self.close(case_id)
            elif nxt is Stage.ARCHIVED:
                case = await self.archive(case_id)
            else:
                case = await self.advance(case_id, nxt)
        return case

    async def complete_file(self, case_id: str) -> None:
        case = await self.cases.get(case_id)
        for gap in case.file_gaps(self.rules):
            await self.document(case_id, gap.document_type, by=HEAD)


@pytest.fixture
def rules() -> RuleBook:
    return load_rules()


@pytest.fixture
def world(rules: RuleBook) -> World:
    cases, contents, clock = InMemoryCaseRepository(), InMemoryContentStore(), Clock()
    return World(build_handlers(cases, contents, rules=rules, clock=clock), cases, contents, clock, rules)
