"""One handler per command: record raised findings, acknowledge, resolve; and the queries."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from servicekit.errors import InvalidArgument, NotFound, PermissionDenied

from compliance_svc.domain.model import Attribution, Finding, Raised, SeverityPolicy
from compliance_svc.service_layer.ports import FindingFilter, FindingRepository

# Roles that see every unit's findings.
SUPERVISORS = frozenset({"LEGAL_OFFICE", "INSPECTOR"})


class FindingNotFound(NotFound):
    pass


class ComplianceHandlers:
    def __init__(
        self,
        findings: FindingRepository,
        policy: SeverityPolicy,
        clock: Callable[[], datetime],
        on_raised: Callable[[Finding], None] = lambda _f: None,
    ) -> None:
        self.findings = findings
        self.policy = policy
        self.clock = clock
        self.on_raised = on_raised

    async def record(self, raised: Iterable[Raised]) -> list[Finding]:
        """Store each finding once (a replayed or redelivered event finds it stored), all in one round
        trip; returns the new ones. Of one finding raised twice here, the first counts."""
        findings: dict[str, Finding] = {}
        for item in raised:
            findings.setdefault(item.finding_id, Finding.raise_(item, self.policy))
        if not findings:
            return []
        stored = set(await self.findings.add_absent(list(findings.values())))
        new = [finding for finding in findings.values() if finding.finding_id in stored]
        for finding in new:
            self.on_raised(finding)
        return new

    async def get(self, finding_id: str, *, subject: str, unit: str, roles: frozenset[str]) -> Finding:
        if not finding_id:
            raise InvalidArgument("finding_id: required")
        finding = await self.findings.get(finding_id)
        if finding is None:
            raise FindingNotFound(f"finding {finding_id!r} does not exist")
        if not roles & SUPERVISORS and finding.unit != unit:
            raise PermissionDenied(
                f"finding {finding_id!r} belongs to unit {finding.unit!r}; {subject!r} of unit {unit!r} "
                "may read only its own unit's findings"
            )
        return finding

    async def acknowledge(self, finding_id: str, *, by: Attribution) -> Finding:
        finding = await self._load(finding_id)
        return await self.findings.save(finding.acknowledge(by), was=finding.state)

    async def resolve(self, finding_id: str, disposition: str, *, by: Attribution) -> Finding:
        finding = await self._load(finding_id)
        return await self.findings.save(finding.resolve(disposition, by), was=finding.state)

    async def list(
        self,
        where: FindingFilter,
        *,
        unit: str,
        roles: frozenset[str],
        limit: int,
        after: tuple[str, str] | None,
    ) -> list[Finding]:
        requested = list(where.units or [])
        if not roles & SUPERVISORS:
            if requested and requested != [unit]:
                raise PermissionDenied(
                    f"unit: {requested[0]!r} is not your unit ({unit!r}); only LEGAL_OFFICE and INSPECTOR "
                    "read other units' findings"
                )
            requested = [unit]
        scoped = FindingFilter(
            units=requested or None,
            article=where.article,
            severity=where.severity,
            state=where.state,
            subject=where.subject,
        )
        return await self.findings.list(scoped, limit=limit, after=after)

    async def _load(self, finding_id: str) -> Finding:
        if not finding_id:
            raise InvalidArgument("finding_id: required")
        finding = await self.findings.get(finding_id)
        if finding is None:
            raise FindingNotFound(f"finding {finding_id!r} does not exist")
        return finding
