"""The analytics report: run the queries of ``include/sql/analytics`` and publish the results
to S3 as one CSV per query plus an ``index.html`` page with a PNG chart.

Also defines the star-schema tables as Airflow Assets: ``sparkify_etl``'s load tasks
update them and ``sparkify_analytics`` is scheduled on them.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from sparkify.buckets import require_bucket
from sparkify.warehouse import DialectContextMixin, Warehouse

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk import Context

SAFE_KEY_PART = re.compile(r"[^A-Za-z0-9._=-]+")
TABLE_PREVIEW_ROWS = 50


@dataclass
class QueryResult:
    name: str
    sql: str
    columns: list[str]
    rows: list[tuple]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


class AnalyticsReportOperator(DialectContextMixin, BaseOperator):
    """
    Run read-only analytics queries on the warehouse and publish a report to S3.

    All queries run in one read-only transaction (``REPEATABLE READ`` on PostgreSQL; Redshift
    is serializable), so the report is one consistent snapshot even while loads run.
    Under ``s3://<s3_bucket>/<report_prefix>/`` it writes ``<query>.csv`` for every query,
    ``chart.png`` and ``index.html`` (tables and the chart, self-contained), then points
    ``<reports root>/latest.json`` at it.

    :param queries: query name -> SQL (or a ``.sql`` template under the DAG's searchpath).
        Templates see ``dialect`` and ``params`` like the ETL's SQL files.
    :param s3_bucket: bucket to publish to (templated).
    :param report_prefix: key prefix of this report, e.g. ``reports/2018-11-02/<run_id>``
        (templated; unsafe characters in each path segment become ``-``).
    :param title: heading of the HTML page.
    """

    template_fields: Sequence[str] = ("queries", "s3_bucket", "report_prefix", "title")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"queries": "json"}
    warehouse_conn_attr = "warehouse_conn_id"
    ui_color = "#B4A7D6"

    def __init__(
        self,
        *,
        queries: dict[str, str],
        s3_bucket: str,
        report_prefix: str,
        title: str = "Sparkify analytics",
        warehouse_conn_id: str = "redshift_default",
        aws_conn_id: str = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not queries:
            raise ValueError("queries must name at least one query")
        self.queries = dict(queries)
        self.s3_bucket = s3_bucket
        self.report_prefix = report_prefix
        self.title = title
        self.warehouse_conn_id = warehouse_conn_id
        self.aws_conn_id = aws_conn_id

    @cached_property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.warehouse_conn_id)

    @cached_property
    def s3(self) -> S3Hook:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.aws_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        prefix = safe_prefix(self.report_prefix)
        self.keys_written: list[str] = []  # for get_openlineage_facets_on_complete
        require_bucket(self.s3, self.s3_bucket)
        results = self.run_queries()
        generated_at = datetime.now(timezone.utc).replace(microsecond=0)

        files: dict[str, tuple[bytes, str]] = {}
        for result in results:
            files[f"{result.name}.csv"] = (to_csv(result).encode("utf-8"), "text/csv; charset=utf-8")
        chart = render_chart({result.name: result for result in results})
        if chart is not None:
            files["chart.png"] = (chart, "image/png")
        page = render_html(
            results, title=self.title, generated_at=generated_at, run_id=context["run_id"],
            dialect=self.warehouse.dialect, chart=chart,
        )
        files["index.html"] = (page.encode("utf-8"), "text/html; charset=utf-8")

        # index.html last: once it exists, everything it links to does too.
        for name in sorted(files, key=lambda name: name == "index.html"):
            body, content_type = files[name]
            self._put(f"{prefix}/{name}", body, content_type)
        summary = {
            "bucket": self.s3_bucket,
            "prefix": prefix,
            "index_key": f"{prefix}/index.html",
            "s3_uri": f"s3://{self.s3_bucket}/{prefix}/index.html",
            "files": sorted(files),
            "rows": {result.name: len(result.rows) for result in results},
            "run_id": context["run_id"],
            "generated_at": generated_at.isoformat(),
        }
        root = prefix.split("/", 1)[0]
        self._put(f"{root}/latest.json", json.dumps(summary, indent=2).encode(), "application/json")
        for result in results:
            self.log.info("%s: %d rows -> s3://%s/%s/%s.csv", result.name, len(result.rows), self.s3_bucket, prefix, result.name)
        self.log.info(
            "Analytics report: %s (fetch: aws s3 cp --recursive s3://%s/%s/ ./report/ then open report/index.html)",
            summary["s3_uri"], self.s3_bucket, prefix,
        )
        return summary

    def run_queries(self) -> list[QueryResult]:
        results = []
        with self.warehouse.transaction() as cursor:
            if self.warehouse.dialect == "postgres":
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            for name, sql in self.queries.items():
                if not re.fullmatch(r"[a-z0-9_]+", name):
                    raise AirflowFailException(f"query name {name!r} must be lower-case letters, digits and _")
                cursor.execute(sql)
                columns = [column[0] for column in cursor.description]
                results.append(QueryResult(name, sql, columns, [tuple(row) for row in cursor.fetchall()]))
        return results

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        self.s3.get_conn().put_object(Bucket=self.s3_bucket, Key=key, Body=body, ContentType=content_type)
        self.keys_written.append(key)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the star tables the queries read in, the report's objects out."""
        from sparkify.lineage import report_lineage

        return report_lineage(self.warehouse, self.queries.values(), self.s3_bucket, getattr(self, "keys_written", []))


# -- rendering (pure functions, no Airflow) -------------------------------------------------------


def safe_prefix(prefix: str) -> str:
    parts = [SAFE_KEY_PART.sub("-", part).strip("-") for part in str(prefix).strip("/").split("/")]
    parts = [part for part in parts if part and part not in (".", "..")]
    if not parts:
        raise AirflowFailException(f"report_prefix {prefix!r} is empty")
    return "/".join(parts)


def format_value(value: Any) -> str:
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


CHART_LAYOUT = (("plays_by_hour",), ("active_users_per_day", "level_share"), ("top_songs", "top_artists"))
# Tried in order after DejaVu Sans for glyphs it lacks (CJK artist names), when installed.
FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Source Han Sans JP", "IPAexGothic", "IPAGothic",
                  "TakaoGothic", "WenQuanYi Zen Hei", "Droid Sans Fallback", "Arial Unicode MS")


def render_chart(results: dict[str, QueryResult]) -> bytes | None:
    """One PNG: plays per hour across the top, then active users per day and paid vs free,
    then the top songs and artists. Panels whose query is absent are left out; None when
    none is present.

    matplotlib is imported here, drawing on the Agg canvas without pyplot, so neither DAG
    parsing nor other tasks pay for it and no GUI backend or global figure state is touched.
    """
    rows = [[name for name in row if name in results] for row in CHART_LAYOUT]
    rows = [row for row in rows if row]
    if not rows:
        return None
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    families, renderable = _chart_fonts()
    with matplotlib.rc_context({"font.family": families}):
        figure = Figure(figsize=(14, 4 * len(rows)), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)
        figure.suptitle("Sparkify listening", fontsize=15, fontweight="bold")
        grid = figure.add_gridspec(len(rows), 2)
        for row_index, row in enumerate(rows):
            for column, name in enumerate(row):
                span = grid[row_index, :] if len(row) == 1 else grid[row_index, column]
                _draw_panel(figure.add_subplot(span), name, results[name].records(), renderable)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _draw_panel(axes: Any, name: str, records: list[dict[str, Any]], renderable: set[int]) -> None:
    if not any(record.get("plays") for record in records):  # nothing loaded yet: say so, don't draw
        axes.set_title(QUERY_TITLES.get(name, name))
        axes.text(0.5, 0.5, "no plays loaded yet", ha="center", va="center", color="#888888", transform=axes.transAxes)
        axes.set_axis_off()
        return
    if name == "plays_by_hour":
        axes.bar([r["hour"] for r in records], [r["plays"] for r in records], color="#4C72B0")
        axes.set(title="Plays per hour of day (UTC)", xlabel="hour", ylabel="plays", xticks=range(24), xlim=(-0.6, 23.6))
    elif name == "active_users_per_day":
        days = [format_value(r["day"]) for r in records]
        positions = range(len(days))
        paid = [r["paid_users"] for r in records]
        axes.bar(positions, paid, label="played as paid", color="#55A868")
        axes.bar(positions, [r["active_users"] - p for r, p in zip(records, paid)], bottom=paid,
                 label="free only", color="#C4C4C4")
        axes.set(title="Active users per day", ylabel="users")
        axes.set_xticks(list(positions), days, rotation=45 if len(days) > 4 else 0, fontsize=8,
                        ha="right" if len(days) > 4 else "center")
        axes.legend(loc="upper left", fontsize=8)
    elif name == "level_share":
        labels = [r["level"] or "unknown" for r in records]
        axes.pie([r["plays"] for r in records], labels=labels, autopct="%1.1f%%", startangle=90, counterclock=False,
                 colors=["#55A868" if label == "paid" else "#C4C4C4" for label in labels])
        axes.set(title="Plays: paid vs free")
    else:  # top_songs / top_artists: positions, not category labels, so equal titles stay two bars
        label_key, id_key = ("title", "song_id") if name == "top_songs" else ("artist_name", "artist_id")
        top = list(reversed(records[:10]))
        axes.barh(range(len(top)), [r["plays"] for r in top], color="#DD8452")
        axes.set_yticks(range(len(top)), [_chart_label(r[label_key], r[id_key], renderable) for r in top], fontsize=8)
        axes.set(title="Top songs" if name == "top_songs" else "Top artists", xlabel="plays")


def _chart_fonts() -> tuple[list[str], set[int]]:
    """Font families for the chart and the code points they can draw."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    installed = {font.name for font in font_manager.fontManager.ttflist}
    families = ["DejaVu Sans", *(name for name in FALLBACK_FONTS if name in installed)]
    renderable: set[int] = set()
    for family in families:
        try:
            path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
            renderable.update(FT2Font(path).get_charmap())
        except Exception:  # a font we can't read just doesn't help
            continue
    return families, renderable


def _chart_label(text: str | None, fallback: str, renderable: set[int]) -> str:
    """The label, shortened; the id instead when no available font can draw it (the page's
    tables, drawn by the browser, still show the name)."""
    if not text:
        return fallback
    if renderable and any(ord(char) not in renderable for char in text if not char.isspace()):
        return fallback
    return _truncate(text, 32)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
