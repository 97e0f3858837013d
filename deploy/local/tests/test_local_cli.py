"""The CLI on a data directory where nothing runs (the commands that start things are integration tests)."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest
from lawtrail_local.cli import main
from lawtrail_local.pytest_plugin import ServiceStarter
from lawtrail_local.services import ServiceSpec
from lawtrail_local.stack import Stack


def test_status_of_nothing_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path), "status"]) == 1
    out = capsys.readouterr().out
    assert "kafka      stopped" in out
    assert "ferretdb   stopped" in out
    assert "case-svc" in out
    assert "media-svc" in out


def test_down_of_nothing_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path), "down"]) == 0
    assert "nothing running" in capsys.readouterr().err


def test_logs_prints_the_tail_with_a_prefix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "kafka.log").write_text("".join(f"k{i}\n" for i in range(50)))
    (tmp_path / "logs" / "ferretdb.log").write_text("f1\n")
    assert main(["--data-dir", str(tmp_path), "logs", "--no-follow", "-n", "2", "kafka"]) == 0
    assert capsys.readouterr().out == "kafka | k48\nkafka | k49\n"


def test_logs_without_logs_exits_1(tmp_path: Path) -> None:
    assert main(["--data-dir", str(tmp_path), "logs", "--no-follow"]) == 1


def test_errors_are_one_message_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with contextlib.ExitStack() as busy:
        try:  # hold the default Kafka port, unless something (an earlier `up`) already does
            sock = busy.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 9092))
            sock.listen()
        except OSError:
            pass
        assert main(["--data-dir", str(tmp_path), "up"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: port 127.0.0.1:9092 (wanted by the Kafka broker) is already in use")
    assert "Traceback" not in err


def test_a_service_without_main_is_skipped(tmp_path: Path) -> None:
    starter = ServiceStarter(Stack(tmp_path), tmp_path / "svc")
    with pytest.raises(pytest.skip.Exception, match="module lawtrail_no_such_svc is not installed"):
        starter(ServiceSpec("no-svc", "lawtrail_no_such_svc", 1, 2))
