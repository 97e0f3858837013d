"""Findings in MongoDB (servicekit's VersionedRepository: one document per finding, outbox events).

The document id is the finding id, which is derived from the rule and its subject: storing a finding
a second time (a redelivered or replayed event, a timer firing again) is a duplicate key, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from lawtrail.compliance.v1 import compliance_events_pb2
from pymongo.asynchronous.collection import AsyncCollection
from servicekit.messaging.outbox import OutboundEvent
from servicekit.mongo import IndexSpec, VersionedRepository
from servicekit.topics import events_topic_of

from compliance_svc.adapters.counts import FindingCounts, labels_of
from compliance_svc.adapters.proto_mapping import changed_event, raised_event
from compliance_svc.domain.model import Attribution, Finding, Severity, State
from compliance_svc.service_layer.ports import FindingFilter

FINDINGS = "findings"
TOPIC = events_topic_of(compliance_events_pb2)


def _attribution(value: Attribution | None) -> dict[str, Any] | None:
    return None if value is None else {"subject": value.subject, "unit": value.unit, "at": value.at}


def _attribution_from(value: Mapping[str, Any] | None) -> Attribution | None:
    return None if not value else Attribution(value["subject"], value["unit"], value["at"])


def to_document(finding: Finding) -> dict[str, Any]:
    return {
        "_id": finding.finding_id,
        "article": finding.article,
        "code": finding.code,
        "severity": finding.severity.value,
        "consequence": finding.consequence,
        "unit": finding.unit,
        "officer": finding.officer,
        "subject": finding.subject,
        "detail": finding.detail,
        "evidence": list(finding.evidence),
        "raised_at": finding.raised_at,
        "state": finding.state.value,
        "acknowledged": _attribution(finding.acknowledged),
        "resolved": _attribution(finding.resolved),
        "disposition": finding.disposition,
    }


def from_document(doc: Mapping[str, Any]) -> Finding:
    return Finding(
        finding_id=doc["_id"],
        article=doc["article"],
        code=doc["code"],
        severity=Severity(doc["severity"]),
        consequence=doc["consequence"],
        unit=doc["unit"],
        officer=doc["officer"],
        subject=doc["subject"],
        detail=doc["detail"],
        evidence=tuple(doc["evidence"]),
        raised_at=doc["raised_at"],
        state=State(doc["state"]),
        acknowledged=_attribution_from(doc.get("acknowledged")),
        resolved=_attribution_from(doc.get("resolved")),
        disposition=doc.get("disposition", ""),
        version=doc.get("version", 0),
    )


def _newest(*prefix: tuple[str, int]) -> IndexSpec:
    return IndexSpec([*prefix, ("raised_at", -1), ("_id", -1)])


# ListFindings criteria a request may combine: each has an index of its own (per unit and across units),
# and a request naming several reads the range of one of them and filters by the others
# (servicekit.queryshapes).
CRITERIA = ("article", "severity", "state", "subject")


class MongoFindingRepository(VersionedRepository):
    """The `findings` collection. Each ListFindings filter has an index that leads with it (after the
    unit, and without it for a caller allowed every unit) and ends with the page order (raised_at, _id
    descending), so a page — including the cursor's `raised_at = t, _id < x` branch — reads only what
    it returns (ESR, issue 9); a request combining filters reads one filter's range and filters it by
    the others."""

    what = "finding"
    criteria = frozenset(CRITERIA)
    indexes: ClassVar[Sequence[IndexSpec]] = (
        _newest(("unit", 1)),
        *[_newest(("unit", 1), (field, 1)) for field in CRITERIA],
        _newest(),  # a caller allowed every unit lists across units
        *[_newest((field, 1)) for field in CRITERIA],
        # The oldest open serious finding (the alert's gauge): state and severity fixed, oldest first.
        _newest(("state", 1), ("severity", 1)),
    )

    def __init__(
        self, collection: AsyncCollection[Any], counts: AsyncCollection[Any], **options: Any
    ) -> None:
        super().__init__(collection, **options)
        self.counts = FindingCounts(counts, collection)

    async def add_absent(self, findings: Sequence[Finding]) -> list[str]:
        async with self.counts.counting(labels_of(f) for f in findings) as deltas:
            stored = set(
                await self.insert_absent(
                    [
                        (to_document(f), [OutboundEvent(TOPIC, raised_event(f), subject=f.finding_id)])
                        for f in findings
                    ]
                )
            )
            deltas.update(labels_of(f) for f in findings if f.finding_id in stored)
        return [f.finding_id for f in findings if f.finding_id in stored]

    async def get(self, finding_id: str) -> Finding | None:  # type: ignore[override]
        doc = await super().get(finding_id)
        return None if doc is None else from_document(doc)

    async def save(self, finding: Finding, *, was: State) -> Finding:
        fields = to_document(finding)
        del fields["_id"]
        before = (finding.unit, finding.article, finding.severity.value, was.value)
        async with self.counts.counting([before, labels_of(finding)]) as deltas:
            version = await self.update(
                finding.finding_id,
                expected_version=finding.version,
                set_fields=fields,
                events=[OutboundEvent(TOPIC, changed_event(finding), subject=finding.finding_id)],
            )
            deltas[before] -= 1
            deltas[labels_of(finding)] += 1
        return from_document({**to_document(finding), "version": version})

    async def list(self, where: FindingFilter, *, limit: int, after: tuple[str, str] | None) -> list[Finding]:
        query: dict[str, Any] = {}
        if where.units is not None:
            query["unit"] = where.units[0] if len(where.units) == 1 else {"$in": list(where.units)}
        if where.article:
            query["article"] = where.article
        if where.severity is not None:
            query["severity"] = where.severity.value
        if where.state is not None:
            query["state"] = where.state.value
        if where.subject:
            query["subject"] = where.subject
        if after is not None:
            at = datetime.fromisoformat(after[0])
            query["$or"] = [{"raised_at": {"$lt": at}}, {"raised_at": at, "_id": {"$lt": after[1]}}]
        cursor = self.collection.find(
            query, projection={"outbox": 0, "outbox_pending": 0, "outbox_lease_until": 0}
        )
        docs = await cursor.sort([("raised_at", -1), ("_id", -1)]).limit(limit).to_list(None)
        return [from_document(d) for d in docs]

    async def oldest(self, severity: Severity, states: Sequence[State]) -> datetime | None:
        """When the oldest finding of `severity` in one of `states` was raised (one index-served
        read per state: (state, severity, raised_at, _id), read from its old end)."""
        found: list[datetime] = []
        for state in states:
            doc = await self.collection.find_one(
                {"state": state.value, "severity": severity.value},
                projection={"raised_at": 1},
                sort=[("raised_at", 1), ("_id", 1)],
            )
            if doc is not None:
                found.append(doc["raised_at"])
        return min(found, default=None)
