"""PostgreSQL for FerretDB's PostgreSQL backend: a private cluster on a loopback port.

The cluster is `initdb`-ed into the stack's data directory (`.lawtrail/postgres/` for `make up`), so
no root-owned state lands in the checkout and the system's own cluster (if any) is never touched.
PostgreSQL refuses to run as root: as root the cluster belongs to, and runs as, the unprivileged
`postgres` user (which Debian's `postgresql` package creates); otherwise as the caller.

Two settings make FerretDB v1.24.2's pushed-down filters index-served (ADR 0007):

- FerretDB pushes a top-level equality down as `_jsonb->'field' @> value` and creates its MongoDB
  indexes as btree indexes on `(_jsonb->'field')`, which cannot serve `@>`. An event trigger of the
  `ferretdb` database adds a GIN index on the same expression for every field of every btree index
  FerretDB creates (`_id` included), so `@>` is served by an index and a point read or write by `_id`
  no longer grows with the collection.
- FerretDB runs its SQL as cached prepared statements with the key as a parameter (`_jsonb->$1`);
  PostgreSQL's generic plans for them match no expression index, so the database is set to
  `plan_cache_mode = force_custom_plan` (plans made with the actual values).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

from lawtrail_local.errors import StackError
from lawtrail_local.ports import HOST, ensure_port_free, is_listening
from lawtrail_local.process import ManagedProcess

#: The database FerretDB keeps every MongoDB database in (one PostgreSQL schema each); the SQL below
#: spells it out.
DATABASE = "ferretdb"

# Adds a GIN index on `(_jsonb -> 'f')` for each field `f` of each btree index FerretDB creates.
# FerretDB writes its index keys as `((_jsonb -> 'f'::text))`; dotted keys (`#>`) are left alone (not
# pushed down by FerretDB v1 anyway). The GIN index itself fires the trigger again and is skipped by
# the btree test, so there is no recursion.
SETUP_SQL = """
ALTER DATABASE ferretdb SET plan_cache_mode = force_custom_plan;
CREATE OR REPLACE FUNCTION lawtrail_gin_for_ferretdb_index() RETURNS event_trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  cmd record;
  tbl regclass;
  natts int;
  k int;
  expr text;
  field text;
BEGIN
  FOR cmd IN SELECT objid FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE INDEX' LOOP
    SELECT i.indrelid::regclass, i.indnatts INTO tbl, natts
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
     WHERE i.indexrelid = cmd.objid AND a.amname = 'btree';
    CONTINUE WHEN tbl IS NULL;
    FOR k IN 1..natts LOOP
      expr := pg_get_indexdef(cmd.objid, k, true);
      field := substring(expr FROM $re$^\\(?_jsonb -> '((?:[^']|'')*)'::text\\)?$$re$);
      CONTINUE WHEN field IS NULL;
      field := replace(field, '''''', '''');
      EXECUTE format(
        'CREATE INDEX IF NOT EXISTS %I ON %s USING gin ((_jsonb -> %L))',
        'lt_gin_' || left(md5(tbl::text || '/' || field), 24), tbl, field
      );
    END LOOP;
  END LOOP;
END
$fn$;
DROP EVENT TRIGGER IF EXISTS lawtrail_gin_for_ferretdb_index;
CREATE EVENT TRIGGER lawtrail_gin_for_ferretdb_index ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
  EXECUTE FUNCTION lawtrail_gin_for_ferretdb_index();
"""


def find_postgres_bin() -> Path:
    """The directory holding `initdb`, `postgres` and `psql` (Debian: /usr/lib/postgresql/<v>/bin).

    Debian's `postgresql` package keeps them out of PATH (PATH has only wrappers for clusters
    managed by `pg_ctlcluster`), so PATH is tried first and Debian's directory after it.
    """
    candidates = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "postgres", "psql", "pg_isready")):
            return directory
    raise StackError(
        "PostgreSQL (initdb, postgres, psql) not found on PATH nor in /usr/lib/postgresql/*/bin: run "
        "`make setup` (installs Debian's `postgresql`), or choose `LAWTRAIL_LOCAL_DB=sqlite`"
    )


def _run_as() -> pwd.struct_passwd:
    """The unprivileged account the cluster runs as: the caller, or `postgres` when run as root."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise StackError(
            "PostgreSQL refuses to run as root and there is no `postgres` user to run it as: install "
            "Debian's `postgresql` (`make setup`), or choose `LAWTRAIL_LOCAL_DB=sqlite`"
        ) from None


def _reachable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` may enter every directory above `path` (pytest's /tmp/pytest-of-root is 0700)."""
    resolved = path.resolve()
    for parent in (resolved, *resolved.parents):
        if not parent.exists():
            continue  # created below by us, with the default (world-enterable) mode
        mode = parent.stat()
        if mode.st_uid == user.pw_uid:
            continue
        if not mode.st_mode & stat.S_IXOTH:
            return False
    return True


class PostgreSQL:
    """A private PostgreSQL cluster under `data_dir/postgres` on 127.0.0.1:`port`."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.port = port
        self.user = _run_as()
        wanted = data_dir / "postgres"
        if _reachable_by(data_dir, self.user):
            self.cluster_dir = wanted
        else:
            # A private temporary directory (e.g. pytest's) that the account cannot enter: keep the
            # cluster under /tmp instead, named after the data directory so a restart finds it.
            digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
            self.cluster_dir = Path(tempfile.gettempdir()) / f"lawtrail-postgres-{digest}"
        self.process = ManagedProcess(
            "postgres",
            pid_file=data_dir / "run" / "postgres.pid",
            log_file=data_dir / "logs" / "postgres.log",
            stop_signal=signal.SIGINT,  # "fast" shutdown; SIGTERM would wait for clients to leave
        )

    @property
    def url(self) -> str:
        """FerretDB's `-postgresql-url` (trust authentication on loopback only, see `initdb`)."""
        return f"postgres://{self.user.pw_name}@{HOST}:{self.port}/{DATABASE}"

    def _as_user(self, argv: list[str], what: str) -> str:
        user = self.user if os.geteuid() == 0 else None
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=120,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
                cwd="/",
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StackError(f"{what} failed: {exc}") from exc
        if done.returncode != 0:
            raise StackError(f"{what} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout

    def ensure_cluster(self, bin_dir: Path) -> bool:
        """`initdb` the cluster if it does not exist yet; whether it was created now."""
        if (self.cluster_dir / "PG_VERSION").is_file():
            return False
        if self.cluster_dir.exists():
            shutil.rmtree(self.cluster_dir)  # a half-made cluster of an interrupted initdb
        self.cluster_dir.mkdir(parents=True, mode=0o700)
        os.chown(self.cluster_dir, self.user.pw_uid, self.user.pw_gid)
        self._as_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.cluster_dir),
                "-U",
                self.user.pw_name,
                "--auth=trust",  # the server listens on 127.0.0.1 and a private socket only
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            "initdb",
        )
        return True

    def start(self, bin_dir: Path) -> None:
        """Start `postgres` detached on 127.0.0.1:`port`, its socket inside the cluster directory."""
        ensure_port_free(self.port, "PostgreSQL")
        user = self.user if os.geteuid() == 0 else None
        self.process.start(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(self.cluster_dir),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={HOST}",
                "-c",
                f"unix_socket_directories={self.cluster_dir}",
                "-c",
                "max_connections=200",
            ],
            user=user,
        )

    def wait_ready(self, timeout: float, bin_dir: Path | None = None) -> float:
        """Wait until the server accepts connections (it listens a moment before it does, while it
        starts up or recovers after a crash): `pg_isready` answers 0."""
        tool = str((bin_dir or find_postgres_bin()) / "pg_isready")

        def accepting() -> bool:
            if not is_listening(self.port):
                return False
            # As the cluster's own role, to its always-present database: asked as the caller (root)
            # the server logs "FATAL: role "root" does not exist" at every start.
            done = subprocess.run(
                [tool, "-q", "-h", HOST, "-p", str(self.port), "-U", self.user.pw_name, "-d", "postgres"],
                capture_output=True, timeout=10, check=False,
            )  # fmt: skip
            return done.returncode == 0

        return self.process.wait_until(accepting, what="ready (accepting connections)", timeout=timeout)

    def ensure_database(self, bin_dir: Path) -> None:
        """Create the `ferretdb` database with its settings and event trigger (idempotent)."""
        psql = [str(bin_dir / "psql"), "-h", HOST, "-p", str(self.port), "-U", self.user.pw_name]
        exists = self._as_user(
            [*psql, "-d", "postgres", "-tAc", "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'"],
            "checking for the ferretdb database",
        )
        if exists.strip() != "1":
            self._as_user([*psql, "-d", "postgres", "-c", "CREATE DATABASE ferretdb"], "createdb")
        self._as_user(
            [*psql, "-d", DATABASE, "-v", "ON_ERROR_STOP=1", "-q", "-c", SETUP_SQL],
            "setting up the ferretdb database (plan_cache_mode, GIN index trigger)",
        )

    def remove_cluster(self) -> None:
        """Delete the cluster's files (tests' throw-away clusters under /tmp)."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.cluster_dir)
