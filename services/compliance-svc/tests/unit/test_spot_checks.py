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
