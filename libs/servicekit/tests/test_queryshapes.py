"""The ESR check of servicekit.queryshapes (unit tests; the coverage test itself is integration)."""

from __future__ import annotations

from servicekit.queryshapes import serving_index, shapes_of

CASE_INDEXES = [
    [("unit", 1), ("opened_at", -1), ("_id", -1)],
    [("unit", 1), ("stage", 1), ("opened_at", -1), ("_id", -1)],
    [("opened_at", -1), ("_id", -1)],
]
NEWEST = {"opened_at": -1, "_id": -1}


def one(filter: dict, sort: dict | None = None):  # type: ignore[no-untyped-def, type-arg]
    (shape,) = shapes_of("db", "cases", "find", filter, sort)
    return shape


def test_equality_then_sort_is_served_and_reverse_direction_too() -> None:
    assert serving_index(one({"unit": 0}, NEWEST), CASE_INDEXES) == CASE_INDEXES[0]
    assert serving_index(one({"unit": 0, "stage": 0}, NEWEST), CASE_INDEXES) == CASE_INDEXES[1]
    assert serving_index(one({"unit": 0}, {"opened_at": 1, "_id": 1}), CASE_INDEXES) == CASE_INDEXES[0]


def test_a_sort_the_index_cannot_give_or_a_mixed_direction_is_not_served() -> None:
    assert serving_index(one({"unit": 0}, {"cause": 1}), CASE_INDEXES) is None
    assert serving_index(one({"unit": 0}, {"opened_at": -1, "_id": 1}), CASE_INDEXES) is None


def test_an_unindexed_equality_alone_is_a_scan() -> None:
    assert serving_index(one({"cause": 0}), CASE_INDEXES) is None
    assert serving_index(one({}), CASE_INDEXES) is None


def test_range_after_the_sort_and_the_cursor_or_branches() -> None:
    assert serving_index(one({"unit": 0, "opened_at": {"$lt": 0}}, NEWEST), CASE_INDEXES) == CASE_INDEXES[0]
    shapes = shapes_of(
        "db",
        "cases",
        "find",
        {"unit": 0, "$or": [{"opened_at": {"$lt": 0}}, {"opened_at": 0, "_id": {"$lt": 0}}]},
        NEWEST,
    )
    assert len(shapes) == 2
    assert all(serving_index(s, CASE_INDEXES) == CASE_INDEXES[0] for s in shapes)


def test_id_equality_is_always_served_and_a_regex_without_anchor_bounds_nothing() -> None:
    assert serving_index(one({"_id": 0, "version": 0}), []) == [("_id", 1)]
    shape = one({"unit": 0, "cause": {"$regex": ""}}, NEWEST)
    assert "cause" in shape.residual
    assert serving_index(shape, CASE_INDEXES) == CASE_INDEXES[0]


CRITERIA = frozenset({"stage", "officers"})
SEARCH_INDEXES = [
    [("unit", 1), ("opened_at", -1), ("_id", -1)],
    [("unit", 1), ("stage", 1), ("opened_at", -1), ("_id", -1)],
    [("unit", 1), ("officers", 1), ("opened_at", -1), ("_id", -1)],
    [("stage", 1), ("opened_at", -1), ("_id", -1)],
]


def test_combined_criteria_are_bounded_by_one_criterions_index_and_filtered_by_the_others() -> None:
    combined = one({"unit": 0, "stage": 0, "officers": 0}, NEWEST)
    assert serving_index(combined, SEARCH_INDEXES) is None  # without declared criteria: no exact index
    assert serving_index(combined, SEARCH_INDEXES, CRITERIA) == SEARCH_INDEXES[1]
    cross_unit = one({"stage": 0, "officers": 0, "opened_at": {"$lt": 0}}, NEWEST)
    assert serving_index(cross_unit, SEARCH_INDEXES, CRITERIA) == SEARCH_INDEXES[3]


def test_one_criterion_still_needs_its_own_index_and_other_fields_are_never_left_to_a_filter() -> None:
    # officers across units has no index of its own: the unit-less time index would read every case
    assert serving_index(one({"officers": 0}, NEWEST), SEARCH_INDEXES, CRITERIA) is None
    # act_type is not a declared criterion: bounding by stage and filtering act_type is not accepted
    mixed = one({"unit": 0, "stage": 0, "act_type": 0}, NEWEST)
    assert serving_index(mixed, SEARCH_INDEXES, CRITERIA) is None
    # the bound must include a criterion: the unit index alone filtering stage+officers is a unit scan
    assert serving_index(one({"unit": 0, "stage": 0}, NEWEST), SEARCH_INDEXES[:1], CRITERIA) is None
    # a sort the bounding index cannot give is still an in-memory sort
    assert (
        serving_index(one({"unit": 0, "stage": 0, "officers": 0}, {"cause": 1}), SEARCH_INDEXES, CRITERIA)
        is None
    )
