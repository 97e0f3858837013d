"""R22 spot checks: stratified, reproducible from the seed, reviewers never their own officer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from compliance_svc.domain import spotcheck as sc
from compliance_svc.domain.model import Attribution
from servicekit.errors import FailedPrecondition, InvalidArgument, PermissionDenied

T0 = datetime(2026, 5, 1, tzinfo=UTC)
MATERIAL = [
    sc.Material(sc.Kind.RECORDING, f"rec-{o}-{n}", "u1", o, T0) for o in ("o1", "o2", "o3") for n in range(20)
] + [sc.Material(sc.Kind.CASE, f"case-{o}-{n}", "u1", o, T0) for o in ("o1", "o2") for n in range(5)]


def test_r22_the_same_seed_draws_the_same_sample_and_reviewers() -> None:
    a = sc.assign(sc.draw(MATERIAL, seed=42, per_officer=3), ["o1", "o2", "rev"], seed=42)
    b = sc.assign(sc.draw(list(reversed(MATERIAL)), seed=42, per_officer=3), ["rev", "o2", "o1"], seed=42)
    assert a == b
    c = sc.assign(sc.draw(MATERIAL, seed=43, per_officer=3), ["o1", "o2", "rev"], seed=43)
    assert [i.material_id for i in a] != [i.material_id for i in c]


def test_r22_every_officer_is_drawn_for_recordings_and_case_files() -> None:
    sample = sc.draw(MATERIAL, seed=7, per_officer=2)
    strata = {(m.officer, m.kind) for m in sample}
    assert strata == {(o, sc.Kind.RECORDING) for o in ("o1", "o2", "o3")} | {
        (o, sc.Kind.CASE) for o in ("o1", "o2")
    }
    assert len(sample) == 10


def test_r22_a_reviewer_never_reviews_their_own_material() -> None:
    items = sc.assign(sc.draw(MATERIAL, seed=1, per_officer=5), ["o1", "o2", "o3"], seed=1)
    assert all(i.reviewer != i.officer for i in items)
    with pytest.raises(InvalidArgument, match="reviewers"):
        sc.assign(sc.draw(MATERIAL, seed=1, per_officer=1), ["o1"], seed=1)


def test_r22_failed_aspects_raise_one_finding_each_and_a_review_is_recorded_once() -> None:
    (item,) = sc.assign([MATERIAL[0]], ["rev"], seed=1)
    by = Attribution("rev", "legal", T0)
    with pytest.raises(PermissionDenied):
        sc.review(item, frozenset(), "", Attribution("other", "legal", T0))
    with pytest.raises(InvalidArgument, match="notes"):
        sc.review(item, frozenset({sc.Aspect.CIVILITY}), " ", by)
    done = sc.review(item, frozenset({sc.Aspect.CIVILITY, sc.Aspect.CONDUCT}), "shouted at the party", by)
    raised = sc.findings_of(done, "u1", "chk-1")
    assert [(r.article, r.code, r.officer) for r in raised] == [
        ("R22", "R22_CIVILITY", "o1"),
        ("R22", "R22_CONDUCT", "o1"),
    ]
    with pytest.raises(FailedPrecondition):
        sc.review(done, frozenset(), "", by)


class Store:
    """In-memory SpotCheckStore: the material above; keeps what is added."""

    def __init__(self) -> None:
        self.added: list[sc.SpotCheck] = []

    async def materials(self, unit: str, start: datetime, end: datetime) -> list[sc.Material]:
        return list(MATERIAL)

    async def add(self, check: sc.SpotCheck) -> None:
        self.added.append(check)


class Filer:
    """Records the access requests compliance-svc would file in access-svc; fails when told to."""

    def __init__(self, fail_for: str = "") -> None:
        self.filed: list[tuple[str, list[tuple[str, str]], str]] = []
        self.fail_for = fail_for

    async def file(self, reviewer: str, material: list[tuple[str, str]], purpose: str) -> str:
        if reviewer == self.fail_for:
            raise FailedPrecondition("access-svc is down; draw the spot check again")
        self.filed.append((reviewer, material, purpose))
        return f"ar-{len(self.filed)}"


async def draw_with(filer: Filer, store: Store) -> sc.SpotCheck:
    from compliance_svc.service_layer.spot_checks import SpotCheckHandlers

    handlers = SpotCheckHandlers(store, findings=None, access=filer)  # type: ignore[arg-type]
    return await handlers.draw(
        unit="u1",
        start=T0,
        end=datetime(2026, 6, 1, tzinfo=UTC),
        per_officer=2,
        reviewers=["o1", "rev"],
        seed=5,
        by=Attribution("legal-1", "legal", T0),
        roles=frozenset({"LEGAL_OFFICE"}),
    )


async def test_r22_reviewers_get_their_material_through_access_requests_filed_on_their_behalf() -> None:
    filer, store = Filer(), Store()
    check = await draw_with(filer, store)
    assert store.added == [check]
    by_reviewer = {a.reviewer: a for a in check.access_requests}
    assert set(by_reviewer) == {i.reviewer for i in check.items}
    for reviewer, material, purpose in filer.filed:
        mine = [i for i in check.items if i.reviewer == reviewer]
        assert material == [(i.kind.value, i.material_id) for i in mine]  # exactly their items
        assert purpose.startswith(f"R22 spot check {check.spot_check_id}: review of {len(mine)} item(s)")
        request = by_reviewer[reviewer]
        assert request.item_ids == tuple(i.item_id for i in mine)
    assert sorted(a.request_id for a in check.access_requests) == [
        f"ar-{n + 1}" for n in range(len(filer.filed))
    ]


async def test_r22_a_draw_whose_access_requests_access_svc_did_not_take_is_not_stored() -> None:
    store = Store()
    with pytest.raises(FailedPrecondition, match="draw the spot check again"):
        await draw_with(Filer(fail_for="rev"), store)
    assert store.added == []


def test_r22_access_requests_are_per_reviewer_and_at_most_100_items() -> None:
    items = [sc.Item(f"i{n}", sc.Kind.RECORDING, f"r{n}", "o1", "rev" if n % 3 else "o2") for n in range(330)]
    batches = sc.access_batches(items)
    assert [(r, len(b)) for r, b in batches] == [
        ("o2", 100),
        ("o2", 10),
        ("rev", 100),
        ("rev", 100),
        ("rev", 20),
    ]
