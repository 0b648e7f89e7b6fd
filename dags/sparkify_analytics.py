"""
### Sparkify analytics: a report on the star schema, after every load

Scheduled on the star-schema **Assets** (`sparkify.songplays`, `sparkify.users`,
`sparkify.songs`, `sparkify.artists`, `sparkify.time`) that `sparkify_etl`'s load tasks
update: a run starts once all five have been updated since the previous report. At most one
report runs at a time; loads that finish meanwhile are picked up by the next one.

`build_report` runs the queries in `include/sql/analytics/` in one consistent, read-only
snapshot of the warehouse and publishes to the bucket (Variable `sparkify_bucket`):

| file | what |
| --- | --- |
| `reports/<day>/<run_id>/top_songs.csv` | most played songs (`top_n` param) |
| `…/top_artists.csv` | most played artists |
| `…/plays_by_hour.csv` | plays per hour of day, UTC |
| `…/level_share.csv` | paid vs free share of plays |
| `…/active_users_per_day.csv` | users who played a song, per UTC day |
| `…/chart.png`, `…/index.html` | the chart and a page with every table |
| `reports/latest.json` | points at the newest report |

**Fetch the newest report**: the task log and its XCom name the S3 URI;
`aws s3 cp --recursive s3://<bucket>/reports/<day>/<run_id>/ ./report/` and open
`report/index.html`. Trigger by hand (▶) to rebuild it at any time: it only reads.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param

from sparkify.dag_defaults import DEFAULT_ARGS, SQL_DIR, START_DATE
from sparkify.catalog import AWS_CONN_ID, WAREHOUSE_CONN_ID, star_assets
from sparkify.operators.report import AnalyticsReportOperator

QUERIES = ("top_songs", "top_artists", "plays_by_hour", "level_share", "active_users_per_day")

with DAG(
    dag_id="sparkify_analytics",
    description="Analytics report (CSV + chart) on the star schema, after each load",
    schedule=list(star_assets().values()),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    # Asset-triggered and read-only: active from the start, so a load is followed by a report.
    is_paused_upon_creation=False,
    template_searchpath=[str(SQL_DIR)],
    default_args=DEFAULT_ARGS,
    params={
        "top_n": Param(10, type="integer", minimum=1, maximum=1000, description="Rows in the top songs / top artists lists."),
    },
    doc_md=__doc__,
    tags=["sparkify", "analytics"],
) as dag:
    AnalyticsReportOperator(
        task_id="build_report",
        queries={name: f"analytics/{name}.sql" for name in QUERIES},
        s3_bucket="{{ var.value.get('sparkify_bucket', 'udacity-dend') }}",
        report_prefix="reports/{{ dag_run.run_after.strftime('%Y-%m-%d') }}/{{ run_id }}",
        conn_id=WAREHOUSE_CONN_ID,
        aws_conn_id=AWS_CONN_ID,
        doc_md=(
            "Runs `include/sql/analytics/*.sql` in one read-only snapshot and writes one CSV per query, "
            "`chart.png` and `index.html` under `reports/<day>/<run_id>/` in the bucket, then updates "
            "`reports/latest.json`. The log's last line and the XCom `return_value` name the report."
        ),
    )
