"""`finding_counts`: how many findings there are per (unit, article, severity, state), kept with each
write of a finding, so the `lawtrail_compliance_findings` gauge reads these few documents instead of
every finding.

There are no transactions (FerretDB), so a finding and its count are two writes. Each counted write
runs as: `pending += 1` on the counts it touches → the finding write → `n += delta, pending -= 1`.
A count with `pending > 0` and no write in progress (the process died, or the database failed
between the two) may be off; it is recounted from the findings (an index-served count of the one
label set) at the next start and at each gauge refresh. Counted writes take turns in this process
(one lock; compliance-svc runs one replica), so a recount never races a write.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from servicekit.mongo import IndexSpec, serialized

from compliance_svc.domain.model import Finding

COUNTS = "finding_counts"
LABELS = ("unit", "article", "severity", "state")

Labels = tuple[str, str, str, str]


def labels_of(finding: Finding) -> Labels:
    return (finding.unit, finding.article, finding.severity.value, finding.state.value)


def _id(labels: Labels) -> str:
    return "\x1f".join(labels)


class FindingCounts:
    # The recount after an interrupted write reads the counts that are pending (a range on `pending`).
    indexes: ClassVar[Sequence[IndexSpec]] = (IndexSpec([("pending", 1)]),)

    def __init__(self, counts: AsyncCollection[Any], findings: AsyncCollection[Any]) -> None:
        self.collection = serialized(counts)
        self.findings = findings
        self._turn = asyncio.Lock()

    @asynccontextmanager
    async def counting(self, touched: Iterable[Labels]) -> AsyncIterator[Counter[Labels]]:
        """Around one write of findings: yields the deltas to fill in; stored when the block succeeds.
        If it fails, the touched counts stay pending and are recounted (module docstring)."""
        keys = sorted(set(touched))
        async with self._turn:
            if not keys:
                yield Counter()
                return
            await self.collection.bulk_write(
                [
                    UpdateOne(
                        {"_id": _id(k)},
                        # The labels are set every time (the same values): no $setOnInsert needed.
                        {"$inc": {"pending": 1, "n": 0}, "$set": dict(zip(LABELS, k, strict=True))},
                        upsert=True,
                    )
                    for k in keys
                ],
                ordered=False,
            )
            deltas: Counter[Labels] = Counter()
            yield deltas
            await self.collection.bulk_write(
                [UpdateOne({"_id": _id(k)}, {"$inc": {"n": deltas[k], "pending": -1}}) for k in keys],
                ordered=False,
            )

    async def read(self) -> dict[Labels, int]:
        """Every count (a few documents: one per label set ever seen); recounts interrupted ones first."""
        await self.repair()
        out: dict[Labels, int] = {}
        async for doc in self.collection.find({}):
            out[(doc["unit"], doc["article"], doc["severity"], doc["state"])] = int(doc["n"])
        return out

    async def repair(self) -> None:
        """Recount every count left pending by an interrupted write (none is in progress: the lock)."""
        async with self._turn:
            async for doc in self.collection.find({"pending": {"$gt": 0}}):
                labels: Labels = (doc["unit"], doc["article"], doc["severity"], doc["state"])
                n = await self.findings.count_documents(dict(zip(LABELS, labels, strict=True)))
                await self.collection.update_one({"_id": doc["_id"]}, {"$set": {"n": n, "pending": 0}})
