"""What the use cases need from the outside world (implemented in adapters/, faked in unit tests)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from compliance_svc.domain.model import Finding, Severity, State
from compliance_svc.domain.spotcheck import Material, SpotCheck


@dataclass(frozen=True)
class FindingFilter:
    units: Sequence[str] | None = None  # None = every unit
    article: str = ""
    severity: Severity | None = None
    state: State | None = None
    subject: str = ""


class FindingRepository(Protocol):
    async def add_absent(self, findings: Sequence[Finding]) -> list[str]:
        """Store the findings whose id is not stored yet, each with its FindingRaised event, in one
        round trip; returns the ids stored now (a finding already stored is left as it is)."""
        ...

    async def get(self, finding_id: str) -> Finding | None: ...

    async def save(self, finding: Finding, *, was: State) -> Finding:
        """Store a changed finding (optimistic: `finding.version` must be current) with its event;
        `was` is its state as read (the per-state counts move from it)."""
        ...

    async def list(self, where: FindingFilter, *, limit: int, after: tuple[str, str] | None) -> list[Finding]:
        """Newest first (raised_at, then id), at most `limit`, starting after the cursor `after`."""
        ...


class SpotCheckStore(Protocol):
    async def note_materials(self, materials: Sequence[Material]) -> None:
        """Remember recordings and case files as material for spot checks, in one round trip
        (idempotent: keyed by kind and id; of one id noted twice, the later one stays)."""
        ...

    async def materials(self, unit: str, start: datetime, end: datetime) -> list[Material]: ...

    async def add(self, check: SpotCheck) -> None: ...

    async def get(self, spot_check_id: str) -> SpotCheck | None: ...

    async def save(self, check: SpotCheck) -> SpotCheck: ...


class AccessFiler(Protocol):
    """Files access requests in access-svc on a reviewer's behalf (R16, R22): the reviewer is the requester
    (they get the grant once the unit head or the legal affairs office approved; they never decide it)."""

    async def file(self, reviewer: str, material: Sequence[tuple[str, str]], purpose: str) -> str:
        """`material`: (kind "RECORDING" or "CASE", id) pairs; answers the access request's id."""
        ...
