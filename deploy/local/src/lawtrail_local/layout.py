"""Where the launcher finds its inputs and puts its downloads.

The inputs (the Kafka pom, the FerretDB Go module, topics.toml) live beside this package in
`deploy/local/`, which the uv workspace installs in editable mode; the downloads go to a per-machine
cache outside the checkout so a fresh clone (CI) reuses what an earlier session fetched and built.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lawtrail_local.errors import StackError

#: `deploy/local/` — this file is `deploy/local/src/lawtrail_local/layout.py`.
DEPLOY_LOCAL = Path(__file__).resolve().parents[2]
#: The root of the Lawtrail checkout.
REPO_ROOT = DEPLOY_LOCAL.parents[1]
KAFKA_POM = DEPLOY_LOCAL / "kafka" / "pom.xml"
KAFKA_LOG4J2_CONFIG = DEPLOY_LOCAL / "kafka" / "log4j2.properties"
FERRETDB_MODULE = DEPLOY_LOCAL / "ferretdb"
TOPICS_FILE = DEPLOY_LOCAL / "topics.toml"
#: Runtime data of `python -m lawtrail_local up` (git-ignored).
DEFAULT_DATA_DIR = REPO_ROOT / ".lawtrail"


def cache_root() -> Path:
    """The per-machine download/build cache, `${XDG_CACHE_HOME:-$HOME/.cache}/lawtrail`."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "lawtrail"


def require_source(path: Path) -> Path:
    """Fail clearly when the package runs outside a checkout (e.g. installed as a plain wheel)."""
    if not path.exists():
        raise StackError(
            f"{path} is missing: lawtrail-local must run from a Lawtrail checkout "
            f"(installed editable by `uv sync`), not from a copied wheel"
        )
    return path


@contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Hold an exclusive lock on `<cache>/<name>.lock`.

    Two launches on one machine (`make up` while the integration tests start) must not download or
    build into the same cache directory at once; the second waits, then finds the work done.
    """
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"{name}.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
