"""The kafka-python event SDK's decoding and type lookup (no broker; the integration test of the notifier
covers commit, resume and dead letters against a real Kafka)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from lawtrail.media.v1.media_events_pb2 import IntegrityCheckFailed
from lawtrail_client.events import EventConsumer, PoisonMessage, decode_meta, event_class, topic_of

HEADERS = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"e-1"),
    ("ce_source", b"/lawtrail/media-svc"),
    ("ce_type", b"lawtrail.media.v1.IntegrityCheckFailed"),
    ("ce_time", b"2026-05-01T08:00:00.123Z"),
    ("ce_subject", b"rec-1"),
]


def record(headers: list[tuple[str, bytes]]) -> SimpleNamespace:
    return SimpleNamespace(topic="lawtrail.media.v1.events", partition=1, offset=7, headers=headers)


def test_meta_is_decoded_from_the_cloudevents_headers() -> None:
    meta = decode_meta(record(HEADERS))
    assert (meta.id, meta.type, meta.subject, meta.offset) == ("e-1", HEADERS[3][1].decode(), "rec-1", 7)
    assert meta.time.isoformat() == "2026-05-01T08:00:00.123000+00:00"
    assert meta.dedupe_key == ("/lawtrail/media-svc", "e-1")


@pytest.mark.parametrize(
    ("drop", "why"),
    [("ce_id", "missing header"), ("ce_type", "missing header"), ("ce_time", "missing header")],
)
def test_a_record_without_cloudevents_headers_is_poison(drop: str, why: str) -> None:
    with pytest.raises(PoisonMessage, match=why):
        decode_meta(record([h for h in HEADERS if h[0] != drop]))


def test_types_resolve_to_their_topic_and_unknown_types_say_what_exists() -> None:
    assert event_class("lawtrail.media.v1.IntegrityCheckFailed") is IntegrityCheckFailed
    assert topic_of(IntegrityCheckFailed) == "lawtrail.media.v1.events"
    with pytest.raises(LookupError, match="RecordingIngested"):
        event_class("lawtrail.media.v1.NoSuchEvent")
    with pytest.raises(LookupError, match="no contracts package"):
        event_class("lawtrail.nothing.v1.Event")
    consumer = EventConsumer("127.0.0.1:1", group_id="g")
    consumer.on(IntegrityCheckFailed)(lambda m, meta: None)
    consumer.on("lawtrail.compliance.v1.FindingRaised")(lambda m, meta: None)
    assert consumer.topics == ["lawtrail.compliance.v1.events", "lawtrail.media.v1.events"]
