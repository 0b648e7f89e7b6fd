"""Schema drift never empties a column silently.

Through the DAG, against the real PostgreSQL and S3 servers: one day of events (the second of
two) drifts the way producers drift, and each case ends as designed. A key absent from every
record fails that object's staging, naming the file, the key and the unknown keys, with nothing
staged from it; a key absent from some records, or an extra key, stages with a warning. The other
objects stay as they were. Then the anomaly checks: they pass on normal data, pass on an empty
or first-ever window, and fail, naming metric, value and baseline, when a drift was let through
or the warehouse was broken on purpose.

Expected values come from the input JSON (tests/support/model.py and the counts below), never from the
SQL under test.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from support.model import _user, event_time, expected_warehouse, read_events, read_json_values, read_songs
from support.pipeline import (
    assert_matches_model, execute, query, replace_bucket_contents, reset_warehouse, run_dag, run_etl, star_snapshot,
    task_result, write_lines,
)
from scripts.sample_data import generate

DAY1 = "log_data/2018/11/2018-11-01-events.json"
DAY2 = "log_data/2018/11/2018-11-02-events.json"
DAY1_WINDOW = ("2018-11-01T00:00:00Z", "2018-11-02T00:00:00Z")
DAY2_WINDOW = ("2018-11-02T00:00:00Z", "2018-11-03T00:00:00Z")
BOTH_DAYS = ("2018-11-01T00:00:00Z", "2018-11-03T00:00:00Z")


def bounds(window: tuple[str, str]) -> tuple[datetime, datetime]:
    return tuple(datetime.fromisoformat(moment.replace("Z", "")) for moment in window)


@pytest.fixture(scope="module")
def source(tmp_path_factory, airflow_db) -> Path:
    data = tmp_path_factory.mktemp("drift") / "data"
    generate(data, seed=16, songs=20, days=2, events_per_day=600, users=10)
    return data


@dataclass
class Case:
    stack: object
    data: Path

    @property
    def url(self) -> str:
        return f"s3://{self.stack.bucket}/"

    def events(self, key: str) -> list[dict]:
        return read_json_values(self.data / key)

    def rewrite(self, key: str, events: list[dict]) -> None:
        write_lines(self.data / key, events)

    def upload(self) -> None:
        replace_bucket_contents(self.stack, self.data)

    def model(self, window: tuple[str, str]):
        return expected_warehouse(read_events(self.data), read_songs(self.data), [bounds(window)])

    def staged_rows(self) -> dict[str, int]:
        return dict(query(self.stack, "SELECT source_key, count(*) FROM staging_events GROUP BY source_key"))

    def ledger_keys(self) -> set[str]:
        return {key for (key,) in query(self.stack,
                                        "SELECT source_key FROM stage_load_ledger WHERE table_name = 'staging_events'")}


@pytest.fixture
def case(source, tmp_path, airflow_db) -> Case:
    data = tmp_path / "data"
    shutil.copytree(source, data)
    reset_warehouse(airflow_db)
    return Case(airflow_db, data)


def states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def renamed(events: list[dict], old: str, new: str) -> list[dict]:
    return [{(new if key == old else key): value for key, value in event.items()} for event in events]


# --------------------------------------------------------------------------- staging


def test_a_renamed_key_fails_the_run_naming_file_and_key(case, capfd):
    """The producer renamed userId to userID in one day's file: that file fails to stage, the
    other day's stages, no load runs, nothing is emptied; the fixed file then loads in full."""
    original = case.events(DAY2)
    case.rewrite(DAY2, renamed(original, "userId", "userID"))
    case.upload()
    capfd.readouterr()
    run = run_etl(*BOTH_DAYS)
    log = capfd.readouterr().out

    task_states = states(run)
    assert run.state == "failed"
    assert task_states["stage_events"] == "failed" and task_states["stage_songs"] == "success"
    assert task_states["load_songplays_fact"] == "upstream_failed"
    records = len(original)
    assert (f"{case.url}{DAY2}: schema drift: expected key 'userId' (column userid) is absent from all {records:,} "
            f"records; unknown keys appeared: 'userID' in {records:,} of {records:,} records") in log
    assert "1 of 2 objects not staged" in log
    # Nothing from the drifted file; the other file of the same batch staged in full.
    assert case.staged_rows() == {DAY1: len(case.events(DAY1))}
    assert case.ledger_keys() == {DAY1}
    assert query(case.stack, "SELECT count(*) FROM songplays")[0][0] == 0
    assert query(case.stack, "SELECT count(*) FROM loaded_hours")[0][0] == 0

    # The producer fixes the file: the next run stages it and the warehouse is complete.
    case.rewrite(DAY2, original)
    case.upload()
    assert run_etl(*BOTH_DAYS).state == "success"
    assert_matches_model(case.stack, case.model(BOTH_DAYS))
    assert case.staged_rows() == {DAY1: len(case.events(DAY1)), DAY2: records}


def test_a_key_missing_from_half_the_records_stages_with_a_warning(case, capfd):
    events = case.events(DAY2)
    thinned = [{k: v for k, v in event.items() if k != "location" or index % 2} for index, event in enumerate(events)]
    absent = sum(1 for event in thinned if "location" not in event)
    case.rewrite(DAY2, thinned)
    case.upload()
    capfd.readouterr()
    assert run_etl(*BOTH_DAYS).state == "success"
    log = capfd.readouterr().out

    assert (f"{case.url}{DAY2}: expected key 'location' is absent from {absent:,} of {len(events):,} records "
            f"({absent / len(events):.1%}); they stage NULL") in log
    assert case.staged_rows() == {DAY1: len(case.events(DAY1)), DAY2: len(events)}
    null_locations = sum(1 for event in thinned if not str(event.get("location") or "").strip())
    assert query(case.stack, "SELECT count(*) FROM staging_events WHERE source_key = %s AND location IS NULL",
                 (DAY2,))[0][0] == null_locations
    assert query(case.stack, "SELECT records, present FROM stage_key_presence WHERE source_key = %s AND json_key = 'location'",
                 (DAY2,)) == [(len(events), len(events) - absent)]
    assert_matches_model(case.stack, case.model(BOTH_DAYS))


def test_a_new_key_stages_and_is_logged(case, capfd):
    events = case.events(DAY2)
    extended = [{**event, "sessionKind": "web", **({"abTest": index} if index < 5 else {})}
                for index, event in enumerate(events)]
    case.rewrite(DAY2, extended)
    case.upload()
    capfd.readouterr()
    assert run_etl(*BOTH_DAYS).state == "success"
    log = capfd.readouterr().out

    n = len(events)
    assert (f"{case.url}{DAY2}: unknown keys, not staged: 'sessionKind' in {n:,} of {n:,} records, "
            f"'abTest' in 5 of {n:,} records") in log
    assert f"{case.url}{DAY1}: unknown keys" not in log
    unknown = query(case.stack, "SELECT source_key, json_key, records, present FROM stage_key_presence "
                                "WHERE column_name IS NULL ORDER BY source_key, json_key")
    assert unknown == [(DAY2, "abTest", n, 5), (DAY2, "sessionKind", n, n)]
    # Every mapped key is counted for each object: the 18 paths of log_json_path.json.
    paths = json.loads((case.data / "log_json_path.json").read_text())["jsonpaths"]
    assert query(case.stack, "SELECT count(*) FROM stage_key_presence WHERE source_key = %s AND column_name IS NOT NULL "
                             "AND present = records", (DAY1,))[0][0] == len(paths)
    assert_matches_model(case.stack, case.model(BOTH_DAYS))


def test_a_jsonpaths_file_that_no_longer_matches_the_data_fails(case, capfd):
    case.upload()
    assert run_etl(*DAY1_WINDOW).state == "success"
    before = star_snapshot(case.stack), case.staged_rows()

    # The mapping now reads $['user_id'], a key no record has.
    jsonpaths = case.data / "log_json_path.json"
    jsonpaths.write_text(jsonpaths.read_text().replace("$['userId']", "$['user_id']"))
    case.upload()
    capfd.readouterr()
    run = run_etl(*BOTH_DAYS)
    log = capfd.readouterr().out

    assert run.state == "failed" and states(run)["stage_events"] == "failed"
    n = len(case.events(DAY2))
    assert (f"{case.url}{DAY2}: schema drift: expected key 'user_id' (column userid) is absent from all {n:,} records; "
            f"unknown keys appeared: 'userId' in {n:,} of {n:,} records") in log
    # Day 1 was staged before and is unchanged (skipped); day 2 staged nothing; the loaded day is untouched.
    assert (star_snapshot(case.stack), case.staged_rows()) == before
    assert case.ledger_keys() == {DAY1}


def test_a_type_change_stages_what_converts_and_fails_what_does_not(case, capfd):
    """A number became a string: lengths as numeric strings convert as COPY converts them (day 1
    stages the same values); session ids as "s12" can't, so day 2 is rejected past max_errors and
    stages nothing, while day 1, in the same batch, stages."""
    day1 = [{**event, "length": str(event["length"])} if event.get("length") is not None else event
            for event in case.events(DAY1)]
    day2 = [{**event, "sessionId": f"s{event['sessionId']}"} for event in case.events(DAY2)]
    case.rewrite(DAY1, day1)
    case.rewrite(DAY2, day2)
    case.upload()
    capfd.readouterr()
    run = run_etl(*BOTH_DAYS)
    log = capfd.readouterr().out

    assert run.state == "failed" and states(run)["stage_events"] == "failed"
    assert (f"{case.url}{DAY2} line 11: sessionid: {day2[10]['sessionId']!r} is not an integer "
            "(11 rejects exceed max_errors=10") in log
    assert case.staged_rows() == {DAY1: len(day1)}
    assert query(case.stack, "SELECT count(*) FROM stage_rejects WHERE source_key = %s", (DAY2,))[0][0] == 11
    lengths = sorted(float(event["length"]) for event in day1 if event.get("length") is not None)
    assert [value for (value,) in query(case.stack, "SELECT length FROM staging_events WHERE length IS NOT NULL "
                                                    "ORDER BY length")] == lengths

    # Day 1 alone loads like the model (its string lengths read as numbers, so songs still match).
    assert run_etl(*DAY1_WINDOW).state == "success"
    assert_matches_model(case.stack, case.model(DAY1_WINDOW))


# --------------------------------------------------------------------------- anomaly checks


def shares(case: Case, window: tuple[str, str]) -> dict[str, tuple[int, int]]:
    """From the JSON: per period, NextSong events with a user / NextSong events, over the events
    with ts in the window ('window') or in the 7 days before it ('baseline')."""
    start, end = bounds(window)
    counts = {"window": [0, 0], "baseline": [0, 0]}
    for event in read_events(case.data):
        moment = event_time(event["ts"])
        period = "window" if start <= moment < end else "baseline" if start - timedelta(days=7) <= moment < start else None
        if period and event["page"] == "NextSong":
            counts[period][1] += 1
            counts[period][0] += _user(event) is not None
    return {period: tuple(values) for period, values in counts.items()}


def test_anomaly_checks_pass_on_normal_data(case, capfd):
    case.upload()
    assert run_etl(*DAY1_WINDOW).state == "success"
    capfd.readouterr()
    run = run_etl(*DAY2_WINDOW)
    log = capfd.readouterr().out
    assert run.state == "success"
    result = task_result(run, "quality_checks")["anomalies"]
    # Every metric judged against day 1, apart from columns too rarely set to judge.
    assert result["metrics"] == 2 + 18 and result["judged"] >= 10
    counts = shares(case, DAY2_WINDOW)
    share = lambda c: f"{c[0] / c[1]:.3f} ({c[0]:,}/{c[1]:,})"  # noqa: E731
    assert re.search(rf"nextsong_user_share +{re.escape(share(counts['window']))} +{re.escape(share(counts['baseline']))} ", log)
    assert "FAIL" not in log.split("Anomaly checks")[1].split("anomaly checks: all")[0]


def test_anomaly_checks_fail_when_a_drift_is_let_through(case, capfd):
    """The renamed key (userId to userID) allowed to be absent: staging passes, the loads give no
    songplays for the day, the quality checks agree (both sides are empty), the anomaly checks don't."""
    case.upload()
    assert run_etl(*DAY1_WINDOW).state == "success"
    case.rewrite(DAY2, renamed(case.events(DAY2), "userId", "userID"))
    case.upload()
    capfd.readouterr()
    run = run_dag({"start": DAY2_WINDOW[0], "end": DAY2_WINDOW[1], "allow_absent_keys": ["userId"]})
    log = capfd.readouterr().out

    task_states = states(run)
    assert task_states["stage_events"] == "success" and task_states["quality_checks"] == "failed"
    assert "failing check(s) on" not in log  # the table checks agree: both sides are empty
    assert "expected key 'userId' (column userid) is absent from all" in log and "(allowed by allow_absent_keys)" in log
    counts = shares(case, DAY2_WINDOW)
    window, baseline = counts["window"], counts["baseline"]
    assert window[0] == 0 and baseline[0] > 0
    assert (f"FAILED nextsong_user_share (share of staged NextSong events that carry a user id): window 0.000 "
            f"(0/{window[1]:,}) [2018-11-02 00:00, 2018-11-03 00:00), baseline {baseline[0] / baseline[1]:.3f} "
            f"({baseline[0]:,}/{baseline[1]:,}) [2018-10-26 00:00, 2018-11-02 00:00); fails below baseline / 2 = "
            f"{baseline[0] / baseline[1] / 2:.3f}") in log
    plays_day1 = len(case.model(DAY1_WINDOW).songplay_ids)
    assert ("FAILED songplays_per_staged_play (songplays per staged NextSong event, over loaded hours): "
            f"window 0.000 (0/{window[1]:,})") in log
    assert f"baseline {plays_day1 / baseline[1]:.3f} ({plays_day1:,}/{baseline[1]:,})" in log
    assert "FAILED staging_events.userid.non_null_share" in log


def test_anomaly_checks_fail_when_songplays_go_missing(case, capfd):
    case.upload()
    assert run_etl(*DAY1_WINDOW).state == "success"
    assert run_etl(*DAY2_WINDOW).state == "success"
    # Break the window on purpose: drop the songplays whose id starts with 0-b (about 3/4).
    execute(case.stack, "DELETE FROM songplays WHERE start_time >= '2018-11-02' AND songplay_id < 'c'")
    kept = sum(1 for songplay_id in case.model(DAY2_WINDOW).songplay_ids if songplay_id >= "c")
    plays = shares(case, DAY2_WINDOW)["window"][1]
    capfd.readouterr()
    run = run_dag({"start": DAY2_WINDOW[0], "end": DAY2_WINDOW[1]}, mark_success_pattern=r"(?!quality_checks$).*")
    log = capfd.readouterr().out
    assert states(run)["quality_checks"] == "failed"
    assert ("FAILED songplays_per_staged_play (songplays per staged NextSong event, over loaded hours): "
            f"window {kept / plays:.3f} ({kept:,}/{plays:,})") in log
    assert "FAILED nextsong_user_share" not in log


def test_anomaly_checks_pass_on_a_first_ever_and_an_empty_window(case, capfd):
    case.upload()
    capfd.readouterr()
    run = run_etl(*DAY2_WINDOW)  # a fresh warehouse: no history at all
    log = capfd.readouterr().out
    assert run.state == "success" and task_result(run, "quality_checks")["anomalies"]["judged"] == 0
    assert "pass (no history)" in log and "FAIL" not in log.split("Anomaly checks")[1]
    run = run_etl("2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z")
    assert run.state == "success" and task_result(run, "quality_checks")["anomalies"]["judged"] == 0
    assert "pass (empty window)" in capfd.readouterr().out
