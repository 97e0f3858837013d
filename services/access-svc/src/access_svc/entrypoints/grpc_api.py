"""The gRPC servicers of access-svc: AccessService, AccessGrantStatusService, LedgerService.

No rules live here: protobuf → domain values → handlers → protobuf. The caller comes from servicekit's
authentication interceptor; domain errors become status codes in servicekit's error interceptor.
"""

from __future__ import annotations

from typing import Any

from lawtrail.access.v1 import access_grant_pb2 as gpb
from lawtrail.access.v1 import access_grant_pb2_grpc as gpb_grpc
from lawtrail.access.v1 import access_service_pb2 as api
from lawtrail.access.v1 import access_service_pb2_grpc as api_grpc
from lawtrail.access.v1 import ledger_service_pb2 as lpb
from lawtrail.access.v1 import ledger_service_pb2_grpc as lpb_grpc
from lawtrail.common.v1 import common_pb2
from servicekit.auth import current_actor
from servicekit.errors import InvalidArgument
from servicekit.grpc import ANY_AUTHENTICATED
from servicekit.policy import rpc_actions, rpc_role_policy

from access_svc.adapters.proto_mapping import (
    STATES,
    actions_from_pb,
    checkpoint_pb,
    request_pb,
    resources_from_pb,
    ts,
)
from access_svc.domain import permissions
from access_svc.domain.model import RequestState, text
from access_svc.service_layer.handlers import AccessHandlers
from access_svc.service_layer.ledger import LedgerHandlers

ACCESS = api.DESCRIPTOR.services_by_name["AccessService"]
STATUS = gpb.DESCRIPTOR.services_by_name["AccessGrantStatusService"]
LEDGER = lpb.DESCRIPTOR.services_by_name["LedgerService"]

_A, _L = permissions.ACCESS_REQUESTS, permissions.LEDGER
_ACT = permissions.Action
RPC_ACTIONS = {
    **rpc_actions(
        ACCESS.full_name,
        {
            "RequestAccess": (_A, _ACT.REQUEST_ACCESS),
            "DecideAccessRequest": (_A, _ACT.DECIDE),
            "GetAccessRequest": (_A, _ACT.READ_REQUESTS),
            "ListAccessRequests": (_A, _ACT.READ_REQUESTS),
            "RevokeAccessGrant": (_A, _ACT.REVOKE),
            "RecordDisclosurePackage": (_A, _ACT.RECORD_PACKAGE),
            "RequestStandingGrant": (_A, _ACT.STANDING_GRANT),
        },
    ),
    **rpc_actions(STATUS.full_name, {"GetAccessGrantStatus": (_A, _ACT.GRANT_STATUS)}),
    **rpc_actions(
        LEDGER.full_name,
        {
            "GetCheckpoint": (_L, _ACT.READ_LEDGER),
            "SignCheckpoint": (_L, _ACT.SIGN_CHECKPOINT),
            "GetLedgerEntry": (_L, _ACT.READ_LEDGER),
            "GetInclusionProof": (_L, _ACT.READ_LEDGER),
            "GetConsistencyProof": (_L, _ACT.READ_LEDGER),
            "ListLedgerEntries": (_L, _ACT.READ_LEDGER),
        },
    ),
}


def role_policy() -> dict[str, frozenset[str]]:
    """Roles the server admits per method; the domain's permission policy then decides (R8, R16).

    Derived from the declaration (`permissions.RESOURCES`), except that reading requests is open to
    any authenticated caller: the requester may hold any role (`permissions.READ_ANYONE`)."""
    policy = rpc_role_policy(RPC_ACTIONS)
    for method, (_, action) in RPC_ACTIONS.items():
        if action in permissions.READ_ANYONE:
            policy[method] = ANY_AUTHENTICATED
    return policy


caller = current_actor  # the verified caller as the domain's Actor, token scopes included (never by hand)


class AccessApi(api_grpc.AccessServiceServicer):
    def __init__(self, handlers: AccessHandlers) -> None:
        self._h = handlers

    async def RequestAccess(
        self, request: api.RequestAccessRequest, context: Any
    ) -> api.RequestAccessResponse:
        actor = caller()
        if not request.HasField("duration"):
            raise InvalidArgument("duration is required (60 s to 24 h)")
        created = await self._h.request_access(
            actor,
            resources=resources_from_pb(request.resources),
            actions=actions_from_pb(request.actions),
            purpose=request.purpose,
            duration=request.duration.ToTimedelta(),
            recipient=request.recipient,
            on_behalf_of=request.on_behalf_of,
        )
        return api.RequestAccessResponse(request=request_pb(created, with_token=False))

    async def DecideAccessRequest(
        self, request: api.DecideAccessRequestRequest, context: Any
    ) -> api.DecideAccessRequestResponse:
        if request.decision not in (api.ACCESS_DECISION_APPROVE, api.ACCESS_DECISION_DENY):
            raise InvalidArgument("decision: APPROVE or DENY")
        decided = await self._h.decide(
            caller(),
            request.request_id,
            approve=request.decision == api.ACCESS_DECISION_APPROVE,
            reason=request.reason,
        )
        return api.DecideAccessRequestResponse(request=request_pb(decided, with_token=False))

    async def GetAccessRequest(
        self, request: api.GetAccessRequestRequest, context: Any
    ) -> api.GetAccessRequestResponse:
        actor = caller()
        found = await self._h.get(actor, request.request_id)
        return api.GetAccessRequestResponse(
            request=request_pb(found, with_token=actor.subject == found.requester)
        )

    async def ListAccessRequests(
        self, request: api.ListAccessRequestsRequest, context: Any
    ) -> api.ListAccessRequestsResponse:
        actor = caller()
        state: RequestState | None = None
        if request.state != api.ACCESS_REQUEST_STATE_UNSPECIFIED:
            if request.state not in STATES:
                raise InvalidArgument(f"state: unknown value {request.state}")
            state = STATES[request.state]
        page = await self._h.list(
            actor, state=state, page_size=request.page.page_size, page_token=request.page.page_token
        )
        return api.ListAccessRequestsResponse(
            requests=[request_pb(r, with_token=actor.subject == r.requester) for r in page.requests],
            page=common_pb2.PageResponse(next_page_token=page.next_page_token),
        )

    async def RevokeAccessGrant(
        self, request: api.RevokeAccessGrantRequest, context: Any
    ) -> api.RevokeAccessGrantResponse:
        revoked = await self._h.revoke(caller(), request.grant_id, request.reason)
        return api.RevokeAccessGrantResponse(request=request_pb(revoked, with_token=False))

    async def RecordDisclosurePackage(
        self, request: api.RecordDisclosurePackageRequest, context: Any
    ) -> api.RecordDisclosurePackageResponse:
        recorded = await self._h.record_package(
            caller(),
            request.request_id,
            package_sha256=request.package_sha256,
            manifest_sha256=request.manifest_sha256,
            files=request.files,
            retained_copy=request.retained_copy,
        )
        return api.RecordDisclosurePackageResponse(request=request_pb(recorded, with_token=True))

    async def RequestStandingGrant(
        self, request: api.RequestStandingGrantRequest, context: Any
    ) -> api.RequestStandingGrantResponse:
        if not request.HasField("duration"):
            raise InvalidArgument("duration is required (60 s up to the standing order's maximum)")
        issued = await self._h.request_standing_grant(
            caller(),
            order_id=text(request.standing_order, "standing_order", limit=64),
            resources=resources_from_pb(request.resources),
            actions=actions_from_pb(request.actions),
            purpose=request.purpose,
            duration=request.duration.ToTimedelta(),
        )
        # The caller is the grantee (the order admitted it): it receives its token.
        return api.RequestStandingGrantResponse(request=request_pb(issued, with_token=True))


_STATUS = {
    RequestState.APPROVED: gpb.ACCESS_GRANT_STATE_ACTIVE,
    # Expiry is the verifier's own check (from the token); the status answers revocation.
    RequestState.EXPIRED: gpb.ACCESS_GRANT_STATE_ACTIVE,
    RequestState.REVOKED: gpb.ACCESS_GRANT_STATE_REVOKED,
}


class GrantStatusApi(gpb_grpc.AccessGrantStatusServiceServicer):
    def __init__(self, handlers: AccessHandlers) -> None:
        self._h = handlers

    async def GetAccessGrantStatus(
        self, request: gpb.GetAccessGrantStatusRequest, context: Any
    ) -> gpb.GetAccessGrantStatusResponse:
        status = await self._h.grant_status(request.grant_id)
        out = gpb.GetAccessGrantStatusResponse(
            state=_STATUS.get(status.state, gpb.ACCESS_GRANT_STATE_UNSPECIFIED)
            if status.state
            else gpb.ACCESS_GRANT_STATE_UNSPECIFIED,
            reason=status.reason,
        )
        if status.revoked_at is not None:
            out.revoked_at.CopyFrom(ts(status.revoked_at))
        return out


class LedgerApi(lpb_grpc.LedgerServiceServicer):
    def __init__(self, handlers: LedgerHandlers) -> None:
        self._h = handlers

    async def GetCheckpoint(
        self, request: lpb.GetCheckpointRequest, context: Any
    ) -> lpb.GetCheckpointResponse:
        return lpb.GetCheckpointResponse(checkpoint=checkpoint_pb(await self._h.latest_checkpoint()))

    async def SignCheckpoint(
        self, request: lpb.SignCheckpointRequest, context: Any
    ) -> lpb.SignCheckpointResponse:
        return lpb.SignCheckpointResponse(checkpoint=checkpoint_pb(await self._h.sign_checkpoint()))

    async def GetLedgerEntry(
        self, request: lpb.GetLedgerEntryRequest, context: Any
    ) -> lpb.GetLedgerEntryResponse:
        if request.ce_source or request.ce_id:
            if not (request.ce_source and request.ce_id):
                raise InvalidArgument("ce_source and ce_id go together (or give leaf_index alone)")
            source, event_id = (
                text(request.ce_source, "ce_source", limit=500),
                text(request.ce_id, "ce_id", limit=500),
            )
            index, leaf = await self._h.entry(key=event_key(source, event_id))
        else:
            index, leaf = await self._h.entry(index=request.leaf_index)
        return lpb.GetLedgerEntryResponse(leaf_index=index, leaf=leaf)

    async def GetInclusionProof(
        self, request: lpb.GetInclusionProofRequest, context: Any
    ) -> lpb.GetInclusionProofResponse:
        leaf_hash, proof = await self._h.inclusion_proof(request.leaf_index, request.tree_size)
        return lpb.GetInclusionProofResponse(
            leaf_index=request.leaf_index, tree_size=request.tree_size, proof=proof, leaf_hash=leaf_hash
        )

    async def GetConsistencyProof(
        self, request: lpb.GetConsistencyProofRequest, context: Any
    ) -> lpb.GetConsistencyProofResponse:
        return lpb.GetConsistencyProofResponse(
            proof=await self._h.consistency_proof(request.first_size, request.second_size)
        )

    async def ListLedgerEntries(
        self, request: lpb.ListLedgerEntriesRequest, context: Any
    ) -> lpb.ListLedgerEntriesResponse:
        return lpb.ListLedgerEntriesResponse(leaf_indexes=await self._h.entries_about(request.ce_subject))


def event_key(source: str, event_id: str) -> str:
    """The ledger's dedupe key of an event: its CloudEvents (source, id)."""
    return f"{source}\x1f{event_id}"
