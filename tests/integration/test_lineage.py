"""OpenLineage events of real DAG runs, through the provider's file transport.

Both DAGs run (dag.test) against the test PostgreSQL and S3 endpoint in a child process whose
environment configures the provider's file transport, as a deployment would configure its
transport: the provider decides whether to emit when Airflow loads its plugin, so this process,
which has no transport configured, shows the other half: nothing is set up to send.
The events are read back from the file and every task's inputs, outputs and facets asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date

import pytest

from support import REPO
from support.pipeline import execute, replace_bucket_contents, reset_warehouse
from scripts.sample_data import generate
from sparkify.catalog import WAREHOUSE_CONN_ID

START, END = "2018-11-01T00:00:00Z", "2018-11-01T06:00:00Z"
STAGING = {"stage_events": "staging_events", "stage_songs": "staging_songs"}
LOADS = {
    # The songplays and users loads also take the queues staging fills (they delete what they took).
    "load_songplays_fact": ({"staging_events", "staging_songs"},
                            {"songplays", "loaded_hours", "stale_hours", "stale_song_matches"}),
    # songs and artists from staged songs, users from loaded events, time from songplays.
    "load_dimensions": ({"staging_songs", "staging_events", "loaded_hours", "songplays"},
                        {"songs", "artists", "users", "stale_users", "time"}),
}
SONGS = 30  # more song files than the staging lineage lists one by one (MAX_OBJECT_DATASETS)

# The child (with this process's import path): one ETL run over the window, then one analytics run, both in process.
RUN_BOTH_DAGS = f"""
from airflow.dag_processing.dagbag import DagBag
from support.pipeline import run_etl
assert run_etl({START!r}, {END!r}).state == "success"
analytics = DagBag({str(REPO / 'dags')!r}).dags["sparkify_analytics"]
assert analytics.test().state == "success"
"""


@pytest.fixture(scope="module")
def events(airflow_db, tmp_path_factory):
    """The OpenLineage events of one ETL run and one analytics run, by job name and type."""
    stack = airflow_db
    work = tmp_path_factory.mktemp("lineage")
    generate(work / "data", seed=5, songs=SONGS, start_day=date(2018, 11, 1), days=1, events_per_day=300, users=8)
    replace_bucket_contents(stack, work / "data")
    reset_warehouse(stack)
    events_file = work / "events.jsonl"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events_file), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "sparkify-tests",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    result = subprocess.run([sys.executable, "-c", RUN_BOTH_DAGS], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    assert events_file.exists(), "no OpenLineage event was written"
    found: dict[tuple[str, str], dict] = {}
    for line in events_file.read_text().splitlines():
        event = json.loads(line)
        if "eventType" in event:
            found[event["job"]["name"], event["eventType"]] = event
    return {"stack": stack, "events": found}


def complete(events, job: str) -> dict:
    try:
        return events["events"][job, "COMPLETE"]
    except KeyError:
        raise AssertionError(f"no COMPLETE event for {job}; jobs: {sorted({name for name, _ in events['events']})}") from None


def warehouse_name(events, table: str) -> tuple[str, str]:
    stack = events["stack"]
    database = json.loads(os.environ["AIRFLOW_CONN_SPARKIFY_WAREHOUSE"])["schema"]
    return f"postgres://127.0.0.1:{stack.pg_port}", f"{database}.public.{table}"


def names(datasets) -> set[tuple[str, str]]:
    return {(dataset["namespace"], dataset["name"]) for dataset in datasets}


def test_without_a_transport_nothing_is_set_up_to_send():
    from airflow.providers.openlineage import conf
    from airflow.providers.openlineage.plugins.openlineage import OpenLineageProviderPlugin

    assert not any(key.startswith(("OPENLINEAGE", "AIRFLOW__OPENLINEAGE")) for key in os.environ)
    assert conf.is_disabled()
    assert OpenLineageProviderPlugin.listeners == []


def test_staging_reads_the_objects_and_writes_the_staging_table(events):
    stack = events["stack"]
    bucket = f"s3://{stack.bucket}"
    for task_id, table in STAGING.items():
        event = complete(events, f"sparkify_etl.{task_id}")
        assert names(event["outputs"]) == {warehouse_name(events, table)}
        fields = [field["name"] for field in event["outputs"][0]["facets"]["schema"]["fields"]]
        assert "source_key" in fields and "source_line" in fields
        if task_id == "stage_events":
            # The window's one day: its object, named by key.
            assert names(event["inputs"]) == {(bucket, "log_data/2018/11/2018-11-01-events.json")}
            assert {"userid", "ts", "page"} <= set(fields)
        else:
            # More song files than are listed one by one: the prefix they were listed under.
            assert names(event["inputs"]) == {(bucket, "song_data")}
            assert {"song_id", "artist_id", "duration"} <= set(fields)


def test_loads_read_staging_and_write_the_star_tables(events):
    for task_id, (inputs, outputs) in LOADS.items():
        event = complete(events, f"sparkify_etl.{task_id}")
        assert names(event["inputs"]) == {warehouse_name(events, table) for table in inputs}, task_id
        assert names(event["outputs"]) == {warehouse_name(events, table) for table in outputs}, task_id
        for dataset in event["outputs"]:
            assert dataset["facets"]["schema"]["fields"], dataset["name"]
        assert "%(window_start)s" in event["job"]["facets"]["sql"]["query"]


def test_every_check_reports_its_assertions_with_pass_or_fail(events):
    from sparkify.quality import QUALITY_CHECKS

    for table, spec in QUALITY_CHECKS.items():
        expected = {f"{column}.{check}" for column, checks in spec.get("columns", {}).items() for check in checks}
        expected |= set(spec.get("rows", {})) | set(spec.get("table", {}))
        event = complete(events, "sparkify_etl.quality_checks")
        (checked,) = [d for d in event["inputs"] if (d["namespace"], d["name"]) == warehouse_name(events, table)]
        reported = {assertion["name"]: assertion for assertion in checked["facets"]["dataQualityAssertions"]["assertions"]}
        assert set(reported) == expected, table
        assert all(assertion["success"] is True for assertion in reported.values()), reported
        for name, condition in spec.get("rows", {}).items():
            if "{%" in condition:  # a condition from a template (checks/*.sql): described as it ran
                assert reported[name]["description"].startswith("hour_start NOT IN ("), name
            else:
                assert reported[name]["description"] == condition


def test_a_failing_check_reports_fail(airflow_db):
    """The facets the provider's listener reads from our check operators after a failure."""
    from airflow.sdk.exceptions import AirflowException

    from sparkify.operators import QualityChecksOperator
    from sparkify.quality import KEY

    execute(airflow_db, "DROP TABLE IF EXISTS lineage_probe")
    execute(airflow_db, "CREATE TABLE lineage_probe (id integer)")
    execute(airflow_db, "INSERT INTO lineage_probe VALUES (1), (1), (-1), (NULL)")
    check = QualityChecksOperator(task_id="probe", conn_id=WAREHOUSE_CONN_ID, windowed=False, checks={"lineage_probe": {
        "columns": {"id": KEY}, "rows": {"id_positive": "id > 0", "id_small": "id IS NULL OR id < 10"}}})
    with pytest.raises(AirflowException, match="failing check"):
        check.execute({"run_id": "probe"})
    lineage = check.get_openlineage_facets_on_complete(None)
    (dataset,) = lineage.inputs
    assert dataset.name.endswith(".public.lineage_probe")
    results = {a.name: a.success for a in dataset.facets["dataQualityAssertions"].assertions}
    execute(airflow_db, "DROP TABLE lineage_probe")
    assert results == {"id.null_check": False, "id.unique_check": False, "id_positive": False, "id_small": True}


def test_analytics_reads_the_star_tables_and_writes_the_report(events):
    stack = events["stack"]
    event = complete(events, "sparkify_analytics.build_report")
    # The star tables the queries read: no report query reads users (levels come from songplays).
    read = {"songplays", "songs", "artists", "time"}
    assert names(event["inputs"]) == {warehouse_name(events, table) for table in read}
    outputs = names(event["outputs"])
    assert {namespace for namespace, _ in outputs} == {f"s3://{stack.bucket}"}
    written = {name.rsplit("/", 1)[-1] for _, name in outputs}
    assert written == {"top_songs.csv", "top_artists.csv", "plays_by_hour.csv", "level_share.csv",
                       "active_users_per_day.csv", "chart.png", "index.html", "latest.json"}
    assert all(name.startswith("reports/") for _, name in outputs)
