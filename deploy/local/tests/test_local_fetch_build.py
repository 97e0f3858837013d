"""Fetch/build caching with stand-ins for mvn and go: a failed run leaves nothing that looks complete."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from lawtrail_local import ferretdb, kafka, tools
from lawtrail_local.errors import StackError


def _script(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache and a PATH holding only the stand-ins written into the returned directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setattr(tools, "_FALLBACKS", {})
    return bin_dir


def test_kafka_fetch_failure_is_redone_next_time(fake_path: Path) -> None:
    _script(fake_path, "mvn", "echo 'Could not resolve dependencies' >&2; exit 1\n")
    with pytest.raises(StackError, match=r"(?s)fetching the Kafka 4\.3\.1 jars failed.*Could not resolve"):
        kafka.ensure_kafka_libs(lambda _: None)
    assert not (kafka.kafka_home() / ".complete").exists()

    # mvn copies into -DoutputDirectory=<libs>; write the two jars the launcher checks for.
    _script(
        fake_path,
        "mvn",
        'for a; do case "$a" in -DoutputDirectory=*) d="${a#*=}";; esac; done\n'
        'mkdir -p "$d" && touch "$d/kafka_2.13-4.3.1.jar" "$d/log4j-slf4j-impl-2.25.3.jar"\n'
        'echo run >> "$(dirname "$0")/mvn.calls"\n',
    )
    lines: list[str] = []
    libs = kafka.ensure_kafka_libs(lines.append)
    assert (libs / "kafka_2.13-4.3.1.jar").exists()
    assert lines[0] == "fetching Kafka 4.3.1 jars with Maven…"
    kafka.ensure_kafka_libs(lines.append)  # cached: mvn is not run again
    assert (fake_path / "mvn.calls").read_text() == "run\n"


def test_kafka_fetch_without_the_jars_is_not_marked_complete(fake_path: Path) -> None:
    _script(fake_path, "mvn", "exit 0\n")
    with pytest.raises(StackError, match=r"has no kafka_2\.13-4\.3\.1\.jar"):
        kafka.ensure_kafka_libs(lambda _: None)
    assert not (kafka.kafka_home() / ".complete").exists()


def test_ferretdb_build_failure_leaves_no_binary(fake_path: Path) -> None:
    _script(fake_path, "go", "echo 'modernc.org/libc: undefined: foo' >&2; exit 2\n")
    with pytest.raises(StackError, match=r"(?s)building FerretDB failed \(exit code 2\).*modernc.org/libc"):
        ferretdb.ensure_ferretdb_binary(lambda _: None)
    assert not ferretdb.ferretdb_binary_path().exists()


def test_ferretdb_build_is_pure_go_and_cached(fake_path: Path) -> None:
    _script(
        fake_path,
        "go",
        'echo "$CGO_ENABLED $GOFLAGS" >> "$(dirname "$0")/go.calls"\n'
        'while [ "$1" != "-o" ]; do shift; done; echo binary > "$2"\n',
    )
    binary = ferretdb.ensure_ferretdb_binary(lambda _: None)
    assert binary.read_text() == "binary\n"
    assert ferretdb.ensure_ferretdb_binary(lambda _: None) == binary
    cgo, *goflags = (fake_path / "go.calls").read_text().split()
    assert cgo == "0"
    assert "-mod=readonly" in goflags
