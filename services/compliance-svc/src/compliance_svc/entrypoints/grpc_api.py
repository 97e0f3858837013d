"""The gRPC servicer of `lawtrail.compliance.v1.ComplianceService`: protobuf <-> handlers, no rules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lawtrail.common.v1 import common_pb2
from lawtrail.compliance.v1 import compliance_service_pb2 as api
from lawtrail.compliance.v1 import compliance_service_pb2_grpc as api_grpc
from servicekit.auth import current_principal
from servicekit.errors import InvalidArgument
from servicekit.paging import decode_page_token, encode_page_token, filters_fingerprint, foreign_page_token

from compliance_svc.adapters.proto_mapping import finding_pb, severity_from_pb, state_from_pb
from compliance_svc.domain.model import Attribution
from compliance_svc.service_layer.handlers import ComplianceHandlers
from compliance_svc.service_layer.ports import FindingFilter

SERVICE = api.DESCRIPTOR.services_by_name["ComplianceService"]
READERS = frozenset({"OFFICER", "UNIT_HEAD", "LEGAL_OFFICE", "INSPECTOR", "SERVICE"})
DECIDERS = frozenset({"LEGAL_OFFICE"})
DEFAULT_PAGE, MAX_PAGE = 50, 500


def role_policy() -> dict[str, frozenset[str]]:
    prefix = f"/{SERVICE.full_name}/"
    return {
        prefix + "ListFindings": READERS,
        prefix + "GetFinding": READERS,
        prefix + "AcknowledgeFinding": DECIDERS,
        prefix + "ResolveFinding": DECIDERS,
    }


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _by() -> Attribution:
    principal = current_principal()
    return Attribution(principal.subject, principal.unit, _now())


class ComplianceApi(api_grpc.ComplianceServiceServicer):
    def __init__(self, handlers: ComplianceHandlers) -> None:
        self.handlers = handlers

    async def ListFindings(self, request: api.ListFindingsRequest, context: Any) -> api.ListFindingsResponse:
        principal = current_principal()
        size = request.page.page_size or DEFAULT_PAGE
        if not 1 <= size <= MAX_PAGE:
            raise InvalidArgument(f"page.page_size: must be 1–{MAX_PAGE} (0 = {DEFAULT_PAGE}), got {size}")
        where = FindingFilter(
            units=[request.unit] if request.unit else None,
            article=request.article,
            severity=severity_from_pb(request.severity),
            state=state_from_pb(request.state),
            subject=request.subject,
        )
        fingerprint = filters_fingerprint(
            [request.unit, request.article, request.severity, request.state, request.subject]
        )
        position = decode_page_token(request.page.page_token, filters=fingerprint)
        if position is not None and (len(position) != 2 or not all(isinstance(p, str) for p in position)):
            raise foreign_page_token()
        findings = await self.handlers.list(
            where,
            unit=principal.unit,
            roles=frozenset(principal.roles),
            limit=size + 1,
            after=(position[0], position[1]) if position else None,
        )
        token = ""
        if len(findings) > size:
            findings = findings[:size]
            last = findings[-1]
            token = encode_page_token([last.raised_at.isoformat(), last.finding_id], filters=fingerprint)
        return api.ListFindingsResponse(
            findings=[finding_pb(f) for f in findings], page=common_pb2.PageResponse(next_page_token=token)
        )

    async def GetFinding(self, request: api.GetFindingRequest, context: Any) -> api.GetFindingResponse:
        principal = current_principal()
        finding = await self.handlers.get(
            request.finding_id,
            subject=principal.subject,
            unit=principal.unit,
            roles=frozenset(principal.roles),
        )
        return api.GetFindingResponse(finding=finding_pb(finding))

    async def AcknowledgeFinding(
        self, request: api.AcknowledgeFindingRequest, context: Any
    ) -> api.AcknowledgeFindingResponse:
        finding = await self.handlers.acknowledge(request.finding_id, by=_by())
        return api.AcknowledgeFindingResponse(finding=finding_pb(finding))

    async def ResolveFinding(
        self, request: api.ResolveFindingRequest, context: Any
    ) -> api.ResolveFindingResponse:
        finding = await self.handlers.resolve(request.finding_id, request.disposition, by=_by())
        return api.ResolveFindingResponse(finding=finding_pb(finding))
