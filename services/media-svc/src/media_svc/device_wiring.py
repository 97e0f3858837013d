"""Composition of the devices part of media-svc (R20, R21): its settings and what bootstrap wires.

`bootstrap.py` calls `device_wiring(rt)` and adds the result to its `Wiring`; the recordings ingest
uses `DeviceWiring.repository` (`get`, `checks_for`) to raise device findings.

Settings (environment, prefix `LAWTRAIL_DEVICE_`), documented in docs/media-svc-devices.md:

| variable | default | meaning |
|---|---|---|
| `LAWTRAIL_DEVICE_MIN_BATTERY_PERCENT` | `60` | a passing pre-use check has battery ≥ this (%) |
| `LAWTRAIL_DEVICE_MIN_FREE_STORAGE_MIB` | `4096` | … and free storage ≥ this (MiB) |
| `LAWTRAIL_DEVICE_MAX_CLOCK_OFFSET_S` | `5` | … and abs(device clock − reference clock) ≤ this (s) |
| `LAWTRAIL_DEVICE_SHIFT_STARTS` | `08:00,20:00` | local start times of the daily shifts |
| `LAWTRAIL_DEVICE_SHIFT_TIMEZONE` | `Asia/Shanghai` | IANA time zone of those times |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lawtrail.media.v1 import device_service_pb2, device_service_pb2_grpc
from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from servicekit.app import Runtime
from servicekit.grpc import ServiceBinding
from servicekit.mongo import IndexSpec

from media_svc.adapters.device_repository import MongoDeviceRepository
from media_svc.domain.devices import PreUseCheckPolicy, ShiftSchedule
from media_svc.entrypoints.device_api import DEVICE_ROLE_POLICY, SERVICE_NAME, DeviceApi
from media_svc.service_layer.devices import DeviceHandlers


class DeviceSettings(BaseSettings):
    """What a shift and a passing pre-use check are (R20)."""

    model_config = SettingsConfigDict(env_prefix="LAWTRAIL_DEVICE_")

    min_battery_percent: int = 60
    min_free_storage_mib: int = 4096
    max_clock_offset_s: float = 5.0
    shift_starts: str = "08:00,20:00"
    shift_timezone: str = "Asia/Shanghai"

    @field_validator("shift_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ShiftSchedule.parse("00:00", value)  # raises for an unknown zone
        return value

    def policy(self) -> PreUseCheckPolicy:
        return PreUseCheckPolicy(
            min_battery_percent=self.min_battery_percent,
            min_free_storage_mib=self.min_free_storage_mib,
            max_clock_offset_s=self.max_clock_offset_s,
        )

    def shifts(self) -> ShiftSchedule:
        return ShiftSchedule.parse(self.shift_starts, self.shift_timezone)


@dataclass(frozen=True)
class DeviceWiring:
    repository: MongoDeviceRepository
    handlers: DeviceHandlers
    binding: ServiceBinding
    role_policy: Mapping[str, frozenset[str]]
    indexes: Mapping[str, Sequence[IndexSpec]]
    # Collections the relay must watch by name (none: `device_wiring` registers its own with the relay).
    outbox_collections: Sequence[str]


def device_wiring(rt: Runtime, settings: DeviceSettings | None = None) -> DeviceWiring:
    settings = settings or DeviceSettings()
    repository = MongoDeviceRepository(rt.db, event_source=rt.settings.event_source, notify=rt.relay.notify)
    # The relay watches the repository's `devices` collection (writes through servicekit's
    # per-document locks, servicekit.doclock), so it is not listed in `outbox_collections` by name.
    rt.relay.watch(repository.device_collection)
    handlers = DeviceHandlers(repository, policy=settings.policy(), shifts=settings.shifts())
    binding = ServiceBinding(
        device_service_pb2_grpc.add_DeviceServiceServicer_to_server,
        DeviceApi(handlers),
        device_service_pb2.DESCRIPTOR.services_by_name[SERVICE_NAME.rsplit(".", 1)[1]],
    )
    return DeviceWiring(
        repository=repository,
        handlers=handlers,
        binding=binding,
        role_policy=DEVICE_ROLE_POLICY,
        indexes=MongoDeviceRepository.indexes(),
        outbox_collections=(),
    )
