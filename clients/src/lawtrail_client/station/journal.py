"""The station's journal: what it knows about each file of the folder, kept across restarts.

Stored in `<folder>/.lawtrail-station/journal.json`, always written atomically (temp file → fsync →
rename → fsync of the directory), so a crash leaves either the old or the new journal, never a torn one.
The journal caches each file's SHA-256 (keyed by size and modification time), the last known upload
offset and the outcome. The server stays the authority on what was stored: a resumed upload asks it
(BeginUpload) where to continue.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

STATE_DIR = ".lawtrail-station"
JOURNAL = "journal.json"
LOCK = "lock"

State = Literal["new", "uploading", "collected", "failed"]


@dataclass
class Entry:
    size: int
    mtime_ns: int
    sha256: str | None = None
    state: State = "new"
    # Bytes the server held at the last BeginUpload / the end of the last stream (informational).
    offset: int = 0
    attempts: int = 0
    recording_id: str = ""
    # Modification time of the sidecar when the file was last tried (a changed sidecar retries a
    # refused file).
    sidecar_mtime_ns: int = 0
    error: str = ""
    updated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def same_file(self, size: int, mtime_ns: int) -> bool:
        return self.size == size and self.mtime_ns == mtime_ns


class JournalLocked(Exception):
    """Another station agent works on this folder."""


class Journal:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.dir = folder / STATE_DIR
        self.path = self.dir / JOURNAL
        self.entries: dict[str, Entry] = {}
        self._lock: IO[str] | None = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[Journal]:
        """Holds an exclusive lock on the folder's journal for the agent's lifetime."""
        self.dir.mkdir(parents=True, exist_ok=True)
        lock = (self.dir / LOCK).open("a+")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise JournalLocked(
                f"another station agent is already collecting {self.folder} (lock {self.dir / LOCK}); "
                "stop it first — two agents on one folder would upload the same files twice"
            ) from None
        self._lock = lock
        try:
            self.load()
            yield self
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
            lock.close()
            self._lock = None

    def load(self) -> None:
        if not self.path.exists():
            self.entries = {}
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            self.entries = {name: Entry(**value) for name, value in raw.get("files", {}).items()}
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"station journal {self.path} is unreadable ({error}); move it aside to start over "
                "(the server still knows what it stored, so nothing is uploaded twice)"
            ) from None

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps(
            {"version": 1, "files": {name: asdict(e) for name, e in sorted(self.entries.items())}},
            indent=1,
            ensure_ascii=False,
        )
        write_atomically(self.path, data.encode("utf-8"))

    def update(self, name: str, entry: Entry) -> None:
        entry.updated_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.entries[name] = entry
        self.save()


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
