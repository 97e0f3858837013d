"""The adapter tests reuse the recordings test media and helpers (../recordings/recordings_support.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "recordings"))

from recordings_support import App, Media, build_app, make_media


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return make_media(tmp_path_factory.mktemp("media"))


@pytest.fixture
def app(tmp_path: Path) -> App:
    """The handlers on the real content store (a temporary directory), ffprobe and upload pipeline."""
    return build_app(tmp_path, real=True)
