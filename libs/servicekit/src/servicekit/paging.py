"""Opaque page tokens for cursor-paged lists (`lawtrail.common.v1.PageRequest.page_token`).

A token carries the position after the last item of a page (a short list of JSON values, e.g. the sort
key and the id) and, optionally, a fingerprint of the filters it was issued for, so a caller who changes
the filters mid-way gets a precise error instead of a silently wrong page. Tokens are opaque to callers:
base64url of compact JSON, unpadded. Pure Python (standard library and `servicekit.errors` only).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from servicekit.errors import InvalidArgument

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "decode_page_token",
    "encode_page_token",
    "filters_fingerprint",
    "foreign_page_token",
    "page_size",
]

FIELD = "page.page_token"
# Every list of every service: 0 asks for the default page size; more than the maximum is refused.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
_MAX_TOKEN_CHARS = 1024


def page_size(requested: int, field: str = "page.page_size") -> int:
    """The effective page size of a `PageRequest.page_size`: 0 -> the default; out of range is refused."""
    if requested < 0 or requested > MAX_PAGE_SIZE:
        raise InvalidArgument(
            f"{field}: {requested} is out of range; use 1–{MAX_PAGE_SIZE} (0 = {DEFAULT_PAGE_SIZE})"
        )
    return requested or DEFAULT_PAGE_SIZE


def filters_fingerprint(filters: Any) -> str:
    """A short digest of a JSON-able description of the filters a list was asked with."""
    canonical = json.dumps(filters, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def foreign_page_token(field: str = FIELD) -> InvalidArgument:
    """The error for a token this service did not issue (also for a decoded position of the wrong shape)."""
    return InvalidArgument(
        f"{field}: not a token this service issued; pass the next_page_token of the previous page "
        "unchanged, or leave it empty for the first page"
    )


def encode_page_token(position: Sequence[Any], *, filters: str = "") -> str:
    """The token of the page that starts after `position` (JSON values), for lists asked with `filters`."""
    raw = json.dumps({"p": list(position), "f": filters}, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str, *, filters: str = "", field: str = FIELD) -> list[Any] | None:
    """The position a token carries; None for an empty token (the first page).

    Raises `InvalidArgument` naming `field` when the token is not one this service issued, or was issued
    for other filters.
    """
    if not token:
        return None
    try:
        if len(token) > _MAX_TOKEN_CHARS:
            raise ValueError("too long")
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position, issued_for = raw["p"], raw["f"]
        if not isinstance(position, list) or not isinstance(issued_for, str):
            raise TypeError(token)
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise foreign_page_token(field) from None
    if issued_for != filters:
        raise InvalidArgument(
            f"{field}: issued for different filters; repeat the request with the filters of the first "
            "page, or leave the token empty to start over"
        )
    return position
