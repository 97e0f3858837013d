"""Offline copies of held cases (R13 刻录光盘 / 移动存储) and their inventory. Pure Python."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from servicekit.errors import InvalidArgument


class CopyFormat(enum.Enum):
    ISO = "ISO"  # an ISO 9660 disc image to burn (刻录光盘)
    FOLDER = "FOLDER"  # a folder to put on removable media (移动存储)


@dataclass(frozen=True)
class CopyItem:
    recording_id: str
    path: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class OfflineCopy:
    """One copy in the inventory: which recordings it holds, its root hash and where it is kept."""

    copy_id: str
    case_id: str
    unit: str
    format: CopyFormat
    path: str
    storage_location: str
    root_hash: str
    items: tuple[CopyItem, ...]
    created_at: datetime
    created_by: str

    @property
    def total_bytes(self) -> int:
        return sum(i.size_bytes for i in self.items)

    @property
    def recording_ids(self) -> frozenset[str]:
        return frozenset(i.recording_id for i in self.items)


@dataclass(frozen=True)
class CopyDraft:
    """What a copy will hold, before it is written: the manifest's content."""

    copy_id: str
    case_id: str
    unit: str
    format: CopyFormat
    created_at: datetime
    created_by: str
    items: tuple[CopyItem, ...]
    # recording id → classification written in the manifest (unit, device, officer, times, media kind)
    classification: dict[str, dict[str, str]]
    # where under the writer's root it goes ("" = the case id); what it is (for the manifest)
    folder: str = ""
    kind: str = "offline-copy"
    month: str = ""


@dataclass(frozen=True)
class Progress:
    """How far a copy is: shown to the caller while a large copy is written."""

    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    step: str


def check_storage_location(text: str) -> str:
    text = text.strip()
    if not text or len(text) > 200:
        raise InvalidArgument(
            "storage_location must be 1–200 characters: say where the physical copy will be kept "
            "(e.g. 'archive room cabinet 3')"
        )
    return text
