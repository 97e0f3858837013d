"""R16 (查阅须经批准): access requests, decisions by someone else with the right role, signed grants,
revocation and expiry — through the real handlers with in-memory ports and the real Ed25519 signer."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from access_support import DEPUTY, HEAD_A, HEAD_B, INSPECTOR, LEGAL, OFFICER, World
from access_svc.adapters.signing import GRANT_CONTEXT, TOKEN_PREFIX
from access_svc.domain.model import GrantedAction, RequestState, Resource, ResourceKind
from lawtrail.access.v1 import access_grant_pb2 as gpb
from servicekit.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied

REC = Resource(ResourceKind.RECORDING, "rec-1")


async def ask(world: World, who=OFFICER, resources=(REC,), minutes: int = 30):  # type: ignore[no-untyped-def]
    world.owners.units[(ResourceKind.RECORDING, "rec-1")] = "unit-a"
    return await world.access.request_access(
        who,
        resources=resources,
        actions=(GrantedAction.DOWNLOAD,),
        purpose="reconsideration",
        duration=timedelta(minutes=minutes),
    )


async def test_r16_request_is_recorded_pending_with_its_owning_units(world: World) -> None:
    request = await ask(world)
    assert request.state is RequestState.PENDING
    assert request.owning_units == ("unit-a",)
    assert request.requester == "officer-1"
    assert type(world.requests.events[-1]).__name__ == "AccessRequested"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"resources": ()}, "resources: name at least one"),
        ({"actions": ()}, "actions: name at least one"),
        ({"purpose": "  "}, "purpose is required"),
        ({"duration": timedelta(seconds=10)}, "duration: 10 s is outside"),
        ({"duration": timedelta(days=2)}, "duration: 172800 s is outside"),
        ({"resources": (Resource(ResourceKind.CASE, ""),)}, r"resources\[0\].id is required"),
    ],
)
async def test_r16_bad_requests_name_the_field(world: World, change: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "resources": (REC,),
        "actions": (GrantedAction.VIEW,),
        "purpose": "review",
        "duration": timedelta(minutes=5),
        **change,
    }
    with pytest.raises(InvalidArgument, match=message):
        await world.access.request_access(OFFICER, **fields)  # type: ignore[arg-type]
    assert world.requests.docs == {}


async def test_r16_the_requester_never_approves_their_own_request(world: World) -> None:
    request = await ask(world, who=DEPUTY)
    with pytest.raises(PermissionDenied, match="cannot decide their own request"):
        await world.access.decide(DEPUTY, request.request_id, approve=True, reason="me")
    assert world.requests.docs[request.request_id].state is RequestState.PENDING


async def test_r16_a_head_of_another_unit_or_an_officer_cannot_decide(world: World) -> None:
    request = await ask(world)
    with pytest.raises(PermissionDenied, match="covers records of unit-a"):
        await world.access.decide(HEAD_B, request.request_id, approve=True, reason="ok")
    with pytest.raises(PermissionDenied, match="needs UNIT_HEAD of the owning unit or LEGAL_OFFICE"):
        await world.access.decide(INSPECTOR, request.request_id, approve=True, reason="ok")


async def test_r16_a_unit_head_cannot_approve_a_record_of_unknown_unit_but_legal_office_can(
    world: World,
) -> None:
    request = await ask(world, resources=(Resource(ResourceKind.CASE, "case-unknown"),))
    with pytest.raises(FailedPrecondition, match="not known to access-svc yet"):
        await world.access.decide(HEAD_A, request.request_id, approve=True, reason="ok")
    approved = await world.access.decide(LEGAL, request.request_id, approve=True, reason="ok")
    assert approved.state is RequestState.APPROVED


async def test_r16_approval_signs_a_grant_with_key_id_for_the_requester(world: World) -> None:
    request = await ask(world, minutes=30)
    approved = await world.access.decide(HEAD_A, request.request_id, approve=True, reason="hearing")
    assert approved.grant is not None
    assert approved.grant.approver_subject == "head-a"
    assert approved.grant.grantee_subject == "officer-1"
    assert approved.grant.expires_at - approved.grant.issued_at == timedelta(minutes=30)
    token = approved.grant_token
    assert token.startswith(TOKEN_PREFIX)
    raw = token[len(TOKEN_PREFIX) :]
    signed = gpb.SignedAccessGrant.FromString(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    assert signed.key_id == world.signer.key_id
    world.key.public_key().verify(signed.signature, GRANT_CONTEXT + signed.grant)
    body = gpb.AccessGrant.FromString(signed.grant)
    assert (body.grant_id, body.approver_subject, body.grantee_subject) == (
        approved.grant.grant_id,
        "head-a",
        "officer-1",
    )
    assert list(body.actions) == [gpb.GRANTED_ACTION_DOWNLOAD]
    kinds = [type(e).__name__ for e in world.requests.events]
    assert kinds == ["AccessRequested", "AccessRequestApproved"]


async def test_r16_a_request_is_decided_once(world: World) -> None:
    request = await ask(world)
    await world.access.decide(HEAD_A, request.request_id, approve=False, reason="not needed")
    with pytest.raises(FailedPrecondition, match="is DENIED, not PENDING"):
        await world.access.decide(LEGAL, request.request_id, approve=True, reason="overrule")


async def test_r16_revocation_and_grant_status(world: World) -> None:
    request = await ask(world)
    approved = await world.access.decide(HEAD_A, request.request_id, approve=True, reason="ok")
    assert approved.grant is not None
    gid = approved.grant.grant_id
    assert (await world.access.grant_status(gid)).state is RequestState.APPROVED
    with pytest.raises(PermissionDenied, match="revoked by its approver"):
        await world.access.revoke(HEAD_B, gid, "no")
    revoked = await world.access.revoke(HEAD_A, gid, "postponed")
    assert revoked.state is RequestState.REVOKED
    assert revoked.grant_token == ""
    status = await world.access.grant_status(gid)
    assert (status.state, status.reason, status.revoked_at) == (
        RequestState.REVOKED,
        "postponed",
        world.clock.now,
    )
    assert type(world.requests.events[-1]).__name__ == "AccessRevoked"
    with pytest.raises(FailedPrecondition, match="already revoked"):
        await world.access.revoke(LEGAL, gid, "again")
    assert (await world.access.grant_status("gr-unknown")).state is None
    with pytest.raises(NotFound):
        await world.access.revoke(LEGAL, "gr-unknown", "x")


async def test_r16_expired_grants_are_marked_and_reported_once(world: World) -> None:
    request = await ask(world, minutes=5)
    await world.access.decide(HEAD_A, request.request_id, approve=True, reason="ok")
    assert await world.access.expire_due() == 0
    world.clock.advance(timedelta(minutes=6))
    assert await world.access.expire_due() == 1
    assert await world.access.expire_due() == 0
    assert world.requests.docs[request.request_id].state is RequestState.EXPIRED
    assert type(world.requests.events[-1]).__name__ == "AccessGrantExpired"


async def test_r16_who_sees_which_requests(world: World) -> None:
    mine = await ask(world)
    other = await ask(world, who=DEPUTY)
    assert (await world.access.get(OFFICER, mine.request_id)).request_id == mine.request_id
    with pytest.raises(PermissionDenied):
        await world.access.get(OFFICER, other.request_id)
    with pytest.raises(PermissionDenied):
        await world.access.get(HEAD_B, mine.request_id)
    assert (await world.access.get(INSPECTOR, mine.request_id)).request_id == mine.request_id
    own = await world.access.list(OFFICER, state=None, page_size=0, page_token="")
    assert [r.request_id for r in own.requests] == [mine.request_id]
    head = await world.access.list(HEAD_A, state=None, page_size=0, page_token="")
    assert {r.request_id for r in head.requests} == {mine.request_id, other.request_id}
    page = await world.access.list(LEGAL, state=RequestState.PENDING, page_size=1, page_token="")
    assert len(page.requests) == 1
    assert page.next_page_token
    rest = await world.access.list(
        LEGAL, state=RequestState.PENDING, page_size=1, page_token=page.next_page_token
    )
    assert {page.requests[0].request_id, rest.requests[0].request_id} == {mine.request_id, other.request_id}
    with pytest.raises(InvalidArgument, match=r"page\.page_size"):
        await world.access.list(LEGAL, state=None, page_size=501, page_token="")
