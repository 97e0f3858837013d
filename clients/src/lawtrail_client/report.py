"""`lawtrail report --unit U --month YYYY-MM`: the monthly compliance report of a unit for the legal
affairs office (法制机构) — findings by article and severity, ingest-delay distribution (R11a), spot-check
results (R22), trend against the five earlier months — as a PDF and an HTML page with charts
(matplotlib), and the same numbers as CSV files.

Data: compliance-svc `ListFindings` (the unit's findings, by `raised_at`) and media-svc
`SearchRecordings` (each recording's `ingest_delay`, by recording start). Nothing is estimated.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DELAY_BUCKETS_H = [(0, 1), (1, 6), (6, 24), (24, 72), (72, None)]
TREND_MONTHS = 6


def month_bounds(month: str) -> tuple[datetime, datetime]:
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"--month: expected YYYY-MM, got {month!r}") from None
    return start, _add_months(start, 1)


def _add_months(d: datetime, n: int) -> datetime:
    y, m = divmod(d.month - 1 + n, 12)
    return d.replace(year=d.year + y, month=m + 1)


@dataclass
class ReportData:
    unit: str
    month: str
    findings: list[dict[str, Any]] = field(default_factory=list)  # of the month
    by_month: Counter[str] = field(default_factory=Counter)  # trend: month -> findings raised
    serious_by_month: Counter[str] = field(default_factory=Counter)
    delays_h: list[float] = field(default_factory=list)

    def by_article_severity(self) -> list[tuple[str, str, int]]:
        c = Counter((f["article"], f["severity"]) for f in self.findings)
        return sorted((a, s, n) for (a, s), n in c.items())

    def by_state(self) -> list[tuple[str, int]]:
        return sorted(Counter(f["state"] for f in self.findings).items())

    def delay_histogram(self) -> list[tuple[str, int]]:
        rows = []
        for lo, hi in DELAY_BUCKETS_H:
            label = f"{lo}–{hi} h" if hi is not None else f"≥ {lo} h"
            rows.append((label, sum(1 for d in self.delays_h if d >= lo and (hi is None or d < hi))))
        return rows

    def spot_check_results(self) -> list[tuple[str, int]]:
        c = Counter(f["code"].removeprefix("R22_").lower() for f in self.findings if f["article"] == "R22")
        return sorted(c.items())


def _paged(call: Callable[[str], Any], items: str) -> Iterator[Any]:
    token = ""
    while True:
        page = call(token)
        yield from getattr(page, items)
        token = page.page.next_page_token
        if not token:
            return


def collect(compliance: Any, media: Any | None, unit: str, month: str) -> ReportData:
    """Read the numbers from compliance-svc (and media-svc for ingest delays, when given)."""
    from google.protobuf.timestamp_pb2 import Timestamp
    from lawtrail.common.v1 import common_pb2
    from lawtrail.compliance.v1 import compliance_service_pb2 as capi
    from lawtrail.compliance.v1 import finding_pb2 as fpb
    from lawtrail.media.v1 import recording_service_pb2 as mapi

    start, end = month_bounds(month)
    trend_start = _add_months(start, -(TREND_MONTHS - 1))
    data = ReportData(unit, month)
    for i in range(TREND_MONTHS):
        data.by_month[_add_months(trend_start, i).strftime("%Y-%m")] = 0
    listing = _paged(
        lambda t: compliance.compliance.ListFindings(
            capi.ListFindingsRequest(unit=unit, page=common_pb2.PageRequest(page_size=500, page_token=t))
        ),
        "findings",
    )
    for f in listing:
        at = f.raised_at.ToDatetime(tzinfo=UTC)
        key = at.strftime("%Y-%m")
        if key in data.by_month:
            data.by_month[key] += 1
            if f.severity == fpb.SEVERITY_SERIOUS:
                data.serious_by_month[key] += 1
        if start <= at < end:
            data.findings.append(
                {
                    "finding_id": f.finding_id,
                    "article": f.article,
                    "code": f.code,
                    "severity": fpb.Severity.Name(f.severity).removeprefix("SEVERITY_"),
                    "state": fpb.FindingState.Name(f.state).removeprefix("FINDING_STATE_"),
                    "officer": f.officer,
                    "subject": f.subject,
                    "raised_at": at.isoformat(),
                    "detail": f.detail,
                }
            )
    if media is not None:
        after, before = Timestamp(), Timestamp()
        after.FromDatetime(start)
        before.FromDatetime(end)
        for r in _paged(
            lambda t: media.recordings.SearchRecordings(
                mapi.SearchRecordingsRequest(
                    unit=unit,
                    recorded_after=after,
                    recorded_before=before,
                    page=common_pb2.PageRequest(page_size=500, page_token=t),
                )
            ),
            "recordings",
        ):
            data.delays_h.append(r.ingest_delay.ToTimedelta().total_seconds() / 3600)
    return data


def _charts(data: ReportData) -> list[tuple[str, bytes, Any]]:
    """(title, PNG bytes, figure) of each chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    fig, ax = plt.subplots(figsize=(7, 3.2))
    rows = data.by_article_severity()
    articles = sorted({a for a, _, _ in rows})
    minor = [sum(n for a, s, n in rows if a == art and s == "MINOR") for art in articles]
    serious = [sum(n for a, s, n in rows if a == art and s == "SERIOUS") for art in articles]
    ax.bar(articles, minor, label="minor", color="#8fb3d9")
    ax.bar(articles, serious, bottom=minor, label="serious", color="#c0392b")
    ax.set_ylabel("findings")
    ax.set_title(f"Findings by article and severity — {data.unit}, {data.month}")
    ax.legend()
    if not articles:
        ax.text(0.5, 0.5, "no findings this month", ha="center", va="center", transform=ax.transAxes)
    figures.append(("Findings by article and severity", fig))

    fig, ax = plt.subplots(figsize=(7, 3.2))
    hist = data.delay_histogram()
    ax.bar([label for label, _ in hist], [n for _, n in hist], color="#5d8aa8")
    ax.axvline(2.5, color="#c0392b", linestyle="--", linewidth=1)
    ax.text(2.55, max([n for _, n in hist] + [1]) * 0.9, "R11a limit 24 h", color="#c0392b", fontsize=8)
    ax.set_ylabel("recordings")
    ax.set_title(f"Ingest delay (recording end → durable), {len(data.delays_h)} recordings")
    figures.append(("Ingest-delay distribution (R11a)", fig))

    fig, ax = plt.subplots(figsize=(7, 3.2))
    months = sorted(data.by_month)
    ax.plot(months, [data.by_month[m] for m in months], marker="o", label="all findings")
    ax.plot(months, [data.serious_by_month[m] for m in months], marker="s", color="#c0392b", label="serious")
    ax.set_ylabel("findings raised")
    ax.set_title("Trend: this month against the five before")
    ax.legend()
    figures.append(("Trend", fig))

    from matplotlib.ticker import MaxNLocator

    out = []
    for title, fig in figures:
        for ax in fig.axes:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts, not fractions
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        out.append((title, buffer.getvalue(), fig))
    return out


def _table(headers: list[str], rows: list[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body or '<tr><td colspan=9>none</td></tr>'}</table>"


def render(data: ReportData, out_dir: Path) -> dict[str, Path]:
    """Write `<unit>-<month>.pdf`, `.html` and the CSV files into `out_dir`; returns their paths."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"compliance-{data.unit}-{data.month}"
    paths: dict[str, Path] = {}
    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {
        "by_article_severity": (["article", "severity", "findings"], list(data.by_article_severity())),
        "by_state": (["state", "findings"], list(data.by_state())),
        "ingest_delay": (["delay", "recordings"], list(data.delay_histogram())),
        "spot_checks": (["aspect judged deficient", "findings"], list(data.spot_check_results())),
        "trend": (
            ["month", "findings", "serious"],
            [(m, data.by_month[m], data.serious_by_month[m]) for m in sorted(data.by_month)],
        ),
    }
    for name, (headers, rows) in tables.items():
        path = out_dir / f"{stem}-{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(headers)
            writer.writerows(rows)
        paths[f"csv:{name}"] = path
    findings_csv = out_dir / f"{stem}-findings.csv"
    with findings_csv.open("w", newline="", encoding="utf-8") as f:
        fields = [
            "finding_id",
            "article",
            "code",
            "severity",
            "state",
            "officer",
            "subject",
            "raised_at",
            "detail",
        ]
        records = csv.DictWriter(f, fieldnames=fields)
        records.writeheader()
        records.writerows(data.findings)
    paths["csv:findings"] = findings_csv

    charts = _charts(data)
    summary = (
        f"{len(data.findings)} findings raised in {data.month} "
        f"({sum(1 for f in data.findings if f['severity'] == 'SERIOUS')} serious, "
        f"{sum(1 for f in data.findings if f['state'] != 'RESOLVED')} not yet resolved); "
        f"{len(data.delays_h)} recordings, "
        f"{sum(1 for d in data.delays_h if d > 24)} ingested later than 24 h."
    )
    pdf_path = out_dir / f"{stem}.pdf"
    with PdfPages(pdf_path) as pdf:
        cover = plt.figure(figsize=(8.27, 11.69))
        cover.text(0.08, 0.92, "Lawtrail — monthly compliance report", fontsize=18, weight="bold")
        cover.text(0.08, 0.88, f"unit {data.unit} · {data.month} · for the legal affairs office", fontsize=12)
        cover.text(0.08, 0.84, summary, fontsize=9, wrap=True)
        y = 0.78
        cover.text(0.08, y, "Findings by article and severity", fontsize=12, weight="bold")
        for article, severity, n in data.by_article_severity()[:30]:
            y -= 0.022
            cover.text(0.10, y, f"{article:<8} {severity:<8} {n}", family="monospace", fontsize=9)
        y -= 0.04
        cover.text(0.08, y, "Spot checks (R22): aspects judged deficient", fontsize=12, weight="bold")
        for aspect, n in data.spot_check_results() or [("none", 0)]:
            y -= 0.022
            cover.text(0.10, y, f"{aspect:<14} {n}", family="monospace", fontsize=9)
        pdf.savefig(cover)
        plt.close(cover)
        for _title, _png, fig in charts:
            pdf.savefig(fig)
            plt.close(fig)
    paths["pdf"] = pdf_path

    images = "".join(
        f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='data:image/png;base64,"
        f"{base64.b64encode(png).decode()}'>"
        for t, png, _ in charts
    )
    page = f"""<!doctype html><html lang="en"><meta charset="utf-8">
<title>Compliance report {html.escape(data.unit)} {data.month}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:.2em .6em}}img{{max-width:100%}}</style>
<h1>Monthly compliance report — {html.escape(data.unit)}, {data.month}</h1><p>{html.escape(summary)}</p>
<h2>Findings by article and severity</h2>{_table(*tables["by_article_severity"])}
<h2>Findings by state</h2>{_table(*tables["by_state"])}
<h2>Spot checks (R22)</h2>{_table(*tables["spot_checks"])}
<h2>Ingest delay (R11a)</h2>{_table(*tables["ingest_delay"])}
<h2>Trend</h2>{_table(*tables["trend"])}
{images}
<h2>Findings</h2>{
        _table(
            ["article", "severity", "state", "officer", "subject", "raised", "detail"],
            [
                (
                    f["article"],
                    f["severity"],
                    f["state"],
                    f["officer"],
                    f["subject"],
                    f["raised_at"],
                    f["detail"],
                )
                for f in data.findings
            ],
        )
    }
</html>"""
    html_path = out_dir / f"{stem}.html"
    html_path.write_text(page, encoding="utf-8")
    paths["html"] = html_path
    print(f"report written: {pdf_path} {html_path} and {len(tables) + 1} CSV files", file=sys.stderr)
    return paths
