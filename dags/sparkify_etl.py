"""
### Sparkify ETL: S3 JSON → staging → star schema, hourly

Each run processes one window **[start, end)** in UTC: the scheduled data interval (one
hour), or the `start`/`end` params of a manual run.

**Data flow**

1. `create_tables` creates any missing table (idempotent).
2. `stage_events` and `stage_songs` copy **new or changed** S3 objects into `staging_events`
   and `staging_songs`. A ledger (`stage_load_ledger`) keyed by object key and ETag skips
   what is already staged; a changed object replaces the rows it staged before. Records that
   can't be staged go to `stage_rejects` with file, line and reason.
3. `load_songplays_fact` replaces the window's `songplays` and records the window's hours
   in `loaded_hours`. `load_time_dim` and `load_users_dim` follow; `load_songs_dim` and
   `load_artists_dim` merge the staged songs.
4. `quality_checks` verify the window: keys not null and unique, allowed values, references
   from `songplays` to every dimension, and that `songplays` matches the staged plays.

**Re-run an hour**: clear its run (or its failed task) in the grid; every task replaces
what it wrote, so re-running changes nothing else.

**Backfill**: `make backfill START=2018-11-01T00:00:00Z END=2018-11-02T00:00:00Z`, or the
UI's *Backfill* dialog, or trigger one run with `start`/`end` params covering the whole
window. Runs may go in any order, even concurrently: the warehouse ends up the same.

**Checks**: a failing check fails its task and the log lists the check, its SQL and the
values found. An empty hour passes every check.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param, TaskGroup
from airflow.timetables.interval import CronDataIntervalTimetable

from sparkify.operators import (
    ColumnChecksOperator,
    LoadDimensionOperator,
    LoadFactOperator,
    StageToRedshiftOperator,
    TableChecksOperator,
    WarehouseSQLOperator,
)
from sparkify.quality import QUALITY_CHECKS, window_clause
from sparkify.window import run_window

SQL_DIR = Path(__file__).resolve().parent.parent / "include" / "sql"
AWS_CONN_ID = "sparkify_aws"
WAREHOUSE_CONN_ID = "sparkify_warehouse"
BUCKET = "{{ var.value.get('sparkify_bucket', 'udacity-dend') }}"
REGION = "{{ var.value.get('sparkify_region', 'us-west-2') }}"
WINDOW_START = "{{ run_window(params, data_interval_start, data_interval_end)[0] }}"
WINDOW_END = "{{ run_window(params, data_interval_start, data_interval_end)[1] }}"
STAR_TABLES = ("songplays", "users", "songs", "artists", "time")
SUPPORT_TABLES = ("staging_events", "staging_songs", "stage_load_ledger", "stage_rejects", "loaded_hours")
HOUR_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:00(:00)?(Z|[+-]00:?00)?$"

with DAG(
    dag_id="sparkify_etl",
    description="Hourly ELT of Sparkify's S3 JSON into a star schema",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=pendulum.parse(os.environ.get("SPARKIFY_START_DATE", "2018-11-01"), tz="UTC"),
    catchup=False,
    max_active_runs=4,
    template_searchpath=[str(SQL_DIR)],
    user_defined_macros={"run_window": run_window},
    default_args={
        "owner": "sparkify-data",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "email_on_retry": False,
        "email_on_failure": False,
    },
    params={
        "start": Param(None, type=["null", "string"], pattern=HOUR_PATTERN,
                       description="Manual runs: first hour of the window (UTC, e.g. 2018-11-01T00:00:00Z)."),
        "end": Param(None, type=["null", "string"], pattern=HOUR_PATTERN,
                     description="Manual runs: end of the window, exclusive (UTC, whole hour)."),
        "full_refresh": Param(False, type="boolean",
                              description="Rebuild the users, songs and artists dimensions instead of merging."),
        "max_errors": Param(10, type="integer", minimum=0,
                            description="Rejected records allowed per object before staging fails (Redshift MAXERROR)."),
    },
    doc_md=__doc__,
    tags=["sparkify", "etl", "hourly"],
) as dag:
    create_tables = WarehouseSQLOperator(
        task_id="create_tables",
        conn_id=WAREHOUSE_CONN_ID,
        sql=[f"create/{table}.sql" for table in (*SUPPORT_TABLES, *STAR_TABLES)],
        doc_md="Creates every staging, bookkeeping and star-schema table if missing.",
    )

    stage_events = StageToRedshiftOperator(
        task_id="stage_events",
        table="staging_events",
        s3_bucket=BUCKET,
        s3_key="log_data/{day:%Y}/{day:%m}/{day:%Y-%m-%d}-events.json",
        window_start=WINDOW_START,
        window_end=WINDOW_END,
        json_format=f"s3://{BUCKET}/log_json_path.json",
        region=REGION,
        max_errors="{{ params.max_errors }}",
        upsert_keys=("sessionid", "iteminsession", "ts"),
        aws_conn_id=AWS_CONN_ID,
        redshift_conn_id=WAREHOUSE_CONN_ID,
        doc_md="Stages the event files of the window's UTC days (new or changed versions only).",
    )

    stage_songs = StageToRedshiftOperator(
        task_id="stage_songs",
        table="staging_songs",
        s3_bucket=BUCKET,
        s3_key="song_data/",
        json_format="auto",
        region=REGION,
        max_errors="{{ params.max_errors }}",
        upsert_keys=("song_id",),
        aws_conn_id=AWS_CONN_ID,
        redshift_conn_id=WAREHOUSE_CONN_ID,
        doc_md="Stages new or changed song files under song_data/.",
    )

    load_songplays = LoadFactOperator(
        task_id="load_songplays_fact",
        table="songplays",
        sql="load/songplays.sql",
        record_hours_sql="load/loaded_hours.sql",
        window_start=WINDOW_START,
        window_end=WINDOW_END,
        redshift_conn_id=WAREHOUSE_CONN_ID,
        doc_md="Replaces the window's songplays, matching songs on title, artist and duration.",
    )

    dimension_mode = "{{ 'truncate-insert' if params.full_refresh else 'merge' }}"
    load_dimensions = {
        table: LoadDimensionOperator(
            task_id=f"load_{table}_dim",
            table=table,
            sql=f"load/{table}.sql",
            mode=dimension_mode if table != "time" else "merge",
            window_start=WINDOW_START,
            window_end=WINDOW_END,
            redshift_conn_id=WAREHOUSE_CONN_ID,
            doc_md=f"Loads the {table} dimension.",
        )
        for table in ("users", "songs", "artists", "time")
    }

    with TaskGroup("quality_checks", tooltip="Data-quality checks scoped to the run's window") as quality_checks:
        for table, spec in QUALITY_CHECKS.items():
            partition = window_clause(spec["window_column"]) if "window_column" in spec else None
            if "columns" in spec:
                ColumnChecksOperator(
                    task_id=f"{table}_columns", conn_id=WAREHOUSE_CONN_ID, table=table,
                    column_mapping=spec["columns"], partition_clause=partition, accept_none=True,
                    doc_md=f"Keys of {table} are not null and unique in the run's window.",
                )
            if "rows" in spec or "table" in spec:
                TableChecksOperator(
                    task_id=f"{table}_table", conn_id=WAREHOUSE_CONN_ID, table=table,
                    row_checks=spec.get("rows"), checks=spec.get("table"), partition_clause=partition,
                    doc_md=f"Allowed values, references and reconciliation for {table}.",
                )

    create_tables >> [stage_events, stage_songs]
    stage_songs >> [load_dimensions["songs"], load_dimensions["artists"]]
    [stage_events, stage_songs] >> load_songplays >> [load_dimensions["users"], load_dimensions["time"]]
    list(load_dimensions.values()) >> quality_checks
