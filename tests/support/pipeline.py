"""Helpers to drive ``sparkify_etl`` against the test stack and read the warehouse back."""

from __future__ import annotations

import copy
import json
import os
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import psycopg

from scripts.upload_data import upload_dir

REPO = Path(__file__).resolve().parents[2]
STAR_TABLES = {
    "songplays": "songplay_id",
    "users": "user_id",
    "songs": "song_id",
    "artists": "artist_id",
    "time": "start_time",
}


@lru_cache(maxsize=None)
def project_dag(dag_id: str):
    """One of dags/'s DAGs, ready for dag.test()."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[dag_id]
    for task in dag.tasks:
        task.retries = 0  # fail fast: tests assert on the first attempt
    dag.deadline = None  # dag.test() in Airflow 3.3.2 can't resolve Deadline Alerts; the scheduler can
    return dag


def etl_dag():
    return project_dag("sparkify_etl")


def run_dag(conf: dict | None = None, **test_kwargs):
    """One run of the DAG in process (dag.test). Returns the DagRun."""
    dag = etl_dag()
    # dag.test() writes a run's conf into the Params of the task objects it runs, and this
    # process reuses them (the scheduler parses the DAG afresh): start each run from the defaults.
    for task in dag.tasks:
        task.params = copy.deepcopy(dag.params)
    # Pass logical_date only when set: dag.test(logical_date=None) clears every run's task instances.
    return dag.test(run_conf=conf, **test_kwargs)


def run_etl(start: datetime | str, end: datetime | str, **params):
    """One manual run of the DAG over [start, end)."""
    return run_dag({"start": _iso(start), "end": _iso(end), **params})


def run_scheduled(data_interval_end: datetime):
    """A run with no params: the DAG's own data interval decides the window."""
    return run_dag(logical_date=data_interval_end)


def _iso(moment: datetime | str) -> str:
    return moment if isinstance(moment, str) else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def s3_client(stack):
    return stack.service("s3").client()


def replace_bucket_contents(stack, data_dir: Path) -> None:
    client = s3_client(stack)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=stack.bucket, Delete={"Objects": keys})
    upload_dir(data_dir, stack.bucket, client)


def reset_warehouse(stack) -> None:
    with psycopg.connect(stack.warehouse_conninfo, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def query(stack, sql: str, params=None) -> list[tuple]:
    with psycopg.connect(stack.warehouse_conninfo) as conn:
        return conn.execute(sql, params).fetchall()


def execute(stack, sql: str, params=None) -> None:
    """Run one statement and commit."""
    with psycopg.connect(stack.warehouse_conninfo) as conn:
        conn.execute(sql, params)


def task_result(dag_run, task_id: str):
    """What a task of a finished run returned (its ``return_value`` XCom)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(
            run_id=dag_run.run_id, key="return_value", dag_ids=dag_run.dag_id, task_ids=task_id,
        )).first()
        return XComModel.deserialize_value(row)


def star_snapshot(stack) -> dict[str, list[tuple]]:
    """Every row of every star-schema table, in key order: equal snapshots mean equal warehouses."""
    return {table: query(stack, f"SELECT * FROM {table} ORDER BY {key}") for table, key in STAR_TABLES.items()}


def assert_matches_model(stack, model) -> dict[str, list[tuple]]:
    """Every star table equals the model's (tests/support/model.py), songplay_ids included."""
    snapshot = star_snapshot(stack)
    expected = {"songplays": model.songplay_ids, "users": model.users, "songs": model.songs,
                "artists": model.artists, "time": model.time}
    for table, rows in expected.items():
        actual = {row[0]: row[1:] for row in snapshot[table]}
        differing = {key: (actual.get(key), rows.get(key)) for key in actual.keys() | rows.keys()
                     if actual.get(key) != rows.get(key)}
        assert not differing, f"{table}: {len(differing)} rows differ (key: (warehouse, model)): {list(differing.items())[:5]}"
    return snapshot


def write_lines(path: Path, events: list[dict]) -> None:
    path.write_text("".join(json.dumps(event, ensure_ascii=False) + "\n" for event in events), encoding="utf-8")


def stage_operator(task_id: str, **overrides):
    """A staging task of the DAG, set up for the test stack, ready to ``execute``."""
    task = copy.copy(etl_dag().get_task(task_id))
    task.s3_bucket = os.environ["AIRFLOW_VAR_SPARKIFY_BUCKET"]
    task.json_format = task.json_format.replace("{{ var.value.get('sparkify_bucket', 'udacity-dend') }}", task.s3_bucket)
    task.region = "us-east-1"
    task.max_errors = 10
    for name, value in overrides.items():
        setattr(task, name, value)
    return task


def window_context(start: str, end: str, run_id: str = "t") -> dict:
    """A task context for a manual run over [start, end): the window reaches tasks through its params."""
    return {"params": {"start": start, "end": end}, "run_id": run_id}
