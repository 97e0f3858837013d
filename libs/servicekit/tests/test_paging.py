"""Opaque page tokens: round trip, foreign tokens and changed filters are refused with a precise message."""

from __future__ import annotations

import pytest
from servicekit.errors import InvalidArgument
from servicekit.paging import decode_page_token, encode_page_token, filters_fingerprint


def test_round_trip_with_filters() -> None:
    filters = filters_fingerprint({"unit": "unit-a", "stage": None})
    token = encode_page_token(["2026-11-27T00:00:00+00:00", "case-1"], filters=filters)
    assert decode_page_token(token, filters=filters) == ["2026-11-27T00:00:00+00:00", "case-1"]


def test_empty_token_is_the_first_page() -> None:
    assert decode_page_token("") is None


@pytest.mark.parametrize("token", ["not-base64!", "e30", "W10", "x" * 2000])
def test_foreign_token_is_refused(token: str) -> None:
    with pytest.raises(InvalidArgument, match=r"page.page_token: not a token this service issued"):
        decode_page_token(token)


def test_token_for_other_filters_is_refused() -> None:
    token = encode_page_token(["k"], filters=filters_fingerprint({"unit": "a"}))
    with pytest.raises(InvalidArgument, match=r"page_token: issued for different filters"):
        decode_page_token(token, filters=filters_fingerprint({"unit": "b"}), field="page_token")


def test_fingerprint_ignores_key_order() -> None:
    assert filters_fingerprint({"a": 1, "b": 2}) == filters_fingerprint({"b": 2, "a": 1})
