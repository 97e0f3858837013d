"""Port selection/checks and the messages for missing tools."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from lawtrail_local import tools
from lawtrail_local.errors import MissingToolError, PortInUseError
from lawtrail_local.ports import ensure_port_free, free_port, free_ports, is_listening
from lawtrail_local.stack import Stack


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in ports:
        ensure_port_free(port, "test")
    assert 1024 <= free_port() <= 65535


def test_port_in_use_error_names_the_port_and_its_user() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert is_listening(port)
        with pytest.raises(PortInUseError) as excinfo:
            ensure_port_free(port, "the Kafka broker")
    message = str(excinfo.value)
    assert f"127.0.0.1:{port}" in message
    assert "the Kafka broker" in message
    assert excinfo.value.port == port


def test_stack_checks_ports_before_fetching_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # an empty cache: a fetch would show
    kafka_port, controller_port = free_ports(2)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        mongo_port = listener.getsockname()[1]
        stack = Stack(tmp_path / "data", kafka_port, controller_port, mongo_port, progress=pytest.fail)
        with pytest.raises(PortInUseError, match=f"{mongo_port}.*FerretDB"):
            stack.start()
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    ("tool", "hint"), [("java", "openjdk-17"), ("mvn", "apt-get install -y maven"), ("go", "Go 1.24")]
)
def test_missing_tool_says_what_to_install(tool: str, hint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(tools, "_FALLBACKS", {})
    with pytest.raises(MissingToolError) as excinfo:
        tools.find_tool(tool, "for a test")
    assert f"`{tool}` is not on PATH (for a test)" in str(excinfo.value)
    assert hint in str(excinfo.value)


def test_stack_without_java_fails_before_fetching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", "")
    stack = Stack(tmp_path / "data", *free_ports(3), progress=pytest.fail)
    with pytest.raises(MissingToolError, match="`java` is not on PATH"):
        stack.start()
    assert not (tmp_path / "cache").exists()
