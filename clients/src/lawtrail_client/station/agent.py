"""The collection-station agent (采集站): collects the files docked cameras leave in a folder.

For each media file in the folder (not in sub-folders; hidden files and `*.part`/`*.tmp`/`*.partial` are
skipped, and a file must be unchanged for `settle_s` seconds, so a file still being copied is left alone):

1. its classification comes from its sidecar and/or name (`lawtrail_client.station.metadata`);
2. its SHA-256 is computed once (cached in the journal by size and modification time);
3. it is uploaded with `upload_file`, which asks the server where to resume — an upload interrupted by a
   crash, a restart or a lost connection continues from the bytes the server already holds;
4. only when the server's answer confirms the same SHA-256 is the file collected: a receipt
   `collected/<name>.receipt.json` is written (atomically) and the file and its sidecar are moved into
   `collected/`. Nothing is ever deleted; a file that was not confirmed stays where it is.

A refused file (bad metadata, not the declared media kind, …) is marked failed in the journal with the
server's message and left in place; it is tried again when it or its sidecar changes (or with
`retry_failed`). A lost connection defers the rest of the pass; `watch` tries again after its interval.
`collect_once` reports every file it left alone with the reason (still settling, ignored name, not a
media file, …); `complete()` says whether every media file present was collected.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TextIO

from lawtrail.media.v1 import recording_pb2

from lawtrail_client.client import MediaClient
from lawtrail_client.errors import (
    Aborted,
    AlreadyExists,
    InvalidArgument,
    LawtrailError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from lawtrail_client.station.journal import STATE_DIR, Entry, Journal, fsync_dir, write_atomically
from lawtrail_client.station.metadata import MEDIA_EXTENSIONS, MetadataError, read_metadata, sidecar_of
from lawtrail_client.station.progress import ProgressBar, human_bytes
from lawtrail_client.upload import HashNotConfirmed, UploadResult, sha256_file, upload_file

COLLECTED_DIR = "collected"
# Waits before asking again while a previous, dead upload stream of the same content is still open.
ABORTED_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)
_SKIPPED_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")
# Refusals that will not change by trying again with the same file and metadata.
_PERMANENT = (InvalidArgument, AlreadyExists, ResourceExhausted, NotFound)

Status = Literal["collected", "failed", "deferred", "skipped"]


class StationStopped(Exception):
    """The station cannot work at all (bad token, no permission): fix the configuration."""


@dataclass(frozen=True)
class StationConfig:
    folder: Path
    # Unit stamped on files whose sidecar names none (the token's unit by default).
    unit: str
    # A file must be unchanged this long before it is collected.
    settle_s: float = 2.0
    # Upload rate limit in bytes per second; None = as fast as possible.
    max_rate: float | None = None
    # Try files marked failed again even if they did not change.
    retry_failed: bool = False


@dataclass(frozen=True)
class Outcome:
    name: str
    status: Status
    detail: str = ""
    recording_id: str = ""
    sha256: str = ""
    # False for what is not a media file (notes.txt, .DS_Store, a sub-folder): reported, but its
    # presence does not make a run incomplete.
    media: bool = True


class StationAgent:
    def __init__(
        self,
        media: MediaClient,
        config: StationConfig,
        *,
        out: TextIO,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.media = media
        self.config = config
        self.out = out
        self.clock = clock
        self.sleep = sleep
        self.journal = Journal(config.folder)

    # --- entry points -----------------------------------------------------------------------------

    def collect_once(self) -> list[Outcome]:
        """One pass over the folder; returns what happened to every entry of it, skipped ones too.

        Every file that was not collected is in the list with the reason — still settling, empty,
        a partial name the dock has not renamed yet, hidden, not a media file, a sub-folder — so that
        a caller can tell "nothing to do" from "nothing done". Sidecars of present media files, the
        `collected/` folder and the agent's state folder are not listed.
        """
        with self.journal.locked():
            return self._pass(report_skipped=True)

    @staticmethod
    def complete(outcomes: list[Outcome]) -> bool:
        """Whether every media file present was collected (what exit status 0 promises)."""
        return all(o.status == "collected" for o in outcomes if o.media)

    def watch(self, interval_s: float, stop: threading.Event) -> None:
        """Collects, then waits `interval_s`, until `stop` is set."""
        self._say(f"watching {self.config.folder} (every {interval_s:g}s; Ctrl-C to stop)")
        with self.journal.locked():
            while not stop.is_set():
                self._pass()
                stop.wait(interval_s)

    # --- one pass -----------------------------------------------------------------------------------

    def candidates(self) -> list[Path]:
        files = [
            p
            for p in self.config.folder.iterdir()
            if p.is_file()
            and not p.name.startswith(".")
            and not p.name.endswith(_SKIPPED_SUFFIXES)
            and p.suffix.lower() in MEDIA_EXTENSIONS
        ]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def ignored(self) -> list[Outcome]:
        """What is in the folder but is not a candidate, each with the reason it is left alone."""
        candidates = {p.name for p in self.candidates()}
        companions = {
            sidecar.name
            for name in candidates
            if (sidecar := sidecar_of(self.config.folder / name)) is not None
        }
        found: list[Outcome] = []
        for path in sorted(self.config.folder.iterdir(), key=lambda p: p.name):
            name = path.name
            if name in candidates or name in companions or name in (COLLECTED_DIR, STATE_DIR):
                continue
            if not path.is_file() and not path.is_dir():
                continue  # a socket or a pipe: nothing a dock writes
            if path.is_dir():
                found.append(
                    Outcome(
                        name + "/",
                        "skipped",
                        "sub-folder: only files directly in the folder are collected",
                        media=False,
                    )
                )
                continue
            partial = next((sfx for sfx in _SKIPPED_SUFFIXES if name.endswith(sfx)), None)
            inner = Path(name.removesuffix(partial)) if partial else None
            if partial and inner is not None and inner.suffix.lower() in MEDIA_EXTENSIONS:
                found.append(
                    Outcome(
                        name,
                        "skipped",
                        f"ignored name (*{partial}): the dock is still writing it; collected once renamed "
                        f"to {inner.name}",
                    )
                )
            elif name.startswith("."):
                is_media = Path(name).suffix.lower() in MEDIA_EXTENSIONS
                found.append(Outcome(name, "skipped", "ignored name: hidden file", media=is_media))
            elif path.suffix.lower() not in MEDIA_EXTENSIONS:
                found.append(
                    Outcome(
                        name, "skipped", f"not a media file ({path.suffix or 'no extension'})", media=False
                    )
                )
        return found

    def _pass(self, *, report_skipped: bool = False) -> list[Outcome]:
        outcomes: list[Outcome] = []
        present = set()
        for path in self.candidates():
            present.add(path.name)
            outcome = self._collect(path)
            if outcome.status != "skipped" or report_skipped:
                outcomes.append(outcome)
            if outcome.status == "deferred" and outcome.detail.startswith("server unreachable"):
                if report_skipped:  # name the files this run did not get to
                    outcomes.extend(
                        Outcome(p.name, "deferred", "not tried: the server is unreachable")
                        for p in self.candidates()
                        if p.name not in present
                    )
                break  # the rest would fail the same way; the next pass tries again
        if report_skipped:
            outcomes.extend(self.ignored())
        # Forget files that are no longer in the folder (collected, or taken away by someone).
        stale = [name for name in self.journal.entries if name not in present]
        if stale:
            for name in stale:
                del self.journal.entries[name]
            self.journal.save()
        return outcomes

    def _collect(self, path: Path) -> Outcome:
        name = path.name
        try:
            stat = path.stat()
        except FileNotFoundError:
            return Outcome(name, "skipped", "file vanished")
        age = self.clock() - stat.st_mtime
        if age < self.config.settle_s:
            return Outcome(
                name,
                "skipped",
                f"still settling: changed {max(age, 0.0):.1f} s ago, collected once unchanged for "
                f"{self.config.settle_s:g} s (--settle)",
            )
        if stat.st_size == 0:
            return Outcome(name, "skipped", "empty file")
        entry = self.journal.entries.get(name)
        if entry is None or not entry.same_file(stat.st_size, stat.st_mtime_ns):
            entry = Entry(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
        sidecar = sidecar_of(path)
        sidecar_mtime_ns = sidecar.stat().st_mtime_ns if sidecar is not None else 0
        if (
            entry.state == "failed"
            and entry.sidecar_mtime_ns == sidecar_mtime_ns
            and not self.config.retry_failed
        ):
            # Refused before and nothing changed since: trying again would be refused again.
            return Outcome(name, "failed", f"refused before, unchanged since: {entry.error}")
        entry.sidecar_mtime_ns = sidecar_mtime_ns
        try:
            metadata = read_metadata(path, default_unit=self.config.unit)
        except MetadataError as error:
            return self._fail(name, entry, str(error))
        if entry.sha256 is None:
            bar = ProgressBar(f"hash   {name}", stat.st_size, self.out)
            entry.sha256 = sha256_file(path, progress=bar.update)
            bar.close()
        entry.state = "uploading"
        entry.attempts += 1
        entry.error = ""
        self.journal.update(name, entry)

        bar = ProgressBar(f"upload {name}", stat.st_size, self.out)

        def resumed(offset: int, total: int) -> None:
            entry.offset = offset
            self._say(f"resuming {name} at byte {offset} of {total} ({human_bytes(total - offset)} left)")
            self.journal.update(name, entry)

        try:
            result = self._upload_waiting_for_stale_stream(path, metadata.classification, entry, bar, resumed)
        except (Unauthenticated, PermissionDenied) as error:
            self._say(f"stopping: {error}")
            raise StationStopped(str(error)) from None
        except _PERMANENT as error:
            return self._fail(name, entry, str(error))
        except HashNotConfirmed as error:
            return self._fail(name, entry, str(error))
        except LawtrailError as error:
            entry.error = str(error)
            self.journal.update(name, entry)
            reason = (
                "server unreachable"
                if error.code().name in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
                else "deferred"
            )
            self._say(f"{reason}: {name} will be resumed later ({error})")
            return Outcome(name, "deferred", f"{reason}: {error}")
        except OSError as error:
            entry.error = f"cannot read the file: {error}"
            self.journal.update(name, entry)
            return Outcome(name, "deferred", entry.error)
        finally:
            bar.close()

        after = path.stat()
        if not entry.same_file(after.st_size, after.st_mtime_ns):
            # The file changed while it was uploaded: what the server confirmed is not what is there now.
            self.journal.entries.pop(name, None)
            self.journal.save()
            return Outcome(name, "deferred", "file changed during upload; it will be collected again")
        recording = result.recording
        self._mark_collected(path, metadata.sidecar, entry, recording.recording_id, result.already_stored)
        entry.state = "collected"
        entry.offset = entry.size
        entry.recording_id = recording.recording_id
        self.journal.update(name, entry)
        how = "already stored" if result.already_stored else f"sent {human_bytes(result.sent_bytes)}"
        self._say(
            f"collected {name}: recording {recording.recording_id}, "
            f"SHA-256 {recording.sha256} confirmed ({how})"
        )
        return Outcome(name, "collected", how, recording.recording_id, recording.sha256)

    def _upload_waiting_for_stale_stream(
        self,
        path: Path,
        classification: recording_pb2.Classification,
        entry: Entry,
        bar: ProgressBar,
        resumed: Callable[[int, int], None],
    ) -> UploadResult:
        """Uploads; while the server still holds the stream of a previous, dead attempt (ABORTED: the
        station crashed and restarted faster than the server noticed), waits a little and asks again."""
        delays = list(ABORTED_RETRY_DELAYS_S)
        while True:
            try:
                return upload_file(
                    self.media,
                    path,
                    classification,
                    sha256=entry.sha256,
                    max_rate=self.config.max_rate,
                    progress=bar.update,
                    on_resume=resumed,
                )
            except Aborted as error:
                if not delays:
                    raise
                delay = delays.pop(0)
                self._say(f"waiting {delay:g}s: {error.message}")
                self.sleep(delay)

    def _mark_collected(
        self, path: Path, sidecar: Path | None, entry: Entry, recording_id: str, already_stored: bool
    ) -> None:
        """Receipt first, then move: a crash in between leaves the file in place, and the next pass finds
        the content already stored and finishes the move."""
        target_dir = self.config.folder / COLLECTED_DIR
        target_dir.mkdir(exist_ok=True)
        target = _free_name(target_dir / path.name)
        receipt = {
            "file": path.name,
            "collected_as": target.name,
            "sha256": entry.sha256,
            "size_bytes": entry.size,
            "recording_id": recording_id,
            "already_stored": already_stored,
            "server": "confirmed",
            "collected_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_atomically(
            target_dir / f"{target.name}.receipt.json", json.dumps(receipt, indent=1).encode("utf-8")
        )
        os.rename(path, target)
        if sidecar is not None and sidecar.exists():
            os.rename(sidecar, _free_name(target_dir / sidecar.name.replace(path.name, target.name, 1)))
        fsync_dir(target_dir)
        fsync_dir(self.config.folder)

    def _fail(self, name: str, entry: Entry, message: str) -> Outcome:
        entry.state = "failed"
        entry.error = message
        self.journal.update(name, entry)
        self._say(f"not collected: {message}")
        return Outcome(name, "failed", message)

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def _free_name(path: Path) -> Path:
    """`path`, or `stem.1.ext`, `stem.2.ext`, … if taken: collected files are never overwritten."""
    if not path.exists():
        return path
    for n in range(1, 100_000):
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"no free name for {path}")


__all__ = ["COLLECTED_DIR", "STATE_DIR", "Outcome", "StationAgent", "StationConfig", "StationStopped"]
