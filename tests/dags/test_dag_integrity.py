"""DAG integrity: every DAG imports cleanly, fast, with the expected shape and defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from support import REPO


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "sparkify_etl" in dagbag.dags


def test_etl_task_graph(dagbag):
    dag = dagbag.dags["sparkify_etl"]
    upstream = {task.task_id: set(task.upstream_task_ids) for task in dag.tasks}
    assert upstream["create_tables"] == set()
    assert upstream["stage_events"] == upstream["stage_songs"] == {"create_tables"}
    assert upstream["load_songplays_fact"] == {"stage_events", "stage_songs"}
    assert upstream["load_users_dim"] == upstream["load_time_dim"] == {"load_songplays_fact"}
    assert upstream["load_songs_dim"] == upstream["load_artists_dim"] == {"stage_songs"}
    checks = {task_id for task_id in upstream if task_id.startswith("quality_checks.")}
    assert {"quality_checks.songplays_columns", "quality_checks.users_columns", "quality_checks.songs_columns",
            "quality_checks.artists_columns", "quality_checks.time_columns"} <= checks
    loads = {"load_users_dim", "load_songs_dim", "load_artists_dim", "load_time_dim"}
    for check in checks:
        assert upstream[check] == loads


def test_etl_schedule_and_defaults(dagbag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    dag = dagbag.dags["sparkify_etl"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.summary == "0 * * * *"
    assert dag.start_date.isoformat() == "2018-11-01T00:00:00+00:00"
    assert dag.catchup is False
    assert dag.max_active_runs > 1
    assert dag.doc_md and "backfill" in dag.doc_md.lower()
    assert {"sparkify", "etl"} <= set(dag.tags)
    assert set(dag.params.keys()) >= {"start", "end", "full_refresh", "max_errors"}
    for task in dag.tasks:
        assert task.retries >= 2, task.task_id
        assert task.retry_delay >= timedelta(seconds=30), task.task_id
        assert task.email_on_retry is False, task.task_id
        assert task.owner == "sparkify-data"


def test_window_params_reject_bad_values(dagbag):
    from airflow.sdk.exceptions import ParamValidationError

    start = dagbag.dags["sparkify_etl"].params.get_param("start")
    assert start.resolve(value="2018-11-01T00:00:00Z") == "2018-11-01T00:00:00Z"
    assert start.resolve(value=None) is None
    for bad in ("yesterday", "2018-11-01T00:30:00Z", "2018-11-01'; DROP TABLE users; --"):
        with pytest.raises(ParamValidationError):
            start.resolve(value=bad)


def test_dag_file_has_no_heavy_top_level_imports():
    """Parsing the DAG must not import hooks, AWS SDKs or the Redshift driver (Airflow itself
    already loads SQLAlchemy and psycopg for its metadata database)."""
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]); "
        "heavy = [m for m in ('boto3', 'botocore', 'redshift_connector', 'orjson', "
        "'airflow.providers.amazon.aws.hooks.s3', 'airflow.providers.postgres.hooks.postgres') if m in sys.modules]; "
        "print(','.join(heavy)); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(REPO / "dags" / "sparkify_etl.py")],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"heavy modules imported at parse time: {result.stdout} {result.stderr[-2000:]}"


def test_sql_dir_follows_sparkify_sql_dir(tmp_path):
    env = {**os.environ, "SPARKIFY_SQL_DIR": str(tmp_path), "PYTHONPATH": str(REPO / "plugins")}
    out = subprocess.run([sys.executable, "-c", "from sparkify.dag_defaults import SQL_DIR; print(SQL_DIR)"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(tmp_path)
