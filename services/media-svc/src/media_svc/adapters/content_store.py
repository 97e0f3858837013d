"""The local content store: a write-once directory tree addressed by SHA-256 (R23-2).

Layout under `root` (default `<LAWTRAIL_DATA_DIR>/content`):

    objects/ab/cd/abcd…(64 hex)   stored content, mode 0444, never rewritten or removed by this code
    uploads/abcd….part            an upload being received (invisible: nothing reads it as content)

Commit = fsync the partial → make it read-only → hard-link it to its address (`link(2)` fails when the
address exists, so nothing can ever be overwritten, not even by a race) → fsync the directory → remove
the partial's name. Content that is already stored is verified instead of replaced.

An S3 store with Object Lock (compliance mode) fits the same `ContentStore` interface: the partial is a
local staging file (or a multipart upload), commit is a conditional `PutObject` (`If-None-Match: *`) with
a retention date, and `digest` reads the object back.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from servicekit.errors import DataLoss, FailedPrecondition

from media_svc.domain.recordings import require_sha256
from media_svc.service_layer.ports import ContentMissing, ContentStore, PartialUpload, UploadInProgress

MIB = 1024 * 1024
# While receiving, start flushing to disk every this many bytes (in a side thread), so the final fsync
# has little left to do and disk writes overlap with the network.
EARLY_FLUSH_BYTES = 32 * MIB


class LocalPartialUpload(PartialUpload):
    def __init__(self, path: Path, sha256: str, fd: int, size: int) -> None:
        self.path = path
        self.sha256 = sha256
        self.size = size
        self._fd: int | None = fd
        self._unflushed = 0
        self._flusher: threading.Thread | None = None

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"partial upload {self.path.name} is closed")
        return self._fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        fd = self.fd
        while view:
            written = os.write(fd, view)
            view = view[written:]
        self.size += len(data)
        self._unflushed += len(data)
        if self._unflushed >= EARLY_FLUSH_BYTES and (self._flusher is None or not self._flusher.is_alive()):
            self._unflushed = 0
            # The flusher syncs through its own descriptor, so `close` never waits for it.
            self._flusher = threading.Thread(target=_quiet_fdatasync, args=(os.dup(fd),), daemon=True)
            self._flusher.start()

    def read_back(self, block: int) -> Iterator[bytes]:
        offset = 0
        while offset < self.size:
            data = os.pread(self.fd, min(block, self.size - offset), offset)
            if not data:
                return
            offset += len(data)
            yield data

    def local_path(self) -> Path:
        return self.path

    def _join_flusher(self) -> None:
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None

    def sync(self) -> None:
        self._join_flusher()
        os.fsync(self.fd)

    def close(self) -> None:
        """Releases the lock and the descriptor at once (safe to call from cleanup code that must not
        wait: a cancelled RPC); the bytes stay for a resume. Idempotent."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _quiet_fdatasync(fd: int) -> None:
    try:
        with contextlib.suppress(OSError):
            os.fdatasync(fd)
    finally:
        os.close(fd)


class LocalContentStore(ContentStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.uploads = root / "uploads"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.uploads.mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        sha = require_sha256(sha256)
        return self.objects / sha[:2] / sha[2:4] / sha

    def _partial_path(self, sha256: str) -> Path:
        return self.uploads / f"{require_sha256(sha256)}.part"

    def partial_size(self, sha256: str) -> int:
        try:
            return self._partial_path(sha256).stat().st_size
        except FileNotFoundError:
            return 0

    def open_partial(self, sha256: str, offset: int) -> LocalPartialUpload:
        path = self._partial_path(sha256)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except PermissionError:  # a crash between "read-only" and "link" in commit: still a partial
            os.chmod(path, 0o600)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UploadInProgress(
                    f"another upload of this content (SHA-256 {sha256}) is in progress; wait for it to "
                    "finish or fail, then call BeginUpload again"
                ) from None
            held = os.fstat(fd).st_size
            if offset > held:
                raise FailedPrecondition(
                    f"the server holds {held} bytes of this upload, fewer than offset {offset}: "
                    f"resume from {held} (BeginUpload tells the offset)"
                )
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return LocalPartialUpload(path, sha256, fd, offset)

    def discard_partial(self, partial: PartialUpload) -> None:
        assert isinstance(partial, LocalPartialUpload)
        with contextlib.suppress(FileNotFoundError):
            partial.path.unlink()
        partial.close()

    def commit(self, partial: PartialUpload) -> None:
        assert isinstance(partial, LocalPartialUpload)
        final = self.path_of(partial.sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial.sync()
        os.fchmod(partial.fd, 0o444)
        try:
            os.link(partial.path, final)
        except FileExistsError:
            # Already stored (an earlier upload, or a crash after the link): verify, never replace.
            stored = self.digest(partial.sha256)
            if stored != partial.sha256:
                raise DataLoss(
                    f"content {partial.sha256} is already stored but its bytes hash to {stored}; "
                    "the stored copy is kept untouched for investigation (the next scrub raises "
                    "IntegrityCheckFailed)"
                ) from None
        _fsync_dir(final.parent)
        partial.path.unlink()
        _fsync_dir(partial.path.parent)
        partial.close()

    def contains(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def open_content(self, sha256: str) -> BinaryIO:
        try:
            f = open(self.path_of(sha256), "rb")  # noqa: SIM115 (the caller closes it)
        except FileNotFoundError:
            raise ContentMissing(f"stored content {sha256} is missing from the content store") from None
        _sequential(f)
        return f

    def digest(self, sha256: str) -> str | None:
        try:
            with open(self.path_of(sha256), "rb") as f:
                _sequential(f)
                return hashlib.file_digest(f, "sha256").hexdigest()
        except FileNotFoundError:
            return None


def _sequential(f: BinaryIO) -> None:
    """Content is read from start to end (downloads, scrub): ask for a larger read-ahead when it is
    not in the page cache (a hint; ignored where unsupported)."""
    with contextlib.suppress(AttributeError, OSError):
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems refuse fsync on directories
        if e.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)
