"""ListCases: filters, page sizes and the opaque page token.

A page token encodes where the next page starts (opening time and case id of the last case returned)
and a fingerprint of the filters it was issued for, so a token replayed with other filters is refused
instead of silently returning a wrong page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from servicekit.errors import InvalidArgument
from servicekit.paging import (
    decode_page_token,
    encode_page_token,
    filters_fingerprint,
    foreign_page_token,
    page_size,
)

from case_svc.domain import validation as v
from case_svc.domain.model import ActType, CaseFlag, Stage
from case_svc.service_layer.ports import CaseFilter, ListPosition


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
        size = page_size(self.page_size)
        if len(self.page_token) > 512:
            raise InvalidArgument("page.page_token: too long; pass the next_page_token of the previous page")
        return size

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
    """The filters a page token was issued for: a token is only valid with the same filters."""
    return filters_fingerprint(
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
        }
    )


def encode_token(where: CaseFilter, position: ListPosition) -> str:
    return encode_page_token([position.opened_at.isoformat(), position.case_id], filters=fingerprint(where))


def decode_token(where: CaseFilter, token: str) -> ListPosition | None:
    position = decode_page_token(token, filters=fingerprint(where))
    if position is None:
        return None
    try:
        at, case_id = datetime.fromisoformat(position[0]), position[1]
        if not isinstance(case_id, str) or at.tzinfo is None or len(position) != 2:
            raise ValueError(token)
    except (ValueError, TypeError, IndexError):
        raise foreign_page_token() from None
    return ListPosition(at, case_id)
