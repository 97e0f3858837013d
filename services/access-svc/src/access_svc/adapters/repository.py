"""MongoDB storage of access-svc: requests (`access_requests`, one document each, embedded outbox) and the
owning-unit projection (`owners`, one document per case or recording)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from servicekit.errors import NotFound
from servicekit.mongo import IndexSpec, VersionedRepository, serialized

from access_svc.adapters.proto_mapping import outbound
from access_svc.domain import model as m
from access_svc.service_layer.ports import Owners, RequestFilter, RequestRepository

Doc = dict[str, Any]
REQUESTS = "access_requests"
OWNERS = "owners"


class RequestDocuments(VersionedRepository):
    what = "access request"
    indexes = (
        IndexSpec([("requester", 1), ("requested_at", -1), ("_id", -1)]),
        IndexSpec([("owning_units", 1), ("requested_at", -1), ("_id", -1)]),
        IndexSpec([("requested_at", -1), ("_id", -1)]),
        # ListAccessRequests filtered by state: mine, my unit's, every unit's.
        IndexSpec([("requester", 1), ("state", 1), ("requested_at", -1), ("_id", -1)]),
        IndexSpec([("owning_units", 1), ("state", 1), ("requested_at", -1), ("_id", -1)]),
        IndexSpec([("state", 1), ("requested_at", -1), ("_id", -1)]),
        IndexSpec([("state", 1), ("expires_at", 1)]),
    )


def _attr(a: m.Attribution | None) -> Doc | None:
    return None if a is None else {"subject": a.subject, "unit": a.unit, "at": a.at}


def _attr_from(d: Doc | None) -> m.Attribution | None:
    return None if d is None else m.Attribution(d["subject"], d["unit"], _utc(d["at"]))


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _resources(rs: tuple[m.Resource, ...]) -> list[Doc]:
    return [{"kind": r.kind.value, "id": r.id} for r in rs]


def _resources_from(ds: list[Doc]) -> tuple[m.Resource, ...]:
    return tuple(m.Resource(m.ResourceKind(d["kind"]), d["id"]) for d in ds)


def to_document(r: m.AccessRequest) -> Doc:
    g = r.grant
    return {
        "requester": r.requester,
        "requested": _attr(r.requested),
        "requested_at": r.requested.at,
        "resources": _resources(r.resources),
        "actions": [a.value for a in r.actions],
        "purpose": r.purpose,
        "duration_s": r.duration.total_seconds(),
        "owning_units": list(r.owning_units),
        "state": r.state.value,
        "decided": _attr(r.decided),
        "decision_reason": r.decision_reason,
        "grant": None
        if g is None
        else {
            "grant_id": g.grant_id,
            "approver_subject": g.approver_subject,
            "issued_at": g.issued_at,
            "expires_at": g.expires_at,
            "issuer": g.issuer,
        },
        "expires_at": g.expires_at if g else None,
        "grant_token": r.grant_token,
        "key_id": r.key_id,
        "revoked": _attr(r.revoked),
        "revocation_reason": r.revocation_reason,
        "recipient": r.recipient,
        "standing_order": r.standing_order,
        "filed_by": r.filed_by,
        "approvals": [
            {**(_attr(a.by) or {}), "reason": a.reason, "capacity": a.capacity} for a in r.approvals
        ],
        "packages": [
            {
                "package_sha256": p.package_sha256,
                "manifest_sha256": p.manifest_sha256,
                "files": p.files,
                "retained_copy": p.retained_copy,
                "recorded": _attr(p.recorded),
            }
            for p in r.packages
        ],
    }


def from_document(d: Doc) -> m.AccessRequest:
    requested = _attr_from(d["requested"])
    assert requested is not None
    resources = _resources_from(d["resources"])
    actions = tuple(m.GrantedAction(a) for a in d["actions"])
    grant = None
    if d.get("grant"):
        g = d["grant"]
        grant = m.Grant(
            grant_id=g["grant_id"],
            grantee_subject=d["requester"],
            grantee_unit=requested.unit,
            resources=resources,
            actions=actions,
            purpose=d["purpose"],
            approver_subject=g["approver_subject"],
            issued_at=_utc(g["issued_at"]),
            expires_at=_utc(g["expires_at"]),
            issuer=g["issuer"],
        )
    return m.AccessRequest(
        request_id=d["_id"],
        requested=requested,
        resources=resources,
        actions=actions,
        purpose=d["purpose"],
        duration=timedelta(seconds=d["duration_s"]),
        owning_units=tuple(d["owning_units"]),
        state=m.RequestState(d["state"]),
        decided=_attr_from(d.get("decided")),
        decision_reason=d.get("decision_reason", ""),
        grant=grant,
        grant_token=d.get("grant_token", ""),
        key_id=d.get("key_id", ""),
        revoked=_attr_from(d.get("revoked")),
        revocation_reason=d.get("revocation_reason", ""),
        recipient=d.get("recipient", ""),
        standing_order=d.get("standing_order", ""),
        filed_by=d.get("filed_by", ""),
        approvals=[
            m.Approval(m.Attribution(a["subject"], a["unit"], _utc(a["at"])), a["reason"], a["capacity"])
            for a in d.get("approvals", [])
        ],
        packages=[
            m.DisclosurePackage(
                p["package_sha256"],
                p["manifest_sha256"],
                p["files"],
                p["retained_copy"],
                _attr_from(p["recorded"]) or m.Attribution("", "", _utc(p["recorded"]["at"])),
            )
            for p in d.get("packages", [])
        ],
        version=d["version"],
    )


class MongoRequestRepository(RequestRepository):
    def __init__(self, documents: RequestDocuments) -> None:
        self.documents = documents

    async def get(self, request_id: str) -> m.AccessRequest:
        doc = await self.documents.get(request_id)
        if doc is None:
            raise NotFound(f"no access request {request_id!r}")
        return from_document(doc)

    async def by_grant(self, grant_id: str) -> m.AccessRequest | None:
        request_id = m.request_id_of(grant_id)
        if request_id is None:
            return None
        doc = await self.documents.get(request_id)
        if doc is None:
            return None
        request = from_document(doc)
        return request if request.grant is not None and request.grant.grant_id == grant_id else None

    async def add(self, request: m.AccessRequest) -> None:
        await self.documents.insert(
            {"_id": request.request_id, **to_document(request)}, events=outbound(request)
        )
        request.version = 1
        request.pending_events.clear()

    async def save(self, request: m.AccessRequest) -> None:
        request.version = await self.documents.update(
            request.request_id,
            expected_version=request.version,
            set_fields=to_document(request),
            events=outbound(request),
        )
        request.pending_events.clear()

    def exclusive(self, request_id: str) -> AbstractAsyncContextManager[object]:
        return self.documents.exclusive(request_id)

    async def list(
        self, where: RequestFilter, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[m.AccessRequest]:
        # One top-level `$or` whose branches each carry every condition (who × cursor position, the state
        # in each): MongoDB plans each branch of a rooted `$or` on its own index and merges them in the
        # sort order, which an `$or` nested in `$and` beside other conditions does not get (ESR, issue 9).
        who: list[Doc] = [{}]
        if not where.all_units:
            who = [{"requester": where.requester}]
            if where.unit:
                who.append({"owning_units": where.unit})
        position: list[Doc] = [{}]
        if after is not None:
            at, rid = after
            position = [{"requested_at": {"$lt": at}}, {"requested_at": at, "_id": {"$lt": rid}}]
        state: Doc = {} if where.state is None else {"state": where.state.value}
        branches = [{**w, **state, **p} for w in who for p in position]
        query: Doc = branches[0] if len(branches) == 1 else {"$or": branches}
        cursor = (
            self.documents.collection.find(query, projection={"outbox": 0, "outbox_pending": 0})
            .sort([("requested_at", -1), ("_id", -1)])
            .limit(limit)
        )
        return [from_document(d) async for d in cursor]

    async def approved_expiring_before(self, now: datetime, limit: int) -> Sequence[str]:
        cursor = self.documents.collection.find(
            {"state": m.RequestState.APPROVED.value, "expires_at": {"$lt": now}}, projection={"_id": 1}
        ).limit(limit)
        return [d["_id"] async for d in cursor]


class MongoOwners(Owners):
    """`owners`: `_id` = "<KIND>:<id>" → {unit}. Written by the projection of CaseOpened and
    RecordingIngested (an upsert setting the same value: replaying an event changes nothing); and
    `_id` = "HOLD:<case id>" for each case retention-svc announced a long-term hold on (LongTermHoldPlaced),
    which the standing order `r13-offline-copy` requires."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self._collection = serialized(collection)

    async def record(self, kind: m.ResourceKind, record_id: str, unit: str) -> None:
        await self._collection.update_one(
            {"_id": f"{kind.value}:{record_id}"}, {"$set": {"unit": unit}}, upsert=True
        )

    async def record_hold(self, case_id: str, unit: str) -> None:
        """A case under a long-term hold (R13): `_id` = "HOLD:<case id>" (holds never end)."""
        await self._collection.update_one({"_id": f"HOLD:{case_id}"}, {"$set": {"unit": unit}}, upsert=True)

    async def held_cases(self, case_ids: Sequence[str]) -> frozenset[str]:
        if not case_ids:
            return frozenset()
        cursor = self._collection.find({"_id": {"$in": [f"HOLD:{c}" for c in case_ids]}})
        return frozenset([str(d["_id"]).removeprefix("HOLD:") async for d in cursor])

    async def units_of(self, resources: Sequence[m.Resource]) -> tuple[str, ...]:
        out = []
        for r in resources:
            doc = await self._collection.find_one({"_id": f"{r.kind.value}:{r.id}"})
            out.append(doc["unit"] if doc else "")
        return tuple(out)
