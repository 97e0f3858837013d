"""MongoDB storage of cases (collection `cases`, one document per case) and of document content
(collection `document_contents`, one write-once document per SHA-256).

A case's document holds its whole state plus three denormalised arrays the list queries filter on
(`officers`, `party_names`, `flag_names`); every write replaces the state, bumps the version and
appends the new events to the embedded outbox in one `update_one` (servicekit's
`VersionedRepository`). Every query of `list` is backed by one of the declared indexes.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from bson import Binary
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError
from servicekit.errors import DataLoss
from servicekit.mongo import IndexSpec, VersionedRepository

from case_svc.adapters.event_mapping import outbound
from case_svc.domain.case import Case
from case_svc.domain.model import (
    Activity,
    ActivityKind,
    ActType,
    Attribution,
    CaseFlag,
    Document,
    ExemptionReason,
    FlagRecord,
    Incident,
    IncidentKind,
    LegalReview,
    LegalReviewOutcome,
    Party,
    PartyKind,
    Procedure,
    RecordingLink,
    RecordMode,
    SkippedStage,
    Stage,
    StageTransition,
    TransitionKind,
)
from case_svc.service_layer.ports import CaseFilter, CaseRepository, CaseSummary, ContentStore, ListPosition

Doc = dict[str, Any]
CASES = "cases"
CONTENTS = "document_contents"


def _newest(*prefix: tuple[str, int]) -> IndexSpec:
    return IndexSpec([*prefix, ("opened_at", -1), ("_id", -1)])


# ListCases criteria (document fields) that a request may combine: each has an index of its own, and a
# request naming several reads the range of one of them and filters by the others (servicekit.queryshapes).
CRITERIA = ("stage", "act_type", "flag_names", "officers", "party_names")


class CaseDocuments(VersionedRepository):
    """The `cases` collection. Each ListCases criterion has an index that leads with it (after the
    unit, and without the unit for the legal affairs office listing across units) and ends with the
    sort order (opened_at, _id descending), so a page reads only what it returns; a request combining
    criteria reads one criterion's range and filters it by the others."""

    what = "case"
    criteria = frozenset(CRITERIA)
    indexes = (
        _newest(("unit", 1)),
        *[_newest(("unit", 1), (field, 1)) for field in CRITERIA],
        _newest(("unit", 1), ("cause", 1)),
        _newest(),  # the legal affairs office lists across units
        *[_newest((field, 1)) for field in CRITERIA],
    )


class MongoCaseRepository(CaseRepository):
    def __init__(self, documents: CaseDocuments) -> None:
        self.documents = documents

    async def get(self, case_id: str) -> Case:
        return case_from_doc(await self.documents.get_or_raise(case_id))

    async def add(self, case: Case) -> None:
        await self.documents.insert({"_id": case.case_id, **case_to_doc(case)}, events=outbound(case.events))
        case.version = 1
        case.events.clear()

    def exclusive(self, case_id: str) -> AbstractAsyncContextManager[object]:
        # servicekit's per-document lock: the same one every write to the case document takes.
        return self.documents.exclusive(case_id)

    async def save(self, case: Case) -> None:
        case.version = await self.documents.update(
            case.case_id,
            expected_version=case.version,
            set_fields=case_to_doc(case),
            events=outbound(case.events),
        )
        case.events.clear()

    async def list(self, where: CaseFilter, after: ListPosition | None, limit: int) -> Sequence[CaseSummary]:
        query: Doc = {}
        if where.units is not None:
            units = sorted(where.units)
            query["unit"] = units[0] if len(units) == 1 else {"$in": units}
        for name, value in (
            ("stage", where.stage),
            ("act_type", where.act_type),
            ("flag_names", where.flag),
            ("officers", where.officer),
            ("party_names", where.party),
        ):
            if value:
                query[name] = str(value)
        if where.cause_prefix:
            query["cause"] = {"$regex": "^" + re.escape(where.cause_prefix)}
        opened: Doc = {}
        if where.opened_from is not None:
            opened["$gte"] = where.opened_from
        if where.opened_to is not None:
            opened["$lt"] = where.opened_to
        if opened:
            query["opened_at"] = opened
        if after is not None:
            query["$or"] = [
                {"opened_at": {"$lt": after.opened_at}},
                {"opened_at": after.opened_at, "_id": {"$lt": after.case_id}},
            ]
        cursor = (
            self.documents.collection.find(query, projection=_SUMMARY_FIELDS)
            .sort([("opened_at", -1), ("_id", -1)])
            .limit(limit)
        )
        return [_summary(doc) async for doc in cursor]


_SUMMARY_FIELDS = {
    f: 1
    for f in (
        "act_type",
        "procedure",
        "unit",
        "cause",
        "responsible_officer",
        "party_names",
        "stage",
        "flag_names",
        "opened_at",
    )
}


def _summary(doc: Mapping[str, Any]) -> CaseSummary:
    return CaseSummary(
        case_id=doc["_id"],
        act_type=ActType(doc["act_type"]),
        procedure=Procedure(doc["procedure"]) if doc.get("procedure") else None,
        unit=doc["unit"],
        cause=doc["cause"],
        responsible_officer=doc["responsible_officer"],
        party_names=tuple(doc["party_names"]),
        stage=Stage(doc["stage"]),
        flags=tuple(CaseFlag(f) for f in doc["flag_names"]),
        opened_at=doc["opened_at"],
    )


class MongoContentStore(ContentStore):
    """Document content, write-once by SHA-256 (`_id`), verified against its hash when read."""

    indexes: Sequence[IndexSpec] = ()

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def put(self, sha256: str, content: bytes, content_type: str) -> None:
        # The id is the content's hash: a duplicate key means the same bytes are already stored.
        with contextlib.suppress(DuplicateKeyError):
            await self.collection.insert_one(
                {
                    "_id": sha256,
                    "content": Binary(content),
                    "size_bytes": len(content),
                    "content_type": content_type,
                }
            )

    async def get(self, sha256: str) -> bytes | None:
        doc = await self.collection.find_one({"_id": sha256})
        if doc is None:
            return None
        content = bytes(doc["content"])
        if hashlib.sha256(content).hexdigest() != sha256:
            raise DataLoss(f"stored document content {sha256} no longer matches its hash")
        return content


# ---------------------------------------------------------------------------------------------
# Case <-> document
# ---------------------------------------------------------------------------------------------


def _att(a: Attribution) -> Doc:
    return {"subject": a.subject, "unit": a.unit, "at": a.at}


def _att_from(d: Mapping[str, Any]) -> Attribution:
    return Attribution(d["subject"], d["unit"], d["at"])


def _opt(value: str | None) -> str | None:
    return str(value) if value is not None else None


def _skipped(values: Sequence[SkippedStage]) -> list[Doc]:
    return [{"stage": s.stage.value, "reason": s.reason} for s in values]


def _skipped_from(values: Sequence[Mapping[str, Any]]) -> tuple[SkippedStage, ...]:
    return tuple(SkippedStage(Stage(s["stage"]), s["reason"]) for s in values)


def case_to_doc(case: Case) -> Doc:
    """The stored fields of a case (everything but `_id` and the fields the repository manages)."""
    assert case.opened is not None
    officers = dict.fromkeys([case.responsible_officer, *(o for a in case.activities for o in a.officers)])
    return {
        "act_type": case.act_type.value,
        "procedure": _opt(case.procedure),
        "unit": case.unit,
        "cause": case.cause,
        "responsible_officer": case.responsible_officer,
        "parties": [{"name": p.name, "kind": p.kind.value, "identifier": p.identifier} for p in case.parties],
        "stage": case.stage.value,
        "opened": _att(case.opened),
        "opened_at": case.opened.at,
        "inapplicable_stages": _skipped(case.inapplicable_stages),
        "flags": [
            {
                "flag": f.flag.value,
                "reason": f.reason,
                "stage": f.stage.value,
                "flagged": _att(f.flagged),
                "incident_id": f.incident_id,
            }
            for f in case.flags
        ],
        "history": [
            {
                "sequence": t.sequence,
                "from_stage": _opt(t.from_stage),
                "to_stage": t.to_stage.value,
                "kind": t.kind.value,
                "reason": t.reason,
                "changed": _att(t.changed),
                "skipped": _skipped(t.skipped),
            }
            for t in case.history
        ],
        "activities": [
            {
                "activity_id": a.activity_id,
                "kind": a.kind.value,
                "started_at": a.started_at,
                "ended_at": a.ended_at,
                "place": a.place,
                "officers": list(a.officers),
                "record_mode": a.record_mode.value,
                "key_stages_reason": a.key_stages_reason,
                "text_record_document_id": a.text_record_document_id,
                "exemption_reason": _opt(a.exemption_reason),
                "exemption_note": a.exemption_note,
                "stage": a.stage.value,
                "recorded": _att(a.recorded),
            }
            for a in case.activities
        ],
        "documents": [
            {
                "document_id": d.document_id,
                "document_type": d.document_type,
                "number": d.number,
                "title": d.title,
                "author": d.author,
                "signed_on": d.signed_on,
                "sha256": d.sha256,
                "size_bytes": d.size_bytes,
                "content_type": d.content_type,
                "supersedes_document_id": d.supersedes_document_id,
                "stage": d.stage.value,
                "filed": _att(d.filed),
            }
            for d in case.documents
        ],
        "incidents": [
            {
                "incident_id": i.incident_id,
                "kind": i.kind.value,
                "occurred_at": i.occurred_at,
                "reporter": i.reporter,
                "description": i.description,
                "reason": i.reason,
                "stage": i.stage.value,
                "recorded": _att(i.recorded),
            }
            for i in case.incidents
        ],
        "legal_reviews": [
            {
                "review_id": r.review_id,
                "outcome": r.outcome.value,
                "opinion": r.opinion,
                "reviewed": _att(r.reviewed),
            }
            for r in case.legal_reviews
        ],
        "recording_links": [
            {
                "recording_id": lk.recording_id,
                "activity_id": lk.activity_id,
                "sha256": lk.sha256,
                "linked_at": lk.linked_at,
                "unit": lk.unit,
                "recorded_from": lk.recorded_from,
                "recorded_to": lk.recorded_to,
                "linked_by_legal_office": lk.linked_by_legal_office,
            }
            for lk in case.recording_links
        ],
        "review_visit_start": case.review_visit_start,
        # Denormalised for the list queries (each backed by an index).
        "officers": list(officers),
        "party_names": list(dict.fromkeys(p.name for p in case.parties)),
        "flag_names": [f.flag.value for f in case.flags],
    }


def case_from_doc(doc: Mapping[str, Any]) -> Case:
    return Case.restore(
        doc["_id"],
        doc["version"],
        act_type=ActType(doc["act_type"]),
        procedure=Procedure(doc["procedure"]) if doc.get("procedure") else None,
        unit=doc["unit"],
        cause=doc["cause"],
        responsible_officer=doc["responsible_officer"],
        parties=tuple(Party(p["name"], PartyKind(p["kind"]), p["identifier"]) for p in doc["parties"]),
        stage=Stage(doc["stage"]),
        opened=_att_from(doc["opened"]),
        inapplicable_stages=_skipped_from(doc["inapplicable_stages"]),
        flags=[
            FlagRecord(
                CaseFlag(f["flag"]), f["reason"], Stage(f["stage"]), _att_from(f["flagged"]), f["incident_id"]
            )
            for f in doc["flags"]
        ],
        history=[
            StageTransition(
                t["sequence"],
                Stage(t["from_stage"]) if t.get("from_stage") else None,
                Stage(t["to_stage"]),
                TransitionKind(t["kind"]),
                t["reason"],
                _att_from(t["changed"]),
                _skipped_from(t["skipped"]),
            )
            for t in doc["history"]
        ],
        activities=[
            Activity(
                activity_id=a["activity_id"],
                kind=ActivityKind(a["kind"]),
                started_at=a["started_at"],
                ended_at=a["ended_at"],
                place=a["place"],
                officers=tuple(a["officers"]),
                record_mode=RecordMode(a["record_mode"]),
                key_stages_reason=a["key_stages_reason"],
                text_record_document_id=a["text_record_document_id"],
                exemption_reason=ExemptionReason(a["exemption_reason"])
                if a.get("exemption_reason")
                else None,
                exemption_note=a["exemption_note"],
                stage=Stage(a["stage"]),
                recorded=_att_from(a["recorded"]),
            )
            for a in doc["activities"]
        ],
        documents=[
            Document(
                document_id=d["document_id"],
                document_type=d["document_type"],
                number=d["number"],
                title=d["title"],
                author=d["author"],
                signed_on=d["signed_on"],
                sha256=d["sha256"],
                size_bytes=d["size_bytes"],
                content_type=d["content_type"],
                supersedes_document_id=d["supersedes_document_id"],
                stage=Stage(d["stage"]),
                filed=_att_from(d["filed"]),
            )
            for d in doc["documents"]
        ],
        incidents=[
            Incident(
                i["incident_id"],
                IncidentKind(i["kind"]),
                i["occurred_at"],
                i["reporter"],
                i["description"],
                i["reason"],
                Stage(i["stage"]),
                _att_from(i["recorded"]),
            )
            for i in doc["incidents"]
        ],
        legal_reviews=[
            LegalReview(
                r["review_id"], LegalReviewOutcome(r["outcome"]), r["opinion"], _att_from(r["reviewed"])
            )
            for r in doc["legal_reviews"]
        ],
        recording_links=[
            RecordingLink(
                lk["recording_id"],
                lk["activity_id"],
                lk["sha256"],
                lk["linked_at"],
                # Links stored before R5 checked units and time spans lack these: they cover nothing.
                unit=lk.get("unit", ""),
                recorded_from=lk.get("recorded_from"),
                recorded_to=lk.get("recorded_to"),
                linked_by_legal_office=lk.get("linked_by_legal_office", False),
            )
            for lk in doc["recording_links"]
        ],
        review_visit_start=doc["review_visit_start"],
    )
