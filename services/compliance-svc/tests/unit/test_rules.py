"""The compliance rules on plain facts (a dict stands in for the faust table)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from compliance_svc.bootstrap import load_policy
from compliance_svc.domain import facts as f
from compliance_svc.domain.model import Attribution, Finding, Severity, State
from compliance_svc.domain.rules import Deadlines, Monitor
from servicekit.errors import FailedPrecondition, InvalidArgument

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def ingested(rec: str, *, case: str = "", findings: tuple[f.IngestFinding, ...] = (), at: datetime = T0):
    return f.RecordingIngested(
        event_id=f"ev-ing-{rec}",
        time=at,
        recording_id=rec,
        unit="u1",
        officer="o1",
        device="CAM-1",
        recorded_from=at - timedelta(hours=1),
        recorded_to=at - timedelta(hours=1) + timedelta(seconds=5),
        case_id=case,
        activity_id="",
        findings=findings,
        ingest_delay_s=3600,
    )


def linked(rec: str, start: datetime, seconds: int, *, activity: str = "a1", at: datetime = T0):
    return f.RecordingLinked(
        event_id=f"ev-link-{rec}",
        time=at,
        recording_id=rec,
        case_id="c1",
        activity_id=activity,
        unit="u1",
        officer="o1",
        device="CAM-1",
        recorded_from=start,
        recorded_to=start + timedelta(seconds=seconds),
    )


def activity(aid: str, *, exempt: bool = False, text: bool = False) -> f.ActivityRecorded:
    return f.ActivityRecorded(
        event_id=f"ev-act-{aid}",
        time=T0,
        case_id="c1",
        unit="u1",
        activity_id=aid,
        officers=("o1", "o2"),
        exempt=exempt,
        text_record=text,
        ended_at=T0,
    )


@pytest.fixture
def monitor() -> Monitor:
    return Monitor({}, Deadlines())


def test_r11a_r19b_ingest_findings_become_findings_technical_ones_do_not(monitor: Monitor) -> None:
    raised = monitor.observe(
        ingested(
            "r1",
            case="c1",
            findings=(
                f.IngestFinding("R11A_LATE_INGEST", "R11a", "late by 30 h"),
                f.IngestFinding("R19B_PARTY_NOT_INFORMED", "R19b", "not informed"),
                f.IngestFinding("DURATION_MISMATCH", "", "declared 5 s, probed 2 s"),
            ),
        )
    )
    assert [(r.article, r.subject, r.evidence) for r in raised] == [
        ("R11a", "r1", ("ev-ing-r1",)),
        ("R19b", "r1", ("ev-ing-r1",)),
    ]
    assert len({r.finding_id for r in raised}) == 2


def test_r23_4_unlinked_recording_is_a_finding_after_n_days_not_before(monitor: Monitor) -> None:
    monitor.observe(ingested("r1"))
    assert monitor.due(T0 + 7 * DAY - timedelta(seconds=1)) == []
    (raised,) = monitor.due(T0 + 7 * DAY)
    assert (raised.article, raised.subject, raised.raised_at) == ("R23-4", "r1", T0 + 7 * DAY)


def test_r23_4_a_recording_linked_in_time_is_not_a_finding(monitor: Monitor) -> None:
    monitor.observe(ingested("r1"))
    monitor.observe(linked("r1", T0, 5, activity=""))
    assert monitor.due(T0 + 30 * DAY) == []


def test_r23_4_link_read_before_ingest_still_counts(monitor: Monitor) -> None:
    monitor.observe(linked("r1", T0, 5, activity=""))
    monitor.observe(ingested("r1"))
    assert monitor.due(T0 + 30 * DAY) == []


def test_r19c_gap_over_threshold_unexplained_after_the_period_is_a_finding(monitor: Monitor) -> None:
    monitor.observe(linked("r1", T0, 10, at=T0 + DAY))
    monitor.observe(linked("r2", T0 + timedelta(minutes=5), 10, at=T0 + DAY + timedelta(hours=1)))
    assert monitor.due(T0 + DAY + 3 * DAY) == []  # known only at the second link
    (raised,) = monitor.due(T0 + 5 * DAY)
    assert raised.article == "R19c"
    assert raised.raised_at == T0 + 4 * DAY + timedelta(hours=1)
    assert raised.evidence == ("ev-link-r1", "ev-link-r2")


def test_r19c_the_order_links_are_read_in_does_not_change_the_finding() -> None:
    a, b = Monitor({}, Deadlines()), Monitor({}, Deadlines())
    first = linked("r1", T0, 10, at=T0 + DAY)
    second = linked("r2", T0 + timedelta(minutes=5), 10, at=T0 + 2 * DAY)
    a.observe(first)
    a.observe(second)
    b.observe(second)
    b.observe(first)
    assert a.due(T0 + 30 * DAY) == b.due(T0 + 30 * DAY)


def test_r19c_an_explained_gap_and_a_short_gap_are_not_findings(monitor: Monitor) -> None:
    monitor.observe(linked("r1", T0, 10))
    monitor.observe(linked("r2", T0 + timedelta(seconds=60), 10))  # 50 s: under the threshold
    monitor.observe(linked("r3", T0 + timedelta(minutes=10), 10))
    monitor.observe(
        f.InterruptionExplained(
            event_id="ev-x",
            time=T0,
            device="CAM-1",
            activity_id="a1",
            unit="u1",
            gap_from=T0 + timedelta(seconds=70),
            gap_to=T0 + timedelta(minutes=10),
        )
    )
    assert monitor.due(T0 + 30 * DAY) == []


def test_r23_1_activity_without_av_or_text_record_is_a_finding(monitor: Monitor) -> None:
    monitor.observe(activity("a1"))
    monitor.observe(activity("a2", exempt=True))
    monitor.observe(activity("a3", text=True))
    monitor.observe(activity("a4"))
    monitor.observe(linked("r1", T0, 10, activity="a4"))
    raised = monitor.due(T0 + 3 * DAY)
    assert [(r.article, r.subject, r.officer) for r in raised] == [("R23-1", "a1", "o1")]


def test_r23_2_integrity_failure_is_a_finding(monitor: Monitor) -> None:
    (raised,) = monitor.observe(
        f.IntegrityCheckFailed(
            event_id="e", time=T0, recording_id="r1", unit="u1", detail="block 3 differs", detected_by="scrub"
        )
    )
    assert (raised.article, raised.code) == ("R23-2", "R23_2_INTEGRITY_FAILED")


def test_r05_flagged_case_closed_without_av_is_a_finding(monitor: Monitor) -> None:
    monitor.observe(activity("a1"))
    monitor.observe(f.CaseFlagged(event_id="fl", time=T0, case_id="c1", unit="u1", flag="DISPUTED"))
    (raised,) = monitor.observe(f.CaseClosed(event_id="cl", time=T0, case_id="c1", unit="u1", closed_by="h1"))
    assert (raised.article, raised.subject) == ("R5", "c1")
    monitor.observe(linked("r1", T0, 10, activity="a1"))
    assert (
        monitor.observe(f.CaseClosed(event_id="cl2", time=T0, case_id="c1", unit="u1", closed_by="h1")) == []
    )


def test_r23_severity_and_consequence_come_from_the_policy() -> None:
    policy = load_policy()
    monitor = Monitor({}, Deadlines())
    monitor.observe(ingested("r1"))
    (raised,) = monitor.due(T0 + 30 * DAY)
    finding = Finding.raise_(raised, policy)
    assert finding.severity is Severity.MINOR
    assert "criticism" in finding.consequence
    assert policy.grade("R23-2") is Severity.SERIOUS


def test_lifecycle_open_acknowledged_resolved() -> None:
    monitor = Monitor({}, Deadlines())
    monitor.observe(ingested("r1"))
    finding = Finding.raise_(monitor.due(T0 + 30 * DAY)[0], load_policy())
    by = Attribution("legal-1", "legal", T0)
    with pytest.raises(InvalidArgument, match="disposition"):
        finding.resolve("  ", by)
    acked = finding.acknowledge(by)
    assert acked.state is State.ACKNOWLEDGED
    done = acked.resolve("criticised", by)
    assert (done.state, done.disposition, done.resolved) == (State.RESOLVED, "criticised", by)
    with pytest.raises(FailedPrecondition):
        done.acknowledge(by)
    with pytest.raises(FailedPrecondition):
        done.resolve("again", by)


# ---- retiring the state whose purpose is over (years of recordings must not pile up in the table) ----


def test_r23_4_a_wait_that_came_due_is_retired_with_its_finding_and_raised_once(monitor: Monitor) -> None:
    monitor.observe(ingested("r1"))
    judged = monitor.judge(T0 + 7 * DAY)
    assert [(key, r.article) for key, r in judged.raised] == [("unlinked:r1", "R23-4")]
    assert monitor.retire(judged.over) == 1
    assert monitor.state == {}
    assert monitor.judge(T0 + 30 * DAY).raised == []


def test_r23_1_an_activity_past_its_deadline_is_retired_covered_or_not(monitor: Monitor) -> None:
    monitor.observe(activity("a1"))
    monitor.observe(activity("a2"))
    monitor.observe(linked("r1", T0, 10, activity="a2"))
    judged = monitor.judge(T0 + 3 * DAY)
    assert [r.subject for _key, r in judged.raised] == ["a1"]
    assert {key for key, _value in judged.over} >= {"activity:a1", "activity:a2"}
    monitor.retire(judged.over)
    assert not [key for key in monitor.state if key.startswith("activity:")]
    # The case's entry and the activity's coverage stay: R5 reads them when the case closes.
    assert "case:c1" in monitor.state
    assert "av:a2" in monitor.state


def test_r19c_a_series_and_a_links_marker_are_kept_for_kept_after_then_retired() -> None:
    monitor = Monitor({}, Deadlines(kept_after=10 * DAY))
    monitor.observe(linked("r1", T0, 10, at=T0))
    monitor.observe(linked("r2", T0 + timedelta(minutes=5), 10, at=T0))
    # The gap is raised when its period ends; the series is kept, a late neighbour may still come.
    judged = monitor.judge(T0 + 3 * DAY)
    assert [r.article for _key, r in judged.raised] == ["R19c"]
    assert judged.over == []
    # The links' markers outlive the series by the ingest's own wait (7 days).
    judged = monitor.judge(T0 + 13 * DAY)
    assert [key for key, _value in judged.over] == ["series:CAM-1|a1"]
    monitor.retire(judged.over)
    judged = monitor.judge(T0 + 17 * DAY)
    assert sorted(key for key, _value in judged.over) == ["linked:r1", "linked:r2"]
    monitor.retire(judged.over)
    assert sorted(monitor.state) == ["av:a1"]


def test_an_entry_written_after_it_was_judged_over_is_not_retired() -> None:
    monitor = Monitor({}, Deadlines(kept_after=DAY))
    monitor.observe(linked("r1", T0, 10, at=T0))
    judged = monitor.judge(T0 + 5 * DAY)
    assert "series:CAM-1|a1" in [key for key, _value in judged.over]
    # A late segment of the same series arrives between the judgement and the retirement.
    monitor.observe(linked("r2", T0 + timedelta(minutes=5), 10, at=T0 + 5 * DAY))
    monitor.retire(judged.over)
    assert [s[2] for s in monitor.state["series:CAM-1|a1"]["segments"]] == ["r1", "r2"]


def test_r23_4_a_link_read_before_its_ingest_keeps_it_out_of_the_wait_until_retired() -> None:
    monitor = Monitor({}, Deadlines(kept_after=DAY))
    monitor.observe(linked("r1", T0, 5, activity=""))
    monitor.retire(monitor.judge(T0 + 7 * DAY).over)  # within unlinked_after + kept_after: kept
    monitor.observe(ingested("r1"))
    assert "unlinked:r1" not in monitor.state
