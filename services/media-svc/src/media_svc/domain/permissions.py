"""R8 for media-svc's records: who may do what with recordings and devices.

The rule and its role groups are servicekit.policy's, the one permission policy of Lawtrail: a unit's
members see and act on their own unit's records; LEGAL_OFFICE and INSPECTOR read every unit's records, and
the legal affairs office acts here only to link recordings to cases across units (R5); a record of another
unit answers PERMISSION_DENIED. This module only declares media-svc's resources with it (data, no
branches); the gRPC role policies (entrypoints) and the table in docs/permissions.md are derived from these
declarations.
"""

from __future__ import annotations

import enum

from servicekit.policy import UNIT_MEMBERS, Grant, Resource, Role

# A collection station authenticates as a service account with this scope (architecture: Security).
UPLOAD_SCOPE = "media.upload"

_PEOPLE = frozenset(
    {Role.OFFICER, Role.UNIT_HEAD, Role.ARCHIVIST, Role.LEGAL_OFFICE, Role.ARCHIVE_ROOM, Role.INSPECTOR}
)


class RecordingAction(enum.StrEnum):
    UPLOAD = "upload recordings"
    READ = "read recordings"
    LINK = "link recordings"
    EXPLAIN_INTERRUPTION = "explain interruptions of recordings"
    DOWNLOAD = "download the content of recordings"
    START_FIXITY_SCRUB = "start a fixity scrub"
    READ_FIXITY_SCRUB = "read the fixity scrub status"


RECORDINGS: Resource[RecordingAction] = Resource(
    name="recording",
    plural="recordings",
    service="media-svc",
    why="recordings are stored per unit, R9",
    grants={
        RecordingAction.UPLOAD: Grant.act(UNIT_MEMBERS | {Role.ARCHIVIST, UPLOAD_SCOPE}),
        RecordingAction.READ: Grant.read(
            UNIT_MEMBERS | {Role.ARCHIVIST, Role.ARCHIVE_ROOM, Role.SERVICE},
            note="R16: from outside the owning unit, logged as `RecordingViewed` / `RecordingsSearched`",
        ),
        # The legal affairs office links across units (R5: case-svc counts only its cross-unit links).
        RecordingAction.LINK: Grant.act(UNIT_MEMBERS, supervised=True),
        RecordingAction.EXPLAIN_INTERRUPTION: Grant.act(UNIT_MEMBERS),
        RecordingAction.DOWNLOAD: Grant.everywhere(
            _PEOPLE | {Role.SERVICE}, note="R16: anyone may ask; the access grant decides"
        ),
        RecordingAction.START_FIXITY_SCRUB: Grant.everywhere(
            {Role.ARCHIVIST, Role.LEGAL_OFFICE}, note="service-wide (R23-2)"
        ),
        RecordingAction.READ_FIXITY_SCRUB: Grant.everywhere(
            {Role.ARCHIVIST, Role.LEGAL_OFFICE, Role.INSPECTOR, Role.UNIT_HEAD}, note="service-wide (R23-2)"
        ),
    },
)


class DeviceAction(enum.StrEnum):
    REGISTER = "register devices"
    READ = "read devices"
    RECORD_PRE_USE_CHECK = "record a pre-use check of a device"
    RECORD_MAINTENANCE = "record maintenance of a device"
    REPORT_FAULT = "report a fault of a device"
    RECORD_REPAIR = "record the repair of a device"


DEVICES: Resource[DeviceAction] = Resource(
    name="device",
    plural="devices",
    service="media-svc",
    grants={
        DeviceAction.REGISTER: Grant.act({Role.UNIT_HEAD, Role.ARCHIVIST}),
        DeviceAction.READ: Grant.read(UNIT_MEMBERS | {Role.ARCHIVIST}),
        DeviceAction.RECORD_PRE_USE_CHECK: Grant.act(UNIT_MEMBERS),
        DeviceAction.RECORD_MAINTENANCE: Grant.act(UNIT_MEMBERS | {Role.ARCHIVIST}),
        DeviceAction.REPORT_FAULT: Grant.act(UNIT_MEMBERS | {Role.ARCHIVIST}),
        DeviceAction.RECORD_REPAIR: Grant.act({Role.UNIT_HEAD, Role.ARCHIVIST}),
    },
)

RESOURCES = (RECORDINGS, DEVICES)
