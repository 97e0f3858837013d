"""Media facts from ffprobe's JSON, and the check that the bytes are the declared media kind (R7).

`interpret_probe` takes the parsed output of
`ffprobe -v error -print_format json -show_format -show_streams FILE` (the adapter runs it) and
answers the facts, or raises `NotDeclaredMediaKind` when the bytes are not what the uploader declared.
Pure Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from servicekit.clock import to_ms
from servicekit.errors import InvalidArgument

from media_svc.domain.recordings import MediaFacts, MediaKind

# Codecs of still images (a "video" stream of one picture).
IMAGE_CODECS = frozenset(
    {"mjpeg", "jpegls", "jpeg2000", "png", "apng", "bmp", "webp", "tiff", "gif", "heif", "avif", "qoi"}
)


class NotDeclaredMediaKind(InvalidArgument):
    """The uploaded bytes are not the media kind the uploader declared; nothing is stored."""


def _streams(probe: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    streams = probe.get("streams")
    return streams if isinstance(streams, list) else []


def _is_image_format(format_name: str) -> bool:
    names = format_name.split(",")
    return any(n == "image2" or n.endswith("_pipe") for n in names)


def _duration(probe: Mapping[str, Any]) -> timedelta:
    candidates: list[float] = []
    fmt = probe.get("format") or {}
    for source in [fmt, *_streams(probe)]:
        try:
            candidates.append(float(source.get("duration", "")))
        except (TypeError, ValueError):
            continue
    seconds = max((c for c in candidates if c == c and c >= 0), default=0.0)
    return timedelta(seconds=seconds)


def _creation_time(probe: Mapping[str, Any]) -> datetime | None:
    tags = (probe.get("format") or {}).get("tags") or {}
    raw = tags.get("creation_time") if isinstance(tags, dict) else None
    if not isinstance(raw, str) or not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return to_ms(parsed)


def interpret_probe(probe: Mapping[str, Any], declared: MediaKind) -> MediaFacts:
    """The facts of the probed file; raises `NotDeclaredMediaKind` when it is not `declared`.

    - PHOTO: an image container (`image2` or an `*_pipe` image demuxer) holding a still-image stream.
    - VIDEO: a moving-picture stream (not a still image, not cover art) with a duration > 0.
    - AUDIO: at least one audio stream and no moving-picture stream (cover art is allowed).
    """
    fmt = probe.get("format") or {}
    format_name = str(fmt.get("format_name", ""))
    streams = _streams(probe)
    if not format_name or not streams:
        raise NotDeclaredMediaKind(
            f"the uploaded bytes are not a media file ffprobe can read (declared {declared.value}); "
            "nothing was stored"
        )
    pictures = [s for s in streams if s.get("codec_type") == "video"]
    real = [s for s in pictures if (s.get("disposition") or {}).get("attached_pic") != 1]  # not cover art
    stills = [s for s in real if _is_still(s, format_name)]
    moving = [s for s in real if not _is_still(s, format_name)]
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    duration = _duration(probe)
    if _is_image_format(format_name) and stills:
        found = MediaKind.PHOTO
    elif moving and duration > timedelta(0):
        found = MediaKind.VIDEO
    elif audio and not moving:
        found = MediaKind.AUDIO
    else:
        found = None
    if found is not declared:
        what = found.value if found else f"an unrecognised file (format {format_name!r})"
        raise NotDeclaredMediaKind(
            f"the uploaded bytes are {what}, not the declared {declared.value} "
            f"(ffprobe format {format_name!r}, streams {[s.get('codec_name') for s in streams]}); "
            "nothing was stored"
        )
    first_picture = (stills or moving or [{}])[0]
    return MediaFacts(
        format_name=format_name,
        duration=timedelta(0) if found is MediaKind.PHOTO else duration,
        codecs=tuple(str(s.get("codec_name", "")) for s in streams),
        width=int(first_picture.get("width") or 0),
        height=int(first_picture.get("height") or 0),
        creation_time=_creation_time(probe),
    )


def _is_still(stream: Mapping[str, Any], format_name: str) -> bool:
    if _is_image_format(format_name):
        return True
    return stream.get("codec_name") in IMAGE_CODECS and _single_frame(stream)


def _single_frame(stream: Mapping[str, Any]) -> bool:
    frames = stream.get("nb_frames")
    return frames in (None, "1", "N/A") and stream.get("duration") in (None, "N/A")
