"""The use cases of case-svc: one async handler per command.

Each handler checks the request (nothing read yet), loads the one case it concerns, lets the
aggregate decide (rules, rights, events), and stores the case with its events in one single-document
write. A concurrent change of the same case (optimistic version) makes the handler reload and decide
again, a few times, before it gives up with ABORTED. Server time comes from the injected clock.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from servicekit.clock import Clock
from servicekit.errors import AlreadyExists, DataLoss, FailedPrecondition, NotFound, PermissionDenied
from servicekit.ids import keyed_id, new_id
from servicekit.policy import Actor, viewed_from_outside
from servicekit.retry import read_decide_write

from case_svc.domain import commands as c
from case_svc.domain.access import authorize_document_read
from case_svc.domain.case import Case, UnknownActivityLinked
from case_svc.domain.model import Activity, CaseFileGap, Document, Incident, LegalReview
from case_svc.domain.permissions import Action, authorize, listed_units
from case_svc.domain.rules import RuleBook
from case_svc.service_layer.ports import (
    CaseRepository,
    CaseSummary,
    CaseView,
    ContentStore,
    DocumentRead,
    GrantVerifier,
    ListPosition,
    ReadLog,
)
from case_svc.service_layer.queries import ListCases, decode_token, encode_token

log = logging.getLogger(__name__)
R = TypeVar("R")


def case_id_for(unit: str, request_id: str) -> str:
    """The id of the case opened in `unit` by the request with idempotency key `request_id`."""
    return keyed_id("case", unit, request_id) if request_id else new_id()


def child_id_for(case_id: str, kind: str, request_id: str) -> str:
    """The id of a record (`kind`: activity, incident, …) created in a case by a keyed request."""
    return keyed_id(kind, case_id, request_id) if request_id else new_id()


@dataclass(frozen=True)
class CasePage:
    cases: Sequence[CaseSummary]
    next_page_token: str


@dataclass(frozen=True)
class FileGaps:
    case_id: str
    checklist: str
    gaps: Sequence[CaseFileGap]


class CaseHandlers:
    """Every use case of case-svc, wired to its ports by `bootstrap`."""

    def __init__(
        self,
        cases: CaseRepository,
        contents: ContentStore,
        rules: RuleBook,
        clock: Clock,
        *,
        max_attempts: int = 5,
        grants: GrantVerifier | None = None,
        reads: ReadLog | None = None,
    ) -> None:
        self.cases = cases
        self.contents = contents
        self.rules = rules
        self.clock = clock
        self.max_attempts = max_attempts
        self.grants = grants
        self.reads = reads

    # ------------------------------------------------------------------ reads

    async def get_case(self, case_id: str, actor: Actor, *, rpc: str = "GetCase") -> Case:
        c.CaseCommand(case_id).validate_case_id()
        case = await self.cases.get(case_id)
        authorize(actor, Action.READ_CASE, case.unit)
        if viewed_from_outside(actor, [case.unit]) and self.reads is not None:
            # R16: a view from outside the owning unit (the supervising legal affairs office) is logged.
            await self.reads.record_view(
                CaseView(actor.subject, actor.unit, self.clock(), rpc, case_id=case.case_id, unit=case.unit)
            )
        return case

    async def list_cases(self, query: ListCases, actor: Actor) -> CasePage:
        limit = query.validate()
        units = listed_units(actor, query.unit)
        where = query.filter(units)
        after = decode_token(where, query.page_token)
        found = list(await self.cases.list(where, after, limit + 1))
        page, more = found[:limit], len(found) > limit
        token = encode_token(where, ListPosition(page[-1].opened_at, page[-1].case_id)) if more else ""
        if viewed_from_outside(actor, units) and self.reads is not None:
            await self.reads.record_view(
                CaseView(
                    actor.subject,
                    actor.unit,
                    self.clock(),
                    "ListCases",
                    unit=query.unit,
                    case_ids=tuple(s.case_id for s in page),
                )
            )
        return CasePage(page, token)

    async def read_document(
        self, case_id: str, document_id: str, token: str, actor: Actor
    ) -> tuple[Document, bytes]:
        """R6, R16: a document's content under the permission policy of `domain/access.py`, verified
        against its SHA-256 (the content store raises DataLoss otherwise), recorded before it is returned."""
        if self.grants is None or self.reads is None:
            raise FailedPrecondition("reading documents is not configured in this case-svc")
        c.CaseCommand(case_id).validate_case_id()
        grant = self.grants.decode(token.strip()) if token.strip() else None
        case = await self.cases.get(case_id)
        document = next((d for d in case.documents if d.document_id == document_id.strip()), None)
        if document is None:
            raise NotFound(f"case {case_id} has no document {document_id!r}")
        now = self.clock()
        basis = authorize_document_read(
            actor,
            case_id=case.case_id,
            unit=case.unit,
            responsible_officer=case.responsible_officer,
            stage=case.stage,
            grant=grant,
            now=now,
        )
        if grant is not None and await self.grants.is_revoked(grant.grant_id):
            raise PermissionDenied(f"access grant {grant.grant_id} was revoked; ask access-svc for a new one")
        content = await self.contents.get(document.sha256)
        if content is None:
            raise DataLoss(
                f"the content of document {document.document_id} (SHA-256 {document.sha256}) is missing"
            )
        await self.reads.record(
            DocumentRead(
                case.case_id,
                case.unit,
                document.document_id,
                document.sha256,
                actor.subject,
                actor.unit,
                now,
                grant.grant_id if grant else "",
                basis,
                grant.purpose if grant else "",
            )
        )
        return document, content

    async def get_case_file_gaps(self, case_id: str, actor: Actor) -> FileGaps:
        case = await self.get_case(case_id, actor, rpc="GetCaseFileGaps")
        return FileGaps(case.case_id, case.rules_key, case.file_gaps(self.rules))

    # ------------------------------------------------------------------ opening

    async def open_case(self, cmd: c.OpenCase, actor: Actor) -> Case:
        case_id = case_id_for(cmd.unit, cmd.request_id)
        case = Case.open(cmd, actor, self.clock(), case_id, self.rules)
        try:
            await self.cases.add(case)
        except AlreadyExists:
            if not cmd.request_id:
                raise
            # A repeated request: answer with the case the first one opened.
            existing = await self.cases.get(case_id)
            authorize(actor, Action.READ_CASE, existing.unit)
            return existing
        return case

    # ------------------------------------------------------------------ changes of one case

    async def advance_stage(self, cmd: c.AdvanceStage, actor: Actor) -> Case:
        cmd.validate()
        case, _ = await self._change(cmd.case_id, lambda case, now: case.advance(cmd, actor, now))
        return case

    async def return_for_reinvestigation(self, cmd: c.ReturnForReinvestigation, actor: Actor) -> Case:
        cmd.validate()
        case, _ = await self._change(
            cmd.case_id, lambda case, now: case.return_for_reinvestigation(cmd, actor, now)
        )
        return case

    async def close_case(self, cmd: c.CloseCase, actor: Actor) -> Case:
        cmd.validate()
        case, _ = await self._change(cmd.case_id, lambda case, now: case.close(cmd, actor, now))
        return case

    async def archive_case(self, cmd: c.ArchiveCase, actor: Actor) -> Case:
        cmd.validate()
        case, _ = await self._change(cmd.case_id, lambda case, now: case.archive(cmd, actor, now, self.rules))
        return case

    async def amend_particulars(self, cmd: c.AmendCaseParticulars, actor: Actor) -> Case:
        cmd.validate()
        case, _ = await self._change(cmd.case_id, lambda case, now: case.amend_particulars(cmd, actor, now))
        return case

    async def flag_case(self, cmd: c.FlagCase, actor: Actor) -> Case:
        cmd.validate()
        case, _ = await self._change(cmd.case_id, lambda case, now: case.flag(cmd, actor, now))
        return case

    async def record_incident(self, cmd: c.RecordIncident, actor: Actor) -> tuple[Case, Incident]:
        cmd.validate(self.clock())
        incident_id = child_id_for(cmd.case_id, "incident", cmd.request_id)
        return await self._change(
            cmd.case_id, lambda case, now: case.record_incident(cmd, actor, now, incident_id)
        )

    async def record_activity(self, cmd: c.RecordActivity, actor: Actor) -> tuple[Case, Activity]:
        cmd.validate(self.clock())
        activity_id = child_id_for(cmd.case_id, "activity", cmd.request_id)
        return await self._change(
            cmd.case_id, lambda case, now: case.record_activity(cmd, actor, now, activity_id)
        )

    async def file_document(self, cmd: c.FileDocument, actor: Actor) -> tuple[Case, Document]:
        cmd.validate(self.clock())
        sha256 = hashlib.sha256(cmd.content).hexdigest()
        document_id = new_id()
        stored = False

        async def store_content_then_decide(case: Case, now: datetime) -> Document:
            nonlocal stored
            document = case.file_document(cmd, actor, now, document_id, sha256, self.rules)
            if case.events and not stored:
                # The content is stored (write-once, by hash) before the case refers to it, so a case
                # never names content that is missing. A refusal above stores nothing.
                await self.contents.put(sha256, cmd.content, cmd.content_type)
                stored = True
            return document

        return await self._change_async(cmd.case_id, store_content_then_decide)

    async def record_legal_review(self, cmd: c.RecordLegalReview, actor: Actor) -> tuple[Case, LegalReview]:
        cmd.validate()
        review_id = new_id()
        return await self._change(
            cmd.case_id, lambda case, now: case.record_legal_review(cmd, actor, now, review_id)
        )

    # ------------------------------------------------------------------ projection of media events (R5)

    async def link_recording(self, cmd: c.LinkRecording) -> bool:
        """Applies media-svc's RecordingLinked; True when the case learned something new. Idempotent:
        the same link applied twice changes the case once."""
        cmd.validate()
        try:
            _, changed = await self._change(cmd.case_id, lambda case, _now: case.note_recording_link(cmd))
        except UnknownActivityLinked:
            raise
        except NotFound:
            raise NotFound(
                f"RecordingLinked for recording {cmd.recording_id} names case {cmd.case_id}, which case-svc "
                "does not know"
            ) from None
        if changed:
            log.info(
                "recording %s linked to case %s activity %s",
                cmd.recording_id,
                cmd.case_id,
                cmd.activity_id or "-",
            )
        return changed

    # ------------------------------------------------------------------ the read-decide-write loop

    async def _change(self, case_id: str, decide: Callable[[Case, datetime], R]) -> tuple[Case, R]:
        async def decide_async(case: Case, now: datetime) -> R:
            return decide(case, now)

        return await self._change_async(case_id, decide_async)

    async def _change_async(
        self, case_id: str, decide: Callable[[Case, datetime], Awaitable[R]]
    ) -> tuple[Case, R]:
        # Requests for one case in this process take turns (they would only conflict); requests in
        # other processes are caught by the optimistic version and decided again after a short pause.
        async def attempt() -> tuple[Case, R]:
            case = await self.cases.get(case_id)
            result = await decide(case, self.clock())
            if case.events:  # nothing to write for a repeat, or an already-set flag
                await self.cases.save(case)
            return case, result

        async with self.cases.exclusive(case_id):
            return await read_decide_write(attempt, what=f"case {case_id}", attempts=self.max_attempts)
