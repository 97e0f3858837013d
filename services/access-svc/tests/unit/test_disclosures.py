"""R14, R15: an export or disclosure names the receiving body and needs two approvals by two different
people — the legal affairs office and the owning unit's head — neither of them the requester; the package
built for it is recorded with its retained copy (DisclosurePackageCreated)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from access_support import DEPUTY, HEAD_A, HEAD_B, LEGAL, OFFICER, World
from access_svc.domain.model import GrantedAction, RequestState, Resource, ResourceKind
from servicekit.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from servicekit.policy import Actor

REC = Resource(ResourceKind.RECORDING, "rec-1")
LEGAL_2 = Actor("legal-2", "legal", frozenset({"LEGAL_OFFICE"}))
SHA = "ab" * 32


async def disclosure(world: World, who: Actor = OFFICER):  # type: ignore[no-untyped-def]
    world.owners.units[(ResourceKind.RECORDING, "rec-1")] = "unit-a"
    return await world.access.request_access(
        who,
        resources=(REC,),
        actions=(GrantedAction.DOWNLOAD, GrantedAction.EXPORT),
        purpose="administrative reconsideration",
        duration=timedelta(hours=2),
        recipient="City Administrative Reconsideration Committee",
    )


async def test_r15_a_disclosure_is_approved_only_by_legal_office_and_unit_head_together(world: World) -> None:
    request = await disclosure(world)
    first = await world.access.decide(LEGAL, request.request_id, approve=True, reason="lawful request")
    assert first.state is RequestState.PENDING
    assert first.grant is None
    assert type(world.requests.events[-1]).__name__ == "DisclosureApprovalRecorded"
    second = await world.access.decide(HEAD_A, request.request_id, approve=True, reason="material is ours")
    assert second.state is RequestState.APPROVED
    assert second.grant is not None
    assert [(a.by.subject, a.capacity) for a in second.approvals] == [
        ("legal-1", "LEGAL_OFFICE"),
        ("head-a", "UNIT_HEAD"),
    ]
    approved = world.requests.events[-1]
    assert type(approved).__name__ == "AccessRequestApproved"
    assert approved.recipient == "City Administrative Reconsideration Committee"  # type: ignore[attr-defined]


async def test_r15_two_approvals_in_the_same_capacity_or_by_the_same_person_are_refused(world: World) -> None:
    request = await disclosure(world)
    await world.access.decide(LEGAL, request.request_id, approve=True, reason="ok")
    with pytest.raises(PermissionDenied, match="already approved"):
        await world.access.decide(LEGAL, request.request_id, approve=True, reason="again")
    with pytest.raises(PermissionDenied, match="still needs the approval of the owning unit's head"):
        await world.access.decide(LEGAL_2, request.request_id, approve=True, reason="me too")
    with pytest.raises(PermissionDenied, match="covers records of unit-a"):
        await world.access.decide(HEAD_B, request.request_id, approve=True, reason="other unit")
    assert world.requests.docs[request.request_id].state is RequestState.PENDING


async def test_r15_the_requester_never_approves_their_disclosure(world: World) -> None:
    request = await disclosure(world, who=DEPUTY)
    with pytest.raises(PermissionDenied, match="cannot decide their own request"):
        await world.access.decide(DEPUTY, request.request_id, approve=True, reason="mine")


async def test_r14_the_package_is_recorded_once_approved_by_the_requester_only(world: World) -> None:
    request = await disclosure(world)
    with pytest.raises(FailedPrecondition, match="is PENDING"):
        await world.access.record_package(
            OFFICER, request.request_id, package_sha256=SHA, manifest_sha256=SHA, files=1, retained_copy="x"
        )
    await world.access.decide(LEGAL, request.request_id, approve=True, reason="ok")
    await world.access.decide(HEAD_A, request.request_id, approve=True, reason="ok")
    with pytest.raises(PermissionDenied, match="only the requester"):
        await world.access.record_package(
            LEGAL, request.request_id, package_sha256=SHA, manifest_sha256=SHA, files=1, retained_copy="x"
        )
    with pytest.raises(InvalidArgument, match="package_sha256 must be 64 lowercase hex"):
        await world.access.record_package(
            OFFICER, request.request_id, package_sha256="xyz", manifest_sha256=SHA, files=1, retained_copy="x"
        )
    recorded = await world.access.record_package(
        OFFICER,
        request.request_id,
        package_sha256=SHA,
        manifest_sha256=SHA,
        files=1,
        retained_copy="archive room shelf 4, disc 2026-11-0003",
    )
    assert recorded.packages[0].retained_copy == "archive room shelf 4, disc 2026-11-0003"
    assert type(world.requests.events[-1]).__name__ == "DisclosurePackageCreated"


async def test_r16_an_ordinary_request_has_no_package(world: World) -> None:
    world.owners.units[(ResourceKind.RECORDING, "rec-1")] = "unit-a"
    request = await world.access.request_access(
        OFFICER,
        resources=(REC,),
        actions=(GrantedAction.VIEW,),
        purpose="review",
        duration=timedelta(hours=1),
    )
    await world.access.decide(HEAD_A, request.request_id, approve=True, reason="ok")
    with pytest.raises(FailedPrecondition, match="not a disclosure"):
        await world.access.record_package(
            OFFICER, request.request_id, package_sha256=SHA, manifest_sha256=SHA, files=1, retained_copy="x"
        )


async def test_r23_ledger_entries_are_listed_by_subject(world: World) -> None:
    await world.ledger.append(b"a", "s\x1f1", subject="ar-1")
    await world.ledger.append(b"b", "s\x1f2", subject="rec-1")
    await world.ledger.append(b"c", "s\x1f3", subject="ar-1")
    assert await world.ledger.entries_about("ar-1") == [0, 2]
    with pytest.raises(InvalidArgument, match="ce_subject is required"):
        await world.ledger.entries_about(" ")
