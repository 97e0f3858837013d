"""R12 disposal (two different people, held material never a candidate) and R11b month handling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from retention_svc.domain.archive import month_bounds, month_of
from retention_svc.domain.disposal import DisposalOrder, why_not_candidate
from retention_svc.domain.permissions import Actor
from servicekit.errors import InvalidArgument, PermissionDenied

NOW = datetime(2027, 6, 1, tzinfo=UTC)


def actor(subject: str, *roles: str) -> Actor:
    return Actor(subject, "u", frozenset(roles))


async def test_r12_a_recording_past_its_date_is_a_candidate_a_held_one_never(world: Any, kit: Any) -> None:
    h = world.handlers
    await h.recording_ingested(kit.recording_facts("old", world.unit, end=kit.T0))
    await h.recording_linked(kit.recording_facts("held", world.unit, end=kit.T0), "c")
    await h.incident_recorded(kit.case_facts("c", world.unit), kit.incident("i", "MASS_INCIDENT"))
    old = await world.recordings.get("old")
    held = await world.recordings.get("held")
    assert why_not_candidate(old, NOW) is None
    assert "not due yet" in (why_not_candidate(old, kit.T0 + timedelta(days=30)) or "")
    assert "long-term hold" in (why_not_candidate(held, NOW + timedelta(days=365 * 100)) or "")


def test_r12_disposal_needs_the_unit_head_and_the_archive_room_two_different_people() -> None:
    order = DisposalOrder.propose("o1", actor("head-1", "UNIT_HEAD"), "u", ["r1"], "due", NOW)
    with pytest.raises(PermissionDenied, match="another person"):
        order.approve(actor("head-1", "UNIT_HEAD", "ARCHIVE_ROOM"))
    with pytest.raises(PermissionDenied, match="ARCHIVE_ROOM"):
        order.approve(actor("head-2", "UNIT_HEAD"))
    assert order.approve(actor("room-1", "ARCHIVE_ROOM")).approved_by == "room-1"
    with pytest.raises(PermissionDenied):
        DisposalOrder.propose("o2", actor("officer", "OFFICER"), "u", ["r1"], "due", NOW)
    with pytest.raises(InvalidArgument, match="twice"):
        DisposalOrder.propose("o3", actor("room-1", "ARCHIVE_ROOM"), "u", ["r1", "r1"], "due", NOW)


def test_r11b_months_are_utc_calendar_months_and_bad_or_future_months_are_refused() -> None:
    assert month_bounds("2026-12", now=NOW) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert month_of(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == "2026-12"
    for bad in ("2026-13", "26-01", "2026/01", ""):
        with pytest.raises(InvalidArgument, match="YYYY-MM"):
            month_bounds(bad, now=NOW)
    with pytest.raises(InvalidArgument, match="future"):
        month_bounds("2027-07", now=NOW)
