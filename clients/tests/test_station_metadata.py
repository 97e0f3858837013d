"""Classification of docked files from names and sidecars (R17, R19b)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lawtrail.media.v1 import recording_pb2
from lawtrail_client.station.metadata import MetadataError, read_metadata


def touch(folder: Path, name: str, sidecar: dict[str, object] | None = None, sidecar_name: str = "") -> Path:
    path = folder / name
    path.write_bytes(b"x")
    if sidecar is not None:
        (folder / (sidecar_name or name + ".json")).write_text(json.dumps(sidecar))
    return path


def test_r17_naming_scheme_gives_device_officer_and_times(tmp_path: Path) -> None:
    path = touch(tmp_path, "BC-0001_alice_20260501T123456Z_20260501T124512Z.mp4")
    c = read_metadata(path, default_unit="unit-a").classification
    assert (c.unit, c.device_number, c.officer) == ("unit-a", "BC-0001", "alice")
    assert c.recorded_from.ToDatetime(tzinfo=UTC) == datetime(2026, 5, 1, 12, 34, 56, tzinfo=UTC)
    assert c.recorded_to.ToDatetime(tzinfo=UTC) == datetime(2026, 5, 1, 12, 45, 12, tzinfo=UTC)
    assert c.media_kind == recording_pb2.MEDIA_KIND_VIDEO
    assert c.party_informed is False  # R19b: never claimed unless the sidecar says so


def test_r17_sidecar_overrides_and_completes_the_name(tmp_path: Path) -> None:
    sidecar = {
        "officer": "bob",
        "unit": "unit-b",
        "party_informed": True,
        "party": "Shop 12",
        "case_cause": "fire exits blocked",
        "case_id": "c-1",
        "activity_id": "a-1",
    }
    path = touch(tmp_path, "BC-7_alice_20260501T120000Z_20260501T121000Z.mp4", sidecar)
    c = read_metadata(path, default_unit="unit-a").classification
    assert (c.officer, c.unit, c.party, c.case_cause, c.case_id, c.activity_id) == (
        "bob",
        "unit-b",
        "Shop 12",
        "fire exits blocked",
        "c-1",
        "a-1",
    )
    assert c.party_informed is True


def test_r17_sidecar_alone_names_everything(tmp_path: Path) -> None:
    sidecar = {
        "device_number": "BC-9",
        "officer": "carol",
        "recorded_from": "2026-05-01T20:00:00+08:00",
        "recorded_to": "2026-05-01T20:05:00+08:00",
        "media_kind": "audio",
    }
    path = touch(tmp_path, "REC0001.wav", sidecar, sidecar_name="REC0001.json")
    meta = read_metadata(path, default_unit="unit-a")
    assert meta.sidecar == tmp_path / "REC0001.json"
    assert meta.classification.media_kind == recording_pb2.MEDIA_KIND_AUDIO
    assert meta.classification.recorded_from.ToDatetime(tzinfo=UTC) == datetime(2026, 5, 1, 12, tzinfo=UTC)


def test_photo_without_end_time_ends_when_it_starts(tmp_path: Path) -> None:
    c = read_metadata(touch(tmp_path, "BC-1_alice_20260501T120000Z.jpg"), default_unit="u").classification
    assert c.recorded_to == c.recorded_from
    assert c.media_kind == recording_pb2.MEDIA_KIND_PHOTO


@pytest.mark.parametrize(
    ("name", "sidecar", "message"),
    [
        ("BC-1_alice_20260501T120000Z.mp4", None, "missing recorded_to"),
        ("clip.mp4", None, "missing device_number, officer, recorded_from, recorded_to"),
        ("BC-1_a_20260501T120000Z_20260501T110000Z.mp4", None, "is before its start"),
        ("clip.mp4", {"recorded_from": "yesterday"}, "not an ISO 8601 time"),
        ("clip.mp4", {"recorded_from": "2026-05-01T12:00:00"}, "needs a time zone"),
        ("clip.mp4", {"device": "BC-1"}, "unknown key"),
        ("clip.mp4", {"party_informed": "yes"}, "must be true or false"),
        ("BC-1_a_20260501T120000Z_20260501T130000Z.mp4", {"media_kind": "HOLOGRAM"}, "media kind"),
    ],
)
def test_incomplete_metadata_says_what_to_fix(
    tmp_path: Path, name: str, sidecar: dict[str, object] | None, message: str
) -> None:
    with pytest.raises(MetadataError, match=message):
        read_metadata(touch(tmp_path, name, sidecar), default_unit="unit-a")


def test_unreadable_sidecar_is_reported(tmp_path: Path) -> None:
    path = touch(tmp_path, "clip.mp4")
    (tmp_path / "clip.mp4.json").write_text("{not json")
    with pytest.raises(MetadataError, match="not a readable JSON file"):
        read_metadata(path, default_unit="u")


def test_no_unit_anywhere_is_reported(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="no unit"):
        read_metadata(touch(tmp_path, "BC-1_a_20260501T120000Z_20260501T130000Z.mp4"), default_unit="")
