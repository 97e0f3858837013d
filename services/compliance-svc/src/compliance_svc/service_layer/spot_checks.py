"""R22 use cases: draw a spot check, read it, record a review (which raises findings)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from servicekit.errors import InvalidArgument, NotFound, PermissionDenied

from compliance_svc.domain import spotcheck as sc
from compliance_svc.domain.model import Attribution, Finding
from compliance_svc.service_layer.handlers import SUPERVISORS, ComplianceHandlers
from compliance_svc.service_layer.ports import AccessFiler, SpotCheckStore


class SpotCheckNotFound(NotFound):
    pass


class SpotCheckHandlers:
    def __init__(
        self, store: SpotCheckStore, findings: ComplianceHandlers, access: AccessFiler | None = None
    ) -> None:
        self.store = store
        self.findings = findings
        self.access = access

    async def note(self, materials: Sequence[sc.Material]) -> None:
        if materials:
            await self.store.note_materials(materials)

    async def draw(
        self,
        *,
        unit: str,
        start: datetime | None,
        end: datetime | None,
        per_officer: int,
        reviewers: Sequence[str],
        seed: int,
        by: Attribution,
        roles: frozenset[str],
    ) -> sc.SpotCheck:
        if not unit:
            raise InvalidArgument("unit: required")
        if not roles & {"LEGAL_OFFICE"} and not ("UNIT_HEAD" in roles and by.unit == unit):
            raise PermissionDenied(f"only LEGAL_OFFICE or the UNIT_HEAD of {unit!r} draws its spot checks")
        if start is None or end is None:
            raise InvalidArgument(f"{'period_from' if start is None else 'period_to'}: required")
        if end <= start:
            raise InvalidArgument("period_to: must be after period_from")
        seed = seed or secrets.randbelow(2**62) + 1
        sample = sc.draw(await self.store.materials(unit, start, end), seed=seed, per_officer=per_officer)
        items = sc.assign(sample, [r.strip() for r in reviewers if r.strip()], seed=seed)
        check = sc.SpotCheck(uuid.uuid4().hex, unit, start, end, seed, per_officer, tuple(items), by)
        if self.access is not None:
            # Reviewers open the material through access grants (R16, R22): one request per reviewer (and
            # per 100 items), filed before the spot check is stored, so a stored check names its requests.
            # If access-svc refuses or is down, the draw fails and nothing is stored (requests filed for
            # the other reviewers stay PENDING in access-svc, visible there, and are simply not approved).
            filed = []
            for reviewer, mine in sc.access_batches(check.items):
                request_id = await self.access.file(
                    reviewer,
                    [(i.kind.value, i.material_id) for i in mine],
                    sc.access_purpose(check.spot_check_id, unit, len(mine)),
                )
                filed.append(sc.ReviewerAccess(reviewer, request_id, tuple(i.item_id for i in mine)))
            check = replace(check, access_requests=tuple(filed))
        await self.store.add(check)
        return check

    async def get(self, spot_check_id: str, *, unit: str, roles: frozenset[str]) -> sc.SpotCheck:
        check = await self._load(spot_check_id)
        if not roles & SUPERVISORS and check.unit != unit:
            raise PermissionDenied(f"spot check {spot_check_id!r} is of unit {check.unit!r}")
        return check

    async def review(
        self, spot_check_id: str, item_id: str, failed: frozenset[sc.Aspect], notes: str, *, by: Attribution
    ) -> tuple[sc.Item, list[Finding]]:
        check = await self._load(spot_check_id)
        item = sc.review(check.item(item_id), failed, notes, by)
        await self.store.save(check.with_item(item))
        raised = await self.findings.record(sc.findings_of(item, check.unit, check.spot_check_id))
        return item, raised

    async def _load(self, spot_check_id: str) -> sc.SpotCheck:
        if not spot_check_id:
            raise InvalidArgument("spot_check_id: required")
        check = await self.store.get(spot_check_id)
        if check is None:
            raise SpotCheckNotFound(f"spot check {spot_check_id!r} does not exist")
        return check
