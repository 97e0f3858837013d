"""The offline copy format (R13 刻录光盘 / 移动存储): writing a copy and verifying it offline.

A copy is an ISO 9660 disc image (Rock Ridge and Joliet names, readable on Linux, macOS and Windows) or a
folder for removable media, with the same content:

    README.txt            how to verify the copy by hand
    manifest.json         copy id, case, unit, and every recording: id, path, SHA-256, size, classification
    SHA256SUMS            `sha256sum -c SHA256SUMS` checks every recording and manifest.json
    recordings/<recording id><ext>

The root hash of a copy is the SHA-256 of its manifest.json (which lists the SHA-256 of every file); the
inventory of retention-svc records it, and `lawtrail verify-copy PATH` recomputes it. retention-svc writes
copies with `write_folder` / `write_iso` and verifies them with `verify` before recording them; this module
has no dependency on the services (pycdlib and the standard library only), so a copy can be checked anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pycdlib

FORMAT = "lawtrail-offline-copy/1"
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
README = "README.txt"
RECORDINGS = "recordings"
BLOCK = 1024 * 1024

Progress = Callable[[int, int, str], None]  # (bytes done, bytes total, what)

README_TEXT = """Lawtrail offline copy (R13: 刻录光盘 / 移动存储长期保存)
=====================================================

This copy holds the recordings of one case that is under a long-term hold.
manifest.json lists every recording with its SHA-256, size and classification.

Verify it by hand (Linux, macOS with coreutils), in the folder or the mounted disc:

    sha256sum -c SHA256SUMS        # every line must say OK
    sha256sum manifest.json        # must equal the root hash recorded in the inventory

Or with the Lawtrail command line, on the folder or the .iso image itself:

    lawtrail verify-copy PATH

Windows (PowerShell):  Get-FileHash -Algorithm SHA256 recordings\\*  and compare with SHA256SUMS.
"""


@dataclass(frozen=True)
class ManifestItem:
    recording_id: str
    path: str  # relative, "recordings/<id><ext>"
    sha256: str
    size_bytes: int
    classification: dict[str, str] = field(default_factory=dict)


def extension_for(format_name: str, media_kind: str) -> str:
    """A file extension a player recognises, from ffprobe's format name (or the media kind)."""
    name = format_name.lower()
    for needle, ext in (
        ("mp4", ".mp4"), ("matroska", ".mkv"), ("webm", ".webm"), ("avi", ".avi"), ("wav", ".wav"),
        ("mp3", ".mp3"), ("aac", ".aac"), ("jpeg", ".jpg"), ("jpg", ".jpg"), ("png", ".png"),
    ):  # fmt: skip
        if needle in name:
            return ext
    return {"VIDEO": ".mp4", "AUDIO": ".m4a", "PHOTO": ".jpg"}.get(media_kind, ".bin")


def manifest_bytes(
    *,
    copy_id: str,
    case_id: str,
    unit: str,
    created_at: str,
    created_by: str,
    items: Sequence[ManifestItem],
    kind: str = "offline-copy",
    month: str = "",
) -> bytes:
    """manifest.json: `kind` "offline-copy" (R13, one case) or "archive-batch" (R11b, one unit and month)."""
    document = {
        "format": FORMAT,
        "kind": kind,
        "copy_id": copy_id,
        "case_id": case_id,
        "month": month,
        "unit": unit,
        "created_at": created_at,
        "created_by": created_by,
        "regulation": (
            "《行政执法全过程记录制度》第十一条 (R11b): monthly archive backup"
            if kind == "archive-batch"
            else "《行政执法全过程记录制度》第十三条 (R13): long-term hold, offline copy"
        ),
        "items": [
            {
                "recording_id": i.recording_id,
                "path": i.path,
                "sha256": i.sha256,
                "size_bytes": i.size_bytes,
                "classification": dict(sorted(i.classification.items())),
            }
            for i in items
        ],
    }
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def sums_bytes(items: Sequence[ManifestItem], manifest_sha256: str) -> bytes:
    """`sha256sum -c` format: "<hash>  <path>" per line (two spaces: text mode)."""
    lines = [f"{i.sha256}  {i.path}" for i in items] + [f"{manifest_sha256}  {MANIFEST}"]
    return ("\n".join(lines) + "\n").encode("ascii")


def finish_staging(staging: Path, manifest: bytes, items: Sequence[ManifestItem]) -> str:
    """Writes manifest.json, SHA256SUMS and README.txt into a staging folder that already holds the
    recordings; answers the root hash (SHA-256 of manifest.json)."""
    root_hash = hashlib.sha256(manifest).hexdigest()
    for name, data in (
        (MANIFEST, manifest),
        (SUMS, sums_bytes(items, root_hash)),
        (README, README_TEXT.encode()),
    ):
        _write_durably(staging / name, data)
    return root_hash


def write_folder(staging: Path, destination: Path) -> Path:
    """Moves a finished staging folder to `destination` (must not exist) in one rename."""
    if destination.exists():
        raise FileExistsError(f"{destination} exists already")
    destination.parent.mkdir(parents=True, exist_ok=True)
    _fsync_tree(staging)
    os.rename(staging, destination)
    return destination


def write_iso(staging: Path, destination: Path, volume_id: str, progress: Progress | None = None) -> Path:
    """Masters an ISO 9660 image (interchange level 3, Joliet, Rock Ridge 1.09) of a finished staging folder
    into `destination` (a temporary file, fsynced, then renamed), and removes the staging folder."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=_volume_id(volume_id))
    handles: list[BinaryIO] = []
    try:
        iso.add_directory("/RECORDIN", rr_name=RECORDINGS, joliet_path=f"/{RECORDINGS}")
        for iso_name, name in ((f"/{MANIFEST.upper()[:8]}.JSN;1", MANIFEST), ("/SHA256SU.MS;1", SUMS),
                               ("/README.TXT;1", README)):  # fmt: skip
            handles.append((staging / name).open("rb"))
            iso.add_fp(
                handles[-1], (staging / name).stat().st_size, iso_name, rr_name=name, joliet_path=f"/{name}"
            )
        for n, path in enumerate(sorted((staging / RECORDINGS).iterdir()), start=1):
            ext = path.suffix.upper().lstrip(".")[:3] or "BIN"
            handles.append(path.open("rb"))
            iso.add_fp(
                handles[-1], path.stat().st_size, f"/RECORDIN/R{n:06d}.{ext};1",
                rr_name=path.name, joliet_path=f"/{RECORDINGS}/{path.name}",
            )  # fmt: skip
        destination.parent.mkdir(parents=True, exist_ok=True)
        temporary = destination.with_name(destination.name + ".partial")

        def report(done: int, total: int, _opaque: Any) -> None:
            if progress is not None:
                progress(done, total, "writing the disc image")

        try:
            with temporary.open("wb") as out:
                iso.write_fp(out, blocksize=BLOCK, progress_cb=report)
                out.flush()
                os.fsync(out.fileno())
            os.rename(temporary, destination)
        except BaseException:
            temporary.unlink(missing_ok=True)  # nothing half-written is left where copies are listed
            raise
    finally:
        iso.close()
        for handle in handles:
            handle.close()
    shutil.rmtree(staging)
    return destination


@dataclass
class VerifyReport:
    """The result of re-reading a copy: its root hash, what was checked and every problem found."""

    path: str
    root_hash: str = ""
    copy_id: str = ""
    case_id: str = ""
    files_checked: int = 0
    bytes_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.files_checked > 0


def verify(path: Path, progress: Progress | None = None) -> VerifyReport:
    """Re-reads an offline copy (an .iso image or a folder) and checks every hash and size against the
    manifest, and the manifest against SHA256SUMS. Reads nothing but the copy."""
    report = VerifyReport(str(path))
    with _open_copy(path) as reader:
        try:
            manifest = reader.read_all(MANIFEST)
        except FileNotFoundError:
            report.problems.append(f"{MANIFEST} is missing: this is not a Lawtrail offline copy")
            return report
        report.root_hash = hashlib.sha256(manifest).hexdigest()
        try:
            document = json.loads(manifest)
            items = document["items"]
            report.copy_id, report.case_id = document.get("copy_id", ""), document.get("case_id", "")
        except (ValueError, KeyError, TypeError) as exc:
            report.problems.append(f"{MANIFEST} is not a valid manifest: {exc}")
            return report
        if document.get("format") != FORMAT:
            report.problems.append(f"{MANIFEST} has format {document.get('format')!r}, expected {FORMAT!r}")
        total = sum(int(i.get("size_bytes", 0)) for i in items)
        expected_sums: dict[str, str] = {MANIFEST: report.root_hash}
        for item in items:
            rel, want, size = item["path"], item["sha256"], int(item["size_bytes"])
            expected_sums[rel] = want
            try:
                digest, actual_size = reader.hash(rel, lambda n: _tick(progress, report, n, total))
            except FileNotFoundError:
                report.problems.append(f"{rel}: missing")
                continue
            report.files_checked += 1
            if actual_size != size:
                report.problems.append(f"{rel}: {actual_size} bytes, the manifest says {size}")
            if digest != want:
                report.problems.append(f"{rel}: SHA-256 {digest}, the manifest says {want}")
        try:
            sums = reader.read_all(SUMS).decode("ascii")
        except (FileNotFoundError, UnicodeDecodeError):
            report.problems.append(f"{SUMS} is missing or unreadable")
        else:
            listed = {}
            for line in sums.splitlines():
                digest, _, name = line.partition("  ")
                listed[name] = digest
            if listed != expected_sums:
                report.problems.append(f"{SUMS} does not list exactly the manifest's files with its hashes")
        extra = sorted(set(reader.recording_paths()) - {i["path"] for i in items})
        report.problems.extend(f"{p}: on the copy but not in the manifest" for p in extra)
    return report


def _tick(progress: Progress | None, report: VerifyReport, n: int, total: int) -> None:
    report.bytes_checked += n
    if progress is not None:
        progress(report.bytes_checked, total, "verifying")


class _FolderReader:
    def __init__(self, root: Path) -> None:
        self.root = root

    def read_all(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def hash(self, rel: str, tick: Callable[[int], None]) -> tuple[str, int]:
        with (self.root / rel).open("rb") as f:
            return _hash_stream(f, tick)

    def recording_paths(self) -> list[str]:
        folder = self.root / RECORDINGS
        return [f"{RECORDINGS}/{p.name}" for p in folder.iterdir()] if folder.is_dir() else []


class _IsoReader:
    def __init__(self, iso: Any) -> None:
        self.iso = iso

    def _open(self, rel: str) -> Any:
        try:
            return self.iso.open_file_from_iso(rr_path=f"/{rel}")
        except pycdlib.pycdlibexception.PyCdlibException:
            raise FileNotFoundError(rel) from None

    def read_all(self, name: str) -> bytes:
        with self._open(name) as f:
            return bytes(f.read())

    def hash(self, rel: str, tick: Callable[[int], None]) -> tuple[str, int]:
        with self._open(rel) as f:
            return _hash_stream(f, tick)

    def recording_paths(self) -> list[str]:
        try:
            names = [
                c.rock_ridge.name().decode()
                for c in self.iso.list_children(rr_path=f"/{RECORDINGS}")
                if c.rock_ridge is not None and not c.is_dot() and not c.is_dotdot()
            ]
        except pycdlib.pycdlibexception.PyCdlibException:
            return []
        return [f"{RECORDINGS}/{n}" for n in names]


@contextmanager
def _open_copy(path: Path) -> Iterator[_FolderReader | _IsoReader]:
    if path.is_dir():
        yield _FolderReader(path)
        return
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(path))
    except pycdlib.pycdlibexception.PyCdlibException as exc:
        raise ValueError(f"{path} is neither a folder nor a readable ISO 9660 image: {exc}") from exc
    try:
        yield _IsoReader(iso)
    finally:
        iso.close()


def _hash_stream(f: Any, tick: Callable[[int], None]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while True:
        block = f.read(BLOCK)
        if not block:
            break
        digest.update(block)
        size += len(block)
        tick(len(block))
    return digest.hexdigest(), size


def _volume_id(text: str) -> str:
    # ISO 9660 volume ids are d-characters (A–Z, 0–9, _); Joliet stores the same id in UCS-2 within 32
    # bytes, so at most 16 characters.
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in text.upper())
    return cleaned[:16] or "LAWTRAIL"


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())
