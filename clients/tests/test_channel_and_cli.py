"""The SDK's channel (token, deadline, retries, typed errors) and the CLI's small parsers."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from lawtrail.media.v1 import recording_service_pb2
from lawtrail_client import cli
from lawtrail_client.channel import LawtrailInterceptor
from lawtrail_client.client import MediaClient
from lawtrail_client.errors import InvalidArgument, LawtrailError, NotFound, Unavailable, from_rpc_error

from .conftest import FakeRecordingService


@dataclass
class Details:
    method: str = "/lawtrail.media.v1.DeviceService/GetDevice"
    timeout: float | None = None
    metadata: Any = None
    credentials: Any = None
    wait_for_ready: Any = None
    compression: Any = None


class Outcome:
    def __init__(self, error: grpc.RpcError | None) -> None:
        self._error = error

    def exception(self) -> grpc.RpcError | None:
        return self._error


class Failure(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_every_call_carries_token_request_id_and_default_deadline() -> None:
    seen: list[Any] = []
    interceptor = LawtrailInterceptor(lambda: "tok-1", timeout_s=7, retries=0)
    interceptor.intercept_unary_unary(lambda d, r: seen.append(d) or Outcome(None), Details(), object())
    metadata = dict(seen[0].metadata)
    assert metadata["authorization"] == "Bearer tok-1"
    assert len(metadata["x-request-id"]) == 32
    assert seen[0].timeout == 7


def test_explicit_timeout_wins() -> None:
    seen: list[Any] = []
    interceptor = LawtrailInterceptor("t", timeout_s=7, retries=0)
    interceptor.intercept_unary_unary(lambda d, r: seen.append(d) or Outcome(None), Details(timeout=99), None)
    assert seen[0].timeout == 99


def test_unavailable_is_retried_with_backoff_then_succeeds() -> None:
    outcomes = [
        Failure(grpc.StatusCode.UNAVAILABLE, "down"),
        Failure(grpc.StatusCode.UNAVAILABLE, "down"),
        None,
    ]
    sleeps: list[float] = []
    interceptor = LawtrailInterceptor("t", timeout_s=1, retries=3, sleep=sleeps.append)
    result = interceptor.intercept_unary_unary(lambda d, r: Outcome(outcomes.pop(0)), Details(), None)
    assert result.exception() is None
    assert len(sleeps) == 2
    assert sleeps[1] > 0


def test_retries_are_bounded_and_end_in_a_typed_error() -> None:
    interceptor = LawtrailInterceptor("t", timeout_s=1, retries=2, sleep=lambda s: None)
    calls = []

    def continuation(d: Any, r: Any) -> Outcome:
        calls.append(1)
        return Outcome(Failure(grpc.StatusCode.UNAVAILABLE, "connection refused"))

    with pytest.raises(Unavailable, match="connection refused") as raised:
        interceptor.intercept_unary_unary(continuation, Details(), None)
    assert len(calls) == 3
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "GetDevice" in str(raised.value)


def test_other_errors_are_not_retried() -> None:
    interceptor = LawtrailInterceptor("t", timeout_s=1, retries=5, sleep=lambda s: None)
    with pytest.raises(NotFound, match="device 'X' is not registered"):
        interceptor.intercept_unary_unary(
            lambda d, r: Outcome(Failure(grpc.StatusCode.NOT_FOUND, "device 'X' is not registered")),
            Details(),
            None,
        )


def test_typed_errors_stay_rpc_errors() -> None:
    error = from_rpc_error(Failure(grpc.StatusCode.INVALID_ARGUMENT, "unit is required"))
    assert isinstance(error, InvalidArgument)
    assert isinstance(error, grpc.RpcError)
    assert error.details() == "unit is required"
    other = from_rpc_error(Failure(grpc.StatusCode.INTERNAL, "internal error (request id 1)"))
    assert type(other) is LawtrailError
    assert other.code() == grpc.StatusCode.INTERNAL


def test_typed_errors_decode_the_aip_193_details() -> None:
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2
    from servicekit.errors import FailedPrecondition
    from servicekit.grpc.interceptors import rich_status

    class CoverageMissing(FailedPrecondition):
        REASON = "R5_AV_COVERAGE_MISSING"

    status = rich_status(CoverageMissing("no AV for activity a-1", metadata={"activity_id": "a-1"}))
    failure = Failure(grpc.StatusCode.FAILED_PRECONDITION, status.message)
    failure.trailing_metadata = lambda: (("grpc-status-details-bin", status.SerializeToString()),)  # type: ignore[attr-defined]
    error = from_rpc_error(failure, "/lawtrail.case.v1.CaseService/CloseCase")
    assert (error.reason, error.metadata) == ("R5_AV_COVERAGE_MISSING", {"activity_id": "a-1"})
    assert "[R5_AV_COVERAGE_MISSING]" in str(error)

    bad = status_pb2.Status(code=3, message="unit: required")
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.BadRequest(field_violations=[{"field": "unit", "description": "required"}]))
    bad.details.append(packed)
    failure = Failure(grpc.StatusCode.INVALID_ARGUMENT, bad.message)
    failure.trailing_metadata = lambda: (("grpc-status-details-bin", bad.SerializeToString()),)  # type: ignore[attr-defined]
    assert from_rpc_error(failure).field_violations == (("unit", "required"),)


def test_stub_calls_raise_typed_errors(fake_media: tuple[FakeRecordingService, str]) -> None:
    with (
        MediaClient.connect(fake_media[1], token="forged", timeout_s=2) as media,
        pytest.raises(LawtrailError) as e,
    ):
        media.recordings.BeginUpload(recording_service_pb2.BeginUploadRequest())
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("text", "rate"), [("500K", 512000), ("5M", 5 * 1024**2), ("1000", 1000), ("2MB/s", 2 * 1024**2)]
)
def test_rate_option(text: str, rate: float) -> None:
    assert cli._rate(text) == rate


def test_token_claims_are_read_for_defaults_only() -> None:
    payload = base64.urlsafe_b64encode(json.dumps({"unit": "unit-a", "sub": "station-1"}).encode()).rstrip(
        b"="
    )
    assert cli.token_claims(f"h.{payload.decode()}.s")["unit"] == "unit-a"
    assert cli.token_claims("garbage") == {}


def test_station_without_token_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LAWTRAIL_TOKEN", raising=False)
    assert cli.main(["station", "collect-once", str(tmp_path)]) == cli.EXIT_USAGE
    assert "no token" in capsys.readouterr().err


def test_station_on_missing_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["station", "collect-once", str(tmp_path / "nope"), "--token", "t"]) == cli.EXIT_USAGE
    assert "is not a folder" in capsys.readouterr().err


def test_cli_collect_once_end_to_end_on_the_fake(
    tmp_path: Path, fake_media: tuple[FakeRecordingService, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "dock"
    folder.mkdir()
    name = "BC-1_alice_20260501T120000Z.jpg"
    (folder / name).write_bytes(b"\xff\xd8 not really a jpeg")
    args = ["station", "collect-once", str(folder), "--server", fake_media[1], "--token", "good-token"]
    assert cli.main([*args, "--unit", "unit-a", "--settle", "0"]) == 0
    assert (folder / "collected" / name).exists()
    assert "1 collected, 0 not collected" in capsys.readouterr().err


def test_cli_collect_once_names_files_still_settling_and_fails(
    tmp_path: Path, fake_media: tuple[FakeRecordingService, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 8: files written a moment ago were skipped without a word and the run exited 0."""
    folder = tmp_path / "dock"
    folder.mkdir()
    name = "BC-1_alice_20260501T120000Z.jpg"
    (folder / name).write_bytes(b"\xff\xd8 just written")
    (folder / "notes.txt").write_text("not a recording")
    args = ["station", "collect-once", str(folder), "--server", fake_media[1], "--token", "good-token"]
    assert cli.main([*args, "--unit", "unit-a", "--settle", "30"]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert "0 collected, 1 not collected" in err
    assert f"{name}: skipped: still settling" in err
    assert "notes.txt: not a media file (.txt)" in err
    assert not (folder / "collected" / name).exists()


def test_dev_token_passes_through_to_servicekit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "dev-token",
        "--subject",
        "station-7",
        "--unit",
        "unit-a",
        "--roles",
        "SERVICE",
        "--scopes",
        "media.upload",
    ]
    assert cli.main([*args, "--data-dir", str(tmp_path)]) == 0
    claims = cli.token_claims(capsys.readouterr().out.strip())
    assert (claims["sub"], claims["unit"], claims["roles"]) == ("station-7", "unit-a", ["SERVICE"])
