"""R12/R13: media-svc's own disposal refusal reads case closure from its one case projection — the view the
R5 link checks read, fed by the same consumer of case-svc's events. Handlers on fakes; the case events are
fed through the consumer's router as Kafka delivers them (tests/integration/retention goes through the real
services)."""

from __future__ import annotations

import hashlib

import pytest
from google.protobuf.message import Message
from lawtrail.case.v1 import case_events_pb2 as case_ev
from media_svc.domain.commands import UploadManifest, UploadRecording
from media_svc.domain.disposal import Tombstone
from media_svc.domain.recordings import Recording
from media_svc.entrypoints.case_events import case_events_router
from media_svc.service_layer.disposal import ContentEraser, DisposalHandlers, DisposalStore
from recordings_support import OFFICER, App, Media, chunks_of, classification, data_of
from servicekit.errors import FailedPrecondition
from servicekit.messaging.envelope import Envelope

APPROVERS = ("head-1", "room-1")


class HoldsAndTombstones(DisposalStore):
    def __init__(self) -> None:
        self.holds: dict[str, list[str]] = {}
        self.tombstones: dict[str, Tombstone] = {}

    async def hold_placed(self, recording_id: str, incident_id: str) -> None:
        held = self.holds.setdefault(recording_id, [])
        if incident_id not in held:
            held.append(incident_id)

    async def holds_of(self, recording_id: str) -> list[str]:
        return list(self.holds.get(recording_id, []))

    async def tombstone(self, recording_id: str) -> Tombstone | None:
        return self.tombstones.get(recording_id)

    async def add_tombstone(self, tombstone: Tombstone) -> None:
        self.tombstones[tombstone.recording_id] = tombstone


class Erased(ContentEraser):
    def __init__(self) -> None:
        self.erased: list[str] = []

    def erase(self, sha256: str) -> None:
        self.erased.append(sha256)


def disposal_of(app: App) -> tuple[DisposalHandlers, HoldsAndTombstones, Erased]:
    store, eraser = HoldsAndTombstones(), Erased()
    handlers = DisposalHandlers(
        recordings=app.recordings, store=store, cases=app.handlers.cases, eraser=eraser
    )
    return handlers, store, eraser


def envelope_of(message: Message, ce_id: str) -> Envelope:
    return Envelope.of(message, source="case-svc", subject="case-1", id=ce_id)


async def linked_upload(app: App, media: Media, tag: str, case_id: str) -> Recording:
    data = data_of(media.video) + b"\0" * 16 + tag.encode()
    m = UploadManifest(classification(case_id=case_id), hashlib.sha256(data).hexdigest(), len(data))
    return (await app.handlers.upload_recording(UploadRecording(m, 0), chunks_of(data), OFFICER)).recording


async def dispose(handlers: DisposalHandlers, recording_id: str) -> Tombstone:
    return await handlers.dispose(recording_id, "order-1", APPROVERS, "6 months passed")


@pytest.mark.parametrize("closure", [case_ev.CaseClosed, case_ev.CaseArchived])
async def test_r12_a_recording_of_an_open_case_is_refused_until_its_closure_reaches_the_case_projection(
    app: App, media: Media, closure: type[case_ev.CaseClosed] | type[case_ev.CaseArchived]
) -> None:
    router = case_events_router(app.handlers)
    await router(envelope_of(case_ev.CaseOpened(case_id="case-1", unit="unit-a", cause="c"), "e-1"))
    r = await linked_upload(app, media, "open", "case-1")
    disposal, store, eraser = disposal_of(app)

    with pytest.raises(
        FailedPrecondition, match=r"linked to case case-1, which is open or not known to be closed"
    ):
        await dispose(disposal, r.recording_id)
    assert (store.tombstones, eraser.erased) == ({}, []), "a refusal writes and removes nothing"

    for _ in range(2):  # redelivered: the same effect
        await router(envelope_of(closure(case_id="case-1", unit="unit-a"), "e-2"))
    view = await app.handlers.cases.get("case-1")
    assert view is not None
    assert view.closed, "the link checks' view of the case knows the closure too"
    assert view.unit == "unit-a"

    tombstone = await dispose(disposal, r.recording_id)
    assert (tombstone.case_id, tombstone.order_id, tombstone.approved_by) == ("case-1", "order-1", APPROVERS)
    assert eraser.erased == [r.sha256]


async def test_r12_a_recording_linked_to_a_case_the_projection_does_not_know_is_refused(
    app: App, media: Media
) -> None:
    r = await linked_upload(app, media, "unknown", "case-404")
    disposal, store, eraser = disposal_of(app)
    with pytest.raises(FailedPrecondition, match=r"case case-404, which is open or not known to be closed"):
        await dispose(disposal, r.recording_id)
    assert (store.tombstones, eraser.erased) == ({}, [])


async def test_r13_a_held_recording_of_a_closed_case_is_refused(app: App, media: Media) -> None:
    router = case_events_router(app.handlers)
    await router(envelope_of(case_ev.CaseOpened(case_id="case-1", unit="unit-a", cause="c"), "e-1"))
    await router(envelope_of(case_ev.CaseClosed(case_id="case-1", unit="unit-a"), "e-2"))
    r = await linked_upload(app, media, "held", "case-1")
    disposal, store, eraser = disposal_of(app)
    await store.hold_placed(r.recording_id, "incident-1")
    with pytest.raises(FailedPrecondition, match=r"long-term hold \(incident-1\)"):
        await dispose(disposal, r.recording_id)
    assert (store.tombstones, eraser.erased) == ({}, [])
