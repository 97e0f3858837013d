"""The monthly report renders its PDF, HTML and CSV from the numbers it is given (no network)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from lawtrail_client.report import ReportData, month_bounds, render


def finding(article: str, severity: str, state: str = "OPEN", code: str = "X") -> dict[str, str]:
    return {
        "finding_id": f"{article}-{severity}-{state}-{code}",
        "article": article,
        "code": code,
        "severity": severity,
        "state": state,
        "officer": "o1",
        "subject": "rec-1",
        "raised_at": "2026-05-03T10:00:00+00:00",
        "detail": "late by 30 h",
    }


def test_report_writes_pdf_html_and_the_same_numbers_as_csv(tmp_path: Path) -> None:
    data = ReportData(
        "unit-a",
        "2026-05",
        findings=[
            finding("R11a", "MINOR"),
            finding("R11a", "MINOR", "RESOLVED"),
            finding("R23-2", "SERIOUS"),
            finding("R22", "MINOR", code="R22_CIVILITY"),
        ],
        by_month=Counter({"2026-01": 0, "2026-02": 3, "2026-03": 1, "2026-04": 2, "2026-05": 4}),
        serious_by_month=Counter({"2026-05": 1}),
        delays_h=[0.5, 2, 30, 100],
    )
    paths = render(data, tmp_path)
    assert paths["pdf"].read_bytes().startswith(b"%PDF")
    page = paths["html"].read_text()
    assert "data:image/png;base64," in page
    assert "unit-a" in page
    with paths["csv:by_article_severity"].open() as f:
        assert list(csv.reader(f)) == [
            ["article", "severity", "findings"],
            ["R11a", "MINOR", "2"],
            ["R22", "MINOR", "1"],
            ["R23-2", "SERIOUS", "1"],
        ]
    with paths["csv:ingest_delay"].open() as f:
        assert [row[1] for row in csv.reader(f)][1:] == ["1", "1", "0", "1", "1"]


def test_report_month_must_be_yyyy_mm() -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds("May 2026")
