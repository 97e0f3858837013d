"""R13, R11b, R16: how retention-svc uses access-svc's standing grants — one grant per copy (its held case)
or per batch (up to 100 recordings), the order chosen by the purpose, renewed before it runs out, and a
grant media-svc refused (revoked) never presented again. access-svc itself is replaced by a recorder of
what would be asked (the real exchange is tests/integration/retention)."""

from __future__ import annotations

import pytest
from lawtrail.access.v1 import access_grant_pb2 as gpb
from retention_svc.adapters import media_content
from retention_svc.adapters.media_content import (
    AccessSvcGrants,
    Scope,
    StandingOrderUse,
    _Retry,
    order_for,
)
from servicekit.errors import FailedPrecondition, PermissionDenied

CASE, REC = gpb.GRANT_RESOURCE_KIND_CASE, gpb.GRANT_RESOURCE_KIND_RECORDING


class Recorder(AccessSvcGrants):
    def __init__(self) -> None:
        self.now = 0.0
        super().__init__("unused:0", lambda: "token", clock=lambda: self.now)
        self.asked: list[tuple[str, str, list[Scope]]] = []

    async def _call(self, use: StandingOrderUse, purpose: str, resources: list[Scope]) -> str:
        self.asked.append((use.order_id, purpose, resources))
        return f"lg1.grant-{len(self.asked)}"


COPY = "R13 offline copy oc-1 of held case c-1"
BATCH = "R11b monthly archive backup ab-1 of unit u-1, 2026-10"


async def test_r13_one_case_grant_serves_the_whole_copy() -> None:
    grants = Recorder()
    await grants.prepare(COPY, [("r-1", "c-1"), ("r-2", "c-1"), ("r-3", "c-1")])
    tokens = {await grants.grant_for(COPY, r, "c-1") for r in ("r-1", "r-2", "r-3")}
    assert tokens == {"lg1.grant-1"}
    assert grants.asked == [("r13-offline-copy", COPY, [(CASE, "c-1")])]


async def test_r11b_batch_grants_name_recordings_100_at_a_time() -> None:
    grants = Recorder()
    items = [(f"r-{n}", "c-1" if n % 2 else "") for n in range(250)]
    await grants.prepare(BATCH, items)
    assert [(o, len(rs)) for o, _, rs in grants.asked] == [("r11b-archive-backup", 100)] * 2 + [
        ("r11b-archive-backup", 50)
    ]
    assert all(kind == REC for _, _, rs in grants.asked for kind, _ in rs)  # never a whole case
    assert await grants.grant_for(BATCH, "r-120", "c-1") == "lg1.grant-2"
    assert len(grants.asked) == 3


async def test_r16_a_grant_is_renewed_before_it_runs_out_and_a_refused_one_is_dropped() -> None:
    grants = Recorder()
    first = await grants.grant_for(COPY, "r-1", "c-1")
    grants.now += 26 * 60  # 30 min grant, less than 5 min left: a new one is asked for
    renewed = await grants.grant_for(COPY, "r-2", "c-1")
    assert renewed != first
    grants.forget(COPY, renewed)  # media-svc refused it (revoked)
    assert await grants.grant_for(COPY, "r-3", "c-1") not in (first, renewed)
    grants.done(COPY)
    assert await grants.grant_for(COPY, "r-3", "c-1") == "lg1.grant-4"


def test_r16_a_purpose_no_standing_order_covers_is_refused() -> None:
    assert order_for(COPY).order_id == "r13-offline-copy"
    assert order_for(BATCH).order_id == "r11b-archive-backup"
    with pytest.raises(PermissionDenied, match="no standing order of access-svc covers"):
        order_for("curiosity")


class NotYet(AccessSvcGrants):
    """access-svc answers FAILED_PRECONDITION `refusals` times (its projection trails), then issues."""

    def __init__(self, refusals: int) -> None:
        self.now = 0.0
        super().__init__("unused:0", lambda: "token", clock=lambda: self.now, wait_s=10)
        self.refusals = refusals

    async def _call_once(self, use: StandingOrderUse, purpose: str, resources: list[Scope]) -> str:
        self.now += 1
        if self.refusals:
            self.refusals -= 1
            raise _Retry("access-svc knows no long-term hold on c-1 (FAILED_PRECONDITION)")
        return "lg1.at-last"


async def test_r13_a_hold_access_svc_has_not_seen_yet_is_waited_for_then_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(media_content, "RETRY_EVERY_S", 0)
    assert await NotYet(3).grant_for(COPY, "r-1", "c-1") == "lg1.at-last"
    with pytest.raises(FailedPrecondition, match=r"knows no long-term hold on c-1 .*; retry later"):
        await NotYet(100).grant_for(COPY, "r-1", "c-1")
