"""R12 (clocks, longest rule, case-file period for evidence, extensions) and R13 (long-term holds from
events, idempotent and order-independent), through the real handlers on in-memory fakes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from retention_svc.domain.permissions import Actor
from retention_svc.domain.retention import RetentionState
from servicekit.errors import FailedPrecondition, PermissionDenied

CLOSED = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def head(unit: str) -> Actor:
    return Actor("head-1", unit, frozenset({"UNIT_HEAD"}))


async def test_r13_assault_places_long_term_hold_on_every_recording(world: Any, kit: Any) -> None:
    h = world.handlers
    await h.case_opened(kit.case_facts("case-1", world.unit))
    for n in range(3):
        await h.recording_linked(kit.recording_facts(f"rec-{n}", world.unit), "case-1")
    await h.incident_recorded(kit.case_facts("case-1", world.unit), kit.incident("inc-1", "ASSAULT"))

    for n in range(3):
        rec = await h.explain_recording(head(world.unit), f"rec-{n}")
        assert rec.decision.state is RetentionState.PERMANENT
        (hold,) = rec.holds.values()
        assert (hold.incident_kind, hold.case_id, hold.source_event) == (
            "ASSAULT",
            "case-1",
            "case-svc/event-inc-1",
        )
        assert "殴打" in hold.reason
        assert any(r.rule_class == "held" for r in rec.decision.rules)
    placed = world.events("LongTermHoldPlaced")
    assert sorted(e.record_id for e in placed) == ["rec-0", "rec-1", "rec-2"]


async def test_r13_holds_are_written_with_the_linked_hashes_before_any_recording_is_read(
    world: Any, kit: Any
) -> None:
    """The case knows each recording's SHA-256 from its link, so the incident's holds (one case write)
    need no read of the recordings first — what keeps the fan-out's latency flat in the case's size."""
    h = world.handlers
    await h.case_opened(kit.case_facts("case-f", world.unit))
    for n in range(3):
        await h.recording_linked(kit.recording_facts(f"f-{n}", world.unit), "case-f")
    calls: list[str] = []
    read, save, sent = world.recordings.get, world.cases.save, world.cases.sent

    async def counted_read(recording_id: str) -> Any:
        calls.append("read recording")
        return await read(recording_id)

    async def counted_save(case: Any) -> None:
        calls.append("save case")
        await save(case)

    async def counted_sent(case_id: str) -> None:
        calls.append("wait for the case's events")
        await sent(case_id)

    world.recordings.get, world.cases.save, world.cases.sent = counted_read, counted_save, counted_sent
    await h.incident_recorded(kit.case_facts("case-f", world.unit), kit.incident("inc-f", "ASSAULT"))

    # The holds are saved, and their sends waited for, before the recordings' bookkeeping starts (it
    # would compete with those sends for the process and the database).
    assert calls[:2] == ["save case", "wait for the case's events"]
    assert set(calls[2:]) == {"read recording"}
    placed = {e.record_id: e.sha256 for e in world.events("LongTermHoldPlaced")}
    assert placed == {f"f-{n}": kit.recording_facts(f"f-{n}", world.unit).sha256 for n in range(3)}


async def test_r13_a_case_with_more_recordings_than_one_write_carries_gets_every_hold(
    world: Any, kit: Any
) -> None:
    """One write carries at most MAX_EVENTS_PER_WRITE events: a case of 1,000 recordings had its
    incident parked in the DLQ ("1000 events in one write") and none of its recordings held."""
    from servicekit.messaging.outbox import MAX_EVENTS_PER_WRITE

    h = world.handlers
    n = MAX_EVENTS_PER_WRITE + 2
    await h.case_opened(kit.case_facts("case-big", world.unit))
    for i in range(n):
        await h.recording_linked(kit.recording_facts(f"big-{i}", world.unit), "case-big")
    biggest: list[int] = []
    save = world.cases.save

    async def bounded_save(case: Any) -> None:
        biggest.append(len(case.pending_events))
        await save(case)

    world.cases.save = bounded_save
    await h.incident_recorded(kit.case_facts("case-big", world.unit), kit.incident("inc-big", "ASSAULT"))

    assert max(biggest) <= MAX_EVENTS_PER_WRITE
    assert len({e.record_id for e in world.events("LongTermHoldPlaced")}) == n
    assert (await h.explain_recording(head(world.unit), f"big-{n - 1}")).held


async def test_r13_recording_linked_after_the_incident_is_held_too(world: Any, kit: Any) -> None:
    h = world.handlers
    await h.case_opened(kit.case_facts("case-2", world.unit))
    await h.incident_recorded(kit.case_facts("case-2", world.unit), kit.incident("inc-2", "COMPLAINT"))
    await h.recording_linked(kit.recording_facts("late", world.unit), "case-2")
    rec = await h.explain_recording(head(world.unit), "late")
    assert rec.held
    assert rec.decision.state is RetentionState.PERMANENT


async def test_r13_only_the_configured_incident_kinds_place_a_hold(kit: Any) -> None:
    from dataclasses import replace

    world = kit.new_world()
    world.handlers.rules = replace(world.handlers.rules, hold_incident_kinds=frozenset({"ASSAULT"}))
    h = world.handlers
    await h.recording_linked(kit.recording_facts("r", world.unit), "case-3")
    await h.incident_recorded(kit.case_facts("case-3", world.unit), kit.incident("inc-3", "EMERGENCY"))
    assert not (await h.explain_recording(head(world.unit), "r")).held


async def test_r13_holds_never_expire_and_outlast_closure_and_time(world: Any, kit: Any) -> None:
    h = world.handlers
    await h.recording_linked(kit.recording_facts("r", world.unit), "case-4")
    await h.incident_recorded(kit.case_facts("case-4", world.unit), kit.incident("i", "PETITION"))
    await h.case_closed(kit.case_facts("case-4", world.unit), CLOSED)
    rec = await h.explain_recording(head(world.unit), "r")
    assert rec.decision.state is RetentionState.PERMANENT
    assert rec.decision.retain_until is None
    with pytest.raises(FailedPrecondition, match="permanently"):
        await h.extend_recording(head(world.unit), "r", CLOSED + timedelta(days=1), "more")


def _script(kit: Any, unit: str) -> list[tuple[str, tuple[Any, ...]]]:
    return [
        ("case_opened", (kit.case_facts("c", unit),)),
        ("recording_ingested", (kit.recording_facts("r1", unit),)),
        ("recording_linked", (kit.recording_facts("r1", unit), "c")),
        ("recording_linked", (kit.recording_facts("r2", unit), "c")),
        ("incident_recorded", (kit.case_facts("c", unit), kit.incident("i1", "OBSTRUCTION"))),
        ("case_closed", (kit.case_facts("c", unit), CLOSED)),
        ("recording_ingested", (kit.recording_facts("r3", unit),)),
    ]


async def _play(world: Any, steps: list[tuple[str, tuple[Any, ...]]]) -> dict[str, Any]:
    for name, args in steps:
        await getattr(world.handlers, name)(*args)
    return world.state()


async def test_r13_redelivered_replayed_or_reordered_events_give_the_same_state(kit: Any) -> None:
    unit = "unit-x"
    steps = _script(kit, unit)
    reference = await _play(kit.new_world(), steps)
    assert reference["recordings"]["r1"]["holds"]
    assert reference["recordings"]["r2"]["holds"]
    assert not reference["recordings"]["r3"]["holds"]
    # Every order of the events (the case events keep their own order: one Kafka key, one partition).
    case_steps = [s for s in steps if s[0] in ("case_opened", "incident_recorded", "case_closed")]
    media_steps = [s for s in steps if s not in case_steps]
    orders = 0
    for positions in itertools.combinations(range(len(steps)), len(case_steps)):
        cs, ms = iter(case_steps), iter(media_steps)
        order = [next(cs) if i in positions else next(ms) for i in range(len(steps))]
        assert await _play(kit.new_world(), order) == reference, order
        orders += 1
    assert orders == 35
    # Redelivery: everything twice.
    assert await _play(kit.new_world(), steps + steps) == reference


async def test_r12_case_file_clock_starts_at_closure(world: Any, kit: Any) -> None:
    h = world.handlers
    await h.case_opened(kit.case_facts("c", world.unit, "PENALTY", "GENERAL"))
    case = await h.explain_case(head(world.unit), "c")
    assert case.decision.state is RetentionState.PENDING
    await h.case_closed(kit.case_facts("c", world.unit, "PENALTY", "GENERAL"), CLOSED)
    case = await h.explain_case(head(world.unit), "c")
    assert case.decision.state is RetentionState.DATED
    assert case.decision.retain_until == CLOSED.replace(year=2056)
    assert [e.kind for e in world.events("RetentionAssigned")] == ["RetentionAssigned"]
    assert len(world.events("RetentionChanged")) == 1


async def test_r12_evidence_of_a_general_penalty_case_is_kept_exactly_as_long_as_the_case_file(
    world: Any, kit: Any
) -> None:
    h = world.handlers
    await h.recording_linked(kit.recording_facts("ev", world.unit), "c")
    rec = await h.explain_recording(head(world.unit), "ev")
    assert rec.decision.state is RetentionState.PENDING  # the case is open: its clock has not started
    await h.case_closed(kit.case_facts("c", world.unit, "PENALTY", "GENERAL"), CLOSED)
    rec = await h.explain_recording(head(world.unit), "ev")
    case = await h.explain_case(head(world.unit), "c")
    assert rec.decision.retain_until == case.decision.retain_until == CLOSED.replace(year=2056)


async def test_r12_a_recording_not_used_as_evidence_is_kept_six_months_from_its_end(
    world: Any, kit: Any
) -> None:
    await world.handlers.recording_ingested(kit.recording_facts("plain", world.unit, end=kit.T0))
    rec = await world.handlers.explain_recording(head(world.unit), "plain")
    assert rec.decision.state is RetentionState.DATED
    assert rec.decision.retain_until == kit.T0.replace(month=kit.T0.month + 6)


async def test_r12_the_longest_rule_wins(world: Any, kit: Any) -> None:
    h = world.handlers
    # A simple-procedure penalty closed long before the recording ended: 10 years from closure, but the
    # recording's own 6 months run from its end — the later of the two dates wins.
    end = datetime(2036, 12, 1, tzinfo=UTC)
    await h.recording_linked(kit.recording_facts("r", world.unit, end=end), "c")
    await h.case_closed(
        kit.case_facts("c", world.unit, "PENALTY", "SIMPLE"), datetime(2026, 6, 1, tzinfo=UTC)
    )
    rec = await h.explain_recording(head(world.unit), "r")
    dates = sorted(r.until for r in rec.decision.rules if r.until)
    assert dates == [datetime(2036, 6, 1, tzinfo=UTC), datetime(2037, 6, 1, tzinfo=UTC)]
    assert rec.decision.retain_until == datetime(2037, 6, 1, tzinfo=UTC)


async def test_r12_a_retention_may_be_extended_never_shortened(world: Any, kit: Any) -> None:
    h = world.handlers
    await h.recording_ingested(kit.recording_facts("r", world.unit, end=kit.T0))
    rec = await h.explain_recording(head(world.unit), "r")
    current = rec.decision.retain_until
    with pytest.raises(FailedPrecondition, match="never shortened"):
        await h.extend_recording(head(world.unit), "r", current - timedelta(days=1), "shorter")
    later = current + timedelta(days=365)
    rec = await h.extend_recording(head(world.unit), "r", later, "litigation announced")
    assert rec.decision.retain_until == later
    assert rec.decision.rules[-1].rule_class == "extension"
    assert world.events("RetentionChanged")


async def test_r08_other_units_may_not_read_or_extend(world: Any, kit: Any) -> None:
    await world.handlers.recording_ingested(kit.recording_facts("r", world.unit))
    with pytest.raises(PermissionDenied, match="R8"):
        await world.handlers.explain_recording(head("another-unit"), "r")
    legal = Actor("legal-1", "legal", frozenset({"LEGAL_OFFICE"}))
    assert (await world.handlers.explain_recording(legal, "r")).recording_id == "r"
    with pytest.raises(PermissionDenied):
        await world.handlers.extend_recording(legal, "r", kit.T0 + timedelta(days=9999), "x")
