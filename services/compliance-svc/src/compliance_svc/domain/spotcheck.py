"""R22 spot checks (抽检): a reproducible, stratified random sample of a unit's recordings and case files
for a period, each assigned to a reviewer who is not its officer; review results raise findings.

Pure Python: the sample is a function of the materials and the recorded seed, so drawing it again with
the same seed (for an audit of the audit) gives the same items and the same reviewers.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from servicekit.errors import FailedPrecondition, InvalidArgument, PermissionDenied

from compliance_svc.domain.model import Attribution, Raised

MAX_PER_OFFICER = 100
MAX_PER_REQUEST = 100  # access-svc takes at most 100 records per request
GRANT_HOURS = 24  # a reviewer's grant lasts a day (access-svc's longest); a new request after that


class Kind(StrEnum):
    RECORDING = "RECORDING"
    CASE = "CASE"


class Aspect(StrEnum):
    """What a reviewer judges (R22): conduct and bearing 队容风纪, civil enforcement 文明执法,
    completeness."""

    CONDUCT = "CONDUCT"
    CIVILITY = "CIVILITY"
    COMPLETENESS = "COMPLETENESS"


@dataclass(frozen=True)
class ReviewerAccess:
    """An access request compliance-svc filed in access-svc for one reviewer's items (R16, R22)."""

    reviewer: str
    request_id: str
    item_ids: tuple[str, ...]


def access_batches(items: Sequence[Item]) -> list[tuple[str, tuple[Item, ...]]]:
    """The items each reviewer must open, per reviewer (in order of first appearance) and in batches of
    at most MAX_PER_REQUEST: one access request each."""
    by_reviewer: dict[str, list[Item]] = {}
    for item in items:
        by_reviewer.setdefault(item.reviewer, []).append(item)
    return [
        (reviewer, tuple(mine[i : i + MAX_PER_REQUEST]))
        for reviewer, mine in by_reviewer.items()
        for i in range(0, len(mine), MAX_PER_REQUEST)
    ]


def access_purpose(spot_check_id: str, unit: str, count: int) -> str:
    return f"R22 spot check {spot_check_id}: review of {count} item(s) of unit {unit}"


@dataclass(frozen=True)
class Material:
    kind: Kind
    id: str
    unit: str
    officer: str
    at: datetime


@dataclass(frozen=True)
class Review:
    failed: frozenset[Aspect]
    notes: str
    by: Attribution


@dataclass(frozen=True)
class Item:
    item_id: str
    kind: Kind
    material_id: str
    officer: str
    reviewer: str
    review: Review | None = None


def draw(materials: Iterable[Material], *, seed: int, per_officer: int) -> list[Material]:
    """Up to `per_officer` recordings and `per_officer` case files of every officer (strata: officer × kind),
    chosen with `random.Random(seed)` over a canonical order, so the draw depends only on its inputs."""
    if not 1 <= per_officer <= MAX_PER_OFFICER:
        raise InvalidArgument(f"per_officer: must be 1–{MAX_PER_OFFICER}, got {per_officer}")
    strata: dict[tuple[str, Kind], list[Material]] = {}
    for m in materials:
        strata.setdefault((m.officer, m.kind), []).append(m)
    rng = random.Random(seed)
    sample: list[Material] = []
    for key in sorted(strata):
        pool = sorted(strata[key], key=lambda m: m.id)
        sample += sorted(rng.sample(pool, min(per_officer, len(pool))), key=lambda m: m.id)
    return sample


def assign(sample: Sequence[Material], reviewers: Sequence[str], *, seed: int) -> list[Item]:
    """A reviewer for each item, never the item's own officer (random among the others, reproducible)."""
    pool = sorted(set(reviewers))
    if not pool:
        raise InvalidArgument("reviewers: at least one reviewer is required")
    rng = random.Random(seed ^ 0x5EED)
    items: list[Item] = []
    for n, m in enumerate(sample):
        candidates = [r for r in pool if r != m.officer]
        if not candidates:
            raise InvalidArgument(
                f"reviewers: {m.kind.value.lower()} {m.id} is officer {m.officer!r}'s, who may not "
                "review it; add another reviewer"
            )
        items.append(Item(f"{n + 1:04d}", m.kind, m.id, m.officer, rng.choice(candidates)))
    return items


def review(item: Item, failed: frozenset[Aspect], notes: str, by: Attribution) -> Item:
    if by.subject != item.reviewer:
        raise PermissionDenied(f"item {item.item_id} is assigned to {item.reviewer!r}, not {by.subject!r}")
    if item.review is not None:
        raise FailedPrecondition(f"item {item.item_id} was already reviewed by {item.review.by.subject!r}")
    if len(notes) > 2000:
        raise InvalidArgument(f"notes: at most 2000 characters, got {len(notes)}")
    if failed and not notes.strip():
        raise InvalidArgument("notes: required when an aspect failed (what the reviewer saw)")
    return replace(item, review=Review(failed, notes.strip(), by))


def findings_of(item: Item, unit: str, spot_check_id: str) -> list[Raised]:
    """One R22 finding per failed aspect of a reviewed item."""
    if item.review is None:
        return []
    return [
        Raised(
            code=f"R22_{aspect.value}",
            article="R22",
            unit=unit,
            officer=item.officer,
            subject=f"{item.kind.value.lower()}:{item.material_id}:{aspect.value.lower()}",
            detail=f"spot check {spot_check_id} item {item.item_id}: {aspect.value.lower()} judged deficient "
            f"by {item.review.by.subject}: {item.review.notes}",
            evidence=(spot_check_id,),
            raised_at=item.review.by.at,
        )
        for aspect in sorted(item.review.failed)
    ]


@dataclass(frozen=True)
class SpotCheck:
    spot_check_id: str
    unit: str
    period_from: datetime
    period_to: datetime
    seed: int
    per_officer: int
    items: tuple[Item, ...]
    drawn: Attribution
    version: int = 0
    access_requests: tuple[ReviewerAccess, ...] = ()

    def item(self, item_id: str) -> Item:
        for item in self.items:
            if item.item_id == item_id:
                return item
        raise InvalidArgument(f"item_id: spot check {self.spot_check_id} has no item {item_id!r}")

    def with_item(self, changed: Item) -> SpotCheck:
        return replace(self, items=tuple(changed if i.item_id == changed.item_id else i for i in self.items))
