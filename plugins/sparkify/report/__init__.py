"""The analytics report's files, rendered from query results: one CSV per query, a PNG chart
and a self-contained ``index.html``.

Pure rendering (no Airflow, no I/O), so it can be tested on its own; the operator
(``sparkify.operators.report``) runs the queries and publishes what this returns.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sparkify.report.chart import render_chart
from sparkify.report.tables import QueryResult, render_html, to_csv

__all__ = ["QueryResult", "ReportFile", "render_report"]

CSV_TYPE = "text/csv; charset=utf-8"
PNG_TYPE = "image/png"
HTML_TYPE = "text/html; charset=utf-8"


class ReportFile(NamedTuple):
    name: str
    body: bytes
    content_type: str


def render_report(results: list[QueryResult], *, title: str, generated_at: datetime, run_id: str,
                  dialect: str) -> list[ReportFile]:
    """The report's files in the order to publish them: ``<query>.csv`` for every result, in
    the order given, then ``chart.png`` (when a charted query is among them), then
    ``index.html``. The page comes last so that, once it exists, everything it links to does too."""
    files = [ReportFile(f"{result.name}.csv", to_csv(result).encode("utf-8"), CSV_TYPE) for result in results]
    chart = render_chart({result.name: result for result in results})
    if chart is not None:
        files.append(ReportFile("chart.png", chart, PNG_TYPE))
    page = render_html(results, title=title, generated_at=generated_at, run_id=run_id, dialect=dialect, chart=chart)
    files.append(ReportFile("index.html", page.encode("utf-8"), HTML_TYPE))
    return files
