"""Data-layer benchmark (issue 9): FerretDB v1.24.2 on SQLite against FerretDB on PostgreSQL.

For each backend, starts FerretDB (and for PostgreSQL a private cluster, as `make up` does: GIN
expression indexes by event trigger, `plan_cache_mode = force_custom_plan`) on free ports in a
temporary directory, declares the services' own indexes (case-svc's `CaseDocuments.all_indexes()`,
media-svc's recording search indexes), stores case documents built with case-svc's own mapping and
recording documents with media-svc's searched fields, and measures every query shape the services
issue at 10 000 and at 100 000 documents per collection (the same queries as the repositories, as
bare PyMongo calls):

- GetCase (`find_one` by `_id`), an optimistic update (`{_id, version}` → `$set`, `$inc`, `$push`);
- ListCases first page (50, newest first) by unit, by unit + each filter, across units, and a
  cursor page (`$or` of `opened_at $lt` / equal + `_id $lt`);
- SearchRecordings first page (50, by `recorded_from, _id`) by unit + each facet;
- the outbox relay's reads and writes (count of `outbox_pending`, claim by `_id`, clear by `_id`);
- an inbox check (`apply_once`'s `{_id, applied_events: {$ne: mark}}` update);
- single-document atomicity: 200 racing `$inc` of one field, 20 racing `{_id, version: 0}` updates.

Slow shapes get fewer samples (a time budget per shape; at least 3). Prints one table per backend and
size. `python -m bench datalayer` or `python -m bench.datalayer_bench [--quick] [--backends ...]`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from case_svc.adapters.repository import CASES, CaseDocuments
from lawtrail_local.ferretdb import BACKENDS, FerretDB, ensure_ferretdb_binary
from lawtrail_local.ports import free_ports
from lawtrail_local.postgres import PostgreSQL, find_postgres_bin
from media_svc.adapters.recording_repository import SEARCH_FIELDS, SEARCH_INDEXES
from pymongo import AsyncMongoClient
from servicekit.mongo import OUTBOX_INDEX, IndexSpec, ensure_indexes

from bench.case_bench import CaseDocuments as CaseDocs
from bench.case_bench import Measured

DATABASE = "datalayer_bench"
RECORDINGS = "recordings"
UNITS = 10
STAGES = ("INITIATION", "INVESTIGATION", "REVIEW_DECISION", "SERVICE_EXECUTION", "CLOSED", "ARCHIVED")
ACT_TYPES = ("LICENSING", "PENALTY", "INSPECTION", "LEVY")
FLAGS = ("MAJOR_COMPLEX", "LEGACY_ISSUE", "DISPUTED")
START = datetime(2025, 1, 1, tzinfo=UTC)
NEWEST = [("opened_at", -1), ("_id", -1)]


def case_doc(docs: CaseDocs, i: int) -> dict[str, Any]:
    """A case as case-svc stores it, with filter values spread so each filter matches a share."""
    doc = docs.new(i, unit=f"unit-{i % UNITS}", opened_at=START + timedelta(minutes=i), outbox=False)
    doc["stage"] = STAGES[i % len(STAGES)]
    doc["act_type"] = ACT_TYPES[(i // UNITS) % len(ACT_TYPES)]
    doc["flag_names"] = [FLAGS[i % 3]] if i % 7 == 0 else []
    doc["officers"] = [f"officer-{i % 50}", "alice"]
    doc["party_names"] = [f"某某建设有限公司{i % 97}"]
    doc["outbox_pending"] = i % 1000 == 999  # a few pending, as a live service has
    # Not stored by case-svc: the day bucket of the FerretDB query design measured beside ListCases
    # (an equality that keeps each sorted read to one day of one unit).
    doc["opened_day"] = doc["opened_at"].strftime("%Y-%m-%d")
    return doc


def recording_doc(i: int) -> dict[str, Any]:
    """A recording with media-svc's searched fields and a realistic size (block hashes)."""
    return {
        "_id": f"rec-{i:08d}",
        "unit": f"unit-{i % UNITS}",
        "case_id": f"case-{i // 10}",
        "device_number": f"DEV-{i % 200:04d}",
        "officer": f"officer-{i % 50}",
        "party": f"某某建设有限公司{i % 97}",
        "case_cause": f"未按规定修建防空地下室 #{i // 10}",
        "recorded_from": START + timedelta(minutes=i),
        "recorded_to": START + timedelta(minutes=i, seconds=600),
        "sha256": f"{i:064x}",
        "size_bytes": 50_000_000 + i,
        "block_hashes": [f"{i:016x}{b:048x}" for b in range(8)],
        "integrity": "OK",
        "version": 1,
        "outbox": [],
        "outbox_pending": False,
    }


async def top_up(
    collection: Any, make: Callable[[int], dict[str, Any]], total: int, report: Callable[[str], None]
) -> None:
    have = await collection.count_documents({})
    began = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for i in range(have, total):
        batch.append(make(i))
        if len(batch) == 1000:
            await collection.insert_many(batch, ordered=False)
            batch = []
    if batch:
        await collection.insert_many(batch, ordered=False)
    if total > have:
        report(
            f"  stored {total - have} {collection.name} up to {total} in {time.perf_counter() - began:.1f} s"
        )


async def sample(call: Callable[[int], Awaitable[Any]], *, budget_s: float, most: int) -> Measured:
    """Calls until `most` or `budget_s` is spent: at least 3, or 1 when one call takes the whole budget
    (a scan of 100k documents on SQLite takes tens of seconds)."""
    latencies: list[float] = []
    began = time.perf_counter()
    i = 0
    while (i < 3 and not (i and latencies[0] > budget_s)) or (
        i < most and time.perf_counter() - began < budget_s
    ):
        t = time.perf_counter()
        await call(i)
        latencies.append((time.perf_counter() - t) * 1000)
        i += 1
    return Measured(i, time.perf_counter() - began, latencies)


def shapes(
    db: Any, case_ids: list[str], len_cases: list[int]
) -> list[tuple[str, Callable[[int], Awaitable[Any]]]]:
    """Every query shape, as the repositories issue it; `i` varies the target."""
    cases, recs = db[CASES], db[RECORDINGS]
    newest = [("opened_at", -1), ("_id", -1)]
    by_time = [("recorded_from", 1), ("_id", 1)]

    async def page(cursor: Any) -> int:
        return len([d async for d in cursor])

    def listing(extra: dict[str, Any]) -> Callable[[int], Awaitable[Any]]:
        async def run(i: int) -> int:
            return await page(cases.find({"unit": f"unit-{i % UNITS}", **extra}).sort(newest).limit(51))

        return run

    def search(field: str, value: Callable[[int], str]) -> Callable[[int], Awaitable[Any]]:
        async def run(i: int) -> int:
            query = {"unit": f"unit-{i % UNITS}", field: value(i)}
            return await page(recs.find(query, {"block_hashes": 0}).sort(by_time).limit(51))

        return run

    async def get_case(i: int) -> Any:
        ids = case_ids
        return await cases.find_one({"_id": ids[(i * 7919) % len(ids)]}, {"outbox": 0})

    async def update_case(i: int) -> Any:
        case_id = case_ids[(i * 104729) % len(case_ids)]
        doc = await cases.find_one({"_id": case_id}, {"version": 1})
        return await cases.update_one(
            {"_id": case_id, "version": doc["version"]},
            {"$set": {"cause": f"changed {i}"}, "$inc": {"version": 1}},
        )

    async def claim(i: int) -> Any:
        case_id = case_ids[(i * 15485863) % len(case_ids)]
        return await cases.find_one_and_update(
            {"_id": case_id}, {"$set": {"outbox_lease_until": datetime.now(UTC)}}
        )

    async def clear(i: int) -> Any:
        case_id = case_ids[(i * 15485863) % len(case_ids)]
        return await cases.update_one(
            {"_id": case_id},
            {"$set": {"outbox": [], "outbox_pending": False}, "$unset": {"outbox_lease_until": ""}},
        )

    async def inbox(i: int) -> Any:
        case_id = case_ids[(i * 31) % len(case_ids)]
        mark = f"/lawtrail/media-svc ev-{i}-{random.random()}"
        return await cases.update_one(
            {"_id": case_id, "applied_events": {"$ne": mark}}, {"$push": {"applied_events": mark}}
        )

    async def cursor_page(i: int) -> int:
        after = START + timedelta(minutes=len(case_ids) // 2)
        query = {
            "unit": f"unit-{i % UNITS}",
            "$or": [{"opened_at": {"$lt": after}}, {"opened_at": after, "_id": {"$lt": "z"}}],
        }
        return await page(cases.find(query).sort(newest).limit(51))

    async def day_buckets(i: int) -> int:
        """ListCases' first page as day-bucketed reads, newest day first, until the page is full."""
        unit = f"unit-{i % UNITS}"
        day = START + timedelta(minutes=len_cases[0] - 1)
        found = 0
        while found < 51 and day >= START:
            query = {"unit": unit, "opened_day": day.strftime("%Y-%m-%d")}
            found += await page(cases.find(query).sort(newest).limit(51 - found))
            day -= timedelta(days=1)
        return found

    async def across_units(_: int) -> int:
        return await page(cases.find({}).sort(newest).limit(51))

    async def pending_count(_: int) -> int:
        return int(await cases.count_documents({"outbox_pending": True}))

    return [
        ("GetCase find_one _id", get_case),
        ("update {_id, version}", update_case),
        ("relay claim by _id", claim),
        ("relay clear by _id", clear),
        ("inbox check {_id, $ne}", inbox),
        ("relay count pending", pending_count),
        ("ListCases unit", listing({})),
        ("ListCases unit+stage", listing({"stage": "INVESTIGATION"})),
        ("ListCases unit+act_type", listing({"act_type": "PENALTY"})),
        ("ListCases unit+flag", listing({"flag_names": "DISPUTED"})),
        ("ListCases unit+officer", listing({"officers": "officer-3"})),
        ("ListCases unit+party", listing({"party_names": "某某建设有限公司5"})),
        ("ListCases unit+cause^", listing({"cause": {"$regex": "^未按规定修建防空地下室 #1"}})),
        ("ListCases unit cursor page", cursor_page),
        ("ListCases unit, day buckets (design)", day_buckets),
        ("ListCases across units", across_units),
        *[
            (f"Search unit+{f}", search(f, value))
            for f, value in (
                ("case_id", lambda i: f"case-{(i * 13) % 1000 * UNITS + i % UNITS}"),
                ("device_number", lambda i: f"DEV-{i % 200:04d}"),
                ("officer", lambda i: f"officer-{i % 50}"),
                ("party", lambda i: f"某某建设有限公司{i % 97}"),
                ("case_cause", lambda i: f"未按规定修建防空地下室 #{(i * 13) % 1000}"),
            )
            if f in SEARCH_FIELDS
        ],
    ]


async def atomicity(db: Any) -> tuple[int, int]:
    """(final value after 200 racing `$inc`, how many of 20 racing `{version: 0}` updates 'won')."""
    col = db["race"]
    await col.delete_many({})
    await col.insert_one({"_id": "counter", "n": 0})
    await asyncio.gather(*(col.update_one({"_id": "counter"}, {"$inc": {"n": 1}}) for _ in range(200)))
    counted = (await col.find_one({"_id": "counter"}))["n"]
    await col.insert_one({"_id": "versioned", "version": 0, "winners": []})
    results = await asyncio.gather(
        *(
            col.update_one(
                {"_id": "versioned", "version": 0}, {"$inc": {"version": 1}, "$push": {"winners": w}}
            )
            for w in range(20)
        )
    )
    return counted, sum(r.modified_count for r in results)


async def measure_backend(
    backend: str,
    sizes: tuple[int, ...],
    budget_s: float,
    report: Callable[[str], None],
    only: Sequence[str] = (),
) -> dict[str, dict[int, Measured]]:
    workdir = Path(tempfile.mkdtemp(prefix=f"lawtrail-datalayer-{backend}-"))
    mongo_port, pg_port = free_ports(2)
    ferret = FerretDB(workdir, mongo_port, backend)
    postgres = PostgreSQL(workdir, pg_port) if backend == "postgresql" else None
    results: dict[str, dict[int, Measured]] = {}
    try:
        if postgres is not None:
            pg_bin = find_postgres_bin()
            postgres.ensure_cluster(pg_bin)
            postgres.start(pg_bin)
            postgres.wait_ready(60, pg_bin)
            postgres.ensure_database(pg_bin)
        ferret.start(ensure_ferretdb_binary(report), postgres.url if postgres else None)
        ferret.wait_ready(60)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(ferret.mongo_uri, tz_aware=True)
        db = client[DATABASE]
        await ensure_indexes(
            db,
            {
                CASES: [*CaseDocuments.all_indexes(), IndexSpec([("unit", 1), ("opened_day", 1), *NEWEST])],
                RECORDINGS: [*SEARCH_INDEXES, OUTBOX_INDEX],
            },
        )
        docs = CaseDocs()
        case_ids: list[str] = []
        len_cases = [0]
        counted, won = await atomicity(db)
        report(
            f"  {backend}: 200 racing $inc of one field end at {counted}; "
            f"{won} of 20 racing {{version: 0}} updates succeeded"
        )
        results["racing $inc (of 200)"] = {0: Measured(1, 0, [float(counted)])}
        results["racing {version:0} winners (of 20)"] = {0: Measured(1, 0, [float(won)])}
        for size in sizes:
            report(f"== {backend}: {size} cases and {size} recordings")
            await top_up(db[CASES], lambda i: case_doc(docs, i), size, report)
            await top_up(db[RECORDINGS], recording_doc, size, report)
            case_ids[:] = [d["_id"] async for d in db[CASES].find({}, {"_id": 1}).limit(2000)]
            len_cases[0] = size
            for name, call in shapes(db, case_ids, len_cases):
                if only and not any(word in name for word in only):
                    continue
                await call(0)  # warm-up (plans, connections)
                m = await sample(call, budget_s=budget_s, most=200)
                results.setdefault(name, {})[size] = m
                report(
                    f"  {name:<28} p50 {m.percentile(0.5):9.1f} ms  "
                    f"p99 {m.percentile(0.99):9.1f} ms  ({m.calls} calls)"
                )
        await client.close()
    finally:
        ferret.process.stop()
        if postgres is not None:
            postgres.process.stop()
            postgres.remove_cluster()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def table(all_results: dict[str, dict[str, dict[int, Measured]]], sizes: tuple[int, ...]) -> str:
    backends = list(all_results)
    header = (
        "| query shape | "
        + " | ".join(f"{b} {s // 1000}k p50 / p99 ms" for b in backends for s in sizes)
        + " |"
    )
    lines = [header, "|" + "---|" * (1 + len(backends) * len(sizes))]
    names = list(next(iter(all_results.values())))
    for name in names:
        cells = []
        for b in backends:
            for s in sizes:
                m = all_results[b].get(name, {}).get(s) or all_results[b].get(name, {}).get(0)
                if m is None:
                    cells.append("—")
                elif 0 in all_results[b].get(name, {}):
                    cells.append(f"{m.latencies_ms[0]:.0f}")
                else:
                    cells.append(f"{m.percentile(0.5):.1f} / {m.percentile(0.99):.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1k and 3k documents: a smoke test")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--budget", type=float, default=5.0, help="seconds of samples per shape (≥ 3 calls)")
    parser.add_argument(
        "--only", nargs="*", default=[], help="measure only shapes whose name contains one of these"
    )
    args = parser.parse_args(argv if argv is not None else [])
    sizes = (1_000, 3_000) if args.quick else (10_000, 100_000)
    all_results = {}
    for backend in args.backends:
        all_results[backend] = asyncio.run(measure_backend(backend, sizes, args.budget, print, args.only))
        print(table(all_results, sizes), flush=True)  # so far: a long run shows what it has
    print(table(all_results, sizes), flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
