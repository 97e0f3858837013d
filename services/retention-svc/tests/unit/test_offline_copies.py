"""R13 offline copies through the real CopyHandlers and LocalCopyWriter, with media-svc's verified download
faked: the automatic follow-up copies each held case once; content that does not match its ingest hash is
refused (DATA_LOSS) and leaves nothing behind."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from lawtrail_client import offline_copy
from retention_svc.adapters.copies import LocalCopyWriter
from retention_svc.bootstrap import build_copy_handlers
from retention_svc.domain.copies import CopyFormat, OfflineCopy
from retention_svc.service_layer.ports import ContentHeader, CopyInventory, MediaContent, RetentionMetrics
from servicekit.errors import DataLoss, FailedPrecondition, NotFound


class FakeMedia(MediaContent):
    """Serves content by recording id, as media-svc's DownloadRecording would; records every read."""

    def __init__(self, contents: dict[str, bytes]) -> None:
        self.contents = contents
        self.reads: list[tuple[str, str]] = []

    @asynccontextmanager
    async def download(
        self, recording_id: str, *, case_id: str, purpose: str
    ) -> AsyncIterator[tuple[ContentHeader, AsyncIterator[bytes]]]:
        self.reads.append((recording_id, purpose))
        data = self.contents[recording_id]

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 1000):
                yield data[i : i + 1000]

        yield ContentHeader(recording_id, hashlib.sha256(data).hexdigest(), len(data), "g-1"), chunks()


class MemoryInventory(CopyInventory):
    def __init__(self) -> None:
        self.copies: list[OfflineCopy] = []

    async def add(self, copy: OfflineCopy) -> None:
        self.copies.append(copy)

    async def for_case(self, case_id: str) -> list[OfflineCopy]:
        return [c for c in self.copies if c.case_id == case_id]


async def _held_case(world: Any, kit: Any, contents: dict[str, bytes]) -> None:
    for recording_id, data in contents.items():
        facts = kit.recording_facts(recording_id, world.unit)
        facts = type(facts)(
            **{**vars(facts), "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
        )
        await world.handlers.recording_linked(facts, "case-c")
    await world.handlers.incident_recorded(
        kit.case_facts("case-c", world.unit), kit.incident("i1", "ASSAULT")
    )


async def test_r13_each_held_case_gets_one_verified_copy_automatically(
    world: Any, kit: Any, tmp_path: Path
) -> None:
    contents = {"r1": b"a" * 5000, "r2": b"b" * 3000}
    await _held_case(world, kit, contents)
    media, inventory = FakeMedia(contents), MemoryInventory()
    copies = build_copy_handlers(
        world.cases,
        world.recordings,
        inventory,
        media,
        LocalCopyWriter(tmp_path),
        default_format=CopyFormat.ISO,
    )
    assert await copies.copy_new_holds() == 1
    assert await copies.copy_new_holds() == 0  # every held recording is on a copy now
    (copy,) = inventory.copies
    assert copy.created_by == "retention-svc"
    assert sorted(r for r, _ in media.reads) == ["r1", "r2"]
    assert all("R13 offline copy" in purpose for _, purpose in media.reads)
    report = offline_copy.verify(Path(copy.path))
    assert report.ok
    assert report.root_hash == copy.root_hash
    assert not list((tmp_path / ".staging").iterdir())


async def test_r13_content_that_does_not_match_its_ingest_hash_is_refused_and_leaves_nothing(
    world: Any, kit: Any, tmp_path: Path
) -> None:
    contents = {"r1": b"a" * 5000}
    await _held_case(world, kit, contents)
    media, inventory = FakeMedia({"r1": b"x" * 5000}), MemoryInventory()
    copies = build_copy_handlers(world.cases, world.recordings, inventory, media, LocalCopyWriter(tmp_path))
    with pytest.raises(DataLoss, match="ingested with"):
        async for _ in copies._make("case-c", world.unit, CopyFormat.FOLDER, "shelf", "tester"):
            pass
    assert inventory.copies == []
    assert not list((tmp_path / ".staging").iterdir())


async def test_r13_a_case_without_a_hold_is_not_copied(world: Any, kit: Any, tmp_path: Path) -> None:
    await world.handlers.recording_linked(kit.recording_facts("r1", world.unit), "case-free")
    await world.handlers.case_opened(kit.case_facts("case-free", world.unit))
    copies = build_copy_handlers(
        world.cases, world.recordings, MemoryInventory(), FakeMedia({}), LocalCopyWriter(tmp_path)
    )
    with pytest.raises(FailedPrecondition, match="no held recording"):
        async for _ in copies._make("case-free", world.unit, CopyFormat.ISO, "shelf", "tester"):
            pass


async def test_r13_a_held_case_whose_copy_fails_does_not_hold_up_the_others(
    world: Any, kit: Any, tmp_path: Path
) -> None:
    """A recording media-svc does not serve (NOT_FOUND) fails its case's automatic copy; the next held
    case is still copied, the failure is counted, and the failed case is tried again next round."""
    await _held_case(world, kit, {"r1": b"a" * 5000})
    for recording_id in ("r2", "r3"):
        facts = kit.recording_facts(recording_id, world.unit)
        await world.handlers.recording_linked(facts, "case-d")
    await world.handlers.incident_recorded(
        kit.case_facts("case-d", world.unit), kit.incident("i2", "ASSAULT")
    )

    class Counting(RetentionMetrics):
        def __init__(self) -> None:
            self.failed: list[tuple[str, str]] = []

        def copy_failed(self, unit: str, reason: str) -> None:
            self.failed.append((unit, reason))

    class Missing(FakeMedia):
        @asynccontextmanager
        async def download(
            self, recording_id: str, *, case_id: str, purpose: str
        ) -> AsyncIterator[tuple[ContentHeader, AsyncIterator[bytes]]]:
            if recording_id not in self.contents:
                raise NotFound(f"media-svc refused the download of recording {recording_id}")
            async with super().download(recording_id, case_id=case_id, purpose=purpose) as served:
                yield served

    metrics, inventory = Counting(), MemoryInventory()
    copies = build_copy_handlers(
        world.cases,
        world.recordings,
        inventory,
        Missing({"r1": b"a" * 5000}),
        LocalCopyWriter(tmp_path),
        metrics=metrics,
    )
    assert await copies.copy_new_holds() == 1
    assert [c.case_id for c in inventory.copies] == ["case-c"]
    assert metrics.failed == [(world.unit, "NotFound")]
    assert await copies.copy_new_holds() == 0  # case-d is tried again, and fails again
    assert metrics.failed == [(world.unit, "NotFound")] * 2
