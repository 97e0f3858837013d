"""The walking-skeleton slice of case-svc end to end (issue 2): OpenCase → CaseOpened on the topic in a
CloudEvents envelope; GetCase; ListCases by unit, cursor-paged; bad input and bad tokens refused with
messages a person can act on, writing nothing. The real `python -m case_svc` on real Kafka + FerretDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from lawtrail.case.v1 import case_events_pb2, case_pb2
from lawtrail.case.v1 import case_service_pb2 as api
from lawtrail.common.v1 import common_pb2
from servicekit.auth.devtoken import generate_keypair, mint_token

pytestmark = pytest.mark.integration

OPENED = "lawtrail.case.v1.CaseOpened"


async def test_r02_open_case_publishes_case_opened_in_a_cloudevents_envelope(case_svc, as_role, unit, kit):
    officer = as_role("OFFICER")
    request = kit.open_request(
        unit,
        cause="擅自拆除人民防空工程",
        parties=[
            case_pb2.Party(name="张三", kind=case_pb2.PARTY_KIND_PERSON, identifier="410102199001011234"),
            case_pb2.Party(name="某某物业公司", kind=case_pb2.PARTY_KIND_ORGANIZATION),
        ],
    )
    before = datetime.now(UTC) - timedelta(seconds=1)
    case = (await officer("OpenCase", request)).case
    assert case.stage == case_pb2.STAGE_INITIATION
    assert (case.unit, case.cause, case.version) == (unit, "擅自拆除人民防空工程", 1)
    assert (case.opened.subject, case.opened.unit) == ("alice", unit)  # from the token (R4)
    assert before <= case.opened.at.ToDatetime(tzinfo=UTC) <= datetime.now(UTC)  # server time

    found = await kit.read_events(
        case_svc.stack.kafka_bootstrap,
        kit.CASE_TOPIC,
        lambda seen: any(e.type == OPENED for _, e in seen),
        key=case.case_id,
    )
    record, envelope = next((r, e) for r, e in found if e.type == OPENED)
    headers = dict(record.headers)
    assert record.key == case.case_id.encode()
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == OPENED.encode()
    assert headers["ce_subject"] == case.case_id.encode()
    assert headers["ce_source"] == b"/lawtrail/case-svc"
    assert headers["content-type"] == b"application/protobuf"
    assert len(headers["ce_id"]) >= 16
    assert abs(envelope.time - case.opened.at.ToDatetime(tzinfo=UTC)) < timedelta(seconds=5)

    event = envelope.parse(case_events_pb2.CaseOpened)
    assert event.case_id == case.case_id
    assert (event.act_type, event.procedure) == (case_pb2.ACT_TYPE_PENALTY, case_pb2.PROCEDURE_GENERAL)
    assert (event.unit, event.cause, event.responsible_officer) == (unit, request.cause, "alice")
    assert list(event.parties) == list(request.parties)
    assert event.transition.to_stage == case_pb2.STAGE_INITIATION
    assert event.transition.kind == case_pb2.TRANSITION_KIND_OPENED
    assert event.transition.changed == case.opened

    fetched = (await officer("GetCase", api.GetCaseRequest(case_id=case.case_id))).case
    assert fetched == case


async def test_r02_list_cases_by_unit_is_cursor_paged_newest_first(as_role, unit, kit):
    officer = as_role("OFFICER")
    opened = [
        (await officer("OpenCase", kit.open_request(unit, cause=f"案由 {i}"))).case.case_id for i in range(5)
    ]
    elsewhere = as_role("OFFICER", unit_=f"{unit}-other")
    await elsewhere("OpenCase", kit.open_request(f"{unit}-other"))

    seen, token, pages = [], "", 0
    while True:
        page = await officer(
            "ListCases",
            api.ListCasesRequest(unit=unit, page=common_pb2.PageRequest(page_size=2, page_token=token)),
        )
        pages += 1
        seen += [s.case_id for s in page.cases]
        token = page.page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == opened[::-1]


async def test_r02_list_filters_run_on_the_database(as_role, unit, kit):
    officer, head = as_role("OFFICER"), as_role("UNIT_HEAD", subject="hank")
    penalty = (await officer("OpenCase", kit.open_request(unit, cause="人防工程损坏"))).case
    inspection = (
        await officer(
            "OpenCase",
            kit.open_request(unit, act_type=case_pb2.ACT_TYPE_INSPECTION, procedure=0, cause="人防工程检查"),
        )
    ).case
    await head(
        "AdvanceStage",
        api.AdvanceStageRequest(
            case_id=inspection.case_id, to_stage=case_pb2.STAGE_INVESTIGATION, reason="立案"
        ),
    )
    await officer("RecordActivity", kit.activity_request(inspection.case_id, officers=["erin"]))

    async def ids(**filters) -> list[str]:
        page = await officer("ListCases", api.ListCasesRequest(unit=unit, **filters))
        return [s.case_id for s in page.cases]

    assert await ids(stage=case_pb2.STAGE_INVESTIGATION) == [inspection.case_id]
    assert await ids(act_type=case_pb2.ACT_TYPE_PENALTY) == [penalty.case_id]
    assert await ids(officer="erin") == [inspection.case_id]
    assert await ids(cause_prefix="人防工程检") == [inspection.case_id]
    assert await ids(party="某某建设有限公司") == [inspection.case_id, penalty.case_id]
    assert await ids(opened_to=inspection.opened.at) == [penalty.case_id]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"unit": ""}, "unit: required"),
        ({"act_type": 99}, "act_type: 99 is not a defined value; use one of ACT_TYPE_LICENSING"),
        ({"act_type": 0}, "act_type: required (one of LICENSING, PENALTY, INSPECTION, LEVY)"),
        ({"cause": "因" * 201}, "cause: 201 characters is too long; at most 200 allowed"),
        ({"parties": []}, "parties: at least one party is required"),
        ({"responsible_officer": "alice smith"}, "responsible_officer: 'alice smith' is not a valid id"),
    ],
)
async def test_r02_bad_input_is_invalid_argument_and_writes_nothing(
    case_svc, as_role, unit, kit, overrides, message
):
    request = kit.open_request(unit, **overrides)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await as_role("OFFICER")("OpenCase", request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in refused.value.details()
    assert case_svc.db()["cases"].count_documents({"unit": {"$in": [unit, ""]}}) == 0


def _tokens(case_svc, unit):
    stranger_key, _ = generate_keypair()
    expired = mint_token(
        case_svc.private_key,
        subject="alice",
        unit=unit,
        roles=["OFFICER"],
        ttl_s=60,
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    return {
        "no token": (None, "token"),
        "malformed": ("not-a-jwt", "malformed"),
        "expired": (expired, "expired"),
        "forged": (mint_token(stranger_key, subject="alice", unit=unit, roles=["OFFICER"]), "signature"),
    }


@pytest.mark.parametrize("case", ["no token", "malformed", "expired", "forged"])
async def test_r08_a_missing_or_bad_token_is_unauthenticated_and_writes_nothing(
    case_svc, channel, unit, kit, case
):
    token, hint = _tokens(case_svc, unit)[case]
    caller = kit.Caller(channel, token)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await caller("OpenCase", kit.open_request(unit))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert hint in refused.value.details().lower()
    assert case_svc.db()["cases"].count_documents({"unit": unit}) == 0


async def test_r08_every_rpc_rejects_missing_expired_forged_and_underprivileged_tokens(
    case_svc, channel, unit, kit
):
    tokens = _tokens(case_svc, unit)
    # A valid token whose role no RPC of CaseService admits (R8: the archive room has no case rights;
    # inspectors read every unit's cases since the one permission policy, docs/permissions.md).
    archive_room = case_svc.token("ivan", unit, "ARCHIVE_ROOM")
    methods = api.DESCRIPTOR.services_by_name["CaseService"].methods
    assert len(methods) == 15  # ReadDocument (issue 11) and AmendCaseParticulars (issue 8, R17) included
    for method in methods:
        request = getattr(api, method.input_type.name)()
        for name, (token, _) in tokens.items():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await kit.Caller(channel, token)(method.name, request)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, (method.name, name)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await kit.Caller(channel, archive_room)(method.name, request)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, method.name
        assert "ARCHIVE_ROOM" in refused.value.details()
