"""The analytics report: run the queries of ``include/sql/analytics`` and publish the results
to S3 as one CSV per query plus an ``index.html`` page with a PNG chart.

The operator runs the queries and publishes; what the files hold is ``sparkify.report``'s job.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from sparkify.buckets import require_bucket
from sparkify.report import QueryResult, render_report
from sparkify.warehouse import WarehouseOperatorMixin, split_statements

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk import Context

SAFE_KEY_PART = re.compile(r"[^A-Za-z0-9._=-]+")
QUERY_NAME = re.compile(r"[a-z0-9_]+")  # it names a file and an HTML anchor


class AnalyticsReportOperator(WarehouseOperatorMixin, BaseOperator):
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
    :param snapshot_sql: the statement (template) that opens the queries' read-only snapshot.
    :param conn_id: the warehouse connection (postgres or redshift).
    :param aws_conn_id: the AWS connection the report is published with.
    """

    template_fields: Sequence[str] = ("queries", "snapshot_sql", "s3_bucket", "report_prefix", "title")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"queries": "json"}
    ui_color = "#B4A7D6"

    def __init__(
        self,
        *,
        queries: dict[str, str],
        s3_bucket: str,
        report_prefix: str,
        title: str = "Sparkify analytics",
        snapshot_sql: str = "analytics/report_snapshot.sql",
        conn_id: str = "redshift_default",
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
        self.snapshot_sql = snapshot_sql
        self.conn_id = conn_id
        self.aws_conn_id = aws_conn_id

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
        files = render_report(results, title=self.title, generated_at=generated_at, run_id=context["run_id"],
                              dialect=self.warehouse.dialect)
        for file in files:  # in render_report's order: index.html last
            self._put(f"{prefix}/{file.name}", file.body, file.content_type)
        summary = {
            "bucket": self.s3_bucket,
            "prefix": prefix,
            "index_key": f"{prefix}/index.html",
            "s3_uri": f"s3://{self.s3_bucket}/{prefix}/index.html",
            "files": sorted(file.name for file in files),
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
            for statement in split_statements(self.snapshot_sql):
                cursor.execute(statement)
            for name, sql in self.queries.items():
                if not QUERY_NAME.fullmatch(name):
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


def safe_prefix(prefix: str) -> str:
    """The report's key prefix: unsafe characters in each segment become ``-``; empty, ``.``
    and ``..`` segments are dropped."""
    parts = [SAFE_KEY_PART.sub("-", part).strip("-") for part in str(prefix).strip("/").split("/")]
    parts = [part for part in parts if part and part not in (".", "..")]
    if not parts:
        raise AirflowFailException(f"report_prefix {prefix!r} is empty")
    return "/".join(parts)
