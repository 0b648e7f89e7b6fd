"""sparkify_analytics against a real PostgreSQL and S3 endpoint: the ETL loads a small star
schema (dag.test), the analytics DAG publishes its report to the bucket, and every number in
the CSVs is checked against values computed in plain Python from the JSON files
(tests/support/model.py), never from the SQL under test.

Also covers the wiring around it: the star-schema Assets that schedule the report, the
failure notifier (to a local Slack-style webhook) and the Deadline Alert callback.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from support import REPO
from support.model import expected_warehouse, read_events, read_songs
from support.pipeline import etl_dag, project_dag, replace_bucket_contents, reset_warehouse, run_etl, s3_client
from scripts.sample_data import generate

DAY1 = (datetime(2018, 11, 1), datetime(2018, 11, 2))
DAY2 = (datetime(2018, 11, 2), datetime(2018, 11, 3))
TOP_N = 7
QUERIES = ("top_songs", "top_artists", "plays_by_hour", "level_share", "active_users_per_day")


def analytics_dag():
    return project_dag("sparkify_analytics")


@pytest.fixture(scope="module", autouse=True)
def etl_without_deadline_alert():
    """dag.test() of a DAG with a Deadline Alert fails in Airflow 3.3.2 when the run succeeds:
    the in-process run hands DagRun.update_state the alerts' definitions where the scheduler
    hands it their database ids (DeadlineAlertModel.get_by_id(<dict>)). Deadlines need the
    scheduler anyway, so in-process runs go without; the alert itself is tested below."""
    dag = etl_dag()
    saved, dag.deadline = dag.deadline, None
    yield
    dag.deadline = saved


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, airflow_db):
    data_dir = tmp_path_factory.mktemp("analytics-data")
    generate(data_dir, seed=11, songs=60, start_day=date(2018, 11, 1), days=2, events_per_day=700, users=25,
             match_share=0.7)
    replace_bucket_contents(airflow_db, data_dir)
    reset_warehouse(airflow_db)
    return data_dir


@pytest.fixture(scope="module")
def model_inputs(dataset):
    return read_events(dataset), read_songs(dataset)


# -- the expected report, computed from the model ------------------------------------------------


def expected_report(model_inputs, windows, top_n=TOP_N) -> dict[str, list[dict[str, str]]]:
    model = expected_warehouse(*model_inputs, windows)
    plays = model.songplays  # (start_time, user_id, level, song_id, artist_id, session_id, location, user_agent)

    by_song: dict[tuple, list] = defaultdict(list)
    by_artist: dict[str, list] = defaultdict(list)
    for play in plays:
        start_time, user_id, level, song_id, artist_id = play[:5]
        if song_id is not None:
            by_song[(song_id, model.songs[song_id][0], model.artists[artist_id][0])].append(play)
        if artist_id is not None:
            by_artist[artist_id].append(play)
    top_songs = sorted(by_song.items(), key=lambda item: (-len(item[1]), item[0][0]))[:top_n]
    top_artists = sorted(by_artist.items(), key=lambda item: (-len(item[1]), item[0]))[:top_n]

    hours = {hour: [p for p in plays if p[0].hour == hour] for hour in range(24)}
    levels = Counter(p[2] for p in plays)
    level_users = defaultdict(set)
    days = defaultdict(list)
    for play in plays:
        level_users[play[2]].add(play[1])
        days[play[0].date()].append(play)

    def users(rows, level=None):
        return len({p[1] for p in rows if level is None or p[2] == level})

    return {
        "top_songs": [
            {"song_id": song_id, "title": title, "artist_name": artist, "plays": str(len(rows)), "listeners": str(users(rows))}
            for (song_id, title, artist), rows in top_songs
        ],
        "top_artists": [
            {"artist_id": artist_id, "artist_name": model.artists[artist_id][0], "plays": str(len(rows)),
             "songs_played": str(len({p[3] for p in rows})), "listeners": str(users(rows))}
            for artist_id, rows in top_artists
        ],
        "plays_by_hour": [
            {"hour": str(hour), "plays": str(len(rows)), "listeners": str(users(rows))} for hour, rows in hours.items()
        ],
        "level_share": [
            {"level": level or "", "plays": str(count), "users": str(len(level_users[level])),
             "share_pct": 100 * count / len(plays)}
            for level, count in sorted(levels.items(), key=lambda item: (item[0] is None, item[0]))
        ],
        "active_users_per_day": [
            {"day": day.isoformat(), "active_users": str(users(rows)), "paid_users": str(users(rows, "paid")),
             "free_users": str(users(rows, "free")), "plays": str(len(rows))}
            for day, rows in sorted(days.items())
        ],
    }


# -- reading the published report --------------------------------------------------------------


def s3_get(stack, key: str) -> dict:
    return s3_client(stack).get_object(Bucket=stack.bucket, Key=key)


def latest_report(stack) -> tuple[dict, dict[str, list[dict[str, str]]]]:
    latest = json.loads(s3_get(stack, "reports/latest.json")["Body"].read())
    tables = {}
    for name in QUERIES:
        body = s3_get(stack, f"{latest['prefix']}/{name}.csv")["Body"].read().decode("utf-8")
        tables[name] = list(csv.DictReader(io.StringIO(body)))
    return latest, tables


def assert_report_matches(tables, expected):
    for name in ("top_songs", "top_artists", "plays_by_hour", "active_users_per_day"):
        assert tables[name] == expected[name], name
    assert len(tables["level_share"]) == len(expected["level_share"])
    for got, want in zip(tables["level_share"], expected["level_share"]):
        assert {k: got[k] for k in ("level", "plays", "users")} == {k: want[k] for k in ("level", "plays", "users")}
        assert float(got["share_pct"]) == pytest.approx(want["share_pct"], abs=0.005 + 1e-9)
    assert float(sum(Decimal(row["share_pct"]) for row in tables["level_share"])) == pytest.approx(100, abs=0.02)


def run_analytics(**conf):
    return analytics_dag().test(run_conf=conf or None)


# -- tests -----------------------------------------------------------------------------------------


def test_report_on_an_empty_star_schema(dataset, airflow_db):
    """Before any plays are loaded (e.g. the first scheduled run was an empty hour) the report
    still publishes: empty tables, 24 zero hours and a chart that says so."""
    reset_warehouse(airflow_db)
    assert run_etl("2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z").state == "success"
    assert run_analytics().state == "success"
    latest, tables = latest_report(airflow_db)
    assert tables["plays_by_hour"] == [{"hour": str(hour), "plays": "0", "listeners": "0"} for hour in range(24)]
    for name in ("top_songs", "top_artists", "level_share", "active_users_per_day"):
        assert tables[name] == [], name
    page = s3_get(airflow_db, latest["index_key"])["Body"].read().decode("utf-8")
    assert '<img src="data:image/png;base64,' in page


def test_report_matches_independent_model_and_follows_new_loads(dataset, model_inputs, airflow_db):
    stack = airflow_db
    reset_warehouse(stack)
    assert run_etl(*DAY1).state == "success"
    assert run_analytics(top_n=TOP_N).state == "success"
    first, tables = latest_report(stack)
    assert first["bucket"] == stack.bucket
    assert first["prefix"].startswith("reports/") and first["index_key"] == f"{first['prefix']}/index.html"
    expected = expected_report(model_inputs, [DAY1])
    assert_report_matches(tables, expected)

    # The data is rich enough for the checks to mean something.
    assert len(tables["top_songs"]) == TOP_N and len(tables["top_artists"]) == TOP_N
    assert int(tables["top_songs"][0]["plays"]) > 1
    assert {row["level"] for row in tables["level_share"]} == {"free", "paid"}
    assert sum(1 for row in tables["plays_by_hour"] if int(row["plays"])) > 12

    # The page, the chart and their content types (so a browser or S3 website shows them).
    index = s3_get(stack, first["index_key"])
    assert index["ContentType"].startswith("text/html")
    page = index["Body"].read().decode("utf-8")
    assert '<img src="data:image/png;base64,' in page and "Top songs" in page and "Active users per day" in page
    for name in QUERIES:
        assert f'href="{name}.csv"' in page
    assert html.escape(tables["top_songs"][0]["title"]) in page
    chart = s3_get(stack, f"{first['prefix']}/chart.png")
    assert chart["ContentType"] == "image/png"
    png = chart["Body"].read()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000

    # A second day is loaded: the load tasks update the Assets, which queue a report run ...
    with psycopg.connect(stack.airflow_conninfo) as db:
        db.execute("DELETE FROM asset_dag_run_queue WHERE target_dag_id = 'sparkify_analytics'")
        db.commit()
    assert run_etl(*DAY2).state == "success"
    with psycopg.connect(stack.airflow_conninfo) as db:
        queued = {row[0] for row in db.execute(
            "SELECT a.name FROM asset_dag_run_queue q JOIN asset a ON a.id = q.asset_id "
            "WHERE q.target_dag_id = 'sparkify_analytics'"
        )}
    assert queued == {f"sparkify.{table}" for table in ("songplays", "users", "songs", "artists", "time")}

    # ... and the next report covers both days, under a new prefix.
    assert run_analytics(top_n=10).state == "success"
    second, tables = latest_report(stack)
    assert second["prefix"] != first["prefix"]
    assert_report_matches(tables, expected_report(model_inputs, [DAY1, DAY2], top_n=10))
    assert [row["day"] for row in tables["active_users_per_day"]] == ["2018-11-01", "2018-11-02"]
    # The first report is still there.
    assert s3_get(stack, first["index_key"])["ContentLength"] > 0


def test_assets_connect_the_load_tasks_to_the_analytics_schedule():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO / "dags"))
    etl, analytics = bag.dags["sparkify_etl"], bag.dags["sparkify_analytics"]
    produced = {}
    for task in etl.tasks:
        for asset in task.outlets:
            produced[asset.name] = (task.task_id, asset.uri)
    assert produced == {
        "sparkify.songplays": ("load_songplays_fact", "x-sparkify://warehouse/public/songplays"),
        "sparkify.users": ("load_dimensions", "x-sparkify://warehouse/public/users"),
        "sparkify.songs": ("load_dimensions", "x-sparkify://warehouse/public/songs"),
        "sparkify.artists": ("load_dimensions", "x-sparkify://warehouse/public/artists"),
        "sparkify.time": ("load_dimensions", "x-sparkify://warehouse/public/time"),
    }
    condition = analytics.timetable.asset_condition
    assert type(condition).__name__ == "AssetAll"  # every table, not any one of them
    consumed = {(asset.name, asset.uri) for asset in condition.objects}
    assert consumed == {(name, uri) for name, (_, uri) in produced.items()}
    assert analytics.max_active_runs == 1
    assert analytics.params["top_n"] == 10


def test_analytics_dag_parses_without_heavy_imports():
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]); "
        "heavy = [m for m in ('matplotlib', 'boto3', 'botocore', 'redshift_connector', "
        "'airflow.providers.amazon.aws.hooks.s3', 'airflow.providers.postgres.hooks.postgres', "
        "'airflow.providers.smtp.hooks.smtp') if m in sys.modules]; "
        "print(','.join(heavy)); sys.exit(1 if heavy else 0)"
    )
    for dag_file in ("sparkify_analytics.py", "sparkify_etl.py"):
        result = subprocess.run([sys.executable, "-c", code, str(REPO / "dags" / dag_file)], capture_output=True, text=True)
        assert result.returncode == 0, f"{dag_file}: heavy modules at parse time: {result.stdout} {result.stderr[-2000:]}"


# -- alerts ----------------------------------------------------------------------------------------


def test_a_failed_task_alerts_through_the_configured_webhook(dataset, slack_webhook, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_SPARKIFY_BUCKET", "no-such-bucket")
    assert run_analytics().state == "failed"
    assert len(slack_webhook) == 1, slack_webhook
    text = slack_webhook[0]["text"]
    assert "sparkify_analytics.build_report failed" in text
    assert "no-such-bucket" in text and "does not exist" in text
    assert "/dags/sparkify_analytics/runs/" in text


def deadline_context(run_type: str) -> dict:
    """What the scheduler hands a Deadline Alert callback (models/deadline.py: handle_miss)."""
    return {
        "dag_run": {"dag_id": "sparkify_etl", "dag_run_id": "scheduled__2018-11-01T05:00:00+00:00", "state": "running",
                    "run_type": run_type, "queued_at": "2018-11-01T06:00:05+00:00"},
        "deadline": {"id": "0197", "deadline_time": "2018-11-01T06:30:05+00:00"},
    }


def test_a_missed_deadline_alerts_like_the_triggerer_calls_it(slack_webhook):
    from airflow.sdk import AsyncCallback
    from airflow.triggers.callback import CallbackTrigger

    from sparkify.alerts import SparkifyNotifier

    from airflow.dag_processing.dagbag import DagBag

    etl = DagBag(str(REPO / "dags")).dags["sparkify_etl"]
    (alert,) = etl.deadline
    assert alert.interval == timedelta(minutes=30)
    assert alert.reference.reference_name == "DagRunQueuedAtDeadline"
    assert isinstance(alert.callback, AsyncCallback) and alert.callback.path == "sparkify.alerts.SparkifyNotifier"

    async def fire(run_type):
        # The triggerer's own code path: import the callback by path and await it with the context.
        trigger = CallbackTrigger(alert.callback.path, {**alert.callback.kwargs, "context": deadline_context(run_type)})
        return [event.payload async for event in trigger.run()]

    events = asyncio.run(fire("scheduled"))
    assert events[-1]["state"] == "success", events
    assert len(slack_webhook) == 1
    assert "sparkify_etl run scheduled__2018-11-01T05:00:00+00:00 missed its deadline" in slack_webhook[0]["text"]
    assert "30 minutes" in slack_webhook[0]["text"]

    # Backfill runs wait in the queue by design: logged, not sent.
    assert asyncio.run(fire("backfill"))[-1]["state"] == "success"
    assert len(slack_webhook) == 1
    assert SparkifyNotifier(event="deadline_missed").compose(deadline_context("backfill"))["run_type"] == "backfill"
