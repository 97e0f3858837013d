"""compliance-svc's finding counts (adapters/counts.py) on the real FerretDB: kept with each write,
settled at each read, and recounted from the findings after a write that failed between its two steps
or a process that stopped in the middle — the `lawtrail_compliance_findings` gauge never reads every
finding, yet stays exact."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from compliance_svc.adapters.counts import COUNTS, FindingCounts
from compliance_svc.adapters.repository import FINDINGS, MongoFindingRepository, to_document
from compliance_svc.bootstrap import load_policy
from compliance_svc.domain.model import Attribution, Finding, Raised, State
from lawtrail_local.stack import Stack
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    name = f"counts_it_{uuid.uuid4().hex[:10]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri, tz_aware=True)
    try:
        yield client[name]
        await client.drop_database(name)
    finally:
        await client.close()


def finding(
    subject: str, article: str = "R19b", code: str = "R19B_PARTY_NOT_INFORMED", unit: str = "unit-1"
) -> Finding:
    raised = Raised(code, article, unit, "officer-1", subject, "detail", ("e-" + subject,), T0)
    return Finding.raise_(raised, load_policy())


async def test_counts_follow_each_write_and_are_recounted_after_an_interrupted_one(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    repo = MongoFindingRepository(db[FINDINGS], db[COUNTS], event_source="/lawtrail/counts-it")
    # Several units in one document; a unit name with a dot and a dollar sign, or none, is a field name.
    assert await repo.add_absent([finding("rec-0", unit="unit.$2"), finding("rec-00", unit="")])
    assert await repo.add_absent(
        [finding("rec-1"), finding("rec-2"), finding("rec-3", "R20", "R20_UNKNOWN_DEVICE")]
    )
    assert await repo.add_absent([finding("rec-1")]) == []  # redelivered: stored and counted once
    first = await repo.get(finding("rec-1").finding_id)
    assert first is not None
    await repo.save(first.acknowledge(Attribution("legal-1", "legal", T0)), was=State.OPEN)
    want = {
        ("unit.$2", "R19b", "MINOR", "OPEN"): 1,
        ("", "R19b", "MINOR", "OPEN"): 1,
        ("unit-1", "R19b", "MINOR", "OPEN"): 1,
        ("unit-1", "R19b", "MINOR", "ACKNOWLEDGED"): 1,
        ("unit-1", "R20", "SERIOUS", "OPEN"): 1,
    }
    assert await repo.counts.read() == want
    assert await db[COUNTS].count_documents({"pending": {"$gt": 0}}) == 0  # settled by the read

    # A write that fails between the finding and its count: the finding is stored, the count is not.
    async def interrupted() -> None:
        async with repo.counts.counting([("unit-1", "R19b", "MINOR", "OPEN")]):
            await db[FINDINGS].insert_one(to_document(finding("rec-4")))
            raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        await interrupted()
    want[("unit-1", "R19b", "MINOR", "OPEN")] = 2
    assert await repo.counts.read() == want  # recounted from the findings

    # A process that stopped in the middle: its mark stays, its count is off; the next one recounts it.
    await db[COUNTS].update_one(
        {"article": "R20", "state": "OPEN"}, {"$set": {"pending": 1, "units.unit-1": 7}}
    )
    restarted = FindingCounts(db[COUNTS], db[FINDINGS])
    assert await restarted.read() == want
