"""Fixtures of the recordings unit tests: test media generated with ffmpeg and the handlers on in-memory
fakes (helpers in recordings_support.py, importable by the tests because this directory is put on
sys.path; the fakes are in ../media_fakes.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from recordings_support import App, Media, build_app, make_media


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return make_media(tmp_path_factory.mktemp("media"))


@pytest.fixture
def app(tmp_path: Path, media: Media) -> App:
    return build_app(tmp_path, media)
