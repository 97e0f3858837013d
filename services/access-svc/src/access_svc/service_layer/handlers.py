"""access-svc's use cases on requests and grants (R16): one handler per command.

Each handler checks the input, loads the one request it concerns under its lock, lets the aggregate and
the permission policy decide, and stores the request with its events in one single-document write. The
grant is signed before that write, so an approval is stored with its token or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from servicekit.errors import InvalidArgument, NotFound, PermissionDenied
from servicekit.paging import decode_page_token, encode_page_token, filters_fingerprint
from servicekit.policy import Actor, Role

from access_svc.domain import permissions
from access_svc.domain.model import (
    MAX_ID,
    AccessRequest,
    GrantedAction,
    RequestState,
    Resource,
    ResourceKind,
    grant_id_for,
    text,
)
from access_svc.domain.standing import StandingOrder
from access_svc.service_layer.ports import GrantSigner, Owners, RequestFilter, RequestRepository

Clock = Callable[[], datetime]
DEFAULT_PAGE = 50
MAX_PAGE = 500


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class RequestNotFound(NotFound):
    pass


@dataclass(frozen=True)
class RequestPage:
    requests: Sequence[AccessRequest]
    next_page_token: str


@dataclass(frozen=True)
class GrantStatus:
    state: RequestState | None  # None: unknown grant
    revoked_at: datetime | None
    reason: str


class AccessHandlers:
    def __init__(
        self,
        requests: RequestRepository,
        signer: GrantSigner,
        owners: Owners,
        clock: Clock,
        standing_orders: Mapping[str, StandingOrder] | None = None,
    ) -> None:
        self._requests = requests
        self._signer = signer
        self._owners = owners
        self._clock = clock
        self._orders = dict(standing_orders or {})

    async def request_access(
        self,
        actor: Actor,
        *,
        resources: tuple[Resource, ...],
        actions: tuple[GrantedAction, ...],
        purpose: str,
        duration: timedelta,
        recipient: str = "",
        on_behalf_of: str = "",
    ) -> AccessRequest:
        requester, filed_by = actor, ""
        if on_behalf_of.strip():
            # A service files for a person (compliance-svc for a spot check's reviewer, R22): the person
            # is the requester — they get the grant and can never decide it (R16) — and the service is
            # recorded. A person cannot file for someone else.
            if not actor.has(Role.SERVICE):
                raise PermissionDenied(
                    f"R16: only a service files an access request on someone's behalf; {actor.subject} "
                    "asks for themselves"
                )
            requester = Actor(text(on_behalf_of, "on_behalf_of", limit=MAX_ID), "", frozenset())
            filed_by = actor.subject
        units = await self._owners.units_of(resources) if resources else ()
        request = AccessRequest.open(
            request_id=new_id("ar"),
            requester=requester,
            resources=resources,
            actions=actions,
            purpose=purpose,
            duration=duration,
            owning_units=units,
            now=self._clock(),
            recipient=recipient,
            filed_by=filed_by,
        )
        if len(request.resources) != len(resources):  # duplicates dropped: look the units up again
            request.owning_units = await self._owners.units_of(request.resources)
        await self._requests.add(request)
        return request

    async def request_standing_grant(
        self,
        actor: Actor,
        *,
        order_id: str,
        resources: tuple[Resource, ...],
        actions: tuple[GrantedAction, ...],
        purpose: str,
        duration: timedelta,
    ) -> AccessRequest:
        """A grant under a standing order (R13, R11b): the request is opened, approved by the order and
        signed in one go, and stored with both events (AccessRequested, AccessRequestApproved naming the
        order) in one write — a standing grant is stored with its token or not at all."""
        order = self._orders.get(order_id.strip())
        if order is None:
            known = ", ".join(sorted(self._orders)) or "none configured"
            raise InvalidArgument(f"standing_order: no standing order {order_id.strip()!r} (known: {known})")
        order.admit(actor, resources=resources, actions=actions, purpose=purpose, duration=duration)
        now = self._clock()
        request = AccessRequest.open(
            request_id=new_id("ar"),
            requester=actor,
            resources=resources,
            actions=actions,
            purpose=purpose,
            duration=duration,
            owning_units=await self._owners.units_of(resources) if resources else (),
            now=now,
            standing_order=order.order_id,
        )
        if len(request.resources) != len(resources):
            request.owning_units = await self._owners.units_of(request.resources)
        cases = [r.id for r in request.resources if r.kind is ResourceKind.CASE]
        order.check_scope(request.resources, request.owning_units, await self._owners.held_cases(cases))
        grant = request.approve_by_standing_order(
            approver=order.approver,
            approver_unit=order.approver_unit,
            reason=order.reason(),
            grant_id=grant_id_for(request.request_id),
            now=now,
        )
        token, key_id = self._signer.sign_grant(grant)
        request.attach_token(token, key_id)
        await self._requests.add(request)
        return request

    async def _load(self, request_id: str) -> AccessRequest:
        request_id = text(request_id, "request_id", limit=100)
        return await self._requests.get(request_id)

    async def decide(self, actor: Actor, request_id: str, *, approve: bool, reason: str) -> AccessRequest:
        text(reason, "reason")
        async with self._requests.exclusive(request_id.strip()):
            request = await self._load(request_id)
            if request.state is RequestState.PENDING and any(not u for u in request.owning_units):
                # The owning unit may have become known since the request was made.
                request.owning_units = await self._owners.units_of(request.resources)
            capacity = permissions.may_decide(actor, request)
            now = self._clock()
            if approve:
                grant = request.approve(
                    actor, reason, grant_id=grant_id_for(request.request_id), now=now, capacity=capacity
                )
                if grant is not None:
                    token, key_id = self._signer.sign_grant(grant)
                    request.attach_token(token, key_id)
            else:
                request.deny(actor, reason, now=now)
            await self._requests.save(request)
        return request

    async def record_package(
        self,
        actor: Actor,
        request_id: str,
        *,
        package_sha256: str,
        manifest_sha256: str,
        files: int,
        retained_copy: str,
    ) -> AccessRequest:
        async with self._requests.exclusive(request_id.strip()):
            request = await self._load(request_id)
            if actor.subject != request.requester:
                raise PermissionDenied(
                    f"R15: only the requester of disclosure {request.request_id} records its package"
                )
            request.record_package(
                actor,
                package_sha256=package_sha256.strip(),
                manifest_sha256=manifest_sha256.strip(),
                files=files,
                retained_copy=retained_copy,
                now=self._clock(),
            )
            await self._requests.save(request)
        return request

    async def get(self, actor: Actor, request_id: str) -> AccessRequest:
        request = await self._load(request_id)
        permissions.may_read(actor, request)
        return request

    async def list(
        self, actor: Actor, *, state: RequestState | None, page_size: int, page_token: str
    ) -> RequestPage:
        if page_size < 0 or page_size > MAX_PAGE:
            raise InvalidArgument(f"page.page_size must be 0 to {MAX_PAGE}; got {page_size}")
        limit = page_size or DEFAULT_PAGE
        everything, unit = permissions.list_scope(actor)
        where = RequestFilter(everything, actor.subject, unit, state)
        fingerprint = filters_fingerprint([everything, actor.subject, unit, state.value if state else None])
        position = decode_page_token(page_token, filters=fingerprint)
        after = None
        if position is not None:
            try:
                after = (datetime.fromisoformat(position[0]), str(position[1]))
            except (ValueError, IndexError, TypeError):
                raise InvalidArgument("page.page_token: not a token this service issued") from None
        found = list(await self._requests.list(where, after, limit + 1))
        token = ""
        if len(found) > limit:
            found = found[:limit]
            last = found[-1]
            token = encode_page_token([last.requested.at.isoformat(), last.request_id], filters=fingerprint)
        return RequestPage(found, token)

    async def revoke(self, actor: Actor, grant_id: str, reason: str) -> AccessRequest:
        grant_id = text(grant_id, "grant_id", limit=100)
        text(reason, "reason")
        found = await self._requests.by_grant(grant_id)
        if found is None:
            raise NotFound(f"no grant {grant_id!r} was issued by access-svc")
        async with self._requests.exclusive(found.request_id):
            request = await self._requests.get(found.request_id)
            permissions.may_revoke(actor, request)
            request.revoke(actor, reason, now=self._clock())
            await self._requests.save(request)
        return request

    async def grant_status(self, grant_id: str) -> GrantStatus:
        grant_id = text(grant_id, "grant_id", limit=100)
        request = await self._requests.by_grant(grant_id)
        if request is None:
            return GrantStatus(None, None, "")
        if request.state is RequestState.REVOKED:
            return GrantStatus(
                RequestState.REVOKED,
                request.revoked.at if request.revoked else None,
                request.revocation_reason,
            )
        return GrantStatus(request.state, None, "")

    async def expire_due(self, limit: int = 100) -> int:
        """Marks grants past their expiry EXPIRED → AccessGrantExpired; answers how many."""
        now = self._clock()
        done = 0
        for request_id in await self._requests.approved_expiring_before(now, limit):
            async with self._requests.exclusive(request_id):
                request = await self._requests.get(request_id)
                if request.expire(now):
                    await self._requests.save(request)
                    done += 1
        return done
