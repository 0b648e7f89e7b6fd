"""Sparkify ETL, hourly: S3 JSON -> staging -> star schema -> checks. Documented in include/docs/."""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, AsyncCallback, DeadlineAlert, DeadlineReference
from airflow.timetables.interval import CronDataIntervalTimetable

from sparkify.alerts import SparkifyNotifier
from sparkify.catalog import AWS_CONN_ID, DIMENSION_TABLES, EVENTS_KEY, SONGS_PREFIX, WAREHOUSE_CONN_ID, star_assets
from sparkify.dag_defaults import DEFAULT_ARGS, DOCS_DIR, SQL_DIR, START_DATE, task_doc
from sparkify.etl_params import etl_params
from sparkify.operators import LoadDimensionOperator, LoadFactOperator, QualityChecksOperator, StageToRedshiftOperator
from sparkify.quality import QUALITY_CHECKS

BUCKET = "{{ var.value.get('sparkify_bucket', 'udacity-dend') }}"
REGION = "{{ var.value.get('sparkify_region', 'us-west-2') }}"
STAGING = {
    "aws_conn_id": AWS_CONN_ID,
    "redshift_conn_id": WAREHOUSE_CONN_ID,
    "s3_bucket": BUCKET,
    "region": REGION,
    "max_errors": "{{ params.max_errors }}",
    "allow_absent_keys": "{{ params.allow_absent_keys | join(',') }}",
    "remove_deleted_objects": "{{ params.remove_deleted_objects }}",
}
# A run not finished this long after it was queued raises a Deadline Alert (sparkify.alerts).
RUN_DEADLINE = timedelta(minutes=float(os.environ.get("SPARKIFY_RUN_DEADLINE_MINUTES", "30")))

with DAG(
    dag_id="sparkify_etl",
    description="Hourly ELT of Sparkify's S3 JSON into a star schema",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=4,
    template_searchpath=[str(SQL_DIR)],
    default_args=DEFAULT_ARGS,
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=RUN_DEADLINE,
        callback=AsyncCallback(SparkifyNotifier, kwargs={
            "event": "deadline_missed",
            "deadline_description": f"A run should finish within {RUN_DEADLINE.total_seconds() / 60:g} minutes "
                                    "of being queued.",
        }),
        name="run_not_finished",
    ),
    params=etl_params(),
    doc_md=str(DOCS_DIR / "sparkify_etl.md"),
    tags=["sparkify", "etl", "hourly"],
) as dag:
    stage_events = StageToRedshiftOperator(
        task_id="stage_events",
        table="staging_events",
        s3_key=EVENTS_KEY,
        per_day=True,
        json_format=f"s3://{BUCKET}/log_json_path.json",
        upsert_keys=("sessionid", "iteminsession", "ts"),
        stale_sql="stage/stale_hours.sql",
        doc_md=task_doc("stage_events"),
        **STAGING,
    )
    stage_songs = StageToRedshiftOperator(
        task_id="stage_songs",
        table="staging_songs",
        s3_key=SONGS_PREFIX,
        json_format="auto",
        upsert_keys=("song_id",),
        stale_sql="stage/stale_song_matches.sql",
        doc_md=task_doc("stage_songs"),
        **STAGING,
    )
    load_songplays = LoadFactOperator(
        task_id="load_songplays_fact",
        table="songplays",
        sql="load/songplays.sql",
        record_hours_sql="load/loaded_hours.sql",
        conn_id=WAREHOUSE_CONN_ID,
        outlets=[star_assets()["songplays"]],
        doc_md=task_doc("load_songplays_fact"),
    )
    load_dimensions = LoadDimensionOperator(
        task_id="load_dimensions",
        sql={table: f"load/{table}.sql" for table in DIMENSION_TABLES},
        conn_id=WAREHOUSE_CONN_ID,
        outlets=[star_assets()[table] for table in DIMENSION_TABLES],
        doc_md=task_doc("load_dimensions"),
    )
    quality_checks = QualityChecksOperator(
        task_id="quality_checks",
        conn_id=WAREHOUSE_CONN_ID,
        checks=QUALITY_CHECKS,
        anomalies={
            "baseline_days": "{{ params.anomaly_baseline_days }}",
            "drop_factor": "{{ params.anomaly_drop_factor }}",
            "min_expected": "{{ params.anomaly_min_expected }}",
        },
        doc_md=task_doc("quality_checks"),
    )

    [stage_events, stage_songs] >> load_songplays >> load_dimensions >> quality_checks
