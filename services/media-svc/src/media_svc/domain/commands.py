"""The commands of media-svc: what a caller (or a reaction to an event) asks the service to do.

Plain data, validated where the rule lives (the aggregates and the handlers). Each command has exactly
one handler method in service_layer/handlers.py (`MediaHandlers`), named after it in snake case.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from media_svc.domain.recordings import Classification

# -- recordings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadManifest:
    """What an upload declares before its bytes: the classification (R17), the SHA-256 and the size."""

    classification: Classification
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class BeginUpload:
    """Where to (re)start an upload, or the recording when the content is already stored."""

    manifest: UploadManifest


@dataclass(frozen=True)
class UploadRecording:
    """Receive the content from `offset` on and ingest it (the bytes arrive as a stream beside it)."""

    manifest: UploadManifest
    offset: int = 0


@dataclass(frozen=True)
class LinkRecording:
    """R5, R17: link a recording to a case and, optionally, one of its activities."""

    recording_id: str
    case_id: str
    activity_id: str = ""


@dataclass(frozen=True)
class ExplainInterruption:
    """R19c: explain the gap before `recording_id`, in writing or spoken in a later recording."""

    recording_id: str
    written_text: str = ""
    spoken_in_recording_id: str = ""
    spoken_offset: timedelta | None = None


@dataclass(frozen=True)
class DownloadRecording:
    """R16: read a recording's content under an access grant (recorded before any byte is released)."""

    recording_id: str
    access_grant: str


@dataclass(frozen=True)
class RecordIntegrityFailure:
    """R23-2: the stored content no longer matches the SHA-256 recorded at ingest."""

    recording_id: str
    actual_sha256: str
    first_bad_offset: int
    detected_by: str
    detail: str


@dataclass(frozen=True)
class RecordIntegrityVerified:
    """R23-2: a fixity check found the stored content intact."""

    recording_id: str


@dataclass(frozen=True)
class StartFixityScrub:
    """R23-2: re-hash every stored recording (in the background; one run at a time across replicas)."""

    triggered_by: str


# -- devices (R20, R21) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisterDevice:
    device_number: str
    unit: str
    model: str


@dataclass(frozen=True)
class RecordPreUseCheck:
    device_number: str
    battery_percent: int
    free_storage_bytes: int
    clock_offset_s: float
    request_id: str = ""


@dataclass(frozen=True)
class RecordMaintenance:
    device_number: str
    description: str
    request_id: str = ""


@dataclass(frozen=True)
class ReportFault:
    device_number: str
    description: str
    request_id: str = ""


@dataclass(frozen=True)
class RecordRepair:
    device_number: str
    note: str
    request_id: str = ""
