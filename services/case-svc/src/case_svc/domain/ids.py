"""Identifiers of cases and of the records inside them.

A caller may send a `request_id` (an idempotency key) with a command that creates something; the id
of what it creates is then derived from that key, so a retried request finds what the first one
created instead of creating it twice. Without a key, ids are random.
"""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("6d2f3c1e-8b0a-4c55-9a51-3c2f1d0e7b42")


def new_id() -> str:
    return str(uuid.uuid4())


def case_id_for(unit: str, request_id: str) -> str:
    """The id of the case opened in `unit` by the request with idempotency key `request_id`."""
    return str(uuid.uuid5(_NAMESPACE, f"case\x1f{unit}\x1f{request_id}")) if request_id else new_id()


def child_id_for(case_id: str, kind: str, request_id: str) -> str:
    """The id of a record (`kind`: activity, incident, …) created in a case by a keyed request."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}\x1f{case_id}\x1f{request_id}")) if request_id else new_id()
