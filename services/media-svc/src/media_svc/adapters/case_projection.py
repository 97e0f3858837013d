"""MongoDB side of media-svc's view of case-svc's cases (`case_projection`, one document per case, read by
`_id` only): unit, cause, party names, particulars version, activity ids and `closed` (domain/cases.py). The
one view of the cases media-svc keeps: the link checks (R5, R17) and the disposal refusal (R12) read it.

Written only by the consumer of `lawtrail.case.v1.events` (one per partition, events of a case in order,
servicekit's inbox before it); every write is idempotent on its own as well — a set, an add to a set, or a
change conditional on the stored version — so a redelivery or a replay from the start changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from servicekit.mongo import serialized

from media_svc.domain.cases import CaseParticulars, CaseView
from media_svc.service_layer.ports import CaseProjection

CASES = "case_projection"


class MongoCaseProjection(CaseProjection):
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.docs = serialized(db[CASES])

    async def get(self, case_id: str) -> CaseView | None:
        d = await self.docs.find_one({"_id": case_id})
        if d is None or not d.get("opened"):
            return None
        return CaseView(
            case_id=case_id,
            unit=d["unit"],
            particulars=CaseParticulars(d["cause"], tuple(d["parties"]), int(d["particulars_version"])),
            activity_ids=frozenset(d.get("activity_ids", ())),
            closed=bool(d.get("closed")),
        )

    async def case_opened(self, case_id: str, unit: str, cause: str, parties: Sequence[str]) -> None:
        d = await self.docs.find_one({"_id": case_id}, {"opened": 1})
        if d is not None and d.get("opened"):
            return  # a repeat must not undo a later change of the particulars
        await self.docs.update_one(
            {"_id": case_id},
            {
                "$set": {
                    "opened": True, "unit": unit, "cause": cause, "parties": list(parties),
                    "particulars_version": 1,
                }
            },
            upsert=True,
        )  # fmt: skip

    async def particulars_changed(self, case_id: str, cause: str, parties: Sequence[str]) -> bool:
        d = await self.docs.find_one({"_id": case_id})
        if d is None or not d.get("opened"):
            return False
        if d["cause"] == cause and list(d["parties"]) == list(parties):
            return False
        version = int(d["particulars_version"])
        result = await self.docs.update_one(
            {"_id": case_id, "particulars_version": version},
            {"$set": {"cause": cause, "parties": list(parties), "particulars_version": version + 1}},
        )
        return result.modified_count == 1

    async def activity_recorded(self, case_id: str, activity_id: str) -> None:
        await self.docs.update_one(
            {"_id": case_id}, {"$addToSet": {"activity_ids": activity_id}}, upsert=True
        )

    async def case_closed(self, case_id: str) -> None:
        # Upsert: the flag stands on its own, whatever else of the case the projection holds.
        await self.docs.update_one({"_id": case_id}, {"$set": {"closed": True}}, upsert=True)

    async def is_closed(self, case_id: str) -> bool:
        d = await self.docs.find_one({"_id": case_id}, {"closed": 1})
        return bool(d and d.get("closed"))
