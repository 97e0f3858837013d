"""R16, R23-3: the access events of views and searches from outside the owning unit (case-svc's CaseViewed
and CasesSearched, media-svc's RecordingViewed and RecordingsSearched) are on topics the audit ledger
appends, and every other consumer of those topics skips them without touching its handlers — a view is
not a fact for retention (R12), compliance (R11, R19, R22) or case-svc's AV coverage (R5).

The routers are built with `None` for their handlers: an event routed to any handler would fail the test.
"""

from __future__ import annotations

from typing import Any

import pytest
from access_svc.bootstrap import contract_event_topics
from case_svc.entrypoints.consumers import media_events_router
from compliance_svc.adapters.event_mapping import to_fact
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.case.v1 import case_events_pb2 as case_ev
from lawtrail.media.v1 import media_events_pb2 as media_ev
from retention_svc.entrypoints.consumers import retention_router
from servicekit.messaging.envelope import Envelope
from servicekit.topics import events_topic_of

AT = Timestamp(seconds=1_780_000_000)
VIEW_EVENTS: list[Message] = [
    media_ev.RecordingViewed(
        recording_id="rec-1", unit="unit-a", viewer="legal-1", viewer_unit="legal", at=AT, rpc="GetRecording"
    ),
    media_ev.RecordingsSearched(
        viewer="legal-1", viewer_unit="legal", at=AT, rpc="SearchRecordings", recording_ids=["rec-1"]
    ),
    case_ev.CaseViewed(case_id="case-1", unit="unit-a", viewer="legal-1", viewer_unit="legal", at=AT),
    case_ev.CasesSearched(viewer="legal-1", viewer_unit="legal", at=AT, case_ids=["case-1"]),
]


def envelope(message: Message) -> Envelope:
    return Envelope.of(message, source="test", subject="legal-1")


def test_r16_view_events_are_on_topics_the_audit_ledger_appends() -> None:
    topics = contract_event_topics()
    assert events_topic_of(media_ev) == "lawtrail.media.v1.events"
    assert {events_topic_of(media_ev), events_topic_of(case_ev)} <= set(topics)


@pytest.mark.parametrize("message", VIEW_EVENTS, ids=lambda m: type(m).__name__)
async def test_r16_retention_compliance_and_case_svc_skip_view_events(message: Message) -> None:
    e = envelope(message)
    assert to_fact(e) is None, "compliance-svc reads no fact from a view"
    no_handlers: Any = None
    for router in (retention_router(no_handlers), media_events_router(no_handlers)):
        assert not router.accepts(e.type)
        await router(e)  # skipped: a route would call a handler of None and fail
