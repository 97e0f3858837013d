"""Every query a service issues, recorded by shape, and the proof that a declared index serves it.

Production runs MongoDB, where a query no index serves scans the collection. The index-coverage test
(`tests/integration/test_index_coverage.py`) collects the queries from the code itself: services
started by the integration tests get ``LAWTRAIL_QUERY_SHAPES_FILE``, and ``create_client`` then adds
``ShapeRecorder``, a PyMongo command listener that appends the shape of every read and write filter
(``find``, ``findAndModify``, ``update``, ``delete``, ``count``, ``distinct``, ``aggregate``'s leading
``$match``/``$sort``) to that file. ``uncovered`` then checks each shape against the collection's
indexes by MongoDB's ESR rule: the index starts with equality fields of the query, continues with the
sort (all in the same or all in the opposite direction; a sort field the query fixes by equality is
skipped), and range predicates come after — so no collection scan and no in-memory sort.

A search API whose criteria may be combined (ListCases, SearchRecordings) cannot have an index per
combination (2^n). Its repository declares those fields as ``criteria``: each leads an index of its
own (after the unit, and without it for cross-unit readers), and a query naming several is bounded by
the index of one of them and filtered by the others on the rows in that bound — still no collection
scan and no in-memory sort. ``serving_index`` accepts that only when the bound includes a criterion
and every equality field left out of the bound is a criterion too, so a query naming one criterion
still needs that criterion's own index.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import monitoring

__all__ = ["QueryShape", "ShapeRecorder", "read_shapes", "serving_index", "shapes_of", "uncovered"]

_RANGE_OPERATORS = frozenset({"$lt", "$lte", "$gt", "$gte", "$regex"})
_EQUALITY_OPERATORS = frozenset({"$eq", "$in", "$all"})


@dataclass(frozen=True)
class QueryShape:
    """One query's shape: equality fields, sort (field, direction), range fields, other predicates."""

    database: str
    collection: str
    command: str
    equality: frozenset[str]
    sort: tuple[tuple[str, int], ...]
    range: frozenset[str]
    residual: frozenset[str]

    def describe(self) -> str:
        sort = ", ".join(f"{f} {d:+d}" for f, d in self.sort) or "-"
        return (
            f"{self.collection}.{self.command}: equality {sorted(self.equality) or '-'}, sort [{sort}], "
            f"range {sorted(self.range) or '-'}"
            + (f", other {sorted(self.residual)}" if self.residual else "")
        )


def _split(filter: Mapping[str, Any]) -> list[tuple[set[str], set[str], set[str]]]:
    """(equality, range, residual) field sets of ``filter``, one per ``$or`` branch (MongoDB plans each)."""
    equality: set[str] = set()
    ranges: set[str] = set()
    residual: set[str] = set()
    branches: list[list[tuple[set[str], set[str], set[str]]]] = []
    for key, value in filter.items():
        if key == "$and":
            for part in value:
                for e, r, o in _split(part):
                    equality |= e
                    ranges |= r
                    residual |= o
        elif key == "$or":
            branches.append([shape for part in value for shape in _split(part)])
        elif key.startswith("$"):
            residual.add(key)
        elif isinstance(value, Mapping) and value and all(str(op).startswith("$") for op in value):
            operators = set(value)
            if operators & _EQUALITY_OPERATORS and not operators - _EQUALITY_OPERATORS:
                equality.add(key)
            elif operators & _RANGE_OPERATORS and not operators - _RANGE_OPERATORS - {"$options"}:
                if "$regex" in operators and not str(value["$regex"]).startswith("^"):
                    residual.add(key)  # not a prefix: no index bounds
                else:
                    ranges.add(key)
            else:
                residual.add(key)  # $ne, $exists, $size, $elemMatch...: filtered, not bounded
        else:
            equality.add(key)
    shapes = [(equality, ranges, residual)]
    for branch in branches:  # the outer fields apply to every branch
        shapes = [(e | be, r | br, o | bo) for e, r, o in shapes for be, br, bo in branch]
    return shapes


def shapes_of(
    database: str, collection: str, command: str, filter: Mapping[str, Any], sort: Mapping[str, Any] | None
) -> list[QueryShape]:
    """The shapes of one command's filter (several when it has ``$or``)."""
    ordered = tuple((field, 1 if int(direction) > 0 else -1) for field, direction in (sort or {}).items())
    return [
        QueryShape(database, collection, command, frozenset(e), ordered, frozenset(r), frozenset(o))
        for e, r, o in _split(filter)
    ]


def serving_index(
    shape: QueryShape,
    indexes: Iterable[Sequence[tuple[str, int]]],
    criteria: frozenset[str] = frozenset(),
) -> Sequence[tuple[str, int]] | None:
    """The first index that serves ``shape`` by the ESR rule, or None.

    An index serves when its leading fields are exactly the query's equality fields (in any order),
    followed by the sort fields not fixed by equality, in order and all in the index's direction or
    all against it; range predicates (and predicates that bound nothing, like ``$ne``) are checked
    after that. Without equality fields the index must give the sort, or bound a range on its first
    field. ``_id`` equality is always served (the ``_id`` index).

    With ``criteria`` (the collection's combinable search fields), an index whose leading fields are
    only some of the equality fields also serves when they include a criterion and every equality
    field it leaves out is a criterion (bounded by one criterion, filtered by the others). An index
    that serves all equality fields is preferred.
    """
    if "_id" in shape.equality:
        return [("_id", 1)]
    candidates = [list(keys) for keys in indexes]
    exact = _serving(shape, candidates, partial=False, criteria=criteria)
    return exact if exact is not None else _serving(shape, candidates, partial=True, criteria=criteria)


def _serving(
    shape: QueryShape, indexes: list[list[tuple[str, int]]], *, partial: bool, criteria: frozenset[str]
) -> Sequence[tuple[str, int]] | None:
    # the sort fields the query fixes by equality are skipped, whether or not the index bounds them
    sort = [(f, d) for f, d in shape.sort if f not in shape.equality]
    for keys in indexes:
        i = 0
        while i < len(keys) and keys[i][0] in shape.equality:
            i += 1
        prefix = i
        bound = {f for f, _ in keys[:prefix]}
        if not partial and bound != set(shape.equality):
            continue
        if partial and not (bound & criteria and set(shape.equality) - bound <= criteria):
            continue
        following = keys[i : i + len(sort)]
        if [f for f, _ in following] != [f for f, _ in sort]:
            continue
        if sort:
            same = all(d == kd for (_, d), (_, kd) in zip(sort, following, strict=True))
            opposite = all(d == -kd for (_, d), (_, kd) in zip(sort, following, strict=True))
            if not (same or opposite):
                continue
        bounded = prefix > 0 or bool(sort) or (i < len(keys) and keys[i][0] in shape.range)
        if bounded:
            return keys
    return None


def uncovered(
    shapes: Iterable[QueryShape],
    indexes: Mapping[tuple[str, str], Sequence[Sequence[tuple[str, int]]]],
    criteria: Mapping[str, frozenset[str]] | None = None,
) -> list[QueryShape]:
    """The shapes no index of their collection serves (``indexes`` by (database, collection);
    ``criteria``: each collection's combinable search fields, by collection name)."""
    criteria = criteria or {}
    return [
        s
        for s in shapes
        if serving_index(
            s, indexes.get((s.database, s.collection), ()), criteria.get(s.collection, frozenset())
        )
        is None
    ]


class ShapeRecorder(monitoring.CommandListener):
    """Appends the shape of every filtered command to ``path`` as JSON lines (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def _write(self, database: str, collection: str, command: str, filter: Any, sort: Any) -> None:
        if not isinstance(collection, str) or not isinstance(filter, Mapping):
            return
        line = json.dumps(
            {
                "database": database,
                "collection": collection,
                "command": command,
                "filter": _skeleton(filter),
                "sort": dict(sort) if isinstance(sort, Mapping) else None,
            }
        )
        with self._lock, self._path.open("a") as f:
            f.write(line + "\n")

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        cmd, name, db = event.command, event.command_name, event.database_name
        try:
            if name == "find":
                self._write(db, cmd["find"], name, cmd.get("filter", {}), cmd.get("sort"))
            elif name == "findAndModify":
                self._write(db, cmd["findAndModify"], name, cmd.get("query", {}), cmd.get("sort"))
            elif name in ("update", "delete"):
                for statement in cmd.get("updates" if name == "update" else "deletes", []):
                    self._write(db, cmd[name], name, statement.get("q", {}), None)
            elif name in ("count", "distinct"):
                self._write(db, cmd[name], name, cmd.get("query", {}), None)
            elif name == "aggregate":
                pipeline = list(cmd.get("pipeline", []))
                match = pipeline[0].get("$match", {}) if pipeline else {}
                sort = next((stage["$sort"] for stage in pipeline[:2] if "$sort" in stage), None)
                self._write(db, cmd["aggregate"], name, match, sort)
        except Exception:
            return

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return


def _skeleton(value: Any) -> Any:
    """The filter with its values reduced to what the shape needs (operators, regex anchoring)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if hasattr(v, "pattern") and not str(k).startswith("$"):
                out[str(k)] = {"$regex": _skeleton(v)}  # {field: re.compile(...)}
            elif str(k).startswith("$") or isinstance(v, Mapping | list):
                out[str(k)] = _skeleton(v)
            else:
                out[str(k)] = 0
        return out
    if isinstance(value, list):
        return [_skeleton(v) for v in value]
    if hasattr(value, "pattern"):  # a compiled/BSON regex
        return "^" if str(value.pattern).startswith("^") else ""
    if isinstance(value, str):
        return "^" if value.startswith("^") else ""
    return 0


def read_shapes(path: Path) -> list[QueryShape]:
    """Every distinct shape recorded in ``path``."""
    seen: dict[QueryShape, None] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for shape in shapes_of(
            record["database"], record["collection"], record["command"], record["filter"], record["sort"]
        ):
            seen[shape] = None
    return list(seen)
