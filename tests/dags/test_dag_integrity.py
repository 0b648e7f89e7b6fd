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
    """Stage (both sources) -> fact -> dimensions -> checks: the diagram in the README."""
    dag = dagbag.dags["sparkify_etl"]
    upstream = {task.task_id: set(task.upstream_task_ids) for task in dag.tasks}
    assert upstream == {
        "stage_events": set(),
        "stage_songs": set(),
        "load_songplays_fact": {"stage_events", "stage_songs"},
        "load_dimensions": {"load_songplays_fact"},
        "quality_checks": {"load_dimensions"},
    }
    assert list(dag.get_task("load_dimensions").sql) == ["songs", "artists", "users", "time"]
    assert set(dag.get_task("quality_checks").checks) == {
        "songplays", "time", "users", "songs", "artists", "loaded_hours", "stage_load_ledger"}
    assert all(task.create_tables for task in dag.tasks if task.task_id.startswith("stage_"))


def test_etl_schedule(dagbag):
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


DAG_IDS = ("sparkify_etl", "sparkify_analytics", "sparkify_audit")


def test_every_dag_is_here(dagbag):
    assert set(dagbag.dag_ids) == set(DAG_IDS)


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_dag_has_tags_docs_owner_and_retries(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert "sparkify" in dag.tags and dag.doc_md
    for task in dag.tasks:
        assert task.owner == "sparkify-data", task.task_id
        assert task.retries >= 2, task.task_id
        assert task.retry_delay >= timedelta(seconds=30), task.task_id
        assert task.email_on_retry is False, task.task_id
        assert task.doc_md, task.task_id


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
