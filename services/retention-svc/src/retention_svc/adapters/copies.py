"""Offline copies on disk (lawtrail_client.offline_copy: the format `lawtrail verify-copy` reads) and their
inventory in MongoDB (`offline_copies`, one document per copy, written with its OfflineCopyCreated)."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import ClassVar

from lawtrail.retention.v1 import retention_events_pb2 as ev
from lawtrail_client import offline_copy as fmt
from servicekit.messaging.outbox import OutboundEvent
from servicekit.mongo import IndexSpec, VersionedRepository

from retention_svc.adapters.copy_mapping import copy_from_doc, copy_message, copy_to_doc
from retention_svc.adapters.event_mapping import TOPIC
from retention_svc.domain.copies import CopyDraft, CopyFormat, OfflineCopy
from retention_svc.service_layer.ports import CopyInventory, CopyWriter, ProgressSink

COPIES = "offline_copies"


class CopyDocuments(VersionedRepository):
    what = "offline copy"
    indexes: ClassVar[Sequence[IndexSpec]] = [IndexSpec([("case_id", 1), ("created_at", 1), ("_id", 1)])]


class MongoCopyInventory(CopyInventory):
    def __init__(self, documents: CopyDocuments) -> None:
        self.documents = documents

    async def add(self, copy: OfflineCopy) -> None:
        event = OutboundEvent(TOPIC, ev.OfflineCopyCreated(copy=copy_message(copy)), subject=copy.case_id)
        await self.documents.insert(copy_to_doc(copy), events=[event])

    async def for_case(self, case_id: str) -> list[OfflineCopy]:
        cursor = self.documents.collection.find({"case_id": case_id}, projection={"outbox": 0}).sort(
            [("created_at", 1), ("_id", 1)]
        )
        return [copy_from_doc(doc) async for doc in cursor]


class LocalCopyWriter(CopyWriter):
    """Copies under `root`: `<root>/<case id>/<copy id>.iso` or `<root>/<case id>/<copy id>/`; staging
    folders under `<root>/.staging/` (removed after use; a crash leaves one that is never listed)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def stage(self, copy_id: str) -> Path:
        staging = self.root / ".staging" / copy_id
        await asyncio.to_thread(lambda: (staging / fmt.RECORDINGS).mkdir(parents=True, exist_ok=False))
        return staging

    async def write_item(self, staging: Path, rel_path: str, chunks: AsyncIterator[bytes]) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        target = staging / rel_path
        handle = await asyncio.to_thread(target.open, "xb")
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(handle.write, chunk)
        finally:
            await asyncio.to_thread(handle.close)
        return digest.hexdigest(), size

    async def finish(self, staging: Path, draft: CopyDraft, on_progress: ProgressSink) -> tuple[str, str]:
        items = [
            fmt.ManifestItem(
                i.recording_id, i.path, i.sha256, i.size_bytes, draft.classification.get(i.recording_id, {})
            )
            for i in draft.items
        ]
        manifest = fmt.manifest_bytes(
            copy_id=draft.copy_id,
            case_id=draft.case_id,
            unit=draft.unit,
            created_at=draft.created_at.isoformat(),
            created_by=draft.created_by,
            items=items,
            kind=draft.kind,
            month=draft.month,
        )

        def write() -> tuple[str, str]:
            root_hash = fmt.finish_staging(staging, manifest, items)
            folder = self.root / (draft.folder or _safe(draft.case_id))
            if draft.format is CopyFormat.ISO:
                path = fmt.write_iso(
                    staging, folder / f"{draft.copy_id}.iso", f"LT_{draft.case_id}", on_progress
                )
            else:
                path = fmt.write_folder(staging, folder / draft.copy_id)
            return str(path), root_hash

        return await asyncio.to_thread(write)

    async def verify(self, path: str, on_progress: ProgressSink) -> tuple[str, list[str]]:
        report = await asyncio.to_thread(fmt.verify, Path(path), on_progress)
        problems = list(report.problems)
        if report.files_checked == 0:
            problems.append("no recording was found on the copy")
        return report.root_hash, problems

    async def discard(self, staging: Path) -> None:
        await asyncio.to_thread(shutil.rmtree, staging, True)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"
