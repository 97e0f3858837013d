"""The shared kernel every service uses instead of its own copy: R8 policy, clock, ids, page sizes,
topic names, time/duration/attribution mapping and the read–decide–write loop."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.case.v1 import case_events_pb2
from lawtrail.common.v1 import common_pb2
from lawtrail.media.v1 import media_events_pb2
from servicekit import clock, ids, paging, protomap, topics
from servicekit.auth import Principal, Role, acting_as, current_actor
from servicekit.errors import AlreadyExists, ConcurrencyConflict, InvalidArgument, PermissionDenied
from servicekit.policy import (
    EVERY_UNIT_READERS,
    SUPERVISORS,
    UNIT_MEMBERS,
    Actor,
    Grant,
    Resource,
    rpc_actions,
    rpc_role_policy,
    viewed_from_outside,
)
from servicekit.retry import read_decide_write


class Act(enum.StrEnum):
    READ = "read widgets"
    CHANGE = "change a widget"
    SUPERVISE = "supervise a widget"


WIDGETS: Resource[Act] = Resource(
    name="widget",
    plural="widgets",
    grants={
        Act.READ: Grant.read(UNIT_MEMBERS),
        Act.CHANGE: Grant.act(UNIT_MEMBERS),
        Act.SUPERVISE: Grant.act(UNIT_MEMBERS, supervised=True),
    },
)
OFFICER_A = Actor("alice", "unit-a", frozenset({Role.OFFICER}))
OFFICER_B = Actor("bob", "unit-b", frozenset({Role.OFFICER}))
LEGAL = Actor("lena", "legal", frozenset({Role.LEGAL_OFFICE}))
INSPECTOR = Actor("ivan", "inspection", frozenset({Role.INSPECTOR}))


def test_r08_units_act_on_their_own_records_and_another_units_record_is_permission_denied() -> None:
    WIDGETS.authorize(OFFICER_A, Act.CHANGE, "unit-a")
    with pytest.raises(
        PermissionDenied, match=r"^R8: bob \(unit 'unit-b'\) may not change a widget of unit 'unit-a'"
    ):
        WIDGETS.authorize(OFFICER_B, Act.CHANGE, "unit-a")
    with pytest.raises(PermissionDenied, match=r"across units only INSPECTOR, LEGAL_OFFICE may"):
        WIDGETS.authorize(OFFICER_B, Act.READ, "unit-a")


def test_r08_the_legal_office_and_inspectors_read_every_unit_and_only_the_legal_office_supervises() -> None:
    assert {Role.LEGAL_OFFICE, Role.INSPECTOR} == EVERY_UNIT_READERS
    assert {Role.LEGAL_OFFICE} == SUPERVISORS
    for reader in (LEGAL, INSPECTOR):
        WIDGETS.authorize(reader, Act.READ, "unit-a")
        assert WIDGETS.readable_units(reader, Act.READ) is None
        with pytest.raises(PermissionDenied, match="you need to be OFFICER, UNIT_HEAD of unit 'unit-a'"):
            WIDGETS.authorize(reader, Act.CHANGE, "unit-a")
    WIDGETS.authorize(LEGAL, Act.SUPERVISE, "unit-a")
    with pytest.raises(PermissionDenied):
        WIDGETS.authorize(INSPECTOR, Act.SUPERVISE, "unit-a")


def test_r08_lists_are_scoped_to_the_callers_unit() -> None:
    assert WIDGETS.readable_units(OFFICER_A, Act.READ) == {"unit-a"}
    with pytest.raises(PermissionDenied, match="to read widgets you need one of"):
        WIDGETS.readable_units(Actor("x", "unit-a", frozenset({Role.ARCHIVE_ROOM})), Act.READ)


def test_r08_a_listing_covers_the_unit_asked_for_or_every_unit_the_caller_may_list() -> None:
    assert WIDGETS.listed_units(OFFICER_A, Act.READ, "") == {"unit-a"}
    assert WIDGETS.listed_units(OFFICER_A, Act.READ, "unit-a") == {"unit-a"}
    assert WIDGETS.listed_units(LEGAL, Act.READ, "") is None
    assert WIDGETS.listed_units(LEGAL, Act.READ, "unit-a") == {"unit-a"}
    with pytest.raises(PermissionDenied, match="may not read widgets of unit 'unit-a'"):
        WIDGETS.listed_units(OFFICER_B, Act.READ, "unit-a")


def test_r16_views_and_searches_from_outside_the_units_viewed_are_the_ones_logged() -> None:
    assert not viewed_from_outside(OFFICER_A, ["unit-a"])
    assert viewed_from_outside(OFFICER_B, ["unit-a"])
    assert viewed_from_outside(LEGAL, ["unit-a"])
    assert viewed_from_outside(LEGAL, None), "a search over every unit is a view from outside"
    assert viewed_from_outside(OFFICER_A, None)
    assert viewed_from_outside(OFFICER_A, ["unit-a", "unit-b"])
    assert not viewed_from_outside(LEGAL, ["legal"])


def test_the_role_policy_is_derived_from_the_resource() -> None:
    actions = rpc_actions("lawtrail.w.v1.WidgetService", {"GetWidget": (WIDGETS, Act.READ)})
    assert rpc_role_policy(actions) == {
        "/lawtrail.w.v1.WidgetService/GetWidget": {
            Role.OFFICER,
            Role.UNIT_HEAD,
            Role.LEGAL_OFFICE,
            Role.INSPECTOR,
        }
    }


def test_the_caller_is_the_verified_principal_with_its_scopes() -> None:
    with acting_as(Principal("station-1", "unit-a", frozenset({"SERVICE"}), frozenset({"media.upload"}))):
        assert current_actor() == Actor("station-1", "unit-a", frozenset({"SERVICE", "media.upload"}))


def test_server_time_is_utc_to_the_millisecond() -> None:
    now = clock.utc_now()
    assert now.tzinfo is UTC
    assert now.microsecond % 1000 == 0
    plus8 = datetime(2026, 5, 1, 20, 0, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    assert clock.to_ms(plus8) == datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.to_ms(datetime(2026, 5, 1))


def test_keyed_ids_are_stable_across_releases() -> None:
    """A retried request must find what the first created, also after an upgrade: the derivation of
    case-svc's keyed ids (uuid5 of the kind, scope and key) is kept exactly."""
    namespace = uuid.UUID("6d2f3c1e-8b0a-4c55-9a51-3c2f1d0e7b42")
    assert ids.keyed_id("case", "unit-a", "req-1") == str(uuid.uuid5(namespace, "case\x1funit-a\x1freq-1"))
    assert ids.keyed_id("case", "unit-a", "req-1") != ids.keyed_id("case", "unit-b", "req-1")
    assert uuid.UUID(ids.new_id()).version == 4


def test_page_sizes() -> None:
    assert paging.page_size(0) == paging.DEFAULT_PAGE_SIZE == 50
    assert paging.page_size(paging.MAX_PAGE_SIZE) == 500
    with pytest.raises(InvalidArgument, match=r"^page.page_size: 501 is out of range; use 1–500 \(0 = 50\)"):
        paging.page_size(501)
    with pytest.raises(InvalidArgument, match=r"^page_size: -1"):
        paging.page_size(-1, "page_size")


def test_topic_names_come_from_the_contracts() -> None:
    assert topics.events_topic_of(case_events_pb2) == "lawtrail.case.v1.events"
    assert topics.events_topic_of(media_events_pb2) == "lawtrail.media.v1.events"


def test_request_times_are_checked_and_truncated_and_attributions_mapped() -> None:
    at = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    message = common_pb2.Attribution(subject="alice", unit="unit-a", at=protomap.timestamp_pb(at))
    assert protomap.attribution_pb("alice", "unit-a", at) == message
    assert protomap.optional_time(message, "at") == at.replace(microsecond=123000)
    assert protomap.optional_time(common_pb2.Attribution(), "at") is None
    with pytest.raises(InvalidArgument, match=r"^opened_from: not a valid timestamp"):
        protomap.time_from(Timestamp(seconds=10**12), "opened_from")
    span = protomap.duration_pb(timedelta(seconds=1.5))
    assert span == Duration(seconds=1, nanos=500_000_000)


async def test_read_decide_write_decides_again_after_a_lost_race_then_gives_up() -> None:
    tries = []

    async def lose_twice() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ConcurrencyConflict("changed meanwhile")
        return "written"

    assert await read_decide_write(lose_twice, what="widget w-1") == "written"
    assert len(tries) == 3

    async def always_loses() -> None:
        raise AlreadyExists("created meanwhile")

    with pytest.raises(
        ConcurrencyConflict, match=r"^widget w-1 changed 3 times while this request was deciding"
    ):
        await read_decide_write(always_loses, what="widget w-1", attempts=3, retry_on=(AlreadyExists,))
