"""R8: officers act in their own unit, unit heads approve their unit's stage changes, the legal
affairs office reads and supervises every unit; every refusal says why and writes nothing."""

from __future__ import annotations

import pytest
from case_svc.domain import commands as c
from case_svc.domain.model import CaseFlag, IncidentKind, Stage
from case_svc.domain.permissions import ROLES_FOR, Action
from case_svc.service_layer.queries import ListCases
from servicekit.errors import PermissionDenied
from servicekit.policy import Role


async def test_r08_officers_open_cases_only_in_their_own_unit(world):
    with pytest.raises(
        PermissionDenied, match=r"R8: alice \(unit 'unit-a'\) may not open a case of unit 'unit-b'"
    ):
        await world.open(unit="unit-b")
    assert world.cases.stored == {}


async def test_r08_an_officer_cannot_approve_a_stage_change(world):
    case = await world.open()
    with pytest.raises(
        PermissionDenied, match=r"need to be UNIT_HEAD of unit 'unit-a'; alice has roles \[OFFICER\]"
    ):
        await world.advance(case.case_id, Stage.INVESTIGATION, by=world.officer)
    with pytest.raises(PermissionDenied):
        await world.close(case.case_id, by=world.officer)


async def test_r08_a_unit_head_approves_only_their_own_units_cases(world):
    case = await world.open()
    with pytest.raises(PermissionDenied, match=r"bea \(unit 'unit-b'\) may not advance the stage"):
        await world.advance(case.case_id, Stage.INVESTIGATION, by=world.other_head)
    assert (await world.cases.get(case.case_id)).stage is Stage.INITIATION


async def test_r08_officers_of_another_unit_can_neither_read_nor_act(world):
    case = await world.open()
    with pytest.raises(
        PermissionDenied, match=r"may not read cases of unit 'unit-a'.*only INSPECTOR, LEGAL_OFFICE may"
    ):
        await world.handlers.get_case(case.case_id, world.other_officer)
    with pytest.raises(PermissionDenied):
        await world.activity(case.case_id, by=world.other_officer)
    with pytest.raises(PermissionDenied):
        await world.document(case.case_id, "FILING_APPROVAL", by=world.other_officer)
    assert world.contents.blobs == {}


async def test_r08_the_legal_affairs_office_reads_and_supervises_every_unit(world):
    case = await world.open()
    assert (await world.handlers.get_case(case.case_id, world.legal)).case_id == case.case_id
    flagged = await world.flag(case.case_id, CaseFlag.MAJOR_COMPLEX, by=world.legal)
    assert flagged.flags[0].flagged.subject == "lena"
    _, incident = await world.handlers.record_incident(
        c.RecordIncident(case.case_id, IncidentKind.COMPLAINT, world.clock.now, "张三", "投诉"), world.legal
    )
    assert incident.recorded.unit == "legal-office"


async def test_r08_the_legal_affairs_office_does_not_act_for_a_unit(world):
    with pytest.raises(PermissionDenied, match="to open a case you need to be OFFICER, UNIT_HEAD of unit"):
        await world.open(by=world.legal)
    case = await world.open()
    with pytest.raises(PermissionDenied):
        await world.advance(case.case_id, Stage.INVESTIGATION, by=world.legal)
    with pytest.raises(PermissionDenied):
        await world.activity(case.case_id, by=world.legal)


async def test_r08_an_archivist_completes_the_file_of_a_closed_case_only(world):
    case = await world.open(act_type=c.ActType.LEVY, procedure=None)
    with pytest.raises(PermissionDenied, match="ARCHIVIST may only file documents in a CLOSED case"):
        await world.document(case.case_id, "LEVY_DECISION", by=world.archivist)
    await world.to_stage(case.case_id, Stage.CLOSED)
    document = await world.document(case.case_id, "LEVY_DECISION", by=world.archivist)
    assert document.filed.subject == "arno"
    with pytest.raises(PermissionDenied):
        await world.close(case.case_id, by=world.archivist)


async def test_r08_lists_are_scoped_to_the_callers_unit(world):
    mine = await world.open()
    theirs = await world.open(by=world.other_officer, unit="unit-b")
    page = await world.handlers.list_cases(ListCases(), world.officer)
    assert [s.case_id for s in page.cases] == [mine.case_id]
    with pytest.raises(PermissionDenied, match="may not read cases of unit 'unit-b'"):
        await world.handlers.list_cases(ListCases(unit="unit-b"), world.officer)
    everything = await world.handlers.list_cases(ListCases(), world.legal)
    assert {s.case_id for s in everything.cases} == {mine.case_id, theirs.case_id}


def test_r08_every_action_is_open_to_some_role_and_legal_review_only_to_the_legal_office():
    assert set(ROLES_FOR) == set(Action)
    assert all(ROLES_FOR[a] for a in Action)
    assert ROLES_FOR[Action.RECORD_LEGAL_REVIEW] == {Role.LEGAL_OFFICE}
    assert ROLES_FOR[Action.ADVANCE_STAGE] == {Role.UNIT_HEAD}
