"""MongoDB storage of retention-svc: `retention_cases` and `retention_recordings` (one document per case
or recording, with its embedded outbox, via servicekit's VersionedRepository), and `offline_copies` (the
inventory). Sets are stored sorted, so the same facts give the same document whatever their order."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, ClassVar

from servicekit.mongo import IndexSpec, VersionedRepository

from retention_svc.adapters.event_mapping import to_outbound
from retention_svc.domain.retention import (
    AppliedRule,
    CaseRecord,
    Decision,
    Hold,
    Incident,
    RecordingRecord,
    RetentionState,
)
from retention_svc.service_layer.ports import CaseRecords, IngestedRecordings, RecordingRecords

Doc = dict[str, Any]
CASES = "retention_cases"
RECORDINGS = "retention_recordings"


class CaseDocuments(VersionedRepository):
    what = "case"
    # `held_case_ids` reads the held cases in `_id` order (equality, then the sort).
    indexes: ClassVar[Sequence[IndexSpec]] = [IndexSpec([("held", 1), ("_id", 1)]), IndexSpec([("unit", 1)])]


class RecordingDocuments(VersionedRepository):
    what = "recording"
    indexes: ClassVar[Sequence[IndexSpec]] = [
        IndexSpec([("unit", 1), ("held", 1)]),
        IndexSpec([("case_id", 1)]),
        # `ingested`: one unit's (or every unit's) recordings ingested before a time, in (ingested_at,
        # _id) order — equality, then the sort, whose first field also bounds the range (ESR).
        IndexSpec([("unit", 1), ("ingested_at", 1), ("_id", 1)]),
        IndexSpec([("ingested_at", 1), ("_id", 1)]),
    ]


def _decision_doc(decision: Decision | None) -> Doc | None:
    if decision is None:
        return None
    return {
        "state": decision.state.value,
        "retain_until": decision.retain_until,
        "summary": decision.summary,
        "rules": [
            {
                "rule_class": r.rule_class,
                "period": r.period,
                "source": r.source,
                "until": r.until,
                "why": r.why,
            }
            for r in decision.rules
        ],
    }


def _decision(doc: Doc | None) -> Decision | None:
    if not doc:
        return None
    return Decision(
        state=RetentionState(doc["state"]),
        retain_until=doc.get("retain_until"),
        summary=doc["summary"],
        rules=tuple(
            AppliedRule(r["rule_class"], r["period"], r["source"], r.get("until"), r["why"])
            for r in doc["rules"]
        ),
    )


def case_to_doc(case: CaseRecord) -> Doc:
    return {
        "unit": case.unit,
        "act_type": case.act_type,
        "procedure": case.procedure,
        "closed_at": case.closed_at,
        "incidents": [
            {
                "incident_id": i.incident_id,
                "kind": i.kind,
                "reason": i.reason,
                "recorded_at": i.recorded_at,
                "source_event": i.source_event,
            }
            for i in sorted(case.incidents.values(), key=lambda i: i.incident_id)
        ],
        "recording_ids": sorted(case.recording_ids),
        # {id, sha256} in id order: recording ids are not safe as field names (and FerretDB v1 stores
        # no nested arrays).
        "recording_sha256": [
            {"recording_id": r, "sha256": case.recording_sha256[r]} for r in sorted(case.recording_sha256)
        ],
        "extended_until": case.extended_until,
        "extension_reason": case.extension_reason,
        "decision": _decision_doc(case.decision),
        "held": case.held,
        "announced": sorted(case.announced),
    }


def case_from_doc(doc: Doc) -> CaseRecord:
    return CaseRecord(
        case_id=doc["_id"],
        unit=doc.get("unit", ""),
        act_type=doc.get("act_type", ""),
        procedure=doc.get("procedure", ""),
        closed_at=doc.get("closed_at"),
        incidents={
            i["incident_id"]: Incident(
                i["incident_id"], i["kind"], i["reason"], i["recorded_at"], i["source_event"]
            )
            for i in doc.get("incidents", [])
        },
        recording_ids=set(doc.get("recording_ids", [])),
        recording_sha256={x["recording_id"]: x["sha256"] for x in doc.get("recording_sha256", [])},
        extended_until=doc.get("extended_until"),
        extension_reason=doc.get("extension_reason", ""),
        decision=_decision(doc.get("decision")),
        held=bool(doc.get("held")),
        announced=set(doc.get("announced", [])),
        version=doc["version"],
    )


_FACTS = (
    "unit", "sha256", "size_bytes", "media_kind", "format_name", "device_number", "officer",
    "recorded_from", "recorded_to", "ingested_at", "case_id", "disposed_at",
    "extended_until", "extension_reason",
)  # fmt: skip


def recording_to_doc(rec: RecordingRecord) -> Doc:
    doc: Doc = {name: getattr(rec, name) for name in _FACTS}
    doc["holds"] = [
        {
            "incident_id": h.incident_id,
            "incident_kind": h.incident_kind,
            "reason": h.reason,
            "case_id": h.case_id,
            "source_event": h.source_event,
            "placed_at": h.placed_at,
        }
        for h in sorted(rec.holds.values(), key=lambda h: h.incident_id)
    ]
    doc["held"] = rec.held
    doc["decision"] = _decision_doc(rec.decision)
    return doc


def recording_from_doc(doc: Doc) -> RecordingRecord:
    rec = RecordingRecord(recording_id=doc["_id"], version=doc["version"])
    for name in _FACTS:
        if name in doc and doc[name] is not None:
            setattr(rec, name, doc[name])
    rec.holds = {
        h["incident_id"]: Hold(
            h["incident_id"], h["incident_kind"], h["reason"], h["case_id"], h["source_event"], h["placed_at"]
        )
        for h in doc.get("holds", [])
    }
    rec.decision = _decision(doc.get("decision"))
    return rec


class MongoCaseRecords(CaseRecords):
    def __init__(self, documents: CaseDocuments) -> None:
        self.documents = documents

    async def get(self, case_id: str) -> CaseRecord | None:
        doc = await self.documents.get(case_id)
        return None if doc is None else case_from_doc(doc)

    def exclusive(self, case_id: str) -> AbstractAsyncContextManager[object]:
        return self.documents.exclusive(case_id)

    async def sent(self, case_id: str) -> None:
        await self.documents.sent(case_id)

    async def held_case_ids(self) -> list[str]:
        cursor = self.documents.collection.find({"held": True}, projection={"_id": 1}).sort("_id", 1)
        return [doc["_id"] async for doc in cursor]

    async def save(self, case: CaseRecord) -> None:
        events = to_outbound(case, case.pending_events)
        if case.version == 0:
            await self.documents.insert({"_id": case.case_id, **case_to_doc(case)}, events=events)
            case.version = 1
        else:
            case.version = await self.documents.update(
                case.case_id, expected_version=case.version, set_fields=case_to_doc(case), events=events
            )
        case.pending_events.clear()


class MongoRecordingRecords(RecordingRecords, IngestedRecordings):
    def __init__(self, documents: RecordingDocuments) -> None:
        self.documents = documents

    async def get(self, recording_id: str) -> RecordingRecord | None:
        doc = await self.documents.get(recording_id)
        return None if doc is None else recording_from_doc(doc)

    def exclusive(self, recording_id: str) -> AbstractAsyncContextManager[object]:
        return self.documents.exclusive(recording_id)

    async def ingested(self, unit: str | None, before: datetime) -> list[RecordingRecord]:
        query: Doc = {"ingested_at": {"$lt": before}}
        if unit is not None:
            query["unit"] = unit
        cursor = self.documents.collection.find(query, projection={"outbox": 0}).sort(
            [("ingested_at", 1), ("_id", 1)]
        )
        return [recording_from_doc(doc) async for doc in cursor]

    async def save(self, rec: RecordingRecord) -> None:
        events = to_outbound(rec, rec.pending_events)
        if rec.version == 0:
            await self.documents.insert({"_id": rec.recording_id, **recording_to_doc(rec)}, events=events)
            rec.version = 1
        else:
            rec.version = await self.documents.update(
                rec.recording_id,
                expected_version=rec.version,
                set_fields=recording_to_doc(rec),
                events=events,
            )
        rec.pending_events.clear()
