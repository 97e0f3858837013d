"""Unit-test world: the real `bootstrap.build_handlers` wired to in-memory fakes of the ports and the real
Ed25519 signer with a fresh key (helpers in access_support.py, importable because this directory is put
on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from access_support import World, make_world


@pytest.fixture
def world() -> World:
    return make_world()
