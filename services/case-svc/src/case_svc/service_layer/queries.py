"""ListCases: filters, page sizes and the opaque page token.

A page token encodes where the next page starts (opening time and case id of the last case returned)
and a fingerprint of the filters it was issued for, so a token replayed with other filters is refused
instead of silently returning a wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from servicekit.errors import InvalidArgument

from case_svc.domain import validation as v
from case_svc.domain.model import ActType, CaseFlag, Stage
from case_svc.service_layer.ports import CaseFilter, ListPosition

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class ListCases:
    unit: str = ""
    stage: Stage | None = None
    act_type: ActType | None = None
    flag: CaseFlag | None = None
    officer: str = ""
    party: str = ""
    cause_prefix: str = ""
    opened_from: datetime | None = None
    opened_to: datetime | None = None
    page_size: int = 0
    page_token: str = ""

    def validate(self) -> int:
        """Checks the filters; returns the effective page size."""
        v.identifier("unit", self.unit, required=False)
        v.identifier("officer", self.officer, required=False)
        v.text("party", self.party, max_len=100, required=False)
        v.text("cause_prefix", self.cause_prefix, max_len=200, required=False)
        for name, value in (("opened_from", self.opened_from), ("opened_to", self.opened_to)):
            if value is not None and value.tzinfo is None:
                raise InvalidArgument(f"{name}: must carry a time zone")
        if self.opened_from and self.opened_to and self.opened_to <= self.opened_from:
            raise InvalidArgument(
                f"opened_to: {self.opened_to.isoformat()} is not after "
                f"opened_from {self.opened_from.isoformat()}"
            )
        if self.page_size < 0 or self.page_size > MAX_PAGE_SIZE:
            raise InvalidArgument(
                f"page.page_size: {self.page_size} is out of range; "
                f"use 1–{MAX_PAGE_SIZE} (0 = {DEFAULT_PAGE_SIZE})"
            )
        if len(self.page_token) > 512:
            raise InvalidArgument("page.page_token: too long; pass the next_page_token of the previous page")
        return self.page_size or DEFAULT_PAGE_SIZE

    def filter(self, units: frozenset[str] | None) -> CaseFilter:
        return CaseFilter(
            units=units,
            stage=self.stage,
            act_type=self.act_type,
            flag=self.flag,
            officer=self.officer,
            party=self.party,
            cause_prefix=self.cause_prefix,
            opened_from=self.opened_from,
            opened_to=self.opened_to,
        )


def fingerprint(where: CaseFilter) -> str:
    canonical = json.dumps(
        {
            "units": sorted(where.units) if where.units is not None else None,
            "stage": where.stage,
            "act_type": where.act_type,
            "flag": where.flag,
            "officer": where.officer,
            "party": where.party,
            "cause_prefix": where.cause_prefix,
            "from": where.opened_from.isoformat() if where.opened_from else None,
            "to": where.opened_to.isoformat() if where.opened_to else None,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_token(where: CaseFilter, position: ListPosition) -> str:
    raw = json.dumps({"f": fingerprint(where), "t": position.opened_at.isoformat(), "id": position.case_id})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(where: CaseFilter, token: str) -> ListPosition | None:
    if not token:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        fp, at, case_id = raw["f"], datetime.fromisoformat(raw["t"]), raw["id"]
        if not isinstance(fp, str) or not isinstance(case_id, str) or at.tzinfo is None:
            raise ValueError(token)
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument(
            "page.page_token: not a token this service issued; pass the next_page_token of the previous page "
            "or leave it empty for the first page"
        ) from None
    if fp != fingerprint(where):
        raise InvalidArgument(
            "page.page_token: issued for different filters; repeat the request with the filters of the first "
            "page, or leave the token empty to start over"
        )
    return ListPosition(at, case_id)
