"""Query results as text: the CSV of each query and the HTML page with every table."""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

TABLE_PREVIEW_ROWS = 50  # rows of each table on the page; the CSV has them all

QUERY_TITLES = {
    "top_songs": "Top songs",
    "top_artists": "Top artists",
    "plays_by_hour": "Plays per hour of day (UTC)",
    "level_share": "Paid vs free",
    "active_users_per_day": "Active users per day",
}

PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; }
"""


@dataclass
class QueryResult:
    name: str
    sql: str
    columns: list[str]
    rows: list[tuple]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


def format_value(value: Any) -> str:
    """A value as the CSV and the page show it: NULL empty, dates ISO, decimals without exponent."""
    if value is None:
        return ""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def to_csv(result: QueryResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows([format_value(value) for value in row] for row in result.rows)
    return out.getvalue()


def render_html(results: list[QueryResult], *, title: str, generated_at: datetime, run_id: str, dialect: str,
                chart: bytes | None) -> str:
    """A self-contained page: the chart is embedded, so the page reads the same when opened
    from a presigned URL, an email attachment or a downloaded copy (the CSVs sit next to it)."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{PAGE_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">Generated {esc(generated_at.isoformat())} by Airflow run <code>{esc(run_id)}</code> '
        f"from the {esc(dialect)} warehouse. Every figure is over all loaded songplays.</p>",
        "<p>Data: " + ", ".join(f'<a href="{esc(r.name)}.csv">{esc(r.name)}.csv</a>' for r in results) + "</p>",
    ]
    if chart:
        parts.append(f'<img src="data:image/png;base64,{base64.b64encode(chart).decode()}" '
                     'alt="Plays per hour, active users per day, paid vs free, top songs and artists">')
    for result in results:
        parts.append(f'<h2 id="{esc(result.name)}">{esc(QUERY_TITLES.get(result.name, result.name))}</h2>')
        parts.append("<table><thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in result.columns) + "</tr></thead><tbody>")
        for row in result.rows[:TABLE_PREVIEW_ROWS]:
            cells = "".join(
                f'<td class="num">{esc(format_value(v))}</td>' if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)
                else f"<td>{esc(format_value(v))}</td>"
                for v in row
            )
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</tbody></table>")
        if len(result.rows) > TABLE_PREVIEW_ROWS:
            parts.append(f'<p>{len(result.rows) - TABLE_PREVIEW_ROWS} more rows in <a href="{esc(result.name)}.csv">'
                         f"{esc(result.name)}.csv</a>.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
