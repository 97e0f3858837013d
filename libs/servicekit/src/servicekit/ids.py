"""Identifiers of records: random, or derived from a caller's idempotency key.

Pure Python. A caller may send a `request_id` (an idempotency key) with a command that creates
something; the id of what it creates is then derived from that key (`keyed_id`), so a retried request
finds what the first one created instead of creating it twice. Without a key, ids are random UUIDs in
their canonical text form.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

__all__ = ["IdFactory", "keyed_id", "new_id"]

_NAMESPACE = uuid.UUID("6d2f3c1e-8b0a-4c55-9a51-3c2f1d0e7b42")

IdFactory = Callable[[], str]


def new_id() -> str:
    """A random id (UUID 4, canonical text form)."""
    return str(uuid.uuid4())


def keyed_id(*parts: str) -> str:
    """The id derived from `parts` (kind, scope, request id…): the same parts give the same id."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))
