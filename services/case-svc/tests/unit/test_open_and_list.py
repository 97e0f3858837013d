"""R2: opening a case (act type, procedure, unit, cause, officer, parties); bad input named precisely and
nothing written; idempotent retries; ListCases filters and cursor paging; the read-decide-write loop."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from case_svc.adapters.repository import CaseDocuments
from case_svc.domain import commands as c
from case_svc.domain.model import ActType, CaseFlag, PartyKind, Procedure, Stage
from case_svc.service_layer.queries import ListCases
from servicekit.errors import AlreadyExists, ConcurrencyConflict, InvalidArgument, NotFound

ORG = c.PartyInput("某某公司", PartyKind.ORGANIZATION)


@pytest.mark.parametrize("act_type", list(ActType))
async def test_r02_each_act_type_opens_a_case(world, act_type):
    procedure = Procedure.GENERAL if act_type is ActType.PENALTY else None
    case = await world.open(act_type=act_type, procedure=procedure)
    stored = await world.cases.get(case.case_id)
    assert (stored.act_type, stored.procedure, stored.unit, stored.version) == (
        act_type,
        procedure,
        "unit-a",
        1,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"act_type": None}, "act_type: required \\(one of LICENSING, PENALTY, INSPECTION, LEVY\\)"),
        ({"procedure": None}, "procedure: required for PENALTY cases"),
        ({"act_type": ActType.LEVY}, "procedure: only PENALTY cases have a procedure"),
        ({"unit": ""}, "unit: required"),
        ({"unit": "unit a"}, "unit: 'unit a' is not a valid id"),
        ({"unit": "u" * 65}, "unit: 65 characters is too long; at most 64"),
        ({"cause": ""}, "cause: required"),
        ({"cause": "   "}, "cause: required"),
        ({"cause": "因" * 201}, "cause: 201 characters is too long; at most 200"),
        ({"cause": "a\nb"}, "cause: contains the control character U\\+000A"),
        ({"responsible_officer": ""}, "responsible_officer: required"),
        ({"parties": ()}, "parties: at least one party is required"),
        ({"parties": (ORG,) * 21}, "parties: 21 given; at most 20"),
        ({"parties": (c.PartyInput("", PartyKind.PERSON),)}, "parties\\[0\\].name: required"),
        ({"parties": (ORG, c.PartyInput("张三", None))}, "parties\\[1\\].kind: required"),
        ({"request_id": "x" * 65}, "request_id: 65 characters is too long"),
    ],
)
async def test_r02_bad_input_names_the_field_and_writes_nothing(world, overrides, message):
    with pytest.raises(InvalidArgument, match=message):
        await world.open(**overrides)
    assert world.cases.stored == {}
    assert world.cases.outbox == []


async def test_r02_a_retried_open_with_the_same_request_id_returns_the_first_case(world):
    first = await world.open(request_id="open-42")
    again = await world.open(request_id="open-42")
    assert again.case_id == first.case_id
    assert len(world.cases.stored) == 1
    assert len(world.cases.outbox) == 1
    other_unit = await world.open(by=world.other_officer, unit="unit-b", request_id="open-42")
    assert other_unit.case_id != first.case_id


async def test_r04_unknown_cases_are_not_found(world):
    with pytest.raises(NotFound):
        await world.handlers.get_case("no-such-case", world.officer)
    with pytest.raises(InvalidArgument, match="case_id: required"):
        await world.handlers.get_case("", world.officer)


async def test_list_cases_newest_first_with_a_cursor(world):
    opened = []
    for _ in range(7):
        world.clock.tick()
        opened.append((await world.open()).case_id)
    seen, token = [], ""
    while True:
        page = await world.handlers.list_cases(ListCases(page_size=3, page_token=token), world.officer)
        seen += [s.case_id for s in page.cases]
        token = page.next_page_token
        if not token:
            break
    assert seen == opened[::-1]


async def test_list_cases_cursor_is_bound_to_its_filters(world):
    for _ in range(3):
        await world.open()
    page = await world.handlers.list_cases(ListCases(page_size=1), world.officer)
    with pytest.raises(InvalidArgument, match=r"page.page_token: issued for different filters"):
        await world.handlers.list_cases(
            ListCases(page_size=1, page_token=page.next_page_token, stage=Stage.CLOSED), world.officer
        )
    with pytest.raises(InvalidArgument, match=r"page.page_token: not a token this service issued"):
        await world.handlers.list_cases(ListCases(page_token="garbage!"), world.officer)


async def test_list_cases_filters(world):
    world.clock.tick()
    a = await world.open(cause="未按规定修建防空地下室", responsible_officer="dave")
    world.clock.tick()
    b = await world.open(act_type=ActType.INSPECTION, procedure=None, cause="人防工程检查", parties=(ORG,))
    await world.advance(b.case_id, Stage.INVESTIGATION)
    await world.flag(b.case_id, CaseFlag.DISPUTED)
    await world.activity(b.case_id, officers=("erin",))

    async def ids(**filters):
        return [
            s.case_id for s in (await world.handlers.list_cases(ListCases(**filters), world.officer)).cases
        ]

    assert await ids(stage=Stage.INVESTIGATION) == [b.case_id]
    assert await ids(act_type=ActType.PENALTY) == [a.case_id]
    assert await ids(flag=CaseFlag.DISPUTED) == [b.case_id]
    assert await ids(officer="dave") == [a.case_id]
    assert await ids(officer="erin") == [b.case_id]  # took part in an activity
    assert await ids(party="某某公司") == [b.case_id]
    assert await ids(cause_prefix="人防") == [b.case_id]
    assert await ids(opened_from=b.opened_at) == [b.case_id]
    assert await ids(opened_to=b.opened_at) == [a.case_id]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (ListCases(page_size=501), "page.page_size: 501 is out of range"),
        (ListCases(page_size=-1), "page.page_size: -1 is out of range"),
        (ListCases(officer="a b"), "officer: 'a b' is not a valid id"),
        (ListCases(cause_prefix="x" * 201), "cause_prefix: 201 characters"),
    ],
)
async def test_list_cases_bad_filters_are_named(world, query, message):
    with pytest.raises(InvalidArgument, match=message):
        await world.handlers.list_cases(query, world.officer)


async def test_list_cases_time_range_must_be_ordered(world):
    now = world.clock.now
    with pytest.raises(InvalidArgument, match=r"opened_to: .* is not after opened_from"):
        await world.handlers.list_cases(
            ListCases(opened_from=now, opened_to=now - timedelta(1)), world.officer
        )


async def test_a_concurrent_change_makes_the_handler_decide_again(world):
    case = await world.open()
    world.cases.conflicts_to_inject = 2
    assert (await world.advance(case.case_id, Stage.INVESTIGATION)).stage is Stage.INVESTIGATION
    world.cases.conflicts_to_inject = 10
    with pytest.raises(ConcurrencyConflict, match="changed 5 times while this request was deciding"):
        await world.advance(case.case_id, Stage.REVIEW_DECISION)


async def test_an_id_clash_without_a_request_id_is_reported(world):
    case = await world.open()
    with pytest.raises(AlreadyExists):
        await world.cases.add(case)


async def test_r04_concurrent_requests_on_one_case_take_turns_and_all_count(world):
    case = await world.open()
    await asyncio.gather(*(world.activity(case.case_id, place=f"地点 {i}") for i in range(20)))
    stored = await world.cases.get(case.case_id)
    assert len(stored.activities) == 20
    assert stored.version == 21
    assert world.cases.conflicts == 0  # they took turns instead of overwriting each other's reads


def test_every_list_criterion_leads_an_index_in_result_order_with_and_without_the_unit() -> None:
    """ListCases is index-backed (issue 9): each criterion a request may combine leads an index ending
    in the listing order, per unit and across units (legal affairs office); the index-coverage
    integration test checks every query the service actually issued against them."""
    keys = [tuple(k for k, _ in spec.keys) for spec in CaseDocuments.indexes]
    assert ("unit", "opened_at", "_id") in keys
    assert ("opened_at", "_id") in keys
    assert CaseDocuments.criteria == {"stage", "act_type", "flag_names", "officers", "party_names"}
    for field in CaseDocuments.criteria:
        assert ("unit", field, "opened_at", "_id") in keys
        assert (field, "opened_at", "_id") in keys
