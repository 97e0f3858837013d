"""`finding_counts`: how many findings there are per (unit, article, severity, state), kept with each
write of a finding, so the `lawtrail_compliance_findings` gauge reads these few documents instead of
every finding. One document per (article, severity, state) holds the count of each unit (`units`), so a
batch of findings from many units moves few documents (each statement costs FerretDB a read and a
write).

There are no transactions (FerretDB), so a finding and its count are two writes. A count is marked
`pending` before the first write that touches it (one round, only when it is not marked already),
then each write is: the findings → `n += delta`. At each gauge refresh (the first one at start), with
no write in progress, every pending count is settled: one this process kept through all its writes is
exact and only unmarked; any other — marked by a process that stopped in the middle, or touched by a
write that failed between its two steps — is recounted from the findings (an index-served count of
that article, severity and state, by unit). The `$inc` of a write runs in the background, off the
caller's path (the agent acknowledges its batch once the findings are stored); a settle waits for
every write in progress and every `$inc` not yet done, and writes wait while a settle runs
(compliance-svc runs one processing replica), so a recount never races a write.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from servicekit.mongo import IndexSpec, serialized

from compliance_svc.domain.model import Finding

log = logging.getLogger(__name__)

COUNTS = "finding_counts"
LABELS = ("unit", "article", "severity", "state")

Labels = tuple[str, str, str, str]  # unit, article, severity, state
Group = tuple[str, str, str]  # article, severity, state: one document


def labels_of(finding: Finding) -> Labels:
    return (finding.unit, finding.article, finding.severity.value, finding.state.value)


def _id(group: Group) -> str:
    return "\x1f".join(group)


def _field(unit: str) -> str:
    """A unit as a field name of `units` ('.' and '$' are not allowed there, nor an empty name; '%'
    escapes, and a lone '%' — which escaping never produces — is the empty unit)."""
    return unit.replace("%", "%25").replace(".", "%2E").replace("$", "%24") or "%"


def _unit(field: str) -> str:
    if field == "%":
        return ""
    return field.replace("%24", "$").replace("%2E", ".").replace("%25", "%")


class FindingCounts:
    # The recount after an interrupted write reads the counts that are pending (a range on `pending`).
    indexes: ClassVar[Sequence[IndexSpec]] = (IndexSpec([("pending", 1)]),)

    def __init__(self, counts: AsyncCollection[Any], findings: AsyncCollection[Any]) -> None:
        self.collection = serialized(counts)
        self.findings = findings
        # Held by a settle; a counted write enters only while no settle runs (and a settle waits for
        # every write in progress and every count still being moved), so a recount never races a write.
        self._settling = asyncio.Lock()
        self._writing = 0
        self._no_writes = asyncio.Event()
        self._no_writes.set()
        # The deltas of writes already done, not yet sent; one task moves them (all that gathered
        # while its last `$inc` was in flight go in the next one).
        self._unmoved: dict[Group, Counter[str]] = {}
        self._mover: asyncio.Task[None] | None = None
        self._marked: set[Group] = set()  # pending in the store since this process last settled them
        self._suspect: set[Group] = set()  # a write of this process failed between finding and count

    @asynccontextmanager
    async def counting(self, touched: Iterable[Labels]) -> AsyncIterator[Counter[Labels]]:
        """Around one write of findings: yields the deltas to fill in. Once the block succeeds, the
        counts are moved in the background (`$inc`): a caller (the agent's batch) does not wait for
        that round — only a settle (the recount) must come after it, and it waits for it. If the block
        or the move fails, the touched counts stay pending and are recounted (module docstring)."""
        groups = sorted({labels[1:] for labels in touched})
        async with self._settling:
            self._writing += 1
            self._no_writes.clear()
        try:
            unmarked = [g for g in groups if g not in self._marked]
            if unmarked:
                await self.collection.bulk_write(
                    [
                        UpdateOne(
                            {"_id": _id(g)},
                            {"$set": {**dict(zip(LABELS[1:], g, strict=True)), "pending": 1}},
                            upsert=True,
                        )
                        for g in unmarked
                    ],
                    ordered=False,
                )
                self._marked.update(unmarked)
            deltas: Counter[Labels] = Counter()
            try:
                yield deltas
            except BaseException:
                self._suspect.update(groups)
                raise
            for (unit, *group), delta in deltas.items():
                if delta:
                    counter = self._unmoved.setdefault((group[0], group[1], group[2]), Counter())
                    counter[f"units.{_field(unit)}"] += delta
            if self._unmoved and (self._mover is None or self._mover.done()):
                self._mover = asyncio.get_running_loop().create_task(self._move(), name="finding-counts")
        finally:
            self._writing -= 1
            if not self._writing:
                self._no_writes.set()

    async def _move(self) -> None:
        while self._unmoved:
            by_group, self._unmoved = self._unmoved, {}
            incs = {g: {f: n for f, n in c.items() if n} for g, c in by_group.items()}
            incs = {g: inc for g, inc in incs.items() if inc}
            if not incs:
                continue
            try:
                await self.collection.bulk_write(
                    [UpdateOne({"_id": _id(g)}, {"$inc": inc}) for g, inc in incs.items()], ordered=False
                )
            except BaseException as error:
                # The findings are stored, their counts not (all, some or none of them): recount them.
                self._suspect.update(by_group)
                if not isinstance(error, Exception):
                    raise
                log.warning(
                    "moving finding counts failed; they are recounted at the next refresh", exc_info=True
                )

    async def read(self) -> dict[Labels, int]:
        """Every count (a few documents: one per article, severity and state ever seen), after settling
        the pending ones."""
        await self.settle()
        out: dict[Labels, int] = {}
        async for doc in self.collection.find({}):
            for field, n in (doc.get("units") or {}).items():
                out[(_unit(field), doc["article"], doc["severity"], doc["state"])] = int(n)
        return out

    async def settle(self) -> None:
        """Clear `pending` on every count (no write is in progress: the lock). A count this process
        kept through every write since it marked it is exact; any other pending one — left by a process
        that stopped in the middle, or by a write that failed here — is recounted from the findings."""
        async with self._settling:
            await self._no_writes.wait()
            if self._mover is not None:
                await asyncio.gather(self._mover, return_exceptions=True)
            # Left by a mover that was cancelled: not moved, so recounted.
            self._suspect.update(self._unmoved)
            self._unmoved = {}
            async for doc in self.collection.find({"pending": {"$gt": 0}}):
                group: Group = (doc["article"], doc["severity"], doc["state"])
                update: dict[str, Any] = {"pending": 0}
                if group not in self._marked or group in self._suspect:
                    # Units counted before and now without findings stay, at 0.
                    units = dict.fromkeys(doc.get("units") or {}, 0)
                    async for row in await self.findings.aggregate(
                        [
                            {"$match": dict(zip(LABELS[1:], group, strict=True))},
                            {"$group": {"_id": "$unit", "n": {"$sum": 1}}},
                        ]
                    ):
                        units[_field(row["_id"])] = int(row["n"])
                    update["units"] = units
                await self.collection.update_one({"_id": doc["_id"]}, {"$set": update})
                self._marked.discard(group)
                self._suspect.discard(group)
