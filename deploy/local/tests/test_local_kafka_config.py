"""server.properties generation and the version bookkeeping of the Kafka and FerretDB downloads."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from lawtrail_local.ferretdb import ferretdb_binary_path, ferretdb_version, source_hash
from lawtrail_local.kafka import kafka_home, kafka_version, new_cluster_id, server_properties
from lawtrail_local.layout import FERRETDB_MODULE


def _parse(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_server_properties_single_node_kraft_on_loopback(tmp_path: Path) -> None:
    props = _parse(server_properties(port=19092, controller_port=19093, log_dirs=tmp_path / "data"))

    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert "controller.quorum.voters" not in props  # never together with --standalone
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["auto.create.topics.enable"] == "false"
    assert props["offsets.topic.num.partitions"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["log.cleaner.dedupe.buffer.size"] == "33554432"
    assert "log.cleaner.enable" not in props  # faust changelogs are compacted
    replication = {k: v for k, v in props.items() if k.endswith(("replication.factor", "min.isr"))}
    assert replication
    assert set(replication.values()) == {"1"}


def test_server_properties_never_bind_beyond_loopback(tmp_path: Path) -> None:
    text = server_properties(port=1, controller_port=2, log_dirs=tmp_path)
    hosts = re.findall(r"//([^:,]+):", text) + re.findall(r"servers=([^:]+):", text)
    assert hosts
    assert set(hosts) == {"127.0.0.1"}


def test_cluster_id_is_22_chars_of_base64url() -> None:
    ids = {new_cluster_id() for _ in range(20)}
    assert len(ids) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in ids)


def test_versions_come_from_the_pom_and_go_mod() -> None:
    assert kafka_version() == "4.3.1"
    assert kafka_home().name == "kafka-4.3.1"
    assert ferretdb_version() == "v1.24.2"
    assert ferretdb_binary_path().parent.name == f"ferretdb-v1.24.2-{source_hash()}"


def test_cache_lives_under_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert kafka_home() == tmp_path / "lawtrail" / "kafka-4.3.1"


def test_editing_the_wrapper_changes_the_binary_name(tmp_path: Path) -> None:
    module = tmp_path / "ferretdb"
    shutil.copytree(FERRETDB_MODULE, module)
    before = source_hash(module)
    main_go = module / "main.go"
    main_go.write_text(main_go.read_text() + "\n// edited\n")
    assert source_hash(module) != before


def test_go_sum_is_committed_with_the_ferretdb_requirement() -> None:
    go_sum = (FERRETDB_MODULE / "go.sum").read_text()
    assert "github.com/FerretDB/FerretDB v1.24.2 h1:" in go_sum


def test_cluster_id_never_starts_with_a_dash() -> None:
    # StorageTool would parse `-t -abc…` as an unknown option and fail to format the log directory.
    assert not any(new_cluster_id().startswith("-") for _ in range(2000))
