"""`finding_counts`: how many findings there are per (unit, article, severity, state), kept with each
write of a finding, so the `lawtrail_compliance_findings` gauge reads these few documents instead of
every finding.

There are no transactions (FerretDB), so a finding and its count are two writes. A count is marked
`pending` before the first write that touches it (one round, only when it is not marked already),
then each write is: the findings → `n += delta`. At each gauge refresh (the first one at start), with
no write in progress, every pending count is settled: one this process kept through all its writes is
exact and only unmarked; any other — marked by a process that stopped in the middle, or touched by a
write that failed between its two steps — is recounted from the findings (an index-served count of
that one label set). Counted writes take turns in this process (one lock; compliance-svc runs one
replica), so a recount never races a write.
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
        self._marked: set[Labels] = set()  # pending in the store since this process last settled them
        self._suspect: set[Labels] = set()  # a write of this process failed between finding and count

    @asynccontextmanager
    async def counting(self, touched: Iterable[Labels]) -> AsyncIterator[Counter[Labels]]:
        """Around one write of findings: yields the deltas to fill in; stored when the block succeeds.
        If it fails, the touched counts stay pending and are recounted (module docstring)."""
        keys = sorted(set(touched))
        async with self._turn:
            unmarked = [k for k in keys if k not in self._marked]
            if unmarked:
                await self.collection.bulk_write(
                    [
                        UpdateOne(
                            {"_id": _id(k)},
                            # The labels are set every time (the same values): no $setOnInsert needed.
                            {"$set": {**dict(zip(LABELS, k, strict=True)), "pending": 1}, "$inc": {"n": 0}},
                            upsert=True,
                        )
                        for k in unmarked
                    ],
                    ordered=False,
                )
                self._marked.update(unmarked)
            deltas: Counter[Labels] = Counter()
            try:
                yield deltas
                changed = [k for k in keys if deltas[k]]
                if changed:
                    await self.collection.bulk_write(
                        [UpdateOne({"_id": _id(k)}, {"$inc": {"n": deltas[k]}}) for k in changed],
                        ordered=False,
                    )
            except BaseException:
                self._suspect.update(keys)
                raise

    async def read(self) -> dict[Labels, int]:
        """Every count (a few documents: one per label set ever seen), after settling the pending ones."""
        await self.settle()
        out: dict[Labels, int] = {}
        async for doc in self.collection.find({}):
            out[(doc["unit"], doc["article"], doc["severity"], doc["state"])] = int(doc["n"])
        return out

    async def settle(self) -> None:
        """Clear `pending` on every count (no write is in progress: the lock). A count this process
        kept through every write since it marked it is exact; any other pending one — left by a process
        that stopped in the middle, or by a write that failed here — is recounted from the findings."""
        async with self._turn:
            async for doc in self.collection.find({"pending": {"$gt": 0}}):
                labels: Labels = (doc["unit"], doc["article"], doc["severity"], doc["state"])
                update: dict[str, Any] = {"pending": 0}
                if labels not in self._marked or labels in self._suspect:
                    update["n"] = await self.findings.count_documents(dict(zip(LABELS, labels, strict=True)))
                await self.collection.update_one({"_id": doc["_id"]}, {"$set": update})
                self._marked.discard(labels)
                self._suspect.discard(labels)
