"""FerretDB v1 (MongoDB wire protocol over PostgreSQL or SQLite), built from deploy/local/ferretdb.

`go install` of FerretDB's own command panics at start (its generated version file is missing from
the published module), so a small wrapper module of ours embeds FerretDB's library instead. The
binary is cached under a name that hashes the wrapper's sources, so editing go.mod or main.go
rebuilds it and an unchanged checkout never does.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import time
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from lawtrail_local.errors import StackError
from lawtrail_local.layout import FERRETDB_MODULE, cache_lock, cache_root, require_source
from lawtrail_local.ports import HOST, ensure_port_free, is_listening
from lawtrail_local.process import ManagedProcess
from lawtrail_local.progress import Progress
from lawtrail_local.tools import find_tool, run_tool

_SOURCES = ("go.mod", "go.sum", "main.go")


@functools.cache
def ferretdb_version(module: Path = FERRETDB_MODULE) -> str:
    """The FerretDB version the wrapper's go.mod requires (e.g. `v1.24.2`)."""
    go_mod = require_source(module / "go.mod").read_text()
    match = re.search(r"^\s*(?:require\s+)?github\.com/FerretDB/FerretDB\s+(v\S+)", go_mod, re.MULTILINE)
    if not match:
        raise StackError(f"{module / 'go.mod'} does not require github.com/FerretDB/FerretDB")
    return match.group(1)


def source_hash(module: Path = FERRETDB_MODULE) -> str:
    """A short hash of the wrapper's sources, naming the cached binary."""
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update(name.encode() + b"\0" + require_source(module / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def ferretdb_binary_path() -> Path:
    """`<cache>/ferretdb-<version>-<source hash>/ferretdb`."""
    return cache_root() / f"ferretdb-{ferretdb_version()}-{source_hash()}" / "ferretdb"


def ensure_ferretdb_binary(progress: Progress) -> Path:
    """The FerretDB binary, built with `go build` (pure Go, CGO_ENABLED=0) the first time.

    The binary is renamed into place only after a successful build, so its presence is the marker.
    """
    binary = ferretdb_binary_path()
    if binary.is_file():
        return binary
    with cache_lock(binary.parent.name):
        if binary.is_file():  # another process built it while we waited for the lock
            return binary
        go = find_tool("go", "to build FerretDB")
        progress(f"building FerretDB {ferretdb_version()} (first time only, about a minute)…")
        started = time.monotonic()
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_name("ferretdb.partial")
        # -mod=readonly: a go.sum missing an entry fails here instead of being "fixed" silently;
        # -buildvcs=false: the binary must not depend on the state of the git checkout around it.
        goflags = f"{os.environ.get('GOFLAGS', '')} -mod=readonly".strip()
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": goflags}
        run_tool(
            [go, "build", "-trimpath", "-buildvcs=false", "-o", str(partial), "."],
            what="building FerretDB",
            timeout=1200,
            cwd=FERRETDB_MODULE,
            env=env,
        )
        partial.replace(binary)
        progress(f"built FerretDB in {time.monotonic() - started:.1f} s")
    return binary


#: The local database backends; the first is the default (ADR 0007 has the measurements).
BACKENDS = ("postgresql", "sqlite")
#: Environment variable choosing the backend of `make up` / `make run` / the integration tests.
BACKEND_ENV = "LAWTRAIL_LOCAL_DB"


def default_backend() -> str:
    """`$LAWTRAIL_LOCAL_DB` if set (checked), else the first of `BACKENDS`."""
    chosen = os.environ.get(BACKEND_ENV, "").strip().lower() or BACKENDS[0]
    if chosen not in BACKENDS:
        raise StackError(f"{BACKEND_ENV}={chosen!r}: choose one of {', '.join(BACKENDS)}")
    return chosen


class FerretDB:
    """The FerretDB process and its log under `data_dir`; with SQLite also its files there."""

    def __init__(self, data_dir: Path, port: int, backend: str = "sqlite") -> None:
        if backend not in BACKENDS:
            raise StackError(f"unknown FerretDB backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.port = port
        self.backend = backend
        self.sqlite_dir = data_dir / "ferretdb"
        self.process = ManagedProcess(
            "ferretdb",
            pid_file=data_dir / "run" / "ferretdb.pid",
            log_file=data_dir / "logs" / "ferretdb.log",
        )

    @property
    def mongo_uri(self) -> str:
        """The MongoDB connection string for clients."""
        return f"mongodb://{HOST}:{self.port}/"

    def start(self, binary: Path, postgresql_url: str | None = None) -> None:
        """Start FerretDB detached on 127.0.0.1:`port`: on PostgreSQL at `postgresql_url`, or with one
        SQLite file per database."""
        ensure_port_free(self.port, "FerretDB")  # again: a first build may have taken minutes
        argv = [str(binary), "-listen-addr", f"{HOST}:{self.port}", "-handler", self.backend]
        if self.backend == "postgresql":
            if not postgresql_url:
                raise StackError("FerretDB on PostgreSQL needs the PostgreSQL URL")
            argv += ["-postgresql-url", postgresql_url]
        else:
            self.sqlite_dir.mkdir(parents=True, exist_ok=True)
            argv += ["-sqlite-dir", str(self.sqlite_dir)]
        self.process.start(argv)

    def wait_ready(self, timeout: float) -> float:
        """Wait until FerretDB answers a MongoDB `ping`."""
        return self.process.wait_until(self.ping, what="ready (answering MongoDB ping)", timeout=timeout)

    def ping(self) -> bool:
        """Whether a MongoDB `ping` succeeds now."""
        if not is_listening(self.port):
            return False
        client: MongoClient[dict[str, object]] = MongoClient(
            self.mongo_uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000, directConnection=True
        )
        try:
            client.admin.command("ping")
        except PyMongoError:
            return False
        finally:
            client.close()
        return True
