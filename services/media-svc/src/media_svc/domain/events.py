"""The events of media-svc's aggregates (past tense), in one place: what the adapters publish
(adapters/event_mapping.py) and what the handlers react to in-process (service_layer/handlers.py,
`REACTIONS`). Pure Python; the aggregates append these to their `events` list as they decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the aggregates import this module; their types are only needed for annotations
    from media_svc.domain.continuity import Explanation, Gap, Series
    from media_svc.domain.devices import Fault, MaintenanceRecord, PreUseCheck
    from media_svc.domain.recordings import Attribution, Recording, SearchQuery

# -- recordings (RecordingIngested, RecordingLinked, IntegrityCheckFailed)


@dataclass(frozen=True)
class RecordingIngested:
    recording: Recording


@dataclass(frozen=True)
class RecordingLinked:
    recording: Recording
    case_id: str
    activity_id: str
    linked: Attribution
    by_legal_office: bool = False


@dataclass(frozen=True)
class IntegrityCheckFailed:
    recording_id: str
    unit: str
    expected_sha256: str
    actual_sha256: str
    first_bad_offset: int
    detected_by: str
    detected_at: datetime
    detail: str


RecordingEvent = RecordingIngested | RecordingLinked | IntegrityCheckFailed


# -- continuity (R19c)


@dataclass(frozen=True)
class InterruptionExplained:
    series: Series
    gap: Gap
    explanation: Explanation


# -- content access (R16, R23-3): the access-log record is the event


@dataclass(frozen=True)
class ContentAccessed:
    """R16, R23-3: a person or service read a recording's content under a grant."""

    access_id: str
    recording_id: str
    sha256: str
    unit: str
    subject: str
    subject_unit: str
    at: datetime
    grant_id: str
    purpose: str
    approver: str


# -- views and searches from outside the owning unit (R16, R23-3): the access-log record is the event,
#    as case-svc's CaseViewed / CasesSearched (which views: servicekit.policy.viewed_from_outside)


@dataclass(frozen=True)
class RecordingViewed:
    """A recording's metadata viewed (`rpc`: GetRecording) by someone outside its owning unit."""

    view_id: str
    recording_id: str
    unit: str
    viewer: str
    viewer_unit: str
    at: datetime
    rpc: str


@dataclass(frozen=True)
class RecordingsSearched:
    """Recordings searched or listed across units or in a unit other than the viewer's: the criteria
    (`query.unit` the unit searched, "" = every unit) and the recordings the page returned."""

    view_id: str
    viewer: str
    viewer_unit: str
    at: datetime
    rpc: str
    query: SearchQuery
    recording_ids: tuple[str, ...]


# -- devices (R20, R21)


@dataclass(frozen=True)
class DeviceRegistered:
    device_number: str
    unit: str
    model: str
    by: str
    at: datetime


@dataclass(frozen=True)
class DeviceChecked:
    check: PreUseCheck


@dataclass(frozen=True)
class DeviceMaintained:
    maintenance: MaintenanceRecord


@dataclass(frozen=True)
class DeviceFaultReported:
    device_number: str
    unit: str
    fault: Fault


@dataclass(frozen=True)
class DeviceReturnedToService:
    device_number: str
    unit: str
    fault: Fault


DeviceEvent = (
    DeviceRegistered | DeviceChecked | DeviceMaintained | DeviceFaultReported | DeviceReturnedToService
)
