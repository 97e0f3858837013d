"""R6, R16: who may read a document's content (case_svc/domain/access.py): under a grant from access-svc,
or — without one — the case's responsible officer and its unit head while the case is open."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from case_svc.domain.access import GrantClaims, authorize_document_read
from case_svc.domain.model import Stage
from case_svc.service_layer.ports import CaseView, DocumentRead, ReadLog
from case_svc.service_layer.queries import ListCases
from servicekit.errors import PermissionDenied
from servicekit.policy import Actor

NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
OFFICER = Actor("officer-1", "unit-a", frozenset({"OFFICER"}))
COLLEAGUE = Actor("officer-2", "unit-a", frozenset({"OFFICER"}))
HEAD = Actor("head-1", "unit-a", frozenset({"UNIT_HEAD"}))
OUTSIDER = Actor("reviewer-9", "unit-b", frozenset({"OFFICER"}))
GRANT = GrantClaims(
    grant_id="gr-1",
    grantee_subject="reviewer-9",
    cases=frozenset({"case-1"}),
    actions=frozenset({"VIEW"}),
    purpose="reconsideration",
    approver_subject="head-1",
    issued_at=NOW - timedelta(minutes=1),
    expires_at=NOW + timedelta(minutes=30),
)


def read(actor: Actor, grant: GrantClaims | None = None, stage: Stage = Stage.INVESTIGATION) -> str:
    return authorize_document_read(
        actor,
        case_id="case-1",
        unit="unit-a",
        responsible_officer="officer-1",
        stage=stage,
        grant=grant,
        now=NOW,
    )


def test_r16_responsible_officer_and_unit_head_read_an_open_case_without_a_grant() -> None:
    assert read(OFFICER) == "responsible officer"
    assert read(HEAD) == "unit head"


@pytest.mark.parametrize("actor", [COLLEAGUE, OUTSIDER])
def test_r16_anyone_else_needs_a_grant(actor: Actor) -> None:
    with pytest.raises(PermissionDenied, match="needs an access grant"):
        read(actor)


@pytest.mark.parametrize("stage", [Stage.CLOSED, Stage.ARCHIVED])
def test_r16_a_closed_case_is_read_only_under_a_grant(stage: Stage) -> None:
    with pytest.raises(PermissionDenied, match="needs an access grant"):
        read(OFFICER, stage=stage)
    assert read(OUTSIDER, GRANT, stage=stage) == "grant"


def test_r16_a_grant_lets_its_grantee_read_from_another_unit() -> None:
    assert read(OUTSIDER, GRANT) == "grant"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"approver_subject": ""}, "names no approver"),
        ({"approver_subject": "reviewer-9"}, "approved by its own grantee"),
        ({"expires_at": NOW}, "expired at"),
        ({"issued_at": NOW + timedelta(hours=1)}, "not valid before"),
        ({"grantee_subject": "someone-else"}, "was issued to 'someone-else'"),
        ({"cases": frozenset({"case-2"})}, "does not cover case case-1"),
        ({"actions": frozenset({"EXPORT"})}, "not VIEW or DOWNLOAD"),
    ],
)
def test_r16_invalid_grants_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(PermissionDenied, match=message):
        read(OUTSIDER, replace(GRANT, **change))  # type: ignore[arg-type]


class RecordingReadLog(ReadLog):
    def __init__(self) -> None:
        self.reads: list[DocumentRead] = []
        self.views: list[CaseView] = []

    async def record(self, read: DocumentRead) -> None:
        self.reads.append(read)

    async def record_view(self, view: CaseView) -> None:
        self.views.append(view)


async def test_r16_views_and_searches_from_outside_the_owning_unit_are_logged(world) -> None:  # type: ignore[no-untyped-def]
    log = RecordingReadLog()
    world.handlers.reads = log
    case = await world.open()
    await world.handlers.get_case(case.case_id, world.officer)
    await world.handlers.list_cases(ListCases(), world.officer)
    assert log.views == [], "views within the owning unit are not access events"
    await world.handlers.get_case(case.case_id, world.legal)
    await world.handlers.get_case_file_gaps(case.case_id, world.legal)
    await world.handlers.list_cases(ListCases(), world.legal)
    assert [(v.rpc, v.viewer, v.case_id) for v in log.views] == [
        ("GetCase", "lena", case.case_id),
        ("GetCaseFileGaps", "lena", case.case_id),
        ("ListCases", "lena", ""),
    ]
    assert case.case_id in log.views[-1].case_ids
