"""CloudEvents 1.0 binary mode on Kafka headers: every ce_ header, round trip, refusals."""

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import timestamp_pb2, wrappers_pb2
from lawtrail.common.v1 import common_pb2
from servicekit.messaging.envelope import CONTENT_TYPE, Envelope, InvalidEnvelope, decode, encode, to_record

AT = datetime(2026, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)


@dataclass
class Consumed:
    """The shape of aiokafka's ConsumerRecord that decode reads."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def attribution() -> common_pb2.Attribution:
    return common_pb2.Attribution(
        subject="alice", unit="unit-a", at=timestamp_pb2.Timestamp(seconds=1_777_000_000)
    )


def test_encode_sets_every_ce_header_key_and_value() -> None:
    record = encode(attribution(), source="/lawtrail/case-svc", subject="case-17", id="evt-1", time=AT)
    assert dict(record.headers) == {
        "ce_specversion": b"1.0",
        "ce_id": b"evt-1",
        "ce_source": b"/lawtrail/case-svc",
        "ce_type": b"lawtrail.common.v1.Attribution",
        "ce_subject": b"case-17",
        "ce_time": b"2026-05-01T12:34:56.789000Z",
        "content-type": b"application/protobuf",
    }
    assert record.key == b"case-17"
    assert record.value == attribution().SerializeToString(deterministic=True)


def test_round_trip_keeps_every_attribute_and_the_message() -> None:
    record = encode(attribution(), source="/lawtrail/case-svc", subject="case-17", id="evt-1", time=AT)
    envelope = decode(Consumed(record.key, record.value, record.headers))
    assert envelope == Envelope(
        id="evt-1",
        source="/lawtrail/case-svc",
        type="lawtrail.common.v1.Attribution",
        subject="case-17",
        time=AT,
        data=record.value,
    )
    assert envelope.parse(common_pb2.Attribution) == attribution()
    assert envelope.dedupe_key == ("/lawtrail/case-svc", "evt-1")


def test_defaults_are_a_fresh_uuid_and_now_in_utc() -> None:
    first = Envelope.of(attribution(), source="/s", subject="a")
    second = Envelope.of(attribution(), source="/s", subject="a")
    assert first.id != second.id
    assert len(first.id) == 36
    assert first.time.tzinfo is UTC
    assert abs(datetime.now(UTC) - first.time) < timedelta(seconds=5)


def test_time_in_another_zone_is_published_in_utc() -> None:
    beijing = timezone(timedelta(hours=8))
    record = encode(attribution(), source="/s", subject="a", time=AT.astimezone(beijing))
    assert dict(record.headers)["ce_time"] == b"2026-05-01T12:34:56.789000Z"


def test_empty_message_round_trips() -> None:
    record = to_record(Envelope.of(wrappers_pb2.StringValue(), source="/s", subject="a"))
    assert record.value == b""
    assert (
        decode(Consumed(record.key, None, record.headers)).parse(wrappers_pb2.StringValue)
        == wrappers_pb2.StringValue()
    )


def test_parse_refuses_another_type() -> None:
    record = encode(attribution(), source="/s", subject="a")
    with pytest.raises(InvalidEnvelope, match=r"not 'google\.protobuf\.StringValue'"):
        decode(Consumed(record.key, record.value, record.headers)).parse(wrappers_pb2.StringValue)


def test_parse_refuses_a_corrupt_value() -> None:
    envelope = replace(Envelope.of(attribution(), source="/s", subject="a"), data=b"\xff\xff\xff")
    with pytest.raises(InvalidEnvelope, match=r"not a valid lawtrail\.common\.v1\.Attribution"):
        envelope.parse(common_pb2.Attribution)


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("ce_specversion", "not a CloudEvents 1.0 binary-mode record"),
        ("content-type", "Lawtrail events are 'application/protobuf'"),
        ("ce_subject", "missing header ce_subject"),
        ("ce_time", "missing header ce_time"),
        ("ce_id", "missing header ce_id"),
        ("ce_source", "missing header ce_source"),
        ("ce_type", "missing header ce_type"),
    ],
)
def test_decode_names_what_is_missing(drop: str, message: str) -> None:
    record = encode(attribution(), source="/s", subject="a")
    headers = [(name, value) for name, value in record.headers if name != drop]
    with pytest.raises(InvalidEnvelope, match=message):
        decode(Consumed(record.key, record.value, headers))


def test_decode_refuses_a_time_without_zone() -> None:
    record = encode(attribution(), source="/s", subject="a")
    headers = [(n, b"2026-05-01T12:00:00" if n == "ce_time" else v) for n, v in record.headers]
    with pytest.raises(InvalidEnvelope, match="timezone aware"):
        decode(Consumed(record.key, record.value, headers))


def test_content_type_constant() -> None:
    assert CONTENT_TYPE == "application/protobuf"
