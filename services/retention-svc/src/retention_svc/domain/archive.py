"""Monthly archive backup (R11b 每月定期交机关档案室备份归档): batches per unit and month. Pure Python."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from servicekit.errors import InvalidArgument

from retention_svc.domain.copies import CopyItem

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def month_of(at: datetime) -> str:
    """The month of an instant, "YYYY-MM" in UTC."""
    return at.astimezone(UTC).strftime("%Y-%m")


def month_bounds(month: str, *, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of "YYYY-MM" in UTC; a malformed or future month is INVALID_ARGUMENT."""
    match = _MONTH.match(month)
    if match is None:
        raise InvalidArgument(f"month must be 'YYYY-MM' (e.g. '2026-05'), not {month!r}")
    year, mon = int(match.group(1)), int(match.group(2))
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    if start > now:
        raise InvalidArgument(f"month {month} is in the future")
    return start, end


@dataclass(frozen=True)
class ArchiveBatch:
    batch_id: str
    unit: str
    month: str
    path: str
    root_hash: str
    items: tuple[CopyItem, ...]
    created_at: datetime
    created_by: str
    last_verified_at: datetime | None = None
    last_verification_ok: bool = True
    last_verification_problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total_bytes(self) -> int:
        return sum(i.size_bytes for i in self.items)

    def verified(self, at: datetime, problems: list[str]) -> ArchiveBatch:
        return replace(
            self,
            last_verified_at=at,
            last_verification_ok=not problems,
            last_verification_problems=tuple(problems),
        )
