"""The one composition root of case-svc: settings, rules, repositories, handlers, API and consumers.

Nothing is built at import time. `build_handlers` wires the use cases to any ports (unit tests pass
in-memory fakes); `bootstrap` wires them to MongoDB, the outbox relay, the gRPC server and the
consumer of media events for `servicekit.app.run_service`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from case_svc.domain.rules import RuleBook
from case_svc.service_layer.handlers import CaseHandlers
from case_svc.service_layer.ports import CaseRepository, ContentStore


def load_rules(path: Path | None = None) -> RuleBook:
    """The rules configuration: `path`, or the default shipped in `case_svc/config/case_rules.toml`."""
    if path is None:
        text = resources.files("case_svc").joinpath("config/case_rules.toml").read_text(encoding="utf-8")
        where = "case_svc/config/case_rules.toml"
    else:
        text = path.read_text(encoding="utf-8")
        where = str(path)
    try:
        return RuleBook.from_mapping(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise SystemExit(f"case rules {where} are invalid: {exc}") from exc


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_handlers(
    cases: CaseRepository,
    contents: ContentStore,
    *,
    rules: RuleBook | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> CaseHandlers:
    return CaseHandlers(cases, contents, rules or load_rules(), clock)
