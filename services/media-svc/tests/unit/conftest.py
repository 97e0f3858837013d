"""Makes the shared fakes (media_fakes.py) importable by every unit test of media-svc."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
