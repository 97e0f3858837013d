"""Classification of a docked camera's file: from a sidecar JSON file and/or the file's name (R17).

Naming scheme (what docks that cannot write a sidecar produce):

    <device>_<officer>_<start>[_<end>].<ext>      e.g.  BC-0001_alice_20260501T123456Z_20260501T124512Z.mp4

- `device`, `officer`: no `_` inside; `start`, `end`: UTC as `YYYYMMDDTHHMMSSZ`;
- `end` may be left out for a photo (end = start); video and audio need it (or a sidecar).

Sidecar: a JSON object next to the file, named `<file name>.json` (`clip.mp4.json`) or `<stem>.json`
(`clip.json`). Its keys (all optional when the name already says them):

    {"device_number": "BC-0001", "officer": "alice",
     "recorded_from": "2026-05-01T12:34:56Z", "recorded_to": "2026-05-01T12:45:12Z",
     "unit": "unit-a", "media_kind": "VIDEO", "party_informed": true,
     "party": "…", "case_cause": "…", "case_id": "…", "activity_id": "…"}

Sidecar values win over values from the name. `unit` defaults to the station's unit (`--unit`, else the
token's `unit` claim). `media_kind` defaults from the extension. `party_informed` (R19b) defaults to false:
the server then records a finding — a station never claims the party was informed unless told so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from lawtrail.media.v1 import recording_pb2

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".avi", ".ts", ".3gp"})
AUDIO_EXTENSIONS = frozenset({".m4a", ".aac", ".mp3", ".wav", ".amr", ".ogg", ".opus", ".flac"})
PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".heic", ".bmp", ".tif", ".tiff"})
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS | PHOTO_EXTENSIONS

_KINDS = {
    "VIDEO": recording_pb2.MEDIA_KIND_VIDEO,
    "AUDIO": recording_pb2.MEDIA_KIND_AUDIO,
    "PHOTO": recording_pb2.MEDIA_KIND_PHOTO,
}
_NAME = re.compile(
    r"^(?P<device>[^_]+)_(?P<officer>[^_]+)_(?P<start>\d{8}T\d{6}Z)(?:_(?P<end>\d{8}T\d{6}Z))?$"
)
_TEXT_KEYS = ("device_number", "officer", "unit", "party", "case_cause", "case_id", "activity_id")
_KNOWN_KEYS = frozenset({*_TEXT_KEYS, "recorded_from", "recorded_to", "media_kind", "party_informed"})


class MetadataError(Exception):
    """The file's classification cannot be determined; the message says what to fix."""


@dataclass(frozen=True)
class FileMetadata:
    classification: recording_pb2.Classification
    # Sidecar file the metadata came from (moved along with the file once collected), if any.
    sidecar: Path | None


def sidecar_of(path: Path) -> Path | None:
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if candidate.is_file():
            return candidate
    return None


def kind_of(path: Path) -> str | None:
    ext = path.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return "VIDEO"
    if ext in AUDIO_EXTENSIONS:
        return "AUDIO"
    if ext in PHOTO_EXTENSIONS:
        return "PHOTO"
    return None


def read_metadata(path: Path, *, default_unit: str) -> FileMetadata:
    """The classification of `path` from its sidecar and name; `MetadataError` when incomplete."""
    values: dict[str, Any] = {}
    match = _NAME.match(path.stem)
    if match:
        values["device_number"] = match["device"]
        values["officer"] = match["officer"]
        values["recorded_from"] = _parse_compact(match["start"])
        if match["end"]:
            values["recorded_to"] = _parse_compact(match["end"])
    sidecar = sidecar_of(path)
    if sidecar is not None:
        values.update(_read_sidecar(sidecar))
    kind = str(values.get("media_kind") or kind_of(path) or "").upper()
    if kind not in _KINDS:
        raise MetadataError(
            f'{path.name}: media kind {kind or "(unknown extension)"!r} — set "media_kind" to VIDEO, AUDIO '
            "or PHOTO in the sidecar"
        )
    if "recorded_to" not in values and kind == "PHOTO" and "recorded_from" in values:
        values["recorded_to"] = values["recorded_from"]
    missing = [k for k in ("device_number", "officer", "recorded_from", "recorded_to") if not values.get(k)]
    if missing:
        raise MetadataError(
            f"{path.name}: missing {', '.join(missing)} — name the file "
            "<device>_<officer>_<YYYYMMDDTHHMMSSZ start>_<YYYYMMDDTHHMMSSZ end>.<ext> or put a sidecar "
            f"{path.name}.json next to it (see `lawtrail station --help`)"
        )
    recorded_from: datetime = values["recorded_from"]
    recorded_to: datetime = values["recorded_to"]
    if recorded_to < recorded_from:
        raise MetadataError(
            f"{path.name}: recording end {recorded_to.isoformat()} is before its start "
            f"{recorded_from.isoformat()}"
        )
    unit = str(values.get("unit") or default_unit)
    if not unit:
        raise MetadataError(f'{path.name}: no unit — give the station --unit or put "unit" in the sidecar')
    classification = recording_pb2.Classification(
        unit=unit,
        device_number=str(values["device_number"]),
        officer=str(values["officer"]),
        recorded_from=_timestamp(recorded_from),
        recorded_to=_timestamp(recorded_to),
        party=str(values.get("party", "")),
        case_cause=str(values.get("case_cause", "")),
        media_kind=_KINDS[kind],
        party_informed=bool(values.get("party_informed", False)),
        case_id=str(values.get("case_id", "")),
        activity_id=str(values.get("activity_id", "")),
    )
    return FileMetadata(classification, sidecar)


def _read_sidecar(sidecar: Path) -> dict[str, Any]:
    try:
        raw = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MetadataError(f"{sidecar.name}: not a readable JSON file ({error})") from None
    if not isinstance(raw, dict):
        raise MetadataError(f"{sidecar.name}: must hold a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        raise MetadataError(
            f"{sidecar.name}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN_KEYS))}"
        )
    out: dict[str, Any] = {}
    for key in _TEXT_KEYS:
        if key in raw and raw[key] is not None:
            if not isinstance(raw[key], str):
                raise MetadataError(f"{sidecar.name}: {key!r} must be a string")
            out[key] = raw[key].strip()
    for key in ("recorded_from", "recorded_to"):
        if raw.get(key):
            out[key] = _parse_iso(sidecar.name, key, raw[key])
    if raw.get("media_kind"):
        out["media_kind"] = str(raw["media_kind"])
    if "party_informed" in raw:
        if not isinstance(raw["party_informed"], bool):
            raise MetadataError(f"{sidecar.name}: 'party_informed' must be true or false")
        out["party_informed"] = raw["party_informed"]
    return out


def _parse_compact(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _parse_iso(where: str, key: str, value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise MetadataError(f"{where}: {key!r} is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise MetadataError(f"{where}: {key!r} needs a time zone (e.g. '2026-05-01T12:34:56Z'): {value!r}")
    return parsed.astimezone(UTC)


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts
