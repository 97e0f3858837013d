"""The gRPC servicer of `lawtrail.case.v1.CaseService`: protobuf -> commands, results -> protobuf.

No rules live here. The caller comes from servicekit's authentication interceptor (never from the
request); domain errors become status codes in servicekit's error interceptor (one table). The role
policy the server enforces before a call reaches this class is derived from the domain's R8 table.
"""

from __future__ import annotations

from typing import Any

from lawtrail.case.v1 import case_service_pb2 as api
from lawtrail.case.v1 import case_service_pb2_grpc as api_grpc
from lawtrail.common.v1 import common_pb2
from servicekit.auth import current_actor
from servicekit.policy import rpc_actions, rpc_role_policy
from servicekit.protomap import optional_time

from case_svc.adapters.proto_mapping import (
    activity_pb,
    case_pb,
    document_pb,
    enum_from_pb,
    gap_pb,
    incident_pb,
    review_pb,
    summary_pb,
)
from case_svc.domain import commands as c
from case_svc.domain.model import (
    ActivityKind,
    ActType,
    CaseFlag,
    ExemptionReason,
    IncidentKind,
    LegalReviewOutcome,
    PartyKind,
    Procedure,
    RecordMode,
    Stage,
)
from case_svc.domain.permissions import CASES, Action
from case_svc.service_layer.handlers import CaseHandlers
from case_svc.service_layer.queries import ListCases

SERVICE = api.DESCRIPTOR.services_by_name["CaseService"]

# Which R8 action each RPC is; the server admits a call only from a role that may take the action.
METHOD_ACTIONS: dict[str, Action] = {
    "OpenCase": Action.OPEN_CASE,
    "GetCase": Action.READ_CASE,
    "ListCases": Action.READ_CASE,
    "GetCaseFileGaps": Action.READ_CASE,
    "AdvanceStage": Action.ADVANCE_STAGE,
    "ReturnForReinvestigation": Action.RETURN_FOR_REINVESTIGATION,
    "CloseCase": Action.CLOSE_CASE,
    "ArchiveCase": Action.ARCHIVE_CASE,
    "FlagCase": Action.FLAG_CASE,
    "AmendCaseParticulars": Action.AMEND_PARTICULARS,
    "RecordIncident": Action.RECORD_INCIDENT,
    "RecordActivity": Action.RECORD_ACTIVITY,
    "FileDocument": Action.FILE_DOCUMENT,
    "RecordLegalReview": Action.RECORD_LEGAL_REVIEW,
    "ReadDocument": Action.READ_DOCUMENT,
}


RPC_ACTIONS = rpc_actions(SERVICE.full_name, {m: (CASES, a) for m, a in METHOD_ACTIONS.items()})


def role_policy() -> dict[str, frozenset[str]]:
    """Full method name -> roles allowed to call it (servicekit refuses any method not listed)."""
    return rpc_role_policy(RPC_ACTIONS)


caller = current_actor  # the verified caller as the domain's Actor (never from the request)


class CaseApi(api_grpc.CaseServiceServicer):
    def __init__(self, handlers: CaseHandlers) -> None:
        self.handlers = handlers

    async def OpenCase(self, request: api.OpenCaseRequest, context: Any) -> api.OpenCaseResponse:
        cmd = c.OpenCase(
            act_type=enum_from_pb(ActType, request.act_type, "act_type"),
            procedure=enum_from_pb(Procedure, request.procedure, "procedure"),
            unit=request.unit,
            cause=request.cause,
            responsible_officer=request.responsible_officer,
            parties=tuple(
                c.PartyInput(p.name, enum_from_pb(PartyKind, p.kind, f"parties[{i}].kind"), p.identifier)
                for i, p in enumerate(request.parties)
            ),
            request_id=request.request_id,
        )
        return api.OpenCaseResponse(case=case_pb(await self.handlers.open_case(cmd, caller())))

    async def ReadDocument(self, request: api.ReadDocumentRequest, context: Any) -> api.ReadDocumentResponse:
        document, content = await self.handlers.read_document(
            request.case_id, request.document_id, request.access_grant, caller()
        )
        return api.ReadDocumentResponse(document=document_pb(document), content=content)

    async def GetCase(self, request: api.GetCaseRequest, context: Any) -> api.GetCaseResponse:
        return api.GetCaseResponse(case=case_pb(await self.handlers.get_case(request.case_id, caller())))

    async def ListCases(self, request: api.ListCasesRequest, context: Any) -> api.ListCasesResponse:
        query = ListCases(
            unit=request.unit,
            stage=enum_from_pb(Stage, request.stage, "stage"),
            act_type=enum_from_pb(ActType, request.act_type, "act_type"),
            flag=enum_from_pb(CaseFlag, request.flag, "flag"),
            officer=request.officer,
            party=request.party,
            cause_prefix=request.cause_prefix,
            opened_from=optional_time(request, "opened_from"),
            opened_to=optional_time(request, "opened_to"),
            page_size=request.page.page_size,
            page_token=request.page.page_token,
        )
        page = await self.handlers.list_cases(query, caller())
        return api.ListCasesResponse(
            cases=[summary_pb(s) for s in page.cases],
            page=common_pb2.PageResponse(next_page_token=page.next_page_token),
        )

    async def AdvanceStage(self, request: api.AdvanceStageRequest, context: Any) -> api.AdvanceStageResponse:
        cmd = c.AdvanceStage(
            request.case_id, enum_from_pb(Stage, request.to_stage, "to_stage"), request.reason
        )
        return api.AdvanceStageResponse(case=case_pb(await self.handlers.advance_stage(cmd, caller())))

    async def ReturnForReinvestigation(
        self, request: api.ReturnForReinvestigationRequest, context: Any
    ) -> api.ReturnForReinvestigationResponse:
        cmd = c.ReturnForReinvestigation(request.case_id, request.reason)
        case = await self.handlers.return_for_reinvestigation(cmd, caller())
        return api.ReturnForReinvestigationResponse(case=case_pb(case))

    async def CloseCase(self, request: api.CloseCaseRequest, context: Any) -> api.CloseCaseResponse:
        cmd = c.CloseCase(request.case_id, request.reason)
        return api.CloseCaseResponse(case=case_pb(await self.handlers.close_case(cmd, caller())))

    async def ArchiveCase(self, request: api.ArchiveCaseRequest, context: Any) -> api.ArchiveCaseResponse:
        cmd = c.ArchiveCase(request.case_id, request.reason)
        return api.ArchiveCaseResponse(case=case_pb(await self.handlers.archive_case(cmd, caller())))

    async def AmendCaseParticulars(
        self, request: api.AmendCaseParticularsRequest, context: Any
    ) -> api.AmendCaseParticularsResponse:
        cmd = c.AmendCaseParticulars(
            request.case_id,
            request.cause,
            tuple(
                c.PartyInput(p.name, enum_from_pb(PartyKind, p.kind, f"parties[{i}].kind"), p.identifier)
                for i, p in enumerate(request.parties)
            ),
            request.reason,
        )
        case = await self.handlers.amend_particulars(cmd, caller())
        return api.AmendCaseParticularsResponse(case=case_pb(case))

    async def FlagCase(self, request: api.FlagCaseRequest, context: Any) -> api.FlagCaseResponse:
        cmd = c.FlagCase(request.case_id, enum_from_pb(CaseFlag, request.flag, "flag"), request.reason)
        return api.FlagCaseResponse(case=case_pb(await self.handlers.flag_case(cmd, caller())))

    async def RecordIncident(
        self, request: api.RecordIncidentRequest, context: Any
    ) -> api.RecordIncidentResponse:
        cmd = c.RecordIncident(
            case_id=request.case_id,
            kind=enum_from_pb(IncidentKind, request.kind, "kind"),
            occurred_at=optional_time(request, "occurred_at"),
            reporter=request.reporter,
            description=request.description,
            reason=request.reason,
            request_id=request.request_id,
        )
        case, incident = await self.handlers.record_incident(cmd, caller())
        return api.RecordIncidentResponse(case=case_pb(case), incident=incident_pb(incident))

    async def RecordActivity(
        self, request: api.RecordActivityRequest, context: Any
    ) -> api.RecordActivityResponse:
        cmd = c.RecordActivity(
            case_id=request.case_id,
            kind=enum_from_pb(ActivityKind, request.kind, "kind"),
            started_at=optional_time(request, "started_at"),
            ended_at=optional_time(request, "ended_at"),
            place=request.place,
            officers=tuple(request.officers),
            record_mode=enum_from_pb(RecordMode, request.record_mode, "record_mode"),
            key_stages_reason=request.key_stages_reason,
            text_record_document_id=request.text_record_document_id,
            exemption_reason=enum_from_pb(ExemptionReason, request.exemption_reason, "exemption_reason"),
            exemption_note=request.exemption_note,
            request_id=request.request_id,
        )
        case, activity = await self.handlers.record_activity(cmd, caller())
        return api.RecordActivityResponse(
            case=case_pb(case), activity=activity_pb(activity, case.recording_ids(activity.activity_id))
        )

    async def FileDocument(self, request: api.FileDocumentRequest, context: Any) -> api.FileDocumentResponse:
        cmd = c.FileDocument(
            case_id=request.case_id,
            document_type=request.document_type,
            number=request.number,
            title=request.title,
            author=request.author,
            signed_on=request.signed_on,
            content=request.content,
            content_type=request.content_type,
            sha256=request.sha256,
            supersedes_document_id=request.supersedes_document_id,
        )
        case, document = await self.handlers.file_document(cmd, caller())
        return api.FileDocumentResponse(case=case_pb(case), document=document_pb(document))

    async def RecordLegalReview(
        self, request: api.RecordLegalReviewRequest, context: Any
    ) -> api.RecordLegalReviewResponse:
        cmd = c.RecordLegalReview(
            request.case_id, enum_from_pb(LegalReviewOutcome, request.outcome, "outcome"), request.opinion
        )
        case, review = await self.handlers.record_legal_review(cmd, caller())
        return api.RecordLegalReviewResponse(case=case_pb(case), review=review_pb(review))

    async def GetCaseFileGaps(
        self, request: api.GetCaseFileGapsRequest, context: Any
    ) -> api.GetCaseFileGapsResponse:
        gaps = await self.handlers.get_case_file_gaps(request.case_id, caller())
        return api.GetCaseFileGapsResponse(
            case_id=gaps.case_id, checklist=gaps.checklist, gaps=[gap_pb(g) for g in gaps.gaps]
        )
