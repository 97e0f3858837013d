"""R13, R11b, R16: standing grants for service principals — issued under a configured standing order, to
the service it names only, within its purpose, actions, record kinds and duration, approved by the order's
named approver (never the grantee), logged as events and revocable like any grant."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from access_support import HEAD_B, LEGAL, OFFICER, World
from access_svc.adapters.proto_mapping import event_pb
from access_svc.adapters.signing import GRANT_CONTEXT, TOKEN_PREFIX
from access_svc.domain.model import GrantedAction, RequestState, Resource, ResourceKind
from access_svc.domain.standing import StandingOrderError, parse_standing_orders
from lawtrail.access.v1 import access_grant_pb2 as gpb
from servicekit.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from servicekit.policy import Actor

RETENTION = Actor("retention-svc", "lawtrail-services", frozenset({"SERVICE"}))
CASE = Resource(ResourceKind.CASE, "case-1")
REC = Resource(ResourceKind.RECORDING, "rec-1")


async def standing(world: World, who: Actor = RETENTION, **change: object):  # type: ignore[no-untyped-def]
    fields: dict[str, object] = {
        "order_id": "r13-offline-copy",
        "resources": (CASE,),
        "actions": (GrantedAction.DOWNLOAD,),
        "purpose": "R13 offline copy oc-1 of held case case-1",
        "duration": timedelta(minutes=30),
        **change,
    }
    return await world.access.request_standing_grant(who, **fields)  # type: ignore[arg-type]


def body_of(token: str, world: World) -> gpb.AccessGrant:
    assert token.startswith(TOKEN_PREFIX)
    raw = token[len(TOKEN_PREFIX) :]
    signed = gpb.SignedAccessGrant.FromString(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    world.key.public_key().verify(signed.signature, GRANT_CONTEXT + signed.grant)
    return gpb.AccessGrant.FromString(signed.grant)


async def test_r13_standing_order_issues_a_signed_grant_approved_by_its_named_approver(world: World) -> None:
    world.owners.units[(ResourceKind.CASE, "case-1")] = "unit-a"
    world.owners.holds.add("case-1")
    request = await standing(world)
    assert request.state is RequestState.APPROVED
    assert request.standing_order == "r13-offline-copy"
    assert request.owning_units == ("unit-a",)
    body = body_of(request.grant_token, world)
    assert body.grantee_subject == "retention-svc"
    assert body.approver_subject == "legal-demo"  # the order's approver, never the grantee (R16)
    assert body.issuer == "access-svc"
    assert list(body.actions) == [gpb.GRANTED_ACTION_DOWNLOAD]
    assert [(r.kind, r.id) for r in body.resources] == [(gpb.GRANT_RESOURCE_KIND_CASE, "case-1")]
    assert body.expires_at.ToDatetime() - body.issued_at.ToDatetime() == timedelta(minutes=30)
    kinds = [type(e).__name__ for e in world.requests.events]
    assert kinds == ["AccessRequested", "AccessRequestApproved"]
    asked, approved = (event_pb(e) for e in world.requests.events)  # type: ignore[arg-type]
    assert asked.standing_order == approved.standing_order == "r13-offline-copy"
    assert approved.decided.subject == "legal-demo"
    assert "第十三条" in approved.reason
    assert "approved by legal-demo" in approved.reason
    assert approved.approvals[0].subject == "legal-demo"


async def test_r13_offline_copy_order_covers_held_cases_only(world: World) -> None:
    with pytest.raises(FailedPrecondition, match=r"R13: .* knows no long-term hold on case-1"):
        await standing(world)
    assert world.requests.docs == {}
    world.owners.holds.add("case-1")  # retention-svc's LongTermHoldPlaced arrived
    assert (await standing(world)).state is RequestState.APPROVED


async def test_r11b_archive_order_covers_one_units_known_recordings_by_id_only(world: World) -> None:
    with pytest.raises(FailedPrecondition, match=r"R11b: .* the unit of rec-1, rec-2 is not known"):
        await standing(
            world,
            order_id="r11b-archive-backup",
            resources=(REC, Resource(ResourceKind.RECORDING, "rec-2")),
            purpose="R11b monthly archive backup ab-1 of unit unit-a, 2026-10",
        )
    world.owners.units[(ResourceKind.RECORDING, "rec-1")] = "unit-a"
    world.owners.units[(ResourceKind.RECORDING, "rec-2")] = "unit-b"
    with pytest.raises(InvalidArgument, match="covers one unit's records per grant; these belong to unit-a"):
        await standing(
            world,
            order_id="r11b-archive-backup",
            resources=(REC, Resource(ResourceKind.RECORDING, "rec-2")),
            purpose="R11b monthly archive backup ab-1 of unit unit-a, 2026-10",
        )
    world.owners.units[(ResourceKind.RECORDING, "rec-2")] = "unit-a"
    request = await standing(
        world,
        order_id="r11b-archive-backup",
        resources=(REC, Resource(ResourceKind.RECORDING, "rec-2")),
        purpose="R11b monthly archive backup ab-1 of unit unit-a, 2026-10",
    )
    assert [r.id for r in request.resources] == ["rec-1", "rec-2"]
    with pytest.raises(InvalidArgument, match=r"resources\[0\].kind: .* covers RECORDING only, not CASE"):
        await standing(
            world, order_id="r11b-archive-backup", purpose="R11b monthly archive backup ab-2 of unit unit-a"
        )


@pytest.mark.parametrize(
    "who",
    [
        OFFICER,  # a person
        LEGAL,  # even the legal affairs office does not take a service's standing grant
        Actor("compliance-svc", "lawtrail-services", frozenset({"SERVICE"})),  # another service
        Actor("retention-svc", "lawtrail-services", frozenset({"OFFICER"})),  # the name without the role
    ],
)
async def test_r16_only_the_named_service_holds_a_standing_grant(world: World, who: Actor) -> None:
    with pytest.raises(PermissionDenied, match="R16: standing order r13-offline-copy is held by service"):
        await standing(world, who=who)
    assert world.requests.docs == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"order_id": "everything"}, "standing_order: no standing order 'everything' .known: r11b-"),
        ({"resources": (REC,)}, r"resources\[0\].kind: standing order r13-offline-copy covers CASE only"),
        ({"actions": (GrantedAction.EXPORT,)}, r"actions\[0\]: .* allows DOWNLOAD only, not EXPORT"),
        ({"purpose": "curiosity"}, "purpose: under standing order r13-offline-copy it begins with"),
        ({"duration": timedelta(hours=3)}, "duration: 10800 s is longer than standing order"),
        ({"duration": timedelta(seconds=5)}, "duration: 5 s is outside"),
        ({"resources": ()}, "resources: name at least one"),
    ],
)
async def test_r16_standing_grant_is_exactly_what_the_order_approved(
    world: World, change: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await standing(world, **change)
    assert world.requests.docs == {}


async def test_r16_standing_grant_is_revocable_and_its_revocation_is_an_event(world: World) -> None:
    world.owners.holds.add("case-1")
    request = await standing(world)
    assert request.grant is not None
    with pytest.raises(PermissionDenied):  # a unit head of no owning unit cannot
        await world.access.revoke(HEAD_B, request.grant.grant_id, "no")
    revoked = await world.access.revoke(LEGAL, request.grant.grant_id, "copy no longer needed")
    assert revoked.state is RequestState.REVOKED
    assert type(world.requests.events[-1]).__name__ == "AccessRevoked"
    status = await world.access.grant_status(request.grant.grant_id)
    assert status.state is RequestState.REVOKED


BASE = {
    "id": "x",
    "grantee": "retention-svc",
    "purpose_prefix": "R13",
    "actions": ["DOWNLOAD"],
    "resource_kinds": ["CASE"],
    "max_duration": "2h",
    "approver": "legal-demo",
    "approver_unit": "legal-office",
    "approved_on": "2026-11-29",
    "basis": "第十三条",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"approver": "retention-svc"}, r"order\[0\].approver: 'retention-svc' is the grantee; R16"),
        ({"actions": ["DELETE"]}, r"order\[0\].actions: 'DELETE' is not a valid GrantedAction"),
        ({"resource_kinds": []}, r"order\[0\].resource_kinds: required"),
        ({"max_duration": "3d"}, r"order\[0\].max_duration: write minutes or hours"),
        ({"max_duration": "25h"}, r"order\[0\].max_duration: between 1m and 24h"),
        ({"basis": ""}, r"order\[0\].basis: required"),
        ({"grantees": "x"}, r"order\[0\]: unknown keys \['grantees'\]"),
        ({"requires": ["held"]}, r"order\[0\].requires: a list of held-case, one-unit"),
    ],
)
def test_r16_invalid_standing_orders_fail_naming_the_order_and_field(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(StandingOrderError, match=message):
        parse_standing_orders({"order": [{**BASE, **change}]})


def test_r16_an_order_defined_twice_is_refused() -> None:
    with pytest.raises(StandingOrderError, match=r"order\[1\].id: 'x' is defined twice"):
        parse_standing_orders({"order": [BASE, BASE]})


COMPLIANCE = Actor("compliance-svc", "lawtrail-services", frozenset({"SERVICE"}))


async def test_r22_a_service_files_a_request_for_a_reviewer_who_gets_the_grant_and_never_decides_it(
    world: World,
) -> None:
    world.owners.units[(ResourceKind.RECORDING, "rec-1")] = "unit-a"
    filed = await world.access.request_access(
        COMPLIANCE,
        resources=(REC,),
        actions=(GrantedAction.VIEW, GrantedAction.DOWNLOAD),
        purpose="R22 spot check sc-1: review of 1 item(s) of unit unit-a",
        duration=timedelta(hours=24),
        on_behalf_of="reviewer-1",
    )
    assert (filed.requester, filed.filed_by, filed.state) == (
        "reviewer-1",
        "compliance-svc",
        RequestState.PENDING,
    )
    assert event_pb(world.requests.events[0]).filed_by == "compliance-svc"  # type: ignore[arg-type]
    reviewer = Actor("reviewer-1", "unit-a", frozenset({"UNIT_HEAD"}))
    with pytest.raises(PermissionDenied, match="cannot decide their own request"):
        await world.access.decide(reviewer, filed.request_id, approve=True, reason="mine")
    approved = await world.access.decide(LEGAL, filed.request_id, approve=True, reason="spot check")
    assert approved.grant is not None
    assert approved.grant.grantee_subject == "reviewer-1"
    assert body_of(approved.grant_token, world).grantee_subject == "reviewer-1"


async def test_r16_a_person_cannot_file_a_request_for_someone_else(world: World) -> None:
    with pytest.raises(PermissionDenied, match="only a service files an access request on someone's behalf"):
        await world.access.request_access(
            OFFICER,
            resources=(REC,),
            actions=(GrantedAction.VIEW,),
            purpose="for a friend",
            duration=timedelta(hours=1),
            on_behalf_of="officer-2",
        )
    assert world.requests.docs == {}
