"""MongoDB storage of recordings, continuity series, content accesses and fixity scrub runs.

Every change is one single-document write carrying its events (embedded outbox, servicekit):
- `recordings`: one document per recording (`_id` = recording id, unique `sha256`). The content hash,
  size and block hashes are written once by the insert and never appear in an update (R23-2).
- `continuity_series`: one document per device and activity with its segments and explanations (R19c).
- `content_access`: one document per content access with its ContentAccessed event, and one per view or
  search from outside the owning unit with its RecordingViewed / RecordingsSearched (R16, R23-3).
- `scrub_runs` / `scrub_lock`: fixity scrub progress and the lock that keeps one run at a time.

Search (R17) is index-backed: every criterion that can narrow a query has a compound index
`(unit, <criterion>, recorded_from, _id)` (and one without `unit` for supervisors), so a search is an
index range scan in the order of the results; a search combining criteria reads one criterion's range
and filters it by the others (`SEARCH_FIELDS` are the repository's `criteria`, servicekit.queryshapes).
`SEARCH_INDEXES` lists them; a unit test checks that every criterion is covered. `party` and `case_cause`
hold every value a search finds the recording under — the uploader's declared one and, once linked, its
case's cause and parties (an array: the index is multikey); the declared values themselves are kept in
`declared_party` / `declared_case_cause` (documents written before that hold the declared string in
`party` / `case_cause`, which searches the same).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from bson.binary import Binary
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from servicekit.errors import AlreadyExists
from servicekit.mongo import IndexSpec, Notify, VersionedRepository, serialized

from media_svc.adapters.event_mapping import to_outbound
from media_svc.domain.cases import CaseParticulars
from media_svc.domain.continuity import Explanation, Segment, Series
from media_svc.domain.events import ContentAccessed, RecordingsSearched, RecordingViewed
from media_svc.domain.fixity import ScrubRun, ScrubState
from media_svc.domain.recordings import (
    BLOCK_SIZE,
    Attribution,
    Classification,
    Finding,
    IntegrityStatus,
    Link,
    MediaFacts,
    MediaKind,
    Recording,
)
from media_svc.service_layer.ports import (
    AccessLog,
    RecordingRepository,
    ScrubItem,
    ScrubRunRepository,
    SearchCursor,
    SearchQuery,
    SeriesRepository,
)

RECORDINGS = "recordings"
SERIES = "continuity_series"
ACCESS = "content_access"
SCRUB_RUNS = "scrub_runs"
SCRUB_LOCK = "scrub_lock"

Document = dict[str, Any]

# Search criteria (document field names) in the order the query prefers them as the leading equality.
SEARCH_FIELDS = ("case_id", "device_number", "officer", "party", "case_cause", "media_kind")
SEARCH_INDEXES = [
    IndexSpec([("unit", 1), ("recorded_from", 1), ("_id", 1)], name="unit_time"),
    IndexSpec([("recorded_from", 1), ("_id", 1)], name="time"),
    *[
        IndexSpec([("unit", 1), (f, 1), ("recorded_from", 1), ("_id", 1)], name=f"unit_{f}_time")
        for f in SEARCH_FIELDS
    ],
    *[IndexSpec([(f, 1), ("recorded_from", 1), ("_id", 1)], name=f"{f}_time") for f in SEARCH_FIELDS],
]

# Fields an update may set. Content identity (sha256, size_bytes, block_hashes) is not among them.
_MUTABLE = (
    "case_id", "activity_id", "linked", "linked_by_legal_office", "integrity", "integrity_checked_at",
    "continuity_pending", "case_particulars", "party", "case_cause",
)  # fmt: skip


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _attr_doc(a: Attribution | None) -> Document | None:
    return None if a is None else {"subject": a.subject, "unit": a.unit, "at": a.at}


def _attr(d: Mapping[str, Any] | None) -> Attribution | None:
    if not d:
        return None
    at = _utc(d["at"])
    assert at is not None
    return Attribution(d["subject"], d["unit"], at)


# ---------------------------------------------------------------------------------------------
# recordings
# ---------------------------------------------------------------------------------------------


def recording_document(r: Recording) -> Document:
    c, f = r.classification, r.facts
    return {
        "_id": r.recording_id,
        "sha256": r.sha256,
        "size_bytes": r.size_bytes,
        "block_size": BLOCK_SIZE,
        "block_hashes": Binary(r.block_hashes),
        "unit": c.unit,
        "device_number": c.device_number,
        "officer": c.officer,
        "recorded_from": c.recorded_from,
        "recorded_to": c.recorded_to,
        "declared_party": c.party,
        "declared_case_cause": c.case_cause,
        "media_kind": c.media_kind.value,
        "party_informed": c.party_informed,
        "declared_case_id": c.case_id,
        "declared_activity_id": c.activity_id,
        "facts": {
            "format_name": f.format_name,
            "duration_ms": int(f.duration / timedelta(milliseconds=1)),
            "codecs": list(f.codecs),
            "width": f.width,
            "height": f.height,
            "creation_time": f.creation_time,
        },
        "findings": [{"code": x.code, "requirement": x.requirement, "detail": x.detail} for x in r.findings],
        "ingested": _attr_doc(r.ingested),
        "ingest_delay_ms": int(r.ingest_delay / timedelta(milliseconds=1)),
        **_mutable_fields(r),
    }


def _mutable_fields(r: Recording) -> Document:
    p = r.case_particulars
    return {
        "case_id": r.link.case_id,
        "activity_id": r.link.activity_id,
        "linked": _attr_doc(r.link.linked),
        "linked_by_legal_office": r.link.by_legal_office,
        "integrity": r.integrity.value,
        "integrity_checked_at": r.integrity_checked_at,
        "continuity_pending": r.continuity_pending,
        "case_particulars": None
        if p is None
        else {"cause": p.cause, "parties": list(p.parties), "version": p.version},
        # R17 search values: declared and the linked case's (see the module docstring).
        "party": list(r.search_parties),
        "case_cause": list(r.search_causes),
    }


def _declared(d: Mapping[str, Any], name: str) -> str:
    if f"declared_{name}" in d:
        return str(d[f"declared_{name}"])
    value = d.get(name, "")  # written before the search values had their own field
    return value if isinstance(value, str) else ""


def _particulars(d: Mapping[str, Any] | None) -> CaseParticulars | None:
    if not d:
        return None
    return CaseParticulars(str(d["cause"]), tuple(d["parties"]), int(d["version"]))


def recording_from(d: Mapping[str, Any]) -> Recording:
    f = d["facts"]
    recorded_from, recorded_to = _utc(d["recorded_from"]), _utc(d["recorded_to"])
    assert recorded_from is not None
    assert recorded_to is not None
    ingested = _attr(d["ingested"])
    assert ingested is not None
    return Recording(
        recording_id=d["_id"],
        sha256=d["sha256"],
        size_bytes=int(d["size_bytes"]),
        classification=Classification(
            unit=d["unit"],
            device_number=d["device_number"],
            officer=d["officer"],
            recorded_from=recorded_from,
            recorded_to=recorded_to,
            media_kind=MediaKind(d["media_kind"]),
            party_informed=bool(d["party_informed"]),
            party=_declared(d, "party"),
            case_cause=_declared(d, "case_cause"),
            case_id=d["declared_case_id"],
            activity_id=d["declared_activity_id"],
        ),
        facts=MediaFacts(
            format_name=f["format_name"],
            duration=timedelta(milliseconds=f["duration_ms"]),
            codecs=tuple(f["codecs"]),
            width=int(f["width"]),
            height=int(f["height"]),
            creation_time=_utc(f.get("creation_time")),
        ),
        findings=tuple(Finding(x["code"], x["requirement"], x["detail"]) for x in d["findings"]),
        ingested=ingested,
        block_hashes=bytes(d.get("block_hashes") or b""),
        link=Link(
            d["case_id"], d["activity_id"], _attr(d.get("linked")), bool(d.get("linked_by_legal_office"))
        ),
        case_particulars=_particulars(d.get("case_particulars")),
        integrity=IntegrityStatus(d["integrity"]),
        integrity_checked_at=_utc(d.get("integrity_checked_at")),
        continuity_pending=bool(d.get("continuity_pending")),
        version=int(d.get("version", 0)),
    )


class _Recordings(VersionedRepository):
    criteria = frozenset(SEARCH_FIELDS)
    indexes: ClassVar[Sequence[IndexSpec]] = [
        IndexSpec([("sha256", 1)], unique=True, name="sha256"),
        *SEARCH_INDEXES,
        IndexSpec([("continuity_pending", 1), ("_id", 1)], name="continuity_pending"),
        # A case's linked recordings, walked in _id batches when its cause or parties change (R17).
        IndexSpec([("case_id", 1), ("_id", 1)], name="case_id_id"),
        IndexSpec([("integrity", 1), ("_id", 1)], name="integrity"),
    ]


# Search results carry metadata only: the block hashes (up to MiBs for long videos) stay in the database.
_SEARCH_PROJECTION = {"block_hashes": 0, "outbox": 0}


class MongoRecordingRepository(RecordingRepository):
    def __init__(
        self, db: AsyncDatabase[Document], *, event_source: str, notify: Notify | None = None
    ) -> None:
        self._repo = _Recordings(db[RECORDINGS], event_source=event_source, notify=notify)
        # Writes hold servicekit's per-document locks (FerretDB v1 applies racing updates non-atomically).
        self._docs: AsyncCollection[Document] = self._repo.collection

    @staticmethod
    def indexes() -> Sequence[IndexSpec]:
        return _Recordings.all_indexes()

    criteria = _Recordings.criteria

    async def get(self, recording_id: str) -> Recording | None:
        d = await self._docs.find_one({"_id": recording_id}, {"outbox": 0})
        return None if d is None else recording_from(d)

    async def get_by_sha256(self, sha256: str) -> Recording | None:
        d = await self._docs.find_one({"sha256": sha256}, {"outbox": 0})
        return None if d is None else recording_from(d)

    async def add(self, recording: Recording) -> None:
        try:
            await self._repo.insert(recording_document(recording), events=to_outbound(recording.events))
        except DuplicateKeyError:
            raise AlreadyExists(f"recording with SHA-256 {recording.sha256} already exists") from None
        recording.version = 1
        recording.events.clear()

    async def save(self, recording: Recording) -> None:
        recording.version = await self._repo.update(
            recording.recording_id,
            expected_version=recording.version,
            set_fields=_mutable_fields(recording),
            events=to_outbound(recording.events),
        )
        recording.events.clear()

    async def search(self, query: SearchQuery, after: SearchCursor | None, limit: int) -> list[Recording]:
        filt: Document = {}
        for name in ("unit", *SEARCH_FIELDS):
            value = getattr(query, name)
            if value:
                filt[name] = value.value if isinstance(value, MediaKind) else value
        time_range: Document = {}
        if query.recorded_before is not None:
            time_range["$lt"] = query.recorded_before
        if query.recorded_after is not None:
            filt["recorded_to"] = {"$gt": query.recorded_after}
        if after is not None:
            filt["$or"] = [
                {"recorded_from": {"$gt": after.recorded_from}},
                {"recorded_from": after.recorded_from, "_id": {"$gt": after.recording_id}},
            ]
        if time_range:
            filt["recorded_from"] = time_range
        cursor = (
            self._docs.find(filt, _SEARCH_PROJECTION)
            .sort([("recorded_from", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [recording_from(d) async for d in cursor]

    async def linked_to_case(self, case_id: str, after_id: str, limit: int) -> list[str]:
        # Served by the `case_id_time` index (case_id leads); paged by _id so a large case is walked in
        # bounded batches.
        cursor = (
            self._docs.find({"case_id": case_id, "_id": {"$gt": after_id}}, {"_id": 1})
            .sort("_id", ASCENDING)
            .limit(limit)
        )
        return [d["_id"] async for d in cursor]

    async def pending_continuity(self, limit: int) -> list[Recording]:
        cursor = (
            self._docs.find({"continuity_pending": True}, {"outbox": 0}).sort("_id", ASCENDING).limit(limit)
        )
        return [recording_from(d) async for d in cursor]

    async def mark_in_series(self, recording_id: str) -> None:
        await self._docs.update_one({"_id": recording_id}, {"$set": {"continuity_pending": False}})

    async def scrub_batch(self, after_id: str, limit: int) -> list[ScrubItem]:
        cursor = (
            self._docs.find({"_id": {"$gt": after_id}}, {"sha256": 1, "size_bytes": 1})
            .sort("_id", ASCENDING)
            .limit(limit)
        )
        return [ScrubItem(d["_id"], d["sha256"], int(d["size_bytes"])) async for d in cursor]

    async def totals(self) -> tuple[int, int]:
        rows = await (
            await self._docs.aggregate(
                [{"$group": {"_id": None, "n": {"$sum": 1}, "bytes": {"$sum": "$size_bytes"}}}]
            )
        ).to_list()
        if not rows:
            return 0, 0
        return int(rows[0]["n"]), int(rows[0]["bytes"])


# ---------------------------------------------------------------------------------------------
# continuity series
# ---------------------------------------------------------------------------------------------


def _series_fields(s: Series) -> Document:
    return {
        "unit": s.unit,
        "case_id": s.case_id,
        "activity_id": s.activity_id,
        "device_number": s.device_number,
        "segments": [
            {"recording_id": x.recording_id, "from": x.recorded_from, "to": x.recorded_to} for x in s.segments
        ],
        "explanations": [
            {
                "next_recording_id": e.next_recording_id,
                "previous_recording_id": e.previous_recording_id,
                "gap_from": e.gap_from,
                "gap_to": e.gap_to,
                "explained": _attr_doc(e.explained),
                "spoken_in_recording_id": e.spoken_in_recording_id,
                "spoken_offset_ms": None
                if e.spoken_offset is None
                else int(e.spoken_offset / timedelta(milliseconds=1)),
                "written_text": e.written_text,
            }
            for e in s.explanations
        ],
        "longest_unexplained_gap_s": s.longest_unexplained_gap.total_seconds(),
    }


def series_from(d: Mapping[str, Any]) -> Series:
    def t(v: Any) -> datetime:
        out = _utc(v)
        assert out is not None
        return out

    explanations = []
    for e in d["explanations"]:
        explained = _attr(e["explained"])
        assert explained is not None
        explanations.append(
            Explanation(
                next_recording_id=e["next_recording_id"],
                previous_recording_id=e["previous_recording_id"],
                gap_from=t(e["gap_from"]),
                gap_to=t(e["gap_to"]),
                explained=explained,
                spoken_in_recording_id=e["spoken_in_recording_id"],
                spoken_offset=None
                if e["spoken_offset_ms"] is None
                else timedelta(milliseconds=e["spoken_offset_ms"]),
                written_text=e["written_text"],
            )
        )
    return Series(
        series_id=d["_id"],
        unit=d["unit"],
        case_id=d["case_id"],
        activity_id=d["activity_id"],
        device_number=d["device_number"],
        segments=[Segment(x["recording_id"], t(x["from"]), t(x["to"])) for x in d["segments"]],
        explanations=explanations,
        version=int(d.get("version", 0)),
    )


class _Series(VersionedRepository):
    indexes: ClassVar[Sequence[IndexSpec]] = [
        # `with_unexplained_gaps` pages by `_id` within a unit or a case and filters the gap: equality,
        # then the sort (`_id`), then the range (ESR; tests/integration/test_index_coverage.py).
        IndexSpec([("unit", 1), ("_id", 1), ("longest_unexplained_gap_s", 1)], name="unit_id_gap"),
        IndexSpec([("case_id", 1), ("_id", 1), ("longest_unexplained_gap_s", 1)], name="case_id_gap"),
    ]


class MongoSeriesRepository(SeriesRepository):
    def __init__(
        self, db: AsyncDatabase[Document], *, event_source: str, notify: Notify | None = None
    ) -> None:
        self._docs: AsyncCollection[Document] = db[SERIES]
        self._repo = _Series(db[SERIES], event_source=event_source, notify=notify)

    @staticmethod
    def indexes() -> Sequence[IndexSpec]:
        return _Series.all_indexes()

    async def get(self, series_id: str) -> Series | None:
        d = await self._docs.find_one({"_id": series_id}, {"outbox": 0})
        return None if d is None else series_from(d)

    async def add(self, series: Series) -> None:
        try:
            await self._repo.insert(
                {"_id": series.series_id, **_series_fields(series)}, events=to_outbound(series.events)
            )
        except DuplicateKeyError:
            raise AlreadyExists(f"series {series.series_id} exists") from None
        series.version = 1
        series.events.clear()

    async def save(self, series: Series) -> None:
        series.version = await self._repo.update(
            series.series_id,
            expected_version=series.version,
            set_fields=_series_fields(series),
            events=to_outbound(series.events),
        )
        series.events.clear()

    async def with_unexplained_gaps(
        self, *, unit: str, case_id: str, longer_than_s: float, after_id: str, limit: int
    ) -> list[Series]:
        filt: Document = {"longest_unexplained_gap_s": {"$gt": longer_than_s}, "_id": {"$gt": after_id}}
        if unit:
            filt["unit"] = unit
        if case_id:
            filt["case_id"] = case_id
        cursor = self._docs.find(filt, {"outbox": 0}).sort("_id", ASCENDING).limit(limit)
        return [series_from(d) async for d in cursor]


# ---------------------------------------------------------------------------------------------
# content accesses
# ---------------------------------------------------------------------------------------------


class _Access(VersionedRepository):
    indexes: ClassVar[Sequence[IndexSpec]] = [
        IndexSpec([("recording_id", 1), ("at", 1)], name="recording_at")
    ]


class MongoAccessLog(AccessLog):
    def __init__(
        self, db: AsyncDatabase[Document], *, event_source: str, notify: Notify | None = None
    ) -> None:
        self._repo = _Access(db[ACCESS], event_source=event_source, notify=notify)

    @staticmethod
    def indexes() -> Sequence[IndexSpec]:
        return _Access.all_indexes()

    async def record(self, access: ContentAccessed) -> None:
        await self._repo.insert(
            {
                "_id": access.access_id,
                "recording_id": access.recording_id,
                "sha256": access.sha256,
                "unit": access.unit,
                "subject": access.subject,
                "subject_unit": access.subject_unit,
                "at": access.at,
                "grant_id": access.grant_id,
                "purpose": access.purpose,
                "approver": access.approver,
            },
            events=to_outbound([access]),
        )

    async def record_view(self, view: RecordingViewed | RecordingsSearched) -> None:
        # The event carries the facts (a search's criteria and results); the document is the durable mark.
        await self._repo.insert(
            {
                "_id": view.view_id,
                "kind": "view" if isinstance(view, RecordingViewed) else "search",
                "recording_id": view.recording_id if isinstance(view, RecordingViewed) else "",
                "viewer": view.viewer,
                "viewer_unit": view.viewer_unit,
                "at": view.at,
                "rpc": view.rpc,
            },
            events=to_outbound([view]),
        )


# ---------------------------------------------------------------------------------------------
# fixity scrub runs
# ---------------------------------------------------------------------------------------------

_LOCK_ID = "fixity"


def _run_doc(run: ScrubRun) -> Document:
    return {
        "_id": run.run_id,
        "state": run.state.value,
        "triggered_by": run.triggered_by,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "recordings_total": run.recordings_total,
        "bytes_total": run.bytes_total,
        "recordings_checked": run.recordings_checked,
        "bytes_checked": run.bytes_checked,
        "failures": run.failures,
    }


def _run_from(d: Mapping[str, Any]) -> ScrubRun:
    started = _utc(d["started_at"])
    assert started is not None
    return ScrubRun(
        run_id=d["_id"],
        triggered_by=d["triggered_by"],
        started_at=started,
        recordings_total=int(d["recordings_total"]),
        bytes_total=int(d["bytes_total"]),
        state=ScrubState(d["state"]),
        finished_at=_utc(d.get("finished_at")),
        recordings_checked=int(d["recordings_checked"]),
        bytes_checked=int(d["bytes_checked"]),
        failures=int(d["failures"]),
    )


class MongoScrubRunRepository(ScrubRunRepository):
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        # Writes hold servicekit's per-document locks (FerretDB v1 applies racing updates non-atomically).
        self._runs: AsyncCollection[Document] = serialized(db[SCRUB_RUNS])
        self._lock: AsyncCollection[Document] = serialized(db[SCRUB_LOCK])

    @staticmethod
    def indexes() -> Mapping[str, Sequence[IndexSpec]]:
        return {SCRUB_RUNS: [IndexSpec([("state", 1), ("finished_at", -1)], name="state_finished")]}

    async def try_lock(self, run_id: str, until: datetime, now: datetime) -> bool:
        try:
            got = await self._lock.find_one_and_update(
                {"_id": _LOCK_ID, "$or": [{"holder": None}, {"holder": run_id}, {"until": {"$lt": now}}]},
                {"$set": {"holder": run_id, "until": until}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            return False
        return got is not None and got.get("holder") == run_id

    async def release(self, run_id: str) -> None:
        await self._lock.update_one({"_id": _LOCK_ID, "holder": run_id}, {"$set": {"holder": None}})

    async def put(self, run: ScrubRun) -> None:
        await self._runs.replace_one({"_id": run.run_id}, _run_doc(run), upsert=True)

    async def running(self) -> ScrubRun | None:
        lock = await self._lock.find_one({"_id": _LOCK_ID})
        if not lock or not lock.get("holder"):
            return None
        until = _utc(lock.get("until"))
        if until is None or until < datetime.now(UTC):
            return None
        d = await self._runs.find_one({"_id": lock["holder"]})
        return None if d is None else _run_from(d)

    async def last_finished(self) -> ScrubRun | None:
        d = await self._runs.find_one(
            {"state": {"$in": [ScrubState.FINISHED.value, ScrubState.ABORTED.value]}},
            sort=[("finished_at", DESCENDING)],
        )
        return None if d is None else _run_from(d)
