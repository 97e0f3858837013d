"""gRPC `lawtrail.media.v1.DeviceService`: protobuf ↔ device commands, nothing else (rules are in the domain).

Domain errors become status codes in servicekit's error interceptor; the roles each RPC admits are
`DEVICE_ROLE_POLICY` (the server refuses methods missing from it).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

import grpc
from lawtrail.common.v1 import common_pb2
from lawtrail.media.v1 import device_service_pb2 as pb
from lawtrail.media.v1 import device_service_pb2_grpc
from servicekit import paging
from servicekit.auth import Role, current_principal
from servicekit.errors import InvalidArgument

from media_svc.adapters.device_events import attribution, duration, timestamp
from media_svc.domain.devices import Device, DeviceStatus, Fault, MaintenanceRecord, PreUseCheck
from media_svc.service_layer.devices import (
    Actor,
    DeviceHandlers,
    RecordMaintenance,
    RecordPreUseCheck,
    RecordRepair,
    RegisterDevice,
    ReportFault,
)

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE_NAME = "lawtrail.media.v1.DeviceService"
_P = f"/{SERVICE_NAME}/"
_READERS = frozenset({Role.OFFICER, Role.UNIT_HEAD, Role.ARCHIVIST, Role.LEGAL_OFFICE, Role.INSPECTOR})

# Who may call what (full method name → roles). Unit scoping is decided by the handlers.
DEVICE_ROLE_POLICY: Mapping[str, frozenset[str]] = {
    _P + "RegisterDevice": frozenset({Role.UNIT_HEAD, Role.ARCHIVIST}),
    _P + "RecordPreUseCheck": frozenset({Role.OFFICER, Role.UNIT_HEAD}),
    _P + "RecordMaintenance": frozenset({Role.OFFICER, Role.UNIT_HEAD, Role.ARCHIVIST}),
    _P + "ReportFault": frozenset({Role.OFFICER, Role.UNIT_HEAD, Role.ARCHIVIST}),
    _P + "RecordRepair": frozenset({Role.UNIT_HEAD, Role.ARCHIVIST}),
    _P + "GetDevice": _READERS,
    _P + "ListDevices": _READERS,
    _P + "ListPreUseChecks": _READERS,
}

_STATUS = {
    DeviceStatus.IN_SERVICE: pb.DEVICE_STATUS_IN_SERVICE,
    DeviceStatus.OUT_OF_SERVICE: pb.DEVICE_STATUS_OUT_OF_SERVICE,
}


def _actor() -> Actor:
    p = current_principal()
    return Actor(subject=p.subject, unit=p.unit, roles=frozenset(p.roles))


class DeviceApi(device_service_pb2_grpc.DeviceServiceServicer):
    def __init__(self, handlers: DeviceHandlers) -> None:
        self._h = handlers

    async def RegisterDevice(
        self, request: pb.RegisterDeviceRequest, context: Context
    ) -> pb.RegisterDeviceResponse:
        actor = _actor()
        device = await self._h.register_device(
            RegisterDevice(request.device_number, request.unit or actor.unit, request.model), actor
        )
        return pb.RegisterDeviceResponse(device=device_message(device))

    async def RecordPreUseCheck(
        self, request: pb.RecordPreUseCheckRequest, context: Context
    ) -> pb.RecordPreUseCheckResponse:
        offset = (
            request.clock_offset.ToTimedelta().total_seconds() if request.HasField("clock_offset") else 0.0
        )
        check = await self._h.record_pre_use_check(
            RecordPreUseCheck(
                request.device_number,
                request.battery_percent,
                request.free_storage_bytes,
                offset,
                request.request_id,
            ),
            _actor(),
        )
        return pb.RecordPreUseCheckResponse(check=check_message(check))

    async def RecordMaintenance(
        self, request: pb.RecordMaintenanceRequest, context: Context
    ) -> pb.RecordMaintenanceResponse:
        record = await self._h.record_maintenance(
            RecordMaintenance(request.device_number, request.description, request.request_id), _actor()
        )
        return pb.RecordMaintenanceResponse(maintenance=maintenance_message(record))

    async def ReportFault(self, request: pb.ReportFaultRequest, context: Context) -> pb.ReportFaultResponse:
        device, fault = await self._h.report_fault(
            ReportFault(request.device_number, request.description, request.request_id), _actor()
        )
        return pb.ReportFaultResponse(device=device_message(device), fault=fault_message(fault, device.unit))

    async def RecordRepair(
        self, request: pb.RecordRepairRequest, context: Context
    ) -> pb.RecordRepairResponse:
        device, fault = await self._h.record_repair(
            RecordRepair(request.device_number, request.note, request.request_id), _actor()
        )
        return pb.RecordRepairResponse(device=device_message(device), fault=fault_message(fault, device.unit))

    async def GetDevice(self, request: pb.GetDeviceRequest, context: Context) -> pb.GetDeviceResponse:
        actor = _actor()
        device = await self._h.get_device(request.device_number, actor)
        maintenance = await self._h.recent_maintenance(device.device_number, actor)
        return pb.GetDeviceResponse(device=device_message(device, maintenance))

    async def ListDevices(self, request: pb.ListDevicesRequest, context: Context) -> pb.ListDevicesResponse:
        page = await self._h.list_devices(
            request.unit, request.page.page_size, decode_page_token(request.page.page_token), _actor()
        )
        return pb.ListDevicesResponse(
            devices=[device_message(d) for d in page.devices],
            page=common_pb2.PageResponse(next_page_token=encode_page_token(page.next_after)),
        )

    async def ListPreUseChecks(
        self, request: pb.ListPreUseChecksRequest, context: Context
    ) -> pb.ListPreUseChecksResponse:
        if not request.HasField("since") or not request.HasField("until"):
            raise InvalidArgument("since and until are both required (UTC timestamps)")
        since = request.since.ToDatetime(tzinfo=UTC)
        until = request.until.ToDatetime(tzinfo=UTC)
        checks = await self._h.list_checks(request.device_number, since, until, _actor())
        return pb.ListPreUseChecksResponse(checks=[check_message(c) for c in checks])


# --- paging -------------------------------------------------------------------------------------


def encode_page_token(after: str | None) -> str:
    """The token of the page after device number `after`; empty after the last page."""
    return "" if after is None else paging.encode_page_token([after])


def decode_page_token(token: str) -> str | None:
    position = paging.decode_page_token(token, field="page_token")
    if position is None:
        return None
    if len(position) != 1 or not isinstance(position[0], str):
        raise paging.foreign_page_token("page_token")
    return position[0]


# --- domain → protobuf --------------------------------------------------------------------------


def fault_message(fault: Fault, unit: str) -> pb.Fault:
    message = pb.Fault(
        fault_id=fault.fault_id,
        description=fault.description,
        reported=attribution(fault.reported_by, unit, fault.reported_at),
        repair_note=fault.repair_note or "",
    )
    if fault.repaired_at is not None and fault.repaired_by is not None:
        message.repaired.CopyFrom(attribution(fault.repaired_by, unit, fault.repaired_at))
    return message


def device_message(device: Device, maintenance: list[MaintenanceRecord] | None = None) -> pb.Device:
    return pb.Device(
        device_number=device.device_number,
        unit=device.unit,
        model=device.model,
        status=_STATUS[device.status],
        registered=attribution(device.registered_by, device.unit, device.registered_at),
        faults=[fault_message(f, device.unit) for f in device.faults],
        recent_maintenance=[maintenance_message(m) for m in maintenance or []],
    )


def check_message(check: PreUseCheck) -> pb.PreUseCheck:
    return pb.PreUseCheck(
        check_id=check.check_id,
        device_number=check.device_number,
        unit=check.unit,
        battery_percent=check.battery_percent,
        free_storage_bytes=check.free_storage_bytes,
        clock_offset=duration(check.clock_offset_s),
        checked=attribution(check.checked_by, check.unit, check.checked_at),
        shift_start=timestamp(check.shift_start),
        shift_end=timestamp(check.shift_end),
        passed=check.passed,
        failures=list(check.failures),
    )


def maintenance_message(record: MaintenanceRecord) -> pb.MaintenanceRecord:
    return pb.MaintenanceRecord(
        maintenance_id=record.maintenance_id,
        device_number=record.device_number,
        unit=record.unit,
        description=record.description,
        performed=attribution(record.performed_by, record.unit, record.performed_at),
    )
