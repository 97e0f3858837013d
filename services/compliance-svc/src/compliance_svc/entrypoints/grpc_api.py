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
from servicekit.policy import rpc_actions, rpc_role_policy

from compliance_svc.adapters.proto_mapping import (
    attribution_pb,
    finding_pb,
    severity_from_pb,
    state_from_pb,
    ts,
)
from compliance_svc.domain import spotcheck as sc
from compliance_svc.domain.model import Attribution
from compliance_svc.domain.permissions import FINDINGS, Action
from compliance_svc.service_layer.handlers import ComplianceHandlers
from compliance_svc.service_layer.ports import FindingFilter
from compliance_svc.service_layer.spot_checks import SpotCheckHandlers

SERVICE = api.DESCRIPTOR.services_by_name["ComplianceService"]
DEFAULT_PAGE, MAX_PAGE = 50, 500

# Which R8 action each RPC is (domain/permissions.py); servicekit admits a call only from its roles.
RPC_ACTIONS = rpc_actions(
    SERVICE.full_name,
    {
        "ListFindings": (FINDINGS, Action.READ_FINDINGS),
        "GetFinding": (FINDINGS, Action.READ_FINDINGS),
        "AcknowledgeFinding": (FINDINGS, Action.DECIDE_FINDING),
        "ResolveFinding": (FINDINGS, Action.DECIDE_FINDING),
        "DrawSpotCheck": (FINDINGS, Action.DRAW_SPOT_CHECK),
        "GetSpotCheck": (FINDINGS, Action.READ_SPOT_CHECK),
        "RecordReview": (FINDINGS, Action.RECORD_REVIEW),
    },
)


def role_policy() -> dict[str, frozenset[str]]:
    """Full method name -> roles allowed to call it (servicekit refuses any method not listed)."""
    return rpc_role_policy(RPC_ACTIONS)


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _by() -> Attribution:
    principal = current_principal()
    return Attribution(principal.subject, principal.unit, _now())


KIND_PB = {sc.Kind.RECORDING: api.MATERIAL_KIND_RECORDING, sc.Kind.CASE: api.MATERIAL_KIND_CASE}
ASPECT_PB = {
    sc.Aspect.CONDUCT: api.REVIEW_ASPECT_CONDUCT,
    sc.Aspect.CIVILITY: api.REVIEW_ASPECT_CIVILITY,
    sc.Aspect.COMPLETENESS: api.REVIEW_ASPECT_COMPLETENESS,
}


def _aspects(values: Any) -> frozenset[sc.Aspect]:
    by_number = {v: k for k, v in ASPECT_PB.items()}
    out = set()
    for n, value in enumerate(values):
        if value not in by_number:
            raise InvalidArgument(f"failed_aspects[{n}]: unknown or unspecified aspect {value}")
        out.add(by_number[value])
    return frozenset(out)


def item_pb(item: sc.Item) -> api.SpotCheckItem:
    message = api.SpotCheckItem(
        item_id=item.item_id,
        kind=KIND_PB[item.kind],
        material_id=item.material_id,
        officer=item.officer,
        reviewer=item.reviewer,
    )
    if item.review is not None:
        message.review.CopyFrom(
            api.Review(
                failed_aspects=[ASPECT_PB[a] for a in sorted(item.review.failed)],
                notes=item.review.notes,
                reviewed=attribution_pb(item.review.by),
            )
        )
    return message


def spot_check_pb(check: sc.SpotCheck) -> api.SpotCheck:
    return api.SpotCheck(
        spot_check_id=check.spot_check_id,
        unit=check.unit,
        period_from=ts(check.period_from),
        period_to=ts(check.period_to),
        seed=check.seed,
        per_officer=check.per_officer,
        items=[item_pb(i) for i in check.items],
        drawn=attribution_pb(check.drawn),
        access_requests=[
            api.ReviewerAccessRequest(reviewer=a.reviewer, request_id=a.request_id, item_ids=list(a.item_ids))
            for a in check.access_requests
        ],
    )


class ComplianceApi(api_grpc.ComplianceServiceServicer):
    def __init__(self, handlers: ComplianceHandlers, spot_checks: SpotCheckHandlers) -> None:
        self.handlers = handlers
        self.spot_checks = spot_checks

    async def DrawSpotCheck(
        self, request: api.DrawSpotCheckRequest, context: Any
    ) -> api.DrawSpotCheckResponse:
        principal = current_principal()
        check = await self.spot_checks.draw(
            unit=request.unit,
            start=request.period_from.ToDatetime(tzinfo=UTC) if request.HasField("period_from") else None,
            end=request.period_to.ToDatetime(tzinfo=UTC) if request.HasField("period_to") else None,
            per_officer=request.per_officer,
            reviewers=list(request.reviewers),
            seed=request.seed,
            by=_by(),
            roles=frozenset(principal.roles),
        )
        return api.DrawSpotCheckResponse(spot_check=spot_check_pb(check))

    async def GetSpotCheck(self, request: api.GetSpotCheckRequest, context: Any) -> api.GetSpotCheckResponse:
        principal = current_principal()
        check = await self.spot_checks.get(
            request.spot_check_id, unit=principal.unit, roles=frozenset(principal.roles)
        )
        return api.GetSpotCheckResponse(spot_check=spot_check_pb(check))

    async def RecordReview(self, request: api.RecordReviewRequest, context: Any) -> api.RecordReviewResponse:
        item, raised = await self.spot_checks.review(
            request.spot_check_id,
            request.item_id,
            _aspects(request.failed_aspects),
            request.notes,
            by=_by(),
        )
        return api.RecordReviewResponse(item=item_pb(item), findings=[finding_pb(f) for f in raised])

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
