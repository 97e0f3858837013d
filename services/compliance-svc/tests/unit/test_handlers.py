"""Recording raised findings: one round trip per batch, each finding once (a redelivered batch stores
nothing new), the first of a finding raised twice in one batch counts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from compliance_svc.bootstrap import build_handlers
from compliance_svc.domain.model import Finding, Raised, State
from compliance_svc.service_layer.ports import FindingFilter

T0 = datetime(2026, 5, 1, tzinfo=UTC)


class Findings:
    """In memory, with the repository's contract: ids already stored are left alone."""

    def __init__(self) -> None:
        self.stored: dict[str, Finding] = {}
        self.rounds = 0

    async def add_absent(self, findings: Sequence[Finding]) -> list[str]:
        self.rounds += 1
        new = [f for f in findings if f.finding_id not in self.stored]
        self.stored.update((f.finding_id, f) for f in new)
        return [f.finding_id for f in new]

    async def get(self, finding_id: str) -> Finding | None:
        return self.stored.get(finding_id)

    async def save(self, finding: Finding, *, was: State) -> Finding:
        self.stored[finding.finding_id] = finding
        return finding

    async def list(self, where: FindingFilter, *, limit: int, after: tuple[str, str] | None) -> list[Finding]:
        return list(self.stored.values())[:limit]


def raised(recording: str, event: str) -> Raised:
    return Raised(
        "R19B_PARTY_NOT_INFORMED", "R19b", "unit-1", "officer-1", recording, "not informed", (event,), T0
    )


async def test_r19b_a_batch_is_stored_in_one_round_and_each_finding_once() -> None:
    findings = Findings()
    handlers = build_handlers(findings)
    new = await handlers.record([raised("rec-1", "e1"), raised("rec-2", "e2"), raised("rec-1", "e3")])
    assert [f.subject for f in new] == ["rec-1", "rec-2"]
    assert findings.rounds == 1
    assert findings.stored[new[0].finding_id].evidence == ("e1",)  # the first of the two counts
    # Redelivered (or replayed): nothing new, still one round.
    assert await handlers.record([raised("rec-1", "e1"), raised("rec-2", "e2")]) == []
    assert findings.rounds == 2
    assert await handlers.record([]) == []
    assert findings.rounds == 2
