"""Every query the services issued during the integration tests is served by a declared index by
MongoDB's ESR rule (issue 9): collected from the code as it runs (servicekit.queryshapes records each
command's filter and sort in the services started by the tests), checked against the indexes the
services declared and created at start (listIndexes). Runs after every other integration test."""

from __future__ import annotations

from collections import defaultdict

import pytest
from case_svc.adapters.repository import CASES, CaseDocuments
from compliance_svc.adapters.repository import FINDINGS, MongoFindingRepository
from lawtrail_local.pytest_plugin import query_shapes_file
from lawtrail_local.stack import Stack
from media_svc.adapters.recording_repository import RECORDINGS, MongoRecordingRepository
from pymongo import MongoClient
from servicekit.queryshapes import read_shapes, serving_index, uncovered

pytestmark = pytest.mark.integration

# Whole-collection work that is deliberate, each with its reason (anything else must be index-served):
# media-svc's `RecordingRepository.totals()` sums `size_bytes` over every recording for the scrub
# summary, a `$group` with no `$match`, which reads every recording whatever the indexes. At a million
# recordings this should become a maintained counter document (media-svc, left to its owner).
# compliance-svc's `FindingGauges.refresh()` reads every document of `finding_counts` — one per (unit,
# article, severity, state) ever seen, kept with each write of a finding — to set the
# `lawtrail_compliance_findings` gauge: the whole gauge, a few documents, never the findings.
DELIBERATE_SCANS: set[tuple[str, str, frozenset[str], tuple[tuple[str, int], ...]]] = {
    ("recordings", "aggregate", frozenset(), ()),
    ("finding_counts", "find", frozenset(), ()),
}


# The search APIs whose criteria a request may combine (ListCases, SearchRecordings, ListFindings): a
# query naming several is bounded by one criterion's index and filtered by the others
# (servicekit.queryshapes).
CRITERIA = {
    CASES: CaseDocuments.criteria,
    RECORDINGS: MongoRecordingRepository.criteria,
    FINDINGS: MongoFindingRepository.criteria,
}


def test_every_query_of_every_repository_is_index_served(stack: Stack) -> None:
    path = query_shapes_file(stack)
    if not path.exists():
        pytest.skip("no service ran in this session: run it with the integration suite (`make integration`)")
    shapes = read_shapes(path)
    client: MongoClient[dict[str, object]] = MongoClient(stack.mongo_uri, directConnection=True)
    try:
        indexes = {}
        for database, collection in {(s.database, s.collection) for s in shapes}:
            indexes[(database, collection)] = [
                list(index["key"].items()) for index in client[database][collection].list_indexes()
            ]
    finally:
        client.close()
    missing = [
        m
        for m in uncovered(shapes, indexes, CRITERIA)
        if (m.collection, m.command, m.equality, m.sort) not in DELIBERATE_SCANS or m.range or m.residual
    ]
    by_collection: dict[str, int] = defaultdict(int)
    for shape in shapes:
        by_collection[shape.collection] += 1
    print(f"\n{len(shapes)} query shapes checked: {dict(sorted(by_collection.items()))}")
    for shape in shapes:
        index = serving_index(
            shape, indexes[(shape.database, shape.collection)], CRITERIA.get(shape.collection, frozenset())
        )
        print(f"  {shape.describe()}  → {index}")
    assert len(by_collection) >= 5, f"too few collections seen ({sorted(by_collection)}): was the suite run?"
    assert not missing, "queries no declared index serves (ESR):\n" + "\n".join(
        sorted({m.describe() for m in missing})
    )
