"""The local infrastructure: one Kafka broker and one FerretDB (on PostgreSQL or SQLite), with Lawtrail's
topics created.

Used by `python -m lawtrail_local up` (default ports, data in the checkout's `.lawtrail/`) and by
the integration tests (free ports, data in a temporary directory); both need the same steps, so
they share this class.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from lawtrail_local.errors import NotReadyError, StackError
from lawtrail_local.ferretdb import FerretDB, default_backend, ensure_ferretdb_binary
from lawtrail_local.kafka import KafkaBroker, ensure_kafka_libs
from lawtrail_local.ports import ensure_port_free, free_ports
from lawtrail_local.postgres import PostgreSQL, find_postgres_bin
from lawtrail_local.process import ManagedProcess
from lawtrail_local.progress import Progress, stderr_progress
from lawtrail_local.services import ServiceProcess, ServiceSpec
from lawtrail_local.tools import find_tool
from lawtrail_local.topics import Topic, create_topics, load_topics

DEFAULT_KAFKA_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
DEFAULT_MONGO_PORT = 27017
DEFAULT_POSTGRES_PORT = 55432


class Stack:
    """Kafka + FerretDB (+ PostgreSQL) on 127.0.0.1, their data, logs and pid files under `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        kafka_port: int = DEFAULT_KAFKA_PORT,
        controller_port: int = DEFAULT_CONTROLLER_PORT,
        mongo_port: int = DEFAULT_MONGO_PORT,
        *,
        topics: Sequence[Topic] | None = None,
        progress: Progress = stderr_progress,
        ready_timeout: float = 120.0,
        db: str | None = None,
        postgres_port: int | None = None,
        throwaway: bool = False,
        die_with_parent: bool = False,
    ) -> None:
        """`topics` defaults to deploy/local/topics.toml; `ready_timeout` bounds each readiness wait.

        `db`: FerretDB's backend, `postgresql` or `sqlite` (default: `$LAWTRAIL_LOCAL_DB`, else
        PostgreSQL); `postgres_port` defaults to 55432 (a free port when `throwaway`);
        `throwaway`: the data is deleted by `stop` (tests), which matters for a PostgreSQL cluster
        kept outside `data_dir`.
        `die_with_parent` (test runs): Kafka, PostgreSQL, FerretDB and every service started through
        `service()` are killed by the kernel when this process dies, even by SIGKILL; `make up` leaves
        it off.
        """
        self.die_with_parent = die_with_parent
        self.data_dir = data_dir.resolve()
        self.topics = list(load_topics() if topics is None else topics)
        self.progress = progress
        self.ready_timeout = ready_timeout
        self.kafka = KafkaBroker(self.data_dir, kafka_port, controller_port)
        self.ferretdb = FerretDB(self.data_dir, mongo_port, db or default_backend())
        self.throwaway = throwaway
        self.postgres: PostgreSQL | None = None
        if self.ferretdb.backend == "postgresql":
            if postgres_port is None:
                postgres_port = free_ports(1)[0] if throwaway else DEFAULT_POSTGRES_PORT
            self.postgres = PostgreSQL(self.data_dir, postgres_port)
        for process in self.processes:
            process.die_with_parent = die_with_parent

    @classmethod
    def for_benchmark(cls, data_dir: Path, *, progress: Progress = stderr_progress) -> Stack:
        """A stack of its own for one benchmark run: free ports (never `make run`'s), its data deleted at
        the stop (`throwaway`), its processes killed with this one (`die_with_parent`)."""
        kafka_port, controller_port, mongo_port = free_ports(3)
        return cls(
            data_dir, kafka_port, controller_port, mongo_port, progress=progress, throwaway=True,
            die_with_parent=True,
        )  # fmt: skip

    @property
    def kafka_bootstrap(self) -> str:
        """Value for LAWTRAIL_KAFKA_BOOTSTRAP_SERVERS."""
        return self.kafka.bootstrap

    @property
    def mongo_uri(self) -> str:
        """Value for LAWTRAIL_MONGO_URI."""
        return self.ferretdb.mongo_uri

    @property
    def processes(self) -> tuple[ManagedProcess, ...]:
        """The infrastructure processes, in start order."""
        if self.postgres is not None:
            return (self.kafka.process, self.postgres.process, self.ferretdb.process)
        return (self.kafka.process, self.ferretdb.process)

    def start(self) -> None:
        """Fetch/build what is missing, start both processes, wait until ready, create the topics.

        A process still running from an earlier `up` (pid file) is kept rather than started twice.
        On any failure what this call started is stopped again before the error propagates.
        """
        kafka_running = self.kafka.process.adopt()
        ferretdb_running = self.ferretdb.process.adopt()
        postgres_running = self.postgres is not None and self.postgres.process.adopt()
        # Check ports and java first: such mistakes fail at once, not after a download, and never
        # leave half a stack behind.
        if not kafka_running:
            find_tool("java", "to run the Kafka broker")
            ensure_port_free(self.kafka.port, "the Kafka broker")
            ensure_port_free(self.kafka.controller_port, "the Kafka controller")
        if not ferretdb_running:
            ensure_port_free(self.ferretdb.port, "FerretDB")
        pg_bin = None
        if self.postgres is not None and not postgres_running:
            pg_bin = find_postgres_bin()
            ensure_port_free(self.postgres.port, "PostgreSQL")
        libs = ensure_kafka_libs(self.progress)
        binary = ensure_ferretdb_binary(self.progress)
        started: list[ManagedProcess] = []
        try:
            if kafka_running:
                self.progress(f"kafka already running (pid {self.kafka.process.pid})")
            else:
                self.progress(f"starting kafka on {self.kafka_bootstrap}…")
                self.kafka.start(libs)
                started.append(self.kafka.process)
            if self.postgres is not None:
                if postgres_running:
                    self.progress(f"postgres already running (pid {self.postgres.process.pid})")
                else:
                    assert pg_bin is not None
                    if self.postgres.ensure_cluster(pg_bin):
                        self.progress(f"created a PostgreSQL cluster in {self.postgres.cluster_dir}")
                    self.progress(f"starting postgres on 127.0.0.1:{self.postgres.port}…")
                    self.postgres.start(pg_bin)
                    started.append(self.postgres.process)
                    elapsed = self.postgres.wait_ready(self.ready_timeout, pg_bin)
                    self.postgres.ensure_database(pg_bin)
                    self.progress(f"postgres ready in {elapsed:.1f} s")
            if ferretdb_running:
                self.progress(f"ferretdb already running (pid {self.ferretdb.process.pid})")
            else:
                self.progress(f"starting ferretdb on {self.mongo_uri}…")
                self.ferretdb.start(binary, self.postgres.url if self.postgres else None)
                started.append(self.ferretdb.process)
            elapsed = self.ferretdb.wait_ready(self.ready_timeout)
            self.progress(f"ferretdb ready in {elapsed:.1f} s")
            elapsed = self.kafka.wait_ready(self.ready_timeout)
            self.progress(f"kafka ready in {elapsed:.1f} s")
            self.create_topics(self.topics)
        except BaseException:
            for process in reversed(started):
                process.stop()
            raise

    def create_topics(self, topics: Sequence[Topic]) -> None:
        """Create `topics` that do not exist yet (tests may add their own)."""
        began = time.monotonic()
        try:
            created = create_topics(self.kafka_bootstrap, list(topics), timeout=30.0)
        except StackError as exc:
            if not self.kafka.process.running:  # the broker died after it said it had started
                raise NotReadyError(
                    f"kafka exited while topics were created\n{self.kafka.process.log_tail()}"
                ) from exc
            raise
        if created:
            self.progress(f"created {len(created)} topics in {time.monotonic() - began:.1f} s")

    def stop(self) -> None:
        """Stop FerretDB, PostgreSQL and Kafka (SIGTERM, SIGKILL after 30 s), also when another process
        started them; a `throwaway` stack's PostgreSQL cluster is deleted too."""
        for process in reversed(self.processes):
            if process.adopt():
                began = time.monotonic()
                process.stop()
                self.progress(f"stopped {process.name} in {time.monotonic() - began:.1f} s")
        if self.throwaway and self.postgres is not None:
            self.postgres.remove_cluster()

    def service(
        self,
        spec: ServiceSpec,
        *,
        run_dir: Path | None = None,
        data_dir: Path | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        env: dict[str, str] | None = None,
        instance: str | None = None,
    ) -> ServiceProcess:
        """A (not yet started) service process wired to this stack.

        Defaults: the spec's ports, pid file and log beside the stack's, LAWTRAIL_DATA_DIR `<data_dir>/data`.
        """
        service = ServiceProcess(
            spec,
            kafka_bootstrap=self.kafka_bootstrap,
            mongo_uri=self.mongo_uri,
            data_dir=data_dir or self.data_dir / "data",
            run_dir=run_dir or self.data_dir,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
            env=env,
            instance=instance,
        )
        service.process.die_with_parent = self.die_with_parent
        return service

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
