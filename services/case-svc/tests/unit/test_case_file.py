"""R6, R10: the case file — immutable documents with their SHA-256, the configured checklist, the gap
list, and archiving refused while the file is incomplete."""

from __future__ import annotations

import hashlib

import pytest
from case_svc.domain import commands as c
from case_svc.domain import events as e
from case_svc.domain.model import ActivityKind, ActType, CaseFlag, Procedure, Stage
from servicekit.errors import AlreadyExists, FailedPrecondition, InvalidArgument

PENALTY_GENERAL_ALWAYS = [
    "FILING_APPROVAL",
    "INVESTIGATION_REPORT",
    "PRIOR_NOTICE",
    "DECISION_APPROVAL",
    "PENALTY_DECISION",
    "SERVICE_RECEIPT",
    "EXECUTION_RECORD",
    "CLOSING_REPORT",
]


async def test_r06_a_document_records_type_number_author_date_and_the_server_hash(world):
    case = await world.open()
    content = b"%PDF-1.7 decision"
    world.clock.tick()
    document = await world.document(
        case.case_id, "PENALTY_DECISION", number="许人防罚〔2026〕7号", content=content
    )
    assert (document.document_type, document.number, document.author, document.signed_on) == (
        "PENALTY_DECISION",
        "许人防罚〔2026〕7号",
        "alice",
        "2026-05-03",
    )
    assert document.sha256 == hashlib.sha256(content).hexdigest()
    assert document.size_bytes == len(content)
    assert document.filed.at == world.clock.now
    assert world.contents.blobs[document.sha256] == content  # the content itself is stored
    event = world.cases.events_of(case.case_id)[-1]
    assert isinstance(event, e.DocumentFiled)
    assert event.document == document


async def test_r06_a_caller_hash_that_does_not_match_the_content_stores_nothing(world):
    case = await world.open()
    with pytest.raises(InvalidArgument, match="sha256: the content received hashes to"):
        await world.document(case.case_id, "FILING_APPROVAL", sha256="0" * 64)
    assert world.contents.blobs == {}
    assert (await world.cases.get(case.case_id)).documents == []
    doc = await world.document(
        case.case_id, "FILING_APPROVAL", content=b"x", sha256=hashlib.sha256(b"x").hexdigest()
    )
    assert doc.size_bytes == 1


async def test_r06_documents_are_immutable_a_correction_supersedes(world):
    case = await world.open()
    first = await world.document(case.case_id, "PRIOR_NOTICE", number="N-1", content=b"v1")
    with pytest.raises(AlreadyExists, match=r"already on file .* documents are immutable"):
        await world.document(case.case_id, "PRIOR_NOTICE", number="N-1", content=b"v2")
    again = await world.document(case.case_id, "PRIOR_NOTICE", number="N-1", content=b"v1")
    assert again == first  # an identical repeat returns what is on file
    fix = await world.document(
        case.case_id,
        "PRIOR_NOTICE",
        number="N-1-更正",
        content=b"v2",
        supersedes_document_id=first.document_id,
    )
    assert fix.supersedes_document_id == first.document_id
    assert len((await world.cases.get(case.case_id)).documents) == 2


async def test_r06_a_superseded_document_must_exist(world):
    case = await world.open()
    with pytest.raises(FailedPrecondition, match="supersedes_document_id: 'nope' is not a document"):
        await world.document(case.case_id, "PRIOR_NOTICE", supersedes_document_id="nope")
    assert world.contents.blobs == {}


async def test_r06_an_unknown_document_type_lists_the_vocabulary(world):
    case = await world.open()
    with pytest.raises(InvalidArgument, match=r"document_type: 'MEMO' is not in the .*PENALTY_DECISION"):
        await world.document(case.case_id, "MEMO")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"number": ""}, "number: required"),
        ({"signed_on": "2026-13-01"}, "signed_on: '2026-13-01' is not a date"),
        ({"signed_on": "2026-5-3"}, "signed_on: '2026-5-3' is not a date"),
        ({"signed_on": "2026-06-01"}, "signed_on: 2026-06-01 is in the future"),
        ({"content": b""}, "content: required"),
        ({"content": b"x" * (2 * 1024 * 1024 + 1)}, "content: 2097153 bytes is too large"),
        ({"content_type": "pdf"}, "content_type: 'pdf' is not a media type"),
        ({"sha256": "XYZ"}, "sha256: must be 64 lowercase hexadecimal"),
        ({"title": "a\x00b"}, "title: contains the control character U\\+0000"),
    ],
)
async def test_r06_bad_document_fields_are_named_and_nothing_is_stored(world, overrides, message):
    case = await world.open()
    with pytest.raises(InvalidArgument, match=message):
        await world.document(case.case_id, "FILING_APPROVAL", **overrides)
    assert world.contents.blobs == {}


async def test_r10_gaps_list_the_checklist_documents_the_file_lacks(world):
    case = await world.open()
    gaps = await world.handlers.get_case_file_gaps(case.case_id, world.officer)
    assert gaps.checklist == "PENALTY/GENERAL"
    assert [g.document_type for g in gaps.gaps] == PENALTY_GENERAL_ALWAYS
    assert gaps.gaps[0].name == "立案审批表"
    assert gaps.gaps[0].required_because == "always"
    await world.document(case.case_id, "FILING_APPROVAL")
    gaps = await world.handlers.get_case_file_gaps(case.case_id, world.officer)
    assert [g.document_type for g in gaps.gaps] == PENALTY_GENERAL_ALWAYS[1:]


async def test_r10_conditional_documents_follow_activities_and_flags(world):
    case = await world.open()
    await world.activity(case.case_id, kind=ActivityKind.HEARING)
    await world.flag(case.case_id, CaseFlag.MAJOR_COMPLEX)
    gaps = {
        g.document_type: g.required_because
        for g in (await world.handlers.get_case_file_gaps(case.case_id, world.officer)).gaps
    }
    assert gaps["HEARING_RECORD"] == "activity HEARING"
    assert gaps["LEGAL_REVIEW_OPINION"] == "flag MAJOR_COMPLEX"
    assert "QUESTIONING_RECORD" not in gaps  # no questioning took place


async def test_r10_checklists_differ_per_act_type_and_procedure(world):
    simple = await world.open(procedure=Procedure.SIMPLE)
    licensing = await world.open(act_type=ActType.LICENSING, procedure=None)
    gaps_simple = await world.handlers.get_case_file_gaps(simple.case_id, world.officer)
    gaps_licensing = await world.handlers.get_case_file_gaps(licensing.case_id, world.officer)
    assert gaps_simple.checklist == "PENALTY/SIMPLE"
    assert [g.document_type for g in gaps_simple.gaps] == ["ON_SITE_PENALTY_DECISION", "EXECUTION_RECORD"]
    assert gaps_licensing.checklist == "LICENSING"
    assert gaps_licensing.gaps[0].document_type == "LICENSING_APPLICATION"


async def test_r10_archiving_an_incomplete_file_is_refused_naming_the_missing_documents(world):
    case = await world.open(act_type=ActType.LEVY, procedure=None)
    await world.to_stage(case.case_id, Stage.CLOSED)
    await world.document(case.case_id, "LEVY_DECISION", by=world.head)
    version = (await world.cases.get(case.case_id)).version
    with pytest.raises(FailedPrecondition) as refused:
        await world.archive(case.case_id)
    assert refused.value.message.startswith("R10: the case file of")
    assert "SERVICE_RECEIPT (送达回证)" in refused.value.message
    assert "PAYMENT_RECEIPT (缴款凭证)" in refused.value.message
    assert "LEVY_DECISION" not in refused.value.message
    stored = await world.cases.get(case.case_id)
    assert stored.stage is Stage.CLOSED
    assert stored.version == version


async def test_r10_a_complete_file_is_archived_with_its_manifest(world):
    case = await world.open(act_type=ActType.LEVY, procedure=None)
    await world.to_stage(case.case_id, Stage.CLOSED)
    await world.complete_file(case.case_id)
    case = await world.archive(case.case_id, by=world.archivist)
    assert case.stage is Stage.ARCHIVED
    event = world.cases.events_of(case.case_id)[-1]
    assert isinstance(event, e.CaseArchived)
    assert [d.document_type for d in event.documents] == [
        "LEVY_DECISION",
        "SERVICE_RECEIPT",
        "PAYMENT_RECEIPT",
    ]
    assert all(len(d.sha256) == 64 for d in event.documents)


async def test_r10_an_archived_file_is_final(world):
    case = await world.open(act_type=ActType.LEVY, procedure=None)
    await world.to_stage(case.case_id, Stage.CLOSED)
    await world.complete_file(case.case_id)
    await world.archive(case.case_id)
    with pytest.raises(FailedPrecondition, match=r"R10: .* is archived; its case file is final"):
        await world.document(case.case_id, "OTHER", by=world.head)
    with pytest.raises(FailedPrecondition, match="only a CLOSED case can be archived"):
        await world.archive(case.case_id)


async def test_r10_only_a_closed_case_is_archived(world):
    case = await world.open()
    with pytest.raises(
        FailedPrecondition, match=r"R3: only a CLOSED case can be archived; .* is in INITIATION"
    ):
        await world.handlers.archive_case(c.ArchiveCase(case.case_id, "归档"), world.head)
