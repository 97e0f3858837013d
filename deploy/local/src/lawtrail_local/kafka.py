"""Apache Kafka (KRaft, one node acting as broker and controller) run from Maven Central jars.

No Kafka tarball is reachable from the machines this project runs on, only Maven Central, so the
broker's runtime classpath is fetched with Maven from deploy/local/kafka/pom.xml. That pom's
`kafka.version` property is the one place the version is written; the cache directory is named
after it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import secrets
import shutil
import time
from pathlib import Path

from lawtrail_local.errors import StackError
from lawtrail_local.layout import KAFKA_LOG4J2_CONFIG, KAFKA_POM, cache_lock, cache_root, require_source
from lawtrail_local.ports import HOST, ensure_port_free, is_listening
from lawtrail_local.process import LogWatch, ManagedProcess
from lawtrail_local.progress import Progress
from lawtrail_local.tools import find_tool, run_tool

_READY_LINE = "Kafka Server started"
_MARKER = ".complete"
#: Heap and GC per docs/infrastructure.md: ~0.5 GB resident is enough for development and CI.
_JVM_OPTS = ("-Xms256m", "-Xmx512m", "-XX:+UseSerialGC")
#: StorageTool runs for a second: the C1 compiler alone starts it ~0.4 s sooner.
_TOOL_JVM_OPTS = ("-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")


@functools.cache
def kafka_version(pom: Path = KAFKA_POM) -> str:
    """The `kafka.version` property of the Kafka pom (the single source of the version)."""
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", require_source(pom).read_text())
    if not match:
        raise StackError(f"{pom} has no <kafka.version> property")
    return match.group(1)


def kafka_home() -> Path:
    """`<cache>/kafka-<version>/`: the jars of one Kafka version, shared by every checkout."""
    return cache_root() / f"kafka-{kafka_version()}"


def ensure_kafka_libs(progress: Progress) -> Path:
    """The directory of the Kafka runtime jars, fetched with Maven the first time.

    The marker file, holding a hash of the pom, is written only after a complete fetch, so an
    interrupted download or an edited pom (say, another log4j version) is fetched again.
    """
    home = kafka_home()
    libs, marker = home / "libs", home / _MARKER
    wanted = hashlib.sha256(require_source(KAFKA_POM).read_bytes()).hexdigest()
    if _read(marker) == wanted:
        return libs
    with cache_lock(home.name):
        if _read(marker) == wanted:  # another process fetched while we waited for the lock
            return libs
        mvn = find_tool("mvn", "to fetch the Kafka jars from Maven Central")
        version = kafka_version()
        progress(f"fetching Kafka {version} jars with Maven…")
        started = time.monotonic()
        marker.unlink(missing_ok=True)
        shutil.rmtree(libs, ignore_errors=True)
        argv = [
            mvn, "-B", "-q", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
        ]  # fmt: skip
        run_tool(argv, what=f"fetching the Kafka {version} jars", timeout=900)
        for jar in (f"kafka_2.13-{version}.jar", "log4j-slf4j-impl-*.jar"):
            if not list(libs.glob(jar)):
                raise StackError(f"Maven finished but {libs} has no {jar}; check {KAFKA_POM}")
        jars = list(libs.glob("*.jar"))
        size_mb = sum(j.stat().st_size for j in jars) / 1e6
        marker.write_text(wanted)
        progress(f"fetched {len(jars)} jars ({size_mb:.0f} MB) in {time.monotonic() - started:.1f} s")
    return libs


def server_properties(*, port: int, controller_port: int, log_dirs: Path) -> str:
    """server.properties of a single-node KRaft cluster listening on 127.0.0.1 only.

    Internal topics get one replica and one partition, and the first consumer-group join is not
    delayed, so tests start in seconds. The log cleaner stays on (faust changelogs are compacted),
    with a small dedupe buffer because the 128 MB default can exhaust a 512 MB heap.
    """
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dirs),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.cleaner.dedupe.buffer.size": "33554432",
    }
    lines = ["# Generated by lawtrail_local for every start; edits are overwritten."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes as 22 characters of unpadded base64url.

    One that starts with `-` is drawn again: StorageTool's argument parser would read it as an option
    (`-t -Xa…`) and fail the format (seen about once in ten starts).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker:
    """The broker process with its configuration, storage and logs under `data_dir`."""

    def __init__(self, data_dir: Path, port: int, controller_port: int) -> None:
        self.port = port
        self.controller_port = controller_port
        self.dir = data_dir / "kafka"
        self.logs_dir = data_dir / "logs"
        self.process = ManagedProcess(
            "kafka",
            pid_file=data_dir / "run" / "kafka.pid",
            log_file=self.logs_dir / "kafka.stdout.log",
            extra_logs=[self.logs_dir / "kafka.log"],
        )
        self._watch: LogWatch | None = None

    @property
    def bootstrap(self) -> str:
        """The bootstrap server list for clients."""
        return f"{HOST}:{self.port}"

    def start(self, libs: Path) -> None:
        """Write server.properties, format the storage on first use and start the broker detached."""
        java = find_tool("java", "to run the Kafka broker")
        # Checked again right before binding: a first fetch may have taken minutes since `Stack` checked.
        ensure_port_free(self.port, "the Kafka broker")
        ensure_port_free(self.controller_port, "the Kafka controller")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        props = self.dir / "server.properties"
        log_dirs = self.dir / "data"
        props.write_text(
            server_properties(port=self.port, controller_port=self.controller_port, log_dirs=log_dirs)
        )
        common = [
            f"-Dlog4j2.configurationFile={require_source(KAFKA_LOG4J2_CONFIG)}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            f"{libs}/*",  # expanded by the JVM, not by a shell
        ]
        if not (log_dirs / "meta.properties").exists():
            argv = [java, *_TOOL_JVM_OPTS, *common, "kafka.tools.StorageTool", "format", "--standalone", "-g",
                    "-t", new_cluster_id(), "-c", str(props)]  # fmt: skip
            run_tool(argv, what="formatting the Kafka storage", timeout=120)
        self._watch = LogWatch(self.logs_dir / "kafka.log")
        self.process.start([java, *_JVM_OPTS, *common, "kafka.Kafka", str(props)], cwd=self.dir)

    def wait_ready(self, timeout: float) -> float:
        """Wait for "Kafka Server started" in this run's log (or, for an adopted broker, its port)."""
        watch = self._watch

        def ready() -> bool:
            return watch.seen(_READY_LINE) if watch is not None else is_listening(self.port)

        return self.process.wait_until(
            ready, what="ready ('Kafka Server started' in its log)", timeout=timeout
        )


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
