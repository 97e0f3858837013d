"""A case's cause and parties amended before closing (变更案由, 追加/变更当事人): attributed, carrying the
values before and after (R4), so that consumers keeping them — media-svc's search (R17) — follow."""

from __future__ import annotations

import pytest
from case_svc.domain import commands as c
from case_svc.domain import events as e
from case_svc.domain.case import Case
from case_svc.domain.model import PartyKind, Stage
from servicekit.errors import FailedPrecondition, InvalidArgument, PermissionDenied

NEW_PARTIES = (
    c.PartyInput("某某建设有限公司", PartyKind.ORGANIZATION),
    c.PartyInput("李四", PartyKind.PERSON),
)


def amend(case_id: str, cause: str = "占用消防通道", parties: tuple[c.PartyInput, ...] = NEW_PARTIES):
    return c.AmendCaseParticulars(case_id, cause, parties, "调查后变更案由并追加当事人")


async def test_r17_amending_the_cause_and_parties_publishes_the_values_before_and_after(world):
    case = await world.open()
    amended = await world.handlers.amend_particulars(amend(case.case_id), world.head)
    assert amended.cause == "占用消防通道"
    assert [p.name for p in amended.parties] == ["某某建设有限公司", "李四"]
    (event,) = [ev for ev in world.cases.events_of(case.case_id) if isinstance(ev, e.CaseParticularsAmended)]
    assert (event.previous_cause, [p.name for p in event.previous_parties]) == (
        "未按规定修建防空地下室",
        ["某某建设有限公司"],
    )
    assert (event.amended.subject, event.amended.unit) == ("hank", "unit-a")
    # the stored case and its list filters follow
    assert (
        Case.replay(world.cases.events_of(case.case_id)).snapshot()
        == (await world.cases.get(case.case_id)).snapshot()
    )
    # the same amendment again changes nothing
    again = await world.handlers.amend_particulars(amend(case.case_id), world.head)
    assert again.version == amended.version
    assert (
        len([ev for ev in world.cases.events_of(case.case_id) if isinstance(ev, e.CaseParticularsAmended)])
        == 1
    )


async def test_r08_only_the_unit_head_of_the_case_amends_its_particulars(world):
    case = await world.open()
    with pytest.raises(PermissionDenied, match="R8"):
        await world.handlers.amend_particulars(amend(case.case_id), world.officer)
    with pytest.raises(PermissionDenied, match="R8"):
        await world.handlers.amend_particulars(amend(case.case_id), world.other_head)
    assert (await world.cases.get(case.case_id)).cause == "未按规定修建防空地下室"


async def test_amending_names_the_bad_field_and_is_refused_once_closed(world):
    case = await world.open()
    with pytest.raises(InvalidArgument, match=r"^cause: "):
        await world.handlers.amend_particulars(amend(case.case_id, cause=""), world.head)
    with pytest.raises(InvalidArgument, match=r"^parties: at least one party"):
        await world.handlers.amend_particulars(amend(case.case_id, parties=()), world.head)
    with pytest.raises(InvalidArgument, match=r"^parties\[0\].kind: "):
        await world.handlers.amend_particulars(
            amend(case.case_id, parties=(c.PartyInput("王五", None),)), world.head
        )
    stored = await world.cases.get(case.case_id)
    stored.stage = Stage.CLOSED  # a closed case's particulars are those it was decided under
    await world.cases.save(stored)
    with pytest.raises(FailedPrecondition, match="R3: cannot amend the cause and parties of case"):
        await world.handlers.amend_particulars(amend(case.case_id), world.head)
