"""R8, one policy for every service: case-svc, media-svc and access-svc are asked the same permission
questions and must give the same answers — the answers servicekit.policy's role groups give
(docs/permissions.md).

Each service is driven through its real handlers (its composition root, on the in-memory fakes its own
unit tests use): read a record of unit-a, and act on it (case-svc records an activity; media-svc explains
an interruption before a recording and records maintenance of a device — each a unit member's action with
no supervision grant; linking a recording has one since issue 8: the legal affairs office links across
units, R5).

access-svc's record of unit-a is an access request for a recording of unit-a, made by someone else
(rick, an officer of unit-a — the requester may always read their own request, R16). Its grants are
narrower than a unit member's plain read and act, and declared so with the same role groups: reading
is ``Grant.read({UNIT_HEAD})`` (the unit's head and every unit's readers, not its officers: a request
may concern an officer's own conduct), deciding is ``Grant.act({UNIT_HEAD}, supervised=True)`` (the
unit's head, and the legal affairs office across units). Its expected answers are what those declared
grants give (``Resource.may``), and its refusals must name R8 like everyone's.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from servicekit.errors import PermissionDenied
from servicekit.policy import EVERY_UNIT_READERS, UNIT_MEMBERS, Actor, Grant, Resource, Role

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# The services' own unit-test fakes (case-svc keeps them in its conftest, media-svc in media_fakes.py).
case_world = _load("r08_case_world", ROOT / "services/case-svc/tests/unit/conftest.py")
sys.path.insert(0, str(ROOT / "services/media-svc/tests/unit"))
import media_fakes  # noqa: E402
from media_svc.bootstrap import build_handlers as build_media_handlers  # noqa: E402
from media_svc.domain import commands as mc  # noqa: E402
from media_svc.domain.devices import Device  # noqa: E402
from media_svc.domain.recordings import Attribution, Classification, MediaFacts, MediaKind, Recording  # noqa: E402

access_world = _load("r08_access_world", ROOT / "services/access-svc/tests/unit/access_support.py")
from access_svc.domain import model as am  # noqa: E402
from access_svc.domain.permissions import ACCESS_REQUESTS, Action  # noqa: E402

T0 = datetime(2026, 5, 4, 1, 0, tzinfo=UTC)
ALLOWED, DENIED = "allowed", "PERMISSION_DENIED"

# (who, the caller, may read a record of unit-a, may act on it)
QUESTIONS: list[tuple[str, Actor, str, str]] = [
    (
        "an officer of the record's unit",
        Actor("alice", "unit-a", frozenset({Role.OFFICER})),
        ALLOWED,
        ALLOWED,
    ),
    (
        "a unit head of the record's unit",
        Actor("hank", "unit-a", frozenset({Role.UNIT_HEAD})),
        ALLOWED,
        ALLOWED,
    ),
    ("an officer of another unit", Actor("bob", "unit-b", frozenset({Role.OFFICER})), DENIED, DENIED),
    ("a unit head of another unit", Actor("bea", "unit-b", frozenset({Role.UNIT_HEAD})), DENIED, DENIED),
    (
        "the legal affairs office",
        Actor("lena", "legal-office", frozenset({Role.LEGAL_OFFICE})),
        ALLOWED,
        DENIED,
    ),
    ("an inspector", Actor("ivan", "inspection", frozenset({Role.INSPECTOR})), ALLOWED, DENIED),
]

Ask = Callable[[Actor], Awaitable[object]]


async def _answer(ask: Ask, actor: Actor) -> str:
    try:
        await ask(actor)
    except PermissionDenied as refused:
        message = refused.message
    else:
        return ALLOWED
    assert message.startswith("R8: "), message  # every refusal names the rule
    return DENIED


async def case_svc() -> tuple[Ask, Ask]:
    cases, contents, clock = (
        case_world.InMemoryCaseRepository(),
        case_world.InMemoryContentStore(),
        case_world.Clock(),
    )
    rules = case_world.load_rules()
    handlers = case_world.build_handlers(cases, contents, rules=rules, clock=clock)
    world = case_world.World(handlers, cases, contents, clock, rules)
    case = await world.open(by=case_world.OFFICER)

    async def read(actor: Actor) -> object:
        return await world.handlers.get_case(case.case_id, actor)

    async def act(actor: Actor) -> object:
        return await world.handlers.record_activity(world.activity_cmd(case.case_id), actor)

    return read, act


async def media_svc_recordings() -> tuple[Ask, Ask]:
    ports = media_fakes.fake_ports()
    handlers = build_media_handlers(ports, clock=lambda: T0 + timedelta(hours=1))
    # two segments of one device during activity act-1 of case-1, with a 5-minute gap to explain (R19c)
    await handlers.case_opened("case-1", "unit-a", "cause", ["party"])
    await handlers.activity_recorded("case-1", "act-1")
    for n, start in ((1, T0), (2, T0 + timedelta(minutes=5))):
        classification = Classification.create(
            unit="unit-a",
            device_number="CAM-1",
            officer="alice",
            recorded_from=start,
            recorded_to=start + timedelta(seconds=2),
            media_kind=MediaKind.VIDEO,
            party_informed=True,
            party="",
            case_cause="",
            case_id="case-1",
            activity_id="act-1",
        )
        recording = Recording.ingest(
            recording_id=f"rec-{n}",
            sha256=str(n) * 64,
            size_bytes=1,
            classification=classification,
            facts=MediaFacts("mp4", timedelta(seconds=2), ("h264",), 320, 240, None),
            findings=(),
            ingested=Attribution("alice", "unit-a", T0 + timedelta(hours=1)),
            block_hashes=b"\0" * 32,
        )
        await ports.recordings.add(recording)
    assert await handlers.settle_pending() == 2

    async def read(actor: Actor) -> object:
        return await handlers.get_recording("rec-1", actor)

    async def act(actor: Actor) -> object:
        return await handlers.explain_interruption(
            mc.ExplainInterruption("rec-2", written_text="battery changed"), actor
        )

    return read, act


async def media_svc_devices() -> tuple[Ask, Ask]:
    devices = media_fakes.InMemoryDeviceRepository()
    handlers = build_media_handlers(media_fakes.fake_ports(devices=devices), clock=lambda: T0)
    device = Device.register(device_number="BC-1", unit="unit-a", model="DSJ-X1", by="hank", at=T0)
    await devices.add(device, list(device.events))

    async def read(actor: Actor) -> object:
        return await handlers.get_device("BC-1", actor)

    async def act(actor: Actor) -> object:
        return await handlers.record_maintenance(mc.RecordMaintenance("BC-1", "firmware 2.1"), actor)

    return read, act


async def access_svc_requests() -> tuple[Ask, Ask]:
    world = access_world.make_world()
    world.owners.units[(am.ResourceKind.RECORDING, "rec-1")] = "unit-a"
    requester = Actor("rick", "unit-a", frozenset({Role.OFFICER}))
    request = await world.access.request_access(
        requester,
        resources=(am.Resource(am.ResourceKind.RECORDING, "rec-1"),),
        actions=(am.GrantedAction.DOWNLOAD,),
        purpose="review of the stop on 4 May",
        duration=timedelta(hours=1),
    )

    async def read(actor: Actor) -> object:
        return await world.access.get(actor, request.request_id)

    async def act(actor: Actor) -> object:
        return await world.access.decide(
            actor, request.request_id, approve=True, reason="needed for the review"
        )

    return read, act


SERVICES = {
    "case-svc cases": case_svc,
    "media-svc recordings": media_svc_recordings,
    "media-svc devices": media_svc_devices,
    "access-svc access requests": access_svc_requests,
}

# Services whose read and act are not a unit member's plain ones: the declared grants they answer by.
DECLARED: dict[str, tuple[Resource[Action], Action, Action]] = {
    "access-svc access requests": (ACCESS_REQUESTS, Action.READ_REQUESTS, Action.DECIDE),
}


def _declared(actor: Actor, resource: Resource[Action], action: Action) -> str:
    return ALLOWED if resource.may(actor, action, "unit-a") else DENIED


@pytest.mark.parametrize(("who", "actor", "read", "act"), QUESTIONS, ids=[q[0] for q in QUESTIONS])
async def test_r08_every_service_answers_the_same_question_the_same_way(
    who: str, actor: Actor, read: str, act: str
) -> None:
    answers, expected = {}, {}
    for name, service in SERVICES.items():
        ask_read, ask_act = await service()
        answers[name] = (await _answer(ask_read, actor), await _answer(ask_act, actor))
        if name in DECLARED:
            resource, reading, acting = DECLARED[name]
            expected[name] = (_declared(actor, resource, reading), _declared(actor, resource, acting))
        else:
            expected[name] = (read, act)
    assert answers == expected, who


def test_r08_access_svc_declares_its_grants_with_the_role_groups_of_the_one_policy() -> None:
    """What access-svc's answers are measured against (and what docs/permissions.md shows): a read by the
    unit's head plus every unit's readers, a supervised act of the unit's head."""
    read, decide = ACCESS_REQUESTS.grants[Action.READ_REQUESTS], ACCESS_REQUESTS.grants[Action.DECIDE]
    assert (read.own_unit, read.any_unit) == ({Role.UNIT_HEAD}, EVERY_UNIT_READERS)
    assert (decide.own_unit, decide.any_unit) == ({Role.UNIT_HEAD}, Grant.act((), supervised=True).any_unit)


def test_r08_the_questions_cover_the_role_groups_of_the_one_policy() -> None:
    asked = {role for _, actor, _, _ in QUESTIONS for role in actor.roles}
    assert asked >= UNIT_MEMBERS
    assert asked >= EVERY_UNIT_READERS
