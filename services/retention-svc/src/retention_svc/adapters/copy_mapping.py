"""OfflineCopy ↔ protobuf and ↔ its inventory document."""

from __future__ import annotations

from typing import Any

from lawtrail.retention.v1 import retention_pb2 as pb

from retention_svc.adapters.event_mapping import stamp
from retention_svc.domain.copies import CopyFormat, CopyItem, OfflineCopy

_FORMAT = {CopyFormat.ISO: pb.COPY_FORMAT_ISO, CopyFormat.FOLDER: pb.COPY_FORMAT_FOLDER}


def copy_message(copy: OfflineCopy) -> pb.OfflineCopy:
    return pb.OfflineCopy(
        copy_id=copy.copy_id,
        case_id=copy.case_id,
        unit=copy.unit,
        format=_FORMAT[copy.format],
        path=copy.path,
        storage_location=copy.storage_location,
        root_hash=copy.root_hash,
        items=[
            pb.CopyItem(recording_id=i.recording_id, path=i.path, sha256=i.sha256, size_bytes=i.size_bytes)
            for i in copy.items
        ],
        total_bytes=copy.total_bytes,
        created_at=stamp(copy.created_at),
        created_by=copy.created_by,
    )


def copy_to_doc(copy: OfflineCopy) -> dict[str, Any]:
    return {
        "_id": copy.copy_id,
        "case_id": copy.case_id,
        "unit": copy.unit,
        "format": copy.format.value,
        "path": copy.path,
        "storage_location": copy.storage_location,
        "root_hash": copy.root_hash,
        "items": [
            {"recording_id": i.recording_id, "path": i.path, "sha256": i.sha256, "size_bytes": i.size_bytes}
            for i in copy.items
        ],
        "created_at": copy.created_at,
        "created_by": copy.created_by,
    }


def copy_from_doc(doc: dict[str, Any]) -> OfflineCopy:
    return OfflineCopy(
        copy_id=doc["_id"],
        case_id=doc["case_id"],
        unit=doc["unit"],
        format=CopyFormat(doc["format"]),
        path=doc["path"],
        storage_location=doc["storage_location"],
        root_hash=doc["root_hash"],
        items=tuple(
            CopyItem(i["recording_id"], i["path"], i["sha256"], i["size_bytes"]) for i in doc["items"]
        ),
        created_at=doc["created_at"],
        created_by=doc["created_by"],
    )
