"""Wire-level checks of Timestamp/Duration fields, and the AIP-193 details every refusal carries."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2, struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from lawtrail.media.v1 import device_service_pb2 as devices
from lawtrail.media.v1 import media_events_pb2 as media_events
from lawtrail.media.v1 import recording_service_pb2 as recordings
from servicekit.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from servicekit.grpc.interceptors import rich_status
from servicekit.grpc.wirecheck import (
    MAX_DURATION_SECONDS,
    MAX_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS,
    check_request,
    find_violations,
)


def _fields(message: object) -> list[str]:
    return [v.field for v in find_violations(message)]  # type: ignore[arg-type]


def test_in_range_values_pass() -> None:
    request = devices.RecordPreUseCheckRequest(
        device_number="D-1",
        clock_offset=duration_pb2.Duration(seconds=-MAX_DURATION_SECONDS, nanos=0),
    )
    check_request(request)
    check_request(
        devices.ListPreUseChecksRequest(since=timestamp_pb2.Timestamp(seconds=MAX_TIMESTAMP_SECONDS))
    )
    check_request(
        devices.ListPreUseChecksRequest(since=timestamp_pb2.Timestamp(seconds=MIN_TIMESTAMP_SECONDS))
    )


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(2**63 - 1, 0), (-(2**63), 0), (MAX_DURATION_SECONDS + 1, 0), (1, -1), (-1, 1), (0, 10**9)],
)
def test_out_of_range_duration_is_invalid_argument_naming_the_field(seconds: int, nanos: int) -> None:
    request = devices.RecordPreUseCheckRequest(
        clock_offset=duration_pb2.Duration(seconds=seconds, nanos=nanos)
    )
    with pytest.raises(InvalidArgument) as raised:
        check_request(request)
    assert raised.value.message.startswith("clock_offset: duration")
    assert [v.field for v in raised.value.field_violations()] == ["clock_offset"]


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(MAX_TIMESTAMP_SECONDS + 1, 0), (MIN_TIMESTAMP_SECONDS - 1, 0), (0, -1)]
)
def test_out_of_range_timestamp_is_refused(seconds: int, nanos: int) -> None:
    request = devices.ListPreUseChecksRequest(until=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
    assert _fields(request) == ["until"]


def test_nested_paths_are_named_and_every_bad_field_is_listed() -> None:
    request = recordings.ExplainInterruptionRequest(
        in_recording=media_events.SpokenExplanation(offset=duration_pb2.Duration(seconds=2**62))
    )
    assert _fields(request) == ["in_recording.offset"]
    both = devices.ListPreUseChecksRequest(
        since=timestamp_pb2.Timestamp(seconds=2**62), until=timestamp_pb2.Timestamp(seconds=-(2**62))
    )
    with pytest.raises(InvalidArgument) as raised:
        check_request(both)
    assert "(and 1 more field(s))" in raised.value.message
    assert [v.field for v in raised.value.field_violations()] == ["since", "until"]


def test_messages_without_time_fields_and_recursive_types_are_walked_safely() -> None:
    check_request(struct_pb2.Value(struct_value=struct_pb2.Struct()))  # recursive type, no time fields
    check_request("not a message")


def test_nul_in_any_string_field_is_invalid_argument_naming_it() -> None:
    # NUL cannot be stored (FerretDB refuses it): refused for every service at the wire, not INTERNAL.
    nested = struct_pb2.Value(
        struct_value=struct_pb2.Struct(fields={"a\x00b": struct_pb2.Value(string_value="x")})
    )
    with pytest.raises(InvalidArgument) as refused:
        check_request(devices.RecordPreUseCheckRequest(device_number="D\x001"))
    assert [v.field for v in refused.value.violations] == ["device_number"]
    assert "NUL" in str(refused.value)
    with pytest.raises(InvalidArgument) as in_map:
        check_request(nested)
    assert [v.field for v in in_map.value.violations] == ["struct_value.fields['a\\x00b']"]
    in_value = struct_pb2.Struct(fields={"k": struct_pb2.Value(string_value="v\x00")})
    with pytest.raises(InvalidArgument) as in_map_value:
        check_request(in_value)
    assert [v.field for v in in_map_value.value.violations] == ["fields['k'].string_value"]
    check_request(devices.RecordPreUseCheckRequest(device_number="D-1 案\n"))  # other text passes


def _unpack(status: object) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.BadRequest | None]:
    info, bad = error_details_pb2.ErrorInfo(), None
    for detail in status.details:  # type: ignore[attr-defined]
        assert isinstance(detail, any_pb2.Any)
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
    return info, bad


def test_rich_status_names_the_field_from_the_message_convention() -> None:
    status = rich_status(InvalidArgument("parties[1].name: required"), "case-svc.lawtrail")
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    info, bad = _unpack(status)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", "case-svc.lawtrail")
    assert bad is not None
    assert [(v.field, v.description) for v in bad.field_violations] == [("parties[1].name", "required")]


def test_rich_status_carries_explicit_reason_field_and_metadata() -> None:
    class CoverageMissing(FailedPrecondition):
        REASON = "R5_AV_COVERAGE_MISSING"

    info, bad = _unpack(rich_status(CoverageMissing("no AV", metadata={"case_id": "c-1"})))
    assert (info.reason, dict(info.metadata)) == ("R5_AV_COVERAGE_MISSING", {"case_id": "c-1"})
    assert bad is None
    info, bad = _unpack(
        rich_status(InvalidArgument("bad", field="unit", violations=[FieldViolation("cause", "blank")]))
    )
    assert bad is not None
    assert [v.field for v in bad.field_violations] == ["unit", "cause"]
    info, _ = _unpack(rich_status(NotFound("x", reason="CASE_NOT_FOUND")))
    assert info.reason == "CASE_NOT_FOUND"


def test_a_reason_must_be_upper_snake_case() -> None:
    with pytest.raises(ValueError, match="UPPER_SNAKE_CASE"):
        NotFound("x", reason="not-a-reason")
