"""
### Sparkify ETL: S3 JSON → staging → star schema, hourly

Each run processes one window **[start, end)** in UTC: the scheduled data interval (one
hour), or the `start`/`end` params of a manual run.

**Data flow**

1. `stage_events` and `stage_songs` copy **new or changed** S3 objects into `staging_events`
   and `staging_songs`. A ledger (`stage_load_ledger`) keyed by object key and ETag skips
   what is already staged; a changed object replaces the rows it staged before. Records that
   can't be staged go to `stage_rejects` with file, line and reason. On an empty warehouse (or
   after the DDL in `include/sql/create` changed) staging first creates the missing tables.
2. `load_songplays_fact` replaces the window's `songplays` and records the window's hours
   in `loaded_hours`.
3. `load_dimensions` merges `songs` and `artists` from the staged songs, then `users` and
   `time` from the loaded hours, each table in its own transaction.
4. `quality_checks` verify the window: keys not null and unique, allowed values, references
   from `songplays` to every dimension, and that `songplays` matches the staged plays. Every
   check is named in the task's log; a failure lists each failing check.

**Re-run an hour**: clear its run (or its failed task) in the grid; every task replaces
what it wrote, so re-running changes nothing else.

**Backfill**: `make backfill START=2018-11-01T00:00:00Z END=2018-11-02T00:00:00Z`, or the
UI's *Backfill* dialog, or trigger one run with `start`/`end` params covering the whole
window. Runs may go in any order, even concurrently: the warehouse ends up the same.

**Checks**: a failing check fails `quality_checks` and its log lists the check, its SQL, the
values found and offending rows. An empty hour passes every check.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, AsyncCallback, DeadlineAlert, DeadlineReference, Param
from airflow.timetables.interval import CronDataIntervalTimetable

from sparkify.alerts import SparkifyNotifier
from sparkify.catalog import AWS_CONN_ID, DIMENSION_TABLES, EVENTS_KEY, SONGS_PREFIX, WAREHOUSE_CONN_ID, star_assets
from sparkify.dag_defaults import DEFAULT_ARGS, SQL_DIR, START_DATE
from sparkify.operators import LoadDimensionOperator, LoadFactOperator, QualityChecksOperator, StageToRedshiftOperator
from sparkify.quality import QUALITY_CHECKS
from sparkify.window import run_window

BUCKET = "{{ var.value.get('sparkify_bucket', 'udacity-dend') }}"
REGION = "{{ var.value.get('sparkify_region', 'us-west-2') }}"
WINDOW_START = "{{ run_window(params, data_interval_start, data_interval_end)[0] }}"
WINDOW_END = "{{ run_window(params, data_interval_start, data_interval_end)[1] }}"
HOUR_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:00(:00)?(Z|[+-]00:?00)?$"
# Keys an object may lack altogether (schema drift fails it otherwise): the run's param, plus any
# key a producer legitimately omits, listed here per table.
ALLOW_ABSENT_KEYS = "{{ params.allow_absent_keys | join(',') }}"
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
    user_defined_macros={"run_window": run_window},
    default_args=DEFAULT_ARGS,
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=RUN_DEADLINE,
        callback=AsyncCallback(
            SparkifyNotifier,
            kwargs={"event": "deadline_missed",
                    "deadline_description": f"A run should finish within {RUN_DEADLINE.total_seconds() / 60:g} minutes "
                                            "of being queued."},
        ),
        name="run_not_finished",
    ),
    params={
        # Both or neither, start before end: checked by run_window in the first task that renders
        # the window (a failure without retries), as a Param validates only its own value.
        "start": Param(None, type=["null", "string"], pattern=HOUR_PATTERN,
                       description="Manual runs: first hour of the window (UTC, e.g. 2018-11-01T00:00:00Z). "
                                   "Give both start and end, or neither to process the scheduled hour."),
        "end": Param(None, type=["null", "string"], pattern=HOUR_PATTERN,
                     description="Manual runs: end of the window, exclusive (UTC, whole hour, after start). "
                                 "Give both start and end, or neither."),
        "full_refresh": Param(False, type="boolean",
                              description="Rebuild the users, songs and artists dimensions instead of merging."),
        "max_errors": Param(10, type="integer", minimum=0,
                            description="Rejected records allowed per object before staging fails (Redshift MAXERROR)."),
        "remove_deleted_objects": Param(False, type="boolean",
                                        description="Remove the staged rows of S3 objects that were staged but are no "
                                                    "longer listed, and re-derive the hours they touched. Off: they are "
                                                    "only recorded in stage_missing_objects (raw data expiring keeps "
                                                    "its history)."),
        "allow_absent_keys": Param([], type="array", items={"type": "string"},
                                   description="JSON keys (or column names) that may be absent from every record "
                                               "of an object. Any other expected key absent from every record of "
                                               "an object of more than 10 records fails that object's staging "
                                               "(schema drift)."),
        "anomaly_baseline_days": Param(7, type="number", exclusiveMinimum=0,
                                       description="Anomaly checks compare the window with this many days before it."),
        "anomaly_drop_factor": Param(2.0, type="number", minimum=1,
                                     description="An anomaly check fails when its metric is below the baseline "
                                                 "divided by this."),
        "anomaly_min_expected": Param(20, type="number", minimum=0,
                                      description="An anomaly check judges a metric only when the baseline predicts "
                                                  "at least this many counts in the window."),
    },
    doc_md=__doc__,
    tags=["sparkify", "etl", "hourly"],
) as dag:
    stage_events = StageToRedshiftOperator(
        task_id="stage_events",
        table="staging_events",
        s3_bucket=BUCKET,
        s3_key=EVENTS_KEY,
        window_start=WINDOW_START,
        window_end=WINDOW_END,
        json_format=f"s3://{BUCKET}/log_json_path.json",
        region=REGION,
        max_errors="{{ params.max_errors }}",
        allow_absent_keys=ALLOW_ABSENT_KEYS,
        upsert_keys=("sessionid", "iteminsession", "ts"),
        stale_sql="stage/stale_hours.sql",
        remove_deleted_objects="{{ params.remove_deleted_objects }}",
        aws_conn_id=AWS_CONN_ID,
        redshift_conn_id=WAREHOUSE_CONN_ID,
        doc_md=(
            "**Stages the app-event logs** of the window's UTC days "
            "(`log_data/YYYY/MM/YYYY-MM-DD-events.json`) into `staging_events`, using "
            "`log_json_path.json`.\n\n"
            "- Only new or changed object versions are read; the `stage_load_ledger` remembers each "
            "key's ETag, so re-runs skip what is already staged.\n"
            "- **The log shows the counts**: one line per object (`lines, staged, rejected`) and a "
            "total, e.g. `staging_events: staged 1,234 rows from 1 objects, 0 rejected`.\n"
            "- Bad records go to `stage_rejects` (file, line, field, reason); more than `max_errors` "
            "per object fails the task without staging that object.\n"
            "- Re-run: clear the task; a changed file replaces the rows it staged before.\n"
            "- **Late or changed events** for hours already loaded are queued in `stale_hours`; the "
            "log lists those hours, and this run's loads refresh them.\n"
            "- A staged file no longer in S3 is logged and recorded in `stage_missing_objects`; its rows "
            "stay unless the `remove_deleted_objects` param is on.\n"
            "- On an empty warehouse, or when `include/sql/create` changed, it first creates the missing "
            "tables; otherwise the log says `schema: current`.\n"
            "- **Schema drift**: the log names expected keys absent from some records (with the share) and "
            "unknown keys (with counts); counts per key are in `stage_key_presence`. An expected key absent "
            "from every record of an object (of more than 10 records) fails that object, naming the file, "
            "the key and the unknown keys; the other objects stage. `allow_absent_keys` lets a key be absent."
        ),
    )

    stage_songs = StageToRedshiftOperator(
        task_id="stage_songs",
        table="staging_songs",
        s3_bucket=BUCKET,
        s3_key=SONGS_PREFIX,
        json_format="auto",
        region=REGION,
        max_errors="{{ params.max_errors }}",
        allow_absent_keys=ALLOW_ABSENT_KEYS,
        upsert_keys=("song_id",),
        stale_sql="stage/stale_song_matches.sql",
        remove_deleted_objects="{{ params.remove_deleted_objects }}",
        aws_conn_id=AWS_CONN_ID,
        redshift_conn_id=WAREHOUSE_CONN_ID,
        doc_md=(
            "**Stages the song catalogue**: every new or changed object under `song_data/` into "
            "`staging_songs` (JSON `auto`). Unchanged files are skipped by ETag, so after the first "
            "run this usually logs `nothing new to stage; 0 rows staged`. Counts and rejects are "
            "logged like `stage_events`. Changed songs queue their match keys in `stale_song_matches`, "
            "so the songplays load re-matches the loaded plays they affect."
        ),
    )

    load_songplays = LoadFactOperator(
        task_id="load_songplays_fact",
        table="songplays",
        sql="load/songplays.sql",
        record_hours_sql="load/loaded_hours.sql",
        window_start=WINDOW_START,
        window_end=WINDOW_END,
        redshift_conn_id=WAREHOUSE_CONN_ID,
        outlets=[star_assets()["songplays"]],
        doc_md=(
            "**Replaces the window's `songplays`** in one transaction: deletes the rows with "
            "`start_time` in [start, end) and inserts one row per `NextSong` event by a known user. "
            "Songs match on title, artist name and duration (lowest `song_id` wins). Records the "
            "window's hours in `loaded_hours`. Also refreshes every earlier loaded hour whose staged "
            "events changed (`stale_hours`) and re-matches loaded plays whose songs changed "
            "(`stale_song_matches`); the log lists them.\n\n"
            "The log shows `songplays [start, end): N deleted, M inserted`. Updates the Asset "
            "`sparkify.songplays`, which schedules `sparkify_analytics`."
        ),
    )

    DIMENSION_DOCS = {
        "songs": "`songs` from `staging_songs`, one row per `song_id` (a fixed ordering decides when files "
                 "disagree); `merge` upserts and removes keys no longer staged.",
        "artists": "`artists` from `staging_songs`, one row per `artist_id`, preferring rows with a location; "
                   "`merge` upserts and removes keys no longer staged.",
        "users": "`users` from each user's latest event (by `ts`) in any loaded hour; `merge` refreshes the "
                 "users seen in the window.",
        "time": "`time`: one row per distinct `songplays.start_time` of the hours this run loaded, with hour, "
                "day, week, month, year and weekday in UTC (always merged).",
    }
    load_dimensions = LoadDimensionOperator(
        task_id="load_dimensions",
        sql={table: f"load/{table}.sql" for table in DIMENSION_TABLES},
        window_start=WINDOW_START,
        window_end=WINDOW_END,
        redshift_conn_id=WAREHOUSE_CONN_ID,
        outlets=[star_assets()[table] for table in DIMENSION_TABLES],
        doc_md=(
            "**Loads the dimensions**, each in its own transaction, in this order:\n\n"
            + "\n".join(f"- {DIMENSION_DOCS[table]}" for table in DIMENSION_TABLES)
            + "\n\nThe `full_refresh` param rebuilds `songs`, `artists` and `users` instead of merging. "
            "The log has one group per table with its `deleted / inserted / updated` counts. Updates the "
            "Assets `sparkify.songs`, `sparkify.artists`, `sparkify.users` and `sparkify.time`."
        ),
    )

    quality_checks = QualityChecksOperator(
        task_id="quality_checks",
        conn_id=WAREHOUSE_CONN_ID,
        checks=QUALITY_CHECKS,
        anomalies={
            "window_start": WINDOW_START,
            "window_end": WINDOW_END,
            "baseline_days": "{{ params.anomaly_baseline_days }}",
            "drop_factor": "{{ params.anomaly_drop_factor }}",
            "min_expected": "{{ params.anomaly_min_expected }}",
        },
        doc_md=(
            "**Data-quality checks of the run's window**, every table's in one query (see "
            "`sparkify/quality.py`): keys not null and unique, allowed values and ranges, references "
            "from `songplays` to every dimension, `songplays` = the staged plays, the hours this run "
            "loaded still match staging, and the ledger's lines read = staged + rejected.\n\n"
            "**Anomaly checks** then compare the window with the trailing days (`anomaly_baseline_days`, "
            "7): the share of staged NextSong events with a user, songplays per staged NextSong event, "
            "and each staged column's non-null share. A metric below its baseline / `anomaly_drop_factor` "
            "(2) fails; an empty or first-ever window passes, and a metric is judged only when the "
            "baseline predicts at least `anomaly_min_expected` (20) counts in the window.\n\n"
            "The log has a table per table of every check (expected, actual, pass/FAIL) and one of every "
            "anomaly metric. A failure lists each failing check with its SQL, the values and up to 5 "
            "offending rows, and each failing metric with its window value and baseline."
        ),
    )

    [stage_events, stage_songs] >> load_songplays >> load_dimensions >> quality_checks
