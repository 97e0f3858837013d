"""What the use cases need from the outside world (implemented in adapters/, faked in unit tests)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from compliance_svc.domain.model import Finding, Severity, State


@dataclass(frozen=True)
class FindingFilter:
    units: Sequence[str] | None = None  # None = every unit
    article: str = ""
    severity: Severity | None = None
    state: State | None = None
    subject: str = ""


class FindingRepository(Protocol):
    async def add_if_absent(self, finding: Finding) -> bool:
        """Store a new finding with its FindingRaised event; False if its id is already stored."""
        ...

    async def get(self, finding_id: str) -> Finding | None: ...

    async def save(self, finding: Finding) -> Finding:
        """Store a changed finding (optimistic: `finding.version` must be current) with its event."""
        ...

    async def list(self, where: FindingFilter, *, limit: int, after: tuple[str, str] | None) -> list[Finding]:
        """Newest first (raised_at, then id), at most `limit`, starting after the cursor `after`."""
        ...
